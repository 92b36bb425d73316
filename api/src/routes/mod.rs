//! The HTTP surface: every route, and the layers around them (request id, tracing, body limit,
//! rate limits, JSON 404).
use std::time::Duration;

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, State},
    http::Request,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    http::{ApiError, REQUEST_ID},
    state::AppState,
};

pub mod admin;
pub mod attendance;
pub mod auth;
pub mod calls;
pub mod clients;
pub mod directory;
pub mod exports;
pub mod groups;
pub mod health;
pub mod imports;
pub mod jobs;
pub mod lessons;
pub mod notifications;
pub mod rentals;
pub mod schedules;
pub mod subscriptions;
pub mod users;

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit_bytes;
    let (routes, doc) = documented();
    let doc = std::sync::Arc::new(published(&doc));
    routes
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(crate::pages::routes())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("");
                    // The route template (`/api/jobs/{id}`), not the path: ids stay out of
                    // the access log's route field and unmatched paths group as one.
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("(unmatched)", |p| p.as_str());
                    tracing::error_span!(
                        "request",
                        request_id = %request_id,
                        method = %request.method(),
                        route = %route,
                    )
                })
                .on_request(())
                .on_failure(())
                // The access log: one line per request, in the request's span (method,
                // route, request id), with the status and the latency.
                .on_response(
                    |response: &axum::http::Response<_>, latency: Duration, _: &tracing::Span| {
                        tracing::info!(
                            status = response.status().as_u16(),
                            latency_ms = latency.as_secs_f64() * 1000.0,
                            "request"
                        );
                    },
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Last resort: a handler that panics answers a JSON 500 (logged once, with the panic)
        // instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                ApiError::Internal(anyhow::anyhow!("handler panicked: {what}")).into_response()
            },
        ))
        .with_state(state)
}

