//! How each job kind is done: one module per kind (a folder where a kind is big), each with a
//! `register` next to its handler. The payloads are in `jobs::kinds`, the CRM rules in
//! `shared::domain`.
use crate::{clients::Integrations, Registry};

pub mod bulk_schedule;
pub mod call;
pub mod end_subscriptions;
pub mod import_cursor;
pub mod notify;
pub mod prune_jobs;
pub mod pyrus_sync;
pub mod timepad_import;
pub mod timesheet_export;

/// Every production kind with its default concurrency, and the production schedules.
/// `retention_days`: finished jobs older than this are pruned daily; `integrations`: the
/// providers (a disabled one fails its jobs at once, saying so).
pub fn register_production(
    registry: Registry,
    retention_days: u32,
    integrations: &Integrations,
) -> Registry {
    let registry = prune_jobs::register(registry, retention_days);
    let registry = end_subscriptions::register(registry);
    let registry = timesheet_export::register(registry);
    let registry = bulk_schedule::register(registry);
    let registry = timepad_import::register(registry, integrations);
    let registry = call::register(registry, integrations);
    let registry = notify::register(registry, integrations);
    pyrus_sync::register(registry, integrations)
}
