//! The request log: every request the fakes receive, in arrival order, with the status answered.
//!
//! Bounded to the newest `capacity` entries (default 200,000) so a long benchmark cannot exhaust
//! memory; the oldest entries are dropped first.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::Service;

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Position in the log since start; stable across `/_fakes/requests` calls, reset never reuses it.
    pub id: u64,
    pub service: Service,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: serde_json::Value,
    /// RFC 3339 UTC with microseconds.
    pub at: String,
    /// Status answered; `None` for a hang, a drop or a timeout after receive.
    pub status: Option<u16>,
    /// The fault that hit this request, if any (`latency`, `hang`, `status`, …).
    pub fault: Option<&'static str>,
}

/// What a service hands to [`RequestLog::record`].
pub struct Received {
    pub service: Service,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: serde_json::Value,
}

pub struct RequestLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    next_id: u64,
    entries: VecDeque<Entry>,
}

impl RequestLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner {
                next_id: 1,
                entries: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the deque half-updated, so poisoning is moot.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a request when it arrives (so order is arrival order) and returns its id; the
    /// status is filled in by [`RequestLog::answered`] once known.
    pub fn record(&self, received: Received) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        if inner.entries.len() >= self.capacity {
            inner.entries.pop_front();
        }
        inner.entries.push_back(Entry {
            id,
            service: received.service,
            method: received.method,
            path: received.path,
            query: received.query,
            body: received.body,
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            status: None,
            fault: None,
        });
        id
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        let mut inner = self.lock();
        let Some(first) = inner.entries.front().map(|e| e.id) else {
            return;
        };
        if let Some(entry) = id
            .checked_sub(first)
            .and_then(|i| inner.entries.get_mut(i as usize))
        {
            f(entry);
        }
    }

    pub fn answered(&self, id: u64, status: u16) {
        self.update(id, |e| e.status = Some(status));
    }

    pub fn faulted(&self, id: u64, fault: &'static str) {
        self.update(id, |e| e.fault = Some(fault));
    }

    pub fn entries(&self, service: Option<Service>) -> Vec<Entry> {
        self.lock()
            .entries
            .iter()
            .filter(|e| service.is_none_or(|s| e.service == s))
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        self.lock().entries.clear();
    }
}

/// A request body as the log shows it: JSON when it parses, text otherwise, null when empty.
pub fn body_value(bytes: &[u8]) -> serde_json::Value {
    if bytes.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(path: &str) -> Received {
        Received {
            service: Service::Telegram,
            method: "POST".into(),
            path: path.into(),
            query: None,
            body: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_oldest_entries_make_room_and_ids_still_resolve() {
        let log = RequestLog::new(2);
        let a = log.record(received("/a"));
        let b = log.record(received("/b"));
        let c = log.record(received("/c"));
        log.answered(a, 200);
        log.answered(c, 201);
        let entries = log.entries(None);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, b);
        assert_eq!(entries[0].status, None);
        assert_eq!(entries[1].status, Some(201));
    }
}
