//! `ApiError`: every failure of a request, mapped once to a status and the JSON error shape
//! `{"error": {"code", "message", "fields"?}}`. Domain errors map here too.
use std::collections::BTreeMap;

use axum::{
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

/// The error body every endpoint answers with (documentation schema; built by `IntoResponse`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable machine code: validation_failed, bad_request, not_found, conflict, clash,
    /// unauthorized, forbidden, rate_limited, unavailable, internal…
    code: String,
    message: String,
    /// On 422: field name → what is wrong with it.
    fields: Option<BTreeMap<String, String>>,
    /// On a booking clash (409): the clashing bookings.
    clashes: Option<Vec<serde_json::Value>>,
}

pub use shared::domain::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// A booking clash: 409 with the clashing rows under `error.clashes`.
    #[error("{message}")]
    Clash {
        message: String,
        clashes: serde_json::Value,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    /// 503 with `Retry-After`: the process is at a limit of its own (a request timed out, no
    /// password hashing slot is free).
    #[error("{message}")]
    Overloaded {
        message: &'static str,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(name.to_string(), problem.into())]))
    }
}

impl From<shared::domain::DomainError> for ApiError {
    fn from(error: shared::domain::DomainError) -> Self {
        use shared::domain::DomainError as D;
        match error {
            D::Invalid(fields) => Self::Validation(fields),
            D::NotFound => Self::NotFound,
            D::Conflict(message) => Self::Conflict(message),
            D::Clash { message, clashes } => Self::Clash { message, clashes },
            D::Forbidden => Self::Forbidden,
            D::Database(e) => e.into(),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(fields: FieldErrors) -> Self {
        Self::Validation(fields)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // Pool exhausted or database down: tell the client to come back.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable
            }
            // statement_timeout (query_canceled), a lock timeout, a deadlock or a
            // serialization failure: the database is busy right now, the request may be retried.
            sqlx::Error::Database(e)
                if matches!(
                    e.code().as_deref(),
                    Some("57014" | "55P03" | "40P01" | "40001")
                ) =>
            {
                tracing::warn!(error = %e, "statement timed out or conflicted");
                Self::Overloaded {
                    message: "the database took too long; retry later",
                    retry_after_secs: 5,
                }
            }
            // Class 22 (data exception: a value out of range, a character the database cannot
            // store): the input's fault, never a 500. Routes name their fields before this;
            // this is the net under them.
            sqlx::Error::Database(e) if e.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::warn!(error = %e, "the database refused a value");
                Self::field(
                    "body",
                    format!("a value the database cannot store: {}", e.message()),
                )
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<jobs::enqueue::EnqueueError> for ApiError {
    fn from(error: jobs::enqueue::EnqueueError) -> Self {
        match error {
            jobs::enqueue::EnqueueError::Database(e) => e.into(),
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request has invalid fields".to_string(),
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Self::PayloadTooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                m.clone(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "no such resource".to_string(),
            ),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            Self::Clash { message, .. } => (StatusCode::CONFLICT, "clash", message.clone()),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method".to_string(),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".to_string(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "your role may not do this".to_string(),
            ),
            Self::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry later".to_string(),
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; retry later".to_string(),
            ),
            Self::Overloaded { message, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                (*message).to_string(),
            ),
            Self::Internal(error) => {
                tracing::error!(error = %format!("{error:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_string(),
                )
            }
        };
        if let Self::Unavailable = &self {
            tracing::warn!("database unavailable");
        }
        let mut body = json!({"error": {"code": code, "message": message}});
        if let Self::Validation(fields) = &self {
            body["error"]["fields"] = json!(fields);
        }
        if let Self::Clash { clashes, .. } = &self {
            body["error"]["clashes"] = clashes.clone();
        }
        let mut response = (status, Json(body)).into_response();
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs } => Some(*retry_after_secs),
            Self::Unavailable => Some(5),
            Self::Overloaded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge("request body is too large".into())
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Self::BadRequest("expected Content-Type: application/json".into())
            }
            _ => match &rejection {
                JsonRejection::JsonDataError(e) => {
                    let (field, problem) = data_error_field(&e.body_text());
                    Self::field(&field, problem)
                }
                _ => Self::BadRequest(format!("malformed JSON: {}", rejection.body_text())),
            },
        }
    }
}

/// Names the field a typed body failed on: serde's path prefix (`capacity: invalid type…`) or
/// the field of `missing field `name``; else the whole `body`.
fn data_error_field(text: &str) -> (String, String) {
    let detail = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest);
    let detail = detail
        .rsplit_once(" at line ")
        .map_or(detail, |(head, _)| head);
    if let Some(name) = detail
        .strip_prefix("missing field `")
        .and_then(|r| r.split_once('`'))
        .map(|(name, _)| name)
    {
        return (name.to_string(), "required".into());
    }
    if let Some(name) = detail
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(name, _)| name)
    {
        return (name.to_string(), "unknown field".into());
    }
    match detail.split_once(": ") {
        Some((path, problem)) if !path.is_empty() && !path.contains(' ') => {
            (path.to_string(), problem.to_string())
        }
        _ => ("body".into(), detail.to_string()),
    }
}

impl From<BytesRejection> for ApiError {
    /// A body that could not be read: over the size limit (413) or cut off (400).
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge("request body is too large".into())
        } else {
            Self::BadRequest(format!("cannot read the body: {}", rejection.body_text()))
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::field("query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    /// A path parameter of the wrong type (an id that is not a UUID): 400 in the error shape.
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(format!("bad path parameter: {}", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::data_error_field;

    #[test]
    fn body_errors_name_their_field() {
        let t = "Failed to deserialize the JSON body into the target type: capacity: invalid type: string \"x\", expected i32 at line 1 column 16";
        assert_eq!(data_error_field(t).0, "capacity");
        let t = "Failed to deserialize the JSON body into the target type: missing field `name` at line 1 column 2";
        assert_eq!(data_error_field(t), ("name".into(), "required".into()));
        let t = "Failed to deserialize the JSON body into the target type: unknown field `nmae`, expected one of `name` at line 1 column 8";
        assert_eq!(data_error_field(t).0, "nmae");
        let t = "Failed to deserialize the JSON body into the target type: invalid type: integer `1`, expected a map at line 1 column 1";
        assert_eq!(data_error_field(t).0, "body");
    }
}
