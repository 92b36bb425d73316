//! What a Timepad request may carry and how it is refused: query parameters (arrays
//! comma-separated, ranges checked) and the `{"response_status": …}` error envelope.

use std::collections::HashSet;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use serde_json::json;

use super::data;

/// `{"response_status": {"error_code", "message", "errors"?}}` with the same HTTP status.
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"response_status": {"error_code": status.as_u16(), "message": message}});
    (status, Json(body)).into_response()
}

/// Why a request is refused; answered in Timepad's envelope.
#[derive(Debug, thiserror::Error)]
pub(super) enum TimepadError {
    #[error("{1}")]
    Status(StatusCode, String),
    /// 422 naming the offending parameter.
    #[error("{field}: {message}")]
    Invalid {
        field: String,
        code: &'static str,
        message: String,
    },
}

impl IntoResponse for TimepadError {
    fn into_response(self) -> Response {
        match self {
            Self::Status(status, message) => error(status, &message),
            Self::Invalid {
                field,
                code,
                message,
            } => {
                let body = json!({"response_status": {
                    "error_code": 422,
                    "message": "Validation failed",
                    "errors": [{"field_name": field, "error_code": code, "message": message}],
                }});
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
        }
    }
}

pub(super) fn fail(status: StatusCode, message: &str) -> TimepadError {
    TimepadError::Status(status, message.to_string())
}

pub(super) fn invalid(field: &str, code: &'static str, message: String) -> TimepadError {
    TimepadError::Invalid {
        field: field.to_string(),
        code,
        message,
    }
}

/// Query parameters; repeated keys keep the last value, arrays are comma-separated.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn ints(&self, key: &str) -> Result<Option<HashSet<u64>>, TimepadError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.list(key)
            .into_iter()
            .map(|v| {
                v.parse().map_err(|_| {
                    invalid(key, "invalid", format!("{key} must be a list of integers"))
                })
            })
            .collect::<Result<HashSet<u64>, _>>()
            .map(Some)
    }

    /// `key` within `min..=max`, or `default`.
    pub(super) fn bounded(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, TimepadError> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        match raw.parse::<i64>() {
            Ok(v) if v >= min as i64 && v <= max as i64 => Ok(v as u64),
            Ok(_) => Err(invalid(
                key,
                "out_of_range",
                format!("{key} must be between {min} and {max}"),
            )),
            Err(_) => Err(invalid(key, "invalid", format!("{key} must be an integer"))),
        }
    }

    pub(super) fn datetime(
        &self,
        key: &str,
    ) -> Result<Option<DateTime<FixedOffset>>, TimepadError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        // Clients send RFC 3339 or a plain date (taken as Moscow midnight).
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .or_else(|| {
                let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
                data::moscow()
                    .from_local_datetime(&date.and_hms_opt(0, 0, 0)?)
                    .single()
            })
            .map(Some)
            .ok_or_else(|| invalid(key, "invalid", format!("{key} must be a date or datetime")))
    }
}

pub(super) type Q = Query<Vec<(String, String)>>;

pub(super) fn params(query: QueryResult) -> Result<Params, TimepadError> {
    query
        .map(|Query(q)| Params(q))
        .map_err(|e| fail(StatusCode::BAD_REQUEST, &e.body_text()))
}

pub(super) type QueryResult = Result<Q, axum::extract::rejection::QueryRejection>;
