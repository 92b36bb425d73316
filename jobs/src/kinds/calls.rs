//! `call`: one click-to-call request (`call_requests` row) dialled through Novofon (the
//! handler is `worker::handlers::call`).
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Job;

/// Dials the call request `call_id` — at most once, whatever happens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Call {
    pub call_id: Uuid,
}

impl Call {
    /// A request older than this when its job starts is not dialled: nobody wants the phone
    /// to ring minutes after the click.
    pub const TOO_LATE: Duration = Duration::from_secs(120);
}

impl Job for Call {
    const KIND: &'static str = "call";
    /// Attempts are spent only by connections never made and crashes before dialling
    /// (throttling snoozes); the two-minute window ends the rest.
    const MAX_ATTEMPTS: u32 = 10;
    /// One JSON-RPC request under `NOVOFON_TIMEOUT_MS` plus a rate-limit wait.
    const TIMEOUT: Duration = Duration::from_secs(60);
    const BACKOFF_BASE: Duration = Duration::from_secs(2);
    const BACKOFF_CAP: Duration = Duration::from_secs(20);

    fn dedup_key(&self) -> Option<String> {
        Some(format!("call:{}", self.call_id))
    }
}

/// What a placed call's job shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallReport {
    pub call_id: Uuid,
    pub state: String,
    pub call_session_id: Option<i64>,
}