/// The OpenAPI 3.1 document: every route registered through `OpenApiRouter` below appears in
/// it (the router and the document come from the same calls), with the bearer scheme and the
/// error shape.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "ARTSVAO CRM API", description = "Errors: `{\"error\": {code, message, fields?, clashes?}}`"),
    modifiers(&BearerAuth),
    components(schemas(crate::http::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route, and the OpenAPI document describing them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi;
    let (routes, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(auth::routes())
        .merge(jobs::routes())
        .merge(users::routes())
        .merge(clients::routes())
        .merge(directory::routes())
        .merge(groups::routes())
        .merge(lessons::routes())
        .merge(attendance::routes())
        .merge(subscriptions::routes())
        .merge(rentals::routes())
        .merge(exports::routes())
        .merge(schedules::routes())
        .merge(imports::routes())
        .merge(calls::routes())
        .merge(notifications::routes())
        .merge(admin::routes())
        .split_for_parts();
    common_responses(&mut doc);
    operation_ids_and_links(&mut doc);
    (routes, doc)
}

/// The document as served, built once. utoipa 5.5 writes a link's fields in snake case
/// (`operation_id`); OpenAPI spells them `operationId`, `operationRef`, `requestBody`, and
/// clients that follow links (schemathesis) read only those.
pub fn published(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut value = serde_json::to_value(doc).unwrap_or_default();
    let operations = value
        .get_mut("paths")
        .and_then(|p| p.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for op in operations {
        let answers = op
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flat_map(|r| r.values_mut());
        for answer in answers {
            let links = answer
                .get_mut("links")
                .and_then(|l| l.as_object_mut())
                .into_iter()
                .flat_map(|l| l.values_mut())
                .filter_map(|link| link.as_object_mut());
            for link in links {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(snake) {
                        link.insert(camel.into(), v);
                    }
                }
            }
        }
    }
    value
}

/// What each creating `POST` links to (OpenAPI links, followed by stateful clients and
/// fuzzers): the path it was called on, the JSON pointer of the created id in its answer, and
/// the path prefix of the operations on what it created (each takes it as `{id}`).
const LINKS: &[(&str, &str, &str)] = &[
    ("/api/clients", "/id", "/api/clients/{id}"),
    ("/api/teachers", "/id", "/api/teachers/{id}"),
    ("/api/rooms", "/id", "/api/rooms/{id}"),
    ("/api/groups", "/id", "/api/groups/{id}"),
    ("/api/lessons", "/id", "/api/lessons/{id}"),
    (
        "/api/subscriptions",
        "/subscription/id",
        "/api/subscriptions/{id}",
    ),
    (
        "/api/rental-applications",
        "/id",
        "/api/rental-applications/{id}",
    ),
    ("/api/users", "/id", "/api/users/{id}"),
    ("/api/calls", "/call_id", "/api/calls/{id}"),
    ("/api/calls", "/job_id", "/api/jobs/{id}"),
    ("/api/exports/timesheets", "/job_id", "/api/jobs/{id}"),
    ("/api/imports/timepad", "/job_id", "/api/jobs/{id}"),
    ("/api/imports/pyrus", "/job_id", "/api/jobs/{id}"),
    ("/api/schedules/bulk", "/job_id", "/api/jobs/{id}"),
    ("/api/notifications/broadcast", "/job_id", "/api/jobs/{id}"),
];

/// The operation id of `method` on `path`: `get_api_clients_id`. utoipa names an operation
/// after its handler, and `list` or `show` repeat across modules; links need unique ids.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

/// Gives every operation a unique id and adds [`LINKS`] to each creating `POST`'s success
/// answer: one link per operation under the created thing's path, passing its id.
fn operation_ids_and_links(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::link::Link;
    fn methods(
        item: &mut utoipa::openapi::PathItem,
    ) -> Vec<(&'static str, &mut utoipa::openapi::path::Operation)> {
        [
            ("get", item.get.as_mut()),
            ("post", item.post.as_mut()),
            ("put", item.put.as_mut()),
            ("patch", item.patch.as_mut()),
            ("delete", item.delete.as_mut()),
        ]
        .into_iter()
        .filter_map(|(m, op)| op.map(|op| (m, op)))
        .collect()
    }
    let mut operations = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in methods(item) {
            op.operation_id = Some(operation_id(method, path));
            operations.push((method, path.clone()));
        }
    }
    for (source, pointer, prefix) in LINKS {
        let Some(post) = doc
            .paths
            .paths
            .get_mut(*source)
            .and_then(|i| i.post.as_mut())
        else {
            continue;
        };
        let responses = &mut post.responses.responses;
        let Some(code) = ["201", "202", "200"]
            .into_iter()
            .find(|code| responses.contains_key(*code))
        else {
            continue;
        };
        let Some(utoipa::openapi::RefOr::T(answer)) = responses.get_mut(code) else {
            continue;
        };
        for (method, path) in &operations {
            if path == prefix || path.starts_with(&format!("{prefix}/")) {
                let target = operation_id(method, path);
                answer.links.insert(
                    target.clone(),
                    utoipa::openapi::RefOr::T(
                        Link::builder()
                            .operation_id(target)
                            .parameter("id", format!("$response.body#{pointer}"))
                            .build(),
                    ),
                );
            }
        }
    }
}

/// The answers every operation can give whatever its handler does, added where a route does
/// not document them itself: 400 (a path parameter of the wrong type, a body that is not
/// JSON), 413 (a body over the limit), 429 (the rate limits; not on health and metrics) and
/// 503 (the database unavailable or too slow, with `Retry-After`).
fn common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{path::Operation, ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    use utoipa::openapi::{
        path::ParameterIn,
        schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type},
    };
    // The bounds every handler enforces on these parameters, stated once.
    let integer = |min: i64, max: i64| {
        RefOr::T(utoipa::openapi::Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(min as f64))
                .maximum(Some(max as f64))
                .build(),
        ))
    };
    let ulid = RefOr::T(utoipa::openapi::Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"))
            .build(),
    ));
    for (path, item) in doc.paths.paths.iter_mut() {
        let limited = !(path.starts_with("/api/health/") || path == "/metrics");
        let has_params = path.contains('{');
        let job_path =
            path.starts_with("/api/jobs/{id}") || path.starts_with("/api/admin/jobs/{id}");
        let ops: [&mut Option<Operation>; 5] = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let body = op.request_body.is_some();
            let mut queried = false;
            for p in op.parameters.iter_mut().flatten() {
                match (&p.parameter_in, p.name.as_str()) {
                    (ParameterIn::Query, "limit") => p.schema = Some(integer(1, 200)),
                    (ParameterIn::Query, "offset") => p.schema = Some(integer(0, 1_000_000)),
                    (ParameterIn::Path, "id") if job_path => p.schema = Some(ulid.clone()),
                    (ParameterIn::Query, _) => no_nul(p.schema.as_mut()),
                    _ => {}
                }
                queried |= matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path);
            }
            let responses = &mut op.responses.responses;
            if queried || body {
                responses
                    .entry("422".into())
                    .or_insert_with(|| error("invalid fields, each named"));
            }
            if has_params || body {
                responses.entry("400".into()).or_insert_with(|| {
                    error("a path parameter of the wrong type or a body that is not JSON")
                });
            }
            if body {
                responses
                    .entry("413".into())
                    .or_insert_with(|| error("the body is over the size limit"));
            }
            if limited {
                responses
                    .entry("429".into())
                    .or_insert_with(|| error("rate limited (Retry-After)"));
                responses.entry("503".into()).or_insert_with(|| {
                    error("the database is unavailable or too slow (Retry-After)")
                });
            }
        }
    }
}

/// A free-text query parameter (a string without a pattern or values of its own) states what
/// every query refuses: NUL (`%00`, 422 — PostgreSQL cannot store it).
fn no_nul(schema: Option<&mut utoipa::openapi::RefOr<utoipa::openapi::Schema>>) {
    use utoipa::openapi::schema::{SchemaType, Type};
    let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(object))) = schema else {
        return;
    };
    let string = match &object.schema_type {
        SchemaType::Type(t) => *t == Type::String,
        SchemaType::Array(types) => types.contains(&Type::String),
        SchemaType::AnyValue => false,
    };
    if string && object.pattern.is_none() && object.enum_values.is_none() && object.format.is_none()
    {
        object.pattern = Some(r"^[^\u0000]*$".into());
    }
}

/// Answers 503 (with `Retry-After`) when a handler has not answered within
/// `REQUEST_TIMEOUT_SECS`: a request waiting on a slow statement or a full pool frees its
/// client. Event streams are exempt: their life is bounded by `SSE_MAX_LIFE_SECS`.
async fn request_timeout(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let streaming = request.uri().path().ends_with("/events");
    if streaming {
        return next.run(request).await;
    }
    let limit = app.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs(), "request timed out");
            ApiError::Overloaded {
                message: "the request took too long; retry later",
                retry_after_secs: 5,
            }
            .into_response()
        }
    }
}
