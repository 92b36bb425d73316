//! Clients: create, update, archive, read and search. Managers and admins write; every role
//! reads (teachers see their groups' members through the same records).
use crate::http::AppPath;
use axum::{extract::State, http::StatusCode, Json};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::domain::{
    clients::{self, check_birth_date, ClientInput, ClientRow, Email, Phone},
    Page,
};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    http::{page, ApiError, AppJson, AppQuery, FieldErrors},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(archive))
}

const WRITERS: &[Role] = &[Role::Admin, Role::Manager];

#[derive(Serialize, utoipa::ToSchema)]
struct Notify {
    telegram: bool,
    email: bool,
}

/// A client as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
struct Client {
    id: Uuid,
    last_name: String,
    first_name: String,
    middle_name: Option<String>,
    full_name: String,
    phone: Option<String>,
    email: Option<String>,
    birth_date: Option<NaiveDate>,
    guardian_id: Option<Uuid>,
    telegram_chat_id: Option<i64>,
    notify: Notify,
    comment: Option<String>,
    archived: bool,
    archived_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ClientRow> for Client {
    fn from(r: ClientRow) -> Self {
        Self {
            full_name: r.full_name(),
            id: r.id,
            last_name: r.last_name,
            first_name: r.first_name,
            middle_name: r.middle_name,
            phone: r.phone,
            email: r.email,
            birth_date: r.birth_date,
            guardian_id: r.guardian_id,
            telegram_chat_id: r.telegram_chat_id,
            notify: Notify {
                telegram: r.notify_telegram,
                email: r.notify_email,
            },
            comment: r.comment,
            archived: r.archived_at.is_some(),
            archived_at: r.archived_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The documented client body, once: `POST` requires the names, `PATCH` does not (the
/// handlers read the body as a JSON object to tell absent from null; these are documentation
/// schemas).
macro_rules! client_body {
    ($(#[$doc:meta])* $name:ident, required = $required:literal) => {
        $(#[$doc])*
        #[derive(Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        pub struct $name {
            #[schema(value_type = String, required = $required, min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$")]
            last_name: Option<String>,
            #[schema(value_type = String, required = $required, min_length = 1, max_length = 500, pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$")]
            first_name: Option<String>,
            #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
            middle_name: Option<String>,
            /// +7 and ten digits, 8 or 7 and ten digits, ten digits, or + and a foreign number, with
            /// spaces, dashes and brackets; stored as E.164. Empty or null clears it.
            #[schema(
                pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(|(\+[-+() ]*([1-689]([-+() ]*[0-9]){7,14}|7([-+() ]*[0-9]){10})|([-()][-+() ]*)?([78]([-+() ]*[0-9]){10}|[0-9]([-+() ]*[0-9]){9}))[-+() ]*))[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
            )]
            phone: Option<String>,
            /// Empty or null clears it.
            #[schema(
                max_length = 254,
                pattern = r"^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*(?:(|[\x21-\x3f\x41-\x7e]+@[\x21-\x2d\x2f-\x3f\x41-\x7e][\x21-\x3f\x41-\x7e]*\.[\x21-\x3f\x41-\x7e]*[\x21-\x2d\x2f-\x3f\x41-\x7e]))[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
            )]
            email: Option<String>,
            /// YYYY-MM-DD, after 1900 and in the past (Moscow calendar).
            #[schema(value_type = Option<String>, format = Date, pattern = "^(19[0-9]{2}|20[0-9]{2})-")]
            birth_date: Option<NaiveDate>,
            /// Another client (must exist).
            guardian_id: Option<Uuid>,
            telegram_chat_id: Option<i64>,
            #[schema(value_type = Option<NotifyBody>, nullable = false)]
            notify: Option<NotifyBody>,
            #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
            comment: Option<String>,
        }
    };
}

client_body!(
    /// The body of `POST /api/clients` (last_name and first_name required).
    NewClientBody,
    required = true
);
client_body!(
    /// The body of `PATCH /api/clients/{id}`: only the keys sent change; null clears an
    /// optional field (the names cannot be cleared).
    ClientBody,
    required = false
);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct NotifyBody {
    #[schema(nullable = false)]
    telegram: Option<bool>,
    #[schema(nullable = false)]
    email: Option<bool>,
}

/// Applies the keys present in `body` (null clears an optional field) to `input`, collecting
/// every problem by field name. Unknown keys are refused so a typo never passes silently. The
/// rules every client meets are checked by the domain when it is saved.
fn apply(input: &mut ClientInput, body: &Map<String, Value>, fields: &mut FieldErrors) {
    for (key, value) in body {
        let problem = match key.as_str() {
            "last_name" => text(value, true).map(|v| input.last_name = v.unwrap_or_default()),
            "first_name" => text(value, true).map(|v| input.first_name = v.unwrap_or_default()),
            "middle_name" => text(value, false).map(|v| input.middle_name = v),
            "comment" => text(value, false).map(|v| input.comment = v),
            "phone" => text(value, false).and_then(|v| match v {
                None => {
                    input.phone = None;
                    Ok(())
                }
                Some(p) => Phone::parse(&p)
                    .map(|p| input.phone = Some(p))
                    .ok_or_else(|| Phone::EXPECTED.into()),
            }),
            "email" => text(value, false).and_then(|v| match v {
                None => {
                    input.email = None;
                    Ok(())
                }
                Some(e) => Email::parse(&e)
                    .map(|e| input.email = Some(e))
                    .ok_or_else(|| Email::EXPECTED.into()),
            }),
            "birth_date" => text(value, false).and_then(|v| match v {
                None => {
                    input.birth_date = None;
                    Ok(())
                }
                Some(d) => match NaiveDate::parse_from_str(&d, "%Y-%m-%d") {
                    Ok(d) => check_birth_date(d)
                        .map(|()| input.birth_date = Some(d))
                        .map_err(str::to_string),
                    Err(_) => Err("expected a date YYYY-MM-DD".into()),
                },
            }),
            "guardian_id" => match value {
                Value::Null => {
                    input.guardian_id = None;
                    Ok(())
                }
                Value::String(s) => Uuid::parse_str(s)
                    .map(|id| input.guardian_id = Some(id))
                    .map_err(|_| "expected a client id".into()),
                _ => Err("expected a client id".into()),
            },
            "telegram_chat_id" => match value {
                Value::Null => {
                    input.telegram_chat_id = None;
                    Ok(())
                }
                Value::Number(n) if n.as_i64().is_some() => {
                    input.telegram_chat_id = n.as_i64();
                    Ok(())
                }
                _ => Err("expected an integer chat id".into()),
            },
            "notify" => match value {
                Value::Object(m) => {
                    let mut problem = Ok(());
                    for (channel, v) in m {
                        match (channel.as_str(), v.as_bool()) {
                            ("telegram", Some(b)) => input.notify_telegram = b,
                            ("email", Some(b)) => input.notify_email = b,
                            _ => {
                                problem =
                                    Err("expected {\"telegram\": bool, \"email\": bool}"
                                        .to_string())
                            }
                        }
                    }
                    problem
                }
                _ => Err("expected {\"telegram\": bool, \"email\": bool}".into()),
            },
            _ => Err("unknown field".into()),
        };
        if let Err(p) = problem {
            fields.insert(key.clone(), p);
        }
    }
}

/// A JSON string (trimmed; empty counts as absent) or null. `required` refuses null.
fn text(value: &Value, required: bool) -> Result<Option<String>, String> {
    match value {
        Value::Null if required => Err("required".into()),
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() > 500 => Err("at most 500 characters".into()),
        Value::String(s) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        _ => Err("expected a string".into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/clients",
    tag = "clients",
    request_body = NewClientBody,
    responses((status = 201, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Client>), ApiError> {
    user.require(WRITERS)?;
    let mut input = ClientInput::default();
    let mut fields = FieldErrors::new();
    apply(&mut input, &body, &mut fields);
    input.check(None, &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let row = clients::save(&app.db, None, &input).await?;
    tracing::info!(client.id = %row.id, "client created");
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(
    patch,
    path = "/api/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path)),
    request_body = ClientBody,
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn update(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<Map<String, Value>>,
) -> Result<Json<Client>, ApiError> {
    user.require(WRITERS)?;
    let current = clients::fetch(&app.db, id).await?;
    let mut input = ClientInput::from_row(&current);
    let mut fields = FieldErrors::new();
    apply(&mut input, &body, &mut fields);
    input.check(Some(id), &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    Ok(Json(clients::save(&app.db, Some(id), &input).await?.into()))
}

#[utoipa::path(
    post,
    path = "/api/clients/{id}/archive",
    tag = "clients",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::http::error::ErrorBody), (status = 404, description = "not found", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn archive(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Client>, ApiError> {
    user.require(WRITERS)?;
    Ok(Json(clients::archive(&app.db, id).await?.into()))
}

#[utoipa::path(
    get,
    path = "/api/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 404, description = "not found (or, to a teacher, not a member of their groups)", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<Client>, ApiError> {
    let client = clients::fetch(&app.db, id).await?;
    if !user.reader().sees_client(&app.db, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(client.into()))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    search: Option<String>,
    archived: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The page and the total count in ONE statement (see `shared::domain::clients::Search`); a
/// page past the end still has its total.
#[utoipa::path(
    get,
    path = "/api/clients",
    tag = "clients",
    params(("search" = Option<String>, Query, max_length = 100, description = "surname (optionally followed by the first name) from its start, else any name fragment; a phone number's start or end; an e-mail fragment"), ("archived" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::http::Paged<Client>), (status = 401, description = "no or invalid bearer token", body = crate::http::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::http::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Page<Client>>, ApiError> {
    let page = page(q.limit, q.offset)?;
    let filter = clients::ListFilter {
        search: q.search,
        archived: q.archived.unwrap_or(false),
        reader: user.reader(),
    };
    Ok(Json(
        clients::list(&app.db, &filter, page)
            .await?
            .map(Client::from),
    ))
}
