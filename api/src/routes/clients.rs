//! Clients: create, update, archive, read and search. Managers and admins write; every role
//! reads (teachers see their groups' members through the same records).
use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, AppJson, AppQuery, FieldErrors},
    routes::{page_rows, page_rows_sql, Cte, Page},
    state::AppState,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update))
        .routes(routes!(archive))
}

const WRITERS: &[Role] = &[Role::Admin, Role::Manager];

/// Columns every read selects, in [`ClientRow`] order.
const COLUMNS: &str = "c.id, c.last_name, c.first_name, c.middle_name, c.phone, c.email, \
     c.birth_date, c.guardian_id, c.telegram_chat_id, c.notify_telegram, c.notify_email, \
     c.comment, c.archived_at, c.created_at, c.updated_at";

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: Uuid,
    last_name: String,
    first_name: String,
    middle_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    birth_date: Option<NaiveDate>,
    guardian_id: Option<Uuid>,
    telegram_chat_id: Option<i64>,
    notify_telegram: bool,
    notify_email: bool,
    comment: Option<String>,
    archived_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

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
        let full_name = [
            Some(&r.last_name),
            Some(&r.first_name),
            r.middle_name.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
        Self {
            id: r.id,
            full_name,
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

/// Normalises a phone number to E.164. Russian numbers are accepted in the usual local forms
/// (`8 916 123-45-67`, `+7 (916) 123 45 67`, `9161234567`); other countries need `+` and the
/// country code.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let allowed = trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || " +-()".contains(c));
    if !allowed || digits.is_empty() {
        return None;
    }
    let e164 = if trimmed.starts_with('+') {
        digits
    } else if digits.len() == 11 && (digits.starts_with('8') || digits.starts_with('7')) {
        format!("7{}", &digits[1..])
    } else if digits.len() == 10 {
        format!("7{digits}")
    } else {
        return None;
    };
    let ok = (8..=15).contains(&e164.len()) && !e164.starts_with('0');
    let russian_ok = !e164.starts_with('7') || e164.len() == 11;
    (ok && russian_ok).then(|| format!("+{e164}"))
}

/// The body of `POST` (last_name and first_name required) and `PATCH /api/clients/{id}`
/// (only the keys sent change; null clears an optional field). Documentation schema: the
/// handlers read the body as a JSON object to tell absent from null.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ClientBody {
    last_name: Option<String>,
    first_name: Option<String>,
    middle_name: Option<String>,
    /// Any Russian local form or +country code; stored as E.164.
    phone: Option<String>,
    email: Option<String>,
    /// YYYY-MM-DD.
    birth_date: Option<NaiveDate>,
    guardian_id: Option<Uuid>,
    telegram_chat_id: Option<i64>,
    notify: Option<NotifyBody>,
    comment: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct NotifyBody {
    telegram: Option<bool>,
    email: Option<bool>,
}

/// The writable fields of a client, validated.
#[derive(Debug, Default)]
struct ClientInput {
    last_name: String,
    first_name: String,
    middle_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    birth_date: Option<NaiveDate>,
    guardian_id: Option<Uuid>,
    telegram_chat_id: Option<i64>,
    notify_telegram: bool,
    notify_email: bool,
    comment: Option<String>,
}

impl ClientInput {
    fn from_row(r: &ClientRow) -> Self {
        Self {
            last_name: r.last_name.clone(),
            first_name: r.first_name.clone(),
            middle_name: r.middle_name.clone(),
            phone: r.phone.clone(),
            email: r.email.clone(),
            birth_date: r.birth_date,
            guardian_id: r.guardian_id,
            telegram_chat_id: r.telegram_chat_id,
            notify_telegram: r.notify_telegram,
            notify_email: r.notify_email,
            comment: r.comment.clone(),
        }
    }

    /// Applies the keys present in `body` (null clears an optional field), collecting every
    /// problem by field name. Unknown keys are refused so a typo never passes silently.
    fn apply(&mut self, body: &Map<String, Value>, fields: &mut FieldErrors) {
        for (key, value) in body {
            let problem = match key.as_str() {
                "last_name" => text(value, true).map(|v| self.last_name = v.unwrap_or_default()),
                "first_name" => text(value, true).map(|v| self.first_name = v.unwrap_or_default()),
                "middle_name" => text(value, false).map(|v| self.middle_name = v),
                "comment" => text(value, false).map(|v| self.comment = v),
                "phone" => text(value, false).and_then(|v| match v {
                    None => {
                        self.phone = None;
                        Ok(())
                    }
                    Some(p) => normalize_phone(&p)
                        .map(|p| self.phone = Some(p))
                        .ok_or_else(|| "expected a phone number like +7 916 123-45-67".into()),
                }),
                "email" => text(value, false).and_then(|v| match v {
                    Some(e) if !valid_email(&e) => Err("expected an e-mail address".into()),
                    v => {
                        self.email = v.map(|e| e.to_lowercase());
                        Ok(())
                    }
                }),
                "birth_date" => text(value, false).and_then(|v| match v {
                    None => {
                        self.birth_date = None;
                        Ok(())
                    }
                    Some(d) => match NaiveDate::parse_from_str(&d, "%Y-%m-%d") {
                        Ok(d) if d <= Utc::now().date_naive() && d.year_ok() => {
                            self.birth_date = Some(d);
                            Ok(())
                        }
                        Ok(_) => Err("must be a past date after 1900".into()),
                        Err(_) => Err("expected a date YYYY-MM-DD".into()),
                    },
                }),
                "guardian_id" => match value {
                    Value::Null => {
                        self.guardian_id = None;
                        Ok(())
                    }
                    Value::String(s) => Uuid::parse_str(s)
                        .map(|id| self.guardian_id = Some(id))
                        .map_err(|_| "expected a client id".into()),
                    _ => Err("expected a client id".into()),
                },
                "telegram_chat_id" => match value {
                    Value::Null => {
                        self.telegram_chat_id = None;
                        Ok(())
                    }
                    Value::Number(n) if n.as_i64().is_some() => {
                        self.telegram_chat_id = n.as_i64();
                        Ok(())
                    }
                    _ => Err("expected an integer chat id".into()),
                },
                "notify" => match value {
                    Value::Object(m) => {
                        let mut problem = Ok(());
                        for (channel, v) in m {
                            match (channel.as_str(), v.as_bool()) {
                                ("telegram", Some(b)) => self.notify_telegram = b,
                                ("email", Some(b)) => self.notify_email = b,
                                _ => {
                                    problem = Err("expected {\"telegram\": bool, \"email\": bool}"
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
        for (name, value) in [
            ("last_name", &self.last_name),
            ("first_name", &self.first_name),
        ] {
            if value.trim().is_empty() && !fields.contains_key(name) {
                fields.insert(name.into(), "required".into());
            }
        }
    }
}

trait YearOk {
    fn year_ok(&self) -> bool;
}

impl YearOk for NaiveDate {
    fn year_ok(&self) -> bool {
        chrono::Datelike::year(self) >= 1900
    }
}

fn valid_email(e: &str) -> bool {
    let e = e.trim();
    matches!(e.split_once('@'), Some((user, domain)) if !user.is_empty() && domain.contains('.') && !e.contains(' '))
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

/// Inserts or updates (`id`) in one statement; a guardian that does not exist is reported on
/// the field (foreign key violation), not as a server error.
async fn save(app: &AppState, id: Option<Uuid>, c: &ClientInput) -> Result<ClientRow, ApiError> {
    let sql = format!(
        "with saved as (
             insert into clients as c (id, last_name, first_name, middle_name, phone, email,
                 birth_date, guardian_id, telegram_chat_id, notify_telegram, notify_email, comment)
             values (coalesce($1, gen_random_uuid()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             on conflict (id) do update set
                 last_name = excluded.last_name, first_name = excluded.first_name,
                 middle_name = excluded.middle_name, phone = excluded.phone,
                 email = excluded.email, birth_date = excluded.birth_date,
                 guardian_id = excluded.guardian_id, telegram_chat_id = excluded.telegram_chat_id,
                 notify_telegram = excluded.notify_telegram, notify_email = excluded.notify_email,
                 comment = excluded.comment, updated_at = now()
             returning *
         )
         select {COLUMNS} from saved c"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&c.last_name)
        .bind(&c.first_name)
        .bind(&c.middle_name)
        .bind(&c.phone)
        .bind(&c.email)
        .bind(c.birth_date)
        .bind(c.guardian_id)
        .bind(c.telegram_chat_id)
        .bind(c.notify_telegram)
        .bind(c.notify_email)
        .bind(&c.comment)
        .fetch_one(&app.db)
        .await
        .map_err(
            |e| match e.as_database_error().and_then(|d| d.constraint()) {
                Some("clients_guardian_id_fkey") => {
                    ApiError::field("guardian_id", "no such client")
                }
                Some("clients_not_own_guardian") => {
                    ApiError::field("guardian_id", "a client cannot be their own guardian")
                }
                _ => e.into(),
            },
        )
}

async fn fetch(app: &AppState, id: Uuid) -> Result<ClientRow, ApiError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from clients c where c.id = $1"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(
    post,
    path = "/api/clients",
    tag = "clients",
    request_body = ClientBody,
    responses((status = 201, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn create(
    State(app): State<AppState>,
    user: CurrentUser,
    AppJson(body): AppJson<Map<String, Value>>,
) -> Result<(StatusCode, Json<Client>), ApiError> {
    user.require(WRITERS)?;
    let mut input = ClientInput {
        notify_telegram: true,
        notify_email: true,
        ..ClientInput::default()
    };
    let mut fields = FieldErrors::new();
    input.apply(&body, &mut fields);
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    let row = save(&app, None, &input).await?;
    tracing::info!(client.id = %row.id, "client created");
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(
    patch,
    path = "/api/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path)),
    request_body = ClientBody,
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn update(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
    AppJson(body): AppJson<Map<String, Value>>,
) -> Result<Json<Client>, ApiError> {
    user.require(WRITERS)?;
    let current = fetch(&app, id).await?;
    let mut input = ClientInput::from_row(&current);
    let mut fields = FieldErrors::new();
    input.apply(&body, &mut fields);
    if input.guardian_id == Some(id) {
        fields.insert(
            "guardian_id".into(),
            "a client cannot be their own guardian".into(),
        );
    }
    if !fields.is_empty() {
        return Err(ApiError::Validation(fields));
    }
    Ok(Json(save(&app, Some(id), &input).await?.into()))
}

#[utoipa::path(
    post,
    path = "/api/clients/{id}/archive",
    tag = "clients",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 403, description = "the role may not do this", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn archive(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Client>, ApiError> {
    user.require(WRITERS)?;
    let row: ClientRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with a as (
             update clients set archived_at = coalesce(archived_at, now()), updated_at = now()
             where id = $1 returning *
         )
         select {COLUMNS} from a c"
    )))
    .bind(id)
    .fetch_optional(&app.db)
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(row.into()))
}

#[utoipa::path(
    get,
    path = "/api/clients/{id}",
    tag = "clients",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "OK", body = Client), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 404, description = "not found", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id, client.id = %id))]
async fn show(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(id): Path<Uuid>,
) -> Result<Json<Client>, ApiError> {
    Ok(Json(fetch(&app, id).await?.into()))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    search: Option<String>,
    archived: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// How a search string is looked up. A surname (maybe followed by the first name) is the
/// common case: a prefix of the normalised full name, answered by the `clients_name_key` btree
/// as a range; when no name starts with it (a first name alone, a fragment) it falls back to a
/// substring match. A phone fragment matches the start of the number (with or without the
/// country code 7) or its end. Anything else (an e-mail, letters mixed with digits) is a
/// case-insensitive substring of names, phone and e-mail, via the trigram index.
#[derive(Debug, PartialEq)]
enum Search {
    /// `[from, to)` over `name_key`, and the substring pattern of the fallback.
    Name {
        from: String,
        to: String,
        like: String,
    },
    /// `[from, to)` ranges over the international digits, and over the reversed number.
    Phone {
        starts: [(String, String); 2],
        ends: (String, String),
    },
    Text {
        like: String,
    },
}

/// The smallest string greater than every string starting with `prefix` (byte order).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
}

fn range(prefix: String) -> (String, String) {
    let end = prefix_end(&prefix);
    (prefix, end)
}

/// `%needle%` with LIKE's wildcards escaped.
fn substring(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn search(raw: &str) -> Option<Search> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            // A full local number: trunk 8 means country code 7.
            let digits = match digits.strip_prefix('8') {
                Some(rest) if digits.len() == 11 => format!("7{rest}"),
                _ => digits,
            };
            let reversed: String = digits.chars().rev().collect();
            return Some(Search::Phone {
                starts: [range(digits.clone()), range(format!("7{digits}"))],
                ends: range(reversed),
            });
        }
    }
    let text = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if text
        .chars()
        .any(|c| c.is_ascii_digit() || "@._".contains(c))
    {
        return Some(Search::Text {
            like: substring(&text),
        });
    }
    let (from, to) = range(text.replace('ё', "е"));
    Some(Search::Name {
        from,
        to,
        like: substring(&text),
    })
}

/// The list statements, one per kind of search (each a static text, so its prepared plan is
/// reused). `$1` is the `archived` flag; limit and offset come last.
fn list_sql(search: Option<&Search>) -> sqlx::AssertSqlSafe<String> {
    const VISIBLE: &str = "($1 or c.archived_at is null)";
    const ORDER: &str = "c.name_key, c.id";
    match search {
        None => page_rows_sql(
            &format!("select * from clients c where {VISIBLE}"),
            Cte::Inline,
            "c",
            COLUMNS,
            ORDER,
            2,
        ),
        Some(Search::Phone { .. }) => page_rows_sql(
            &format!(
                "select * from clients c
                 where {VISIBLE}
                   and (substr(c.phone, 2) collate \"C\" >= $2 and substr(c.phone, 2) collate \"C\" < $3
                     or substr(c.phone, 2) collate \"C\" >= $4 and substr(c.phone, 2) collate \"C\" < $5
                     or reverse(c.phone) collate \"C\" >= $6 and reverse(c.phone) collate \"C\" < $7)"
            ),
            Cte::Materialized,
            "c",
            COLUMNS,
            ORDER,
            8,
        ),
        Some(Search::Text { .. }) => page_rows_sql(
            &format!("select * from clients c where {VISIBLE} and c.search_text like $2"),
            Cte::Materialized,
            "c",
            COLUMNS,
            ORDER,
            3,
        ),
        // Prefix matches, else (one-time filter: the fallback runs only when there are none)
        // substring matches; each branch hands at most limit + offset ordered rows to the page.
        Some(Search::Name { .. }) => sqlx::AssertSqlSafe(format!(
            "with prefix as not materialized (
                 select * from clients c
                 where c.name_key >= $2 and c.name_key < $3 and {VISIBLE}
             ), other as materialized (
                 select * from clients c
                 where c.search_text like $4 and {VISIBLE} and not exists (select 1 from prefix)
             )
             select t.total, p.* from
                 (select (select count(*) from prefix) + (select count(*) from other) as total) t
             left join lateral (
                 select {COLUMNS} from (
                     (select * from prefix c order by {ORDER} limit $5 + $6)
                     union all
                     (select * from other c order by {ORDER} limit $5 + $6)
                 ) c order by {ORDER} limit $5 offset $6
             ) p on true"
        )),
    }
}

/// The page and the total count in ONE statement (see [`list_sql`]); a page past the end still
/// has its total.
#[utoipa::path(
    get,
    path = "/api/clients",
    tag = "clients",
    params(("search" = Option<String>, Query, description = "surname (optionally followed by the first name) from its start, else any name fragment; a phone number's start or end; an e-mail fragment"), ("archived" = Option<bool>, Query), ("limit" = Option<i64>, Query, description = "1..=200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, description = "OK", body = crate::routes::Paged<Client>), (status = 401, description = "no or invalid bearer token", body = crate::error::ErrorBody), (status = 422, description = "invalid fields, each named", body = crate::error::ErrorBody)),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn list(
    State(app): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .validate()?;
    if q.search.as_deref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::field("search", "at most 100 characters"));
    }
    let search = q.search.as_deref().and_then(search);
    let sql = list_sql(search.as_ref());
    let mut query = sqlx::query(sql).bind(q.archived.unwrap_or(false));
    query = match search {
        None => query,
        Some(Search::Name { from, to, like }) => query.bind(from).bind(to).bind(like),
        Some(Search::Phone { starts, ends }) => {
            let [(a, b), (c, d)] = starts;
            query
                .bind(a)
                .bind(b)
                .bind(c)
                .bind(d)
                .bind(ends.0)
                .bind(ends.1)
        }
        Some(Search::Text { like }) => query.bind(like),
    };
    let rows = query.bind(limit).bind(offset).fetch_all(&app.db).await?;
    let (total, items) = page_rows::<ClientRow>(&rows)?;
    let items: Vec<Client> = items.into_iter().map(Client::from).collect();
    Ok(Json(json!({"items": items, "total": total})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_e164() {
        for raw in [
            "8 916 123-45-67",
            "+7 (916) 123 45 67",
            "9161234567",
            "79161234567",
        ] {
            assert_eq!(
                normalize_phone(raw).as_deref(),
                Some("+79161234567"),
                "{raw}"
            );
        }
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
        for bad in ["12345", "+7 916 123", "call me", "", "+0123456789"] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
    }

    #[test]
    fn searches_become_ranges_or_patterns() {
        let r = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            search(" Фёдоров  Пётр "),
            Some(Search::Name {
                from: "федоров петр".into(),
                to: "федоров петс".into(),
                like: "%фёдоров пётр%".into()
            })
        );
        assert_eq!(
            search("916 123"),
            Some(Search::Phone {
                starts: [r("916123", "916124"), r("7916123", "7916124")],
                ends: r("321619", "32161:"),
            })
        );
        let Some(Search::Phone { starts, .. }) = search("8 916 123 45 67") else {
            panic!("a phone")
        };
        assert_eq!(starts[0], r("79161234567", "79161234568"));
        assert_eq!(
            search("50%_off"),
            Some(Search::Text {
                like: "%50\\%\\_off%".into()
            })
        );
        assert_eq!(
            search("Ivan@Mail"),
            Some(Search::Text {
                like: "%ivan@mail%".into()
            })
        );
        assert_eq!(search("  "), None);
        assert_eq!(prefix_end("az"), "a{");
    }
}
