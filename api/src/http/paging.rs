//! `limit` / `offset` of every list endpoint, checked into a [`PageRequest`]; lists answer a
//! [`shared::domain::Page`] (`{items, total}`).
use shared::domain::PageRequest;

use super::error::ApiError;

/// The `limit` (1..=200, default 50) and `offset` (0..=1,000,000) of a list's query string;
/// a 422 naming `limit` / `offset` otherwise. (Each list's query type has the two fields
/// itself: serde's `flatten` would turn numbers in a query string into type errors.)
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::new(limit, offset)?)
}

/// Documentation schema of every list answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Paged<T> {
    items: Vec<T>,
    total: i64,
}
