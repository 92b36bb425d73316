//! The HTTP pieces every route shares: the error type and its JSON shape, extractors whose
//! rejections use it, paging, the `202 Accepted` answer of enqueueing endpoints, the request id.
use axum::http::{HeaderMap, HeaderName};

pub mod accepted;
pub mod error;
pub mod extract;
pub mod paging;
pub mod server;

pub use accepted::{enqueue_for, requester, status_url, Accepted};
pub use error::{ApiError, ErrorBody, FieldErrors};
pub use extract::{query_value, AppJson, AppPath, AppQuery};
pub use paging::{page, Paged};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request (set by the router's layer), for the job ledger.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
