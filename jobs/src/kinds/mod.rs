//! Every job kind's payload (what the api or cron enqueues) and result (what its status shows).
//! How each is done lives in the worker (`worker::handlers`), the rules it needs in
//! `shared::domain`.
pub mod calls;
pub mod exports;
pub mod imports;
pub mod maintenance;
pub mod notifications;
pub mod scheduling;
pub mod subscriptions;
