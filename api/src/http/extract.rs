//! Extractors whose rejections are [`ApiError`]s, so a bad body or query answers in the same
//! JSON error shape as everything else.
use axum::{
    response::{IntoResponse, Response},
    Json,
};

use super::error::ApiError;

/// `Json` whose rejection is an [`ApiError`] (same error shape as everything else).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Query` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// Parses an optional query value into a typed value (an enum of the domain), reporting a bad
/// one on the field `name` with what is expected.
pub fn query_value<T: std::str::FromStr<Err = String>>(
    name: &str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse::<T>()
                .map_err(|expected| ApiError::field(name, expected))
        })
        .transpose()
}
