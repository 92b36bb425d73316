//! Fault injection rules: what `POST /_fakes/faults` registers and which request each one hits.
//!
//! Faults are tried in creation order. A fault that matches a request counts it; once it has let
//! `after_n` matching requests through it hits the next `times` ones (all, when `times` is
//! absent), and the first fault that hits decides — later faults never see that request.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Latency,
    Hang,
    Status,
    Drop,
    TimeoutAfterReceive,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Hang => "hang",
            Self::Status => "status",
            Self::Drop => "drop",
            Self::TimeoutAfterReceive => "timeout_after_receive",
        }
    }
}

/// Where in an SMTP session a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpStage {
    /// The greeting after the TCP connect.
    Connect,
    Ehlo,
    Mail,
    Rcpt,
    /// The reply to the `DATA` command, before the message is sent.
    Data,
    /// The reply after the message's final `.`.
    Message,
}

impl SmtpStage {
    pub fn command(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Ehlo => "EHLO",
            Self::Mail => "MAIL",
            Self::Rcpt => "RCPT",
            Self::Data | Self::Message => "DATA",
        }
    }
}

/// The body of `POST /_fakes/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub service: Service,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    pub fault: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// SMTP only; defaults to `rcpt` (`message` for `timeout_after_receive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<SmtpStage>,
    /// SMTP only: reply text after the code, e.g. `5.4.5 Daily sending quota exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl FaultSpec {
    /// Checks the combination and returns `(field, problem)` pairs for the 400 body.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match self.fault {
            FaultKind::Latency if self.latency_ms.is_none() => {
                problems.push(("latency_ms", "required for a latency fault".to_string()));
            }
            FaultKind::Status => match self.status {
                None => problems.push(("status", "required for a status fault".to_string())),
                Some(s) if !(400..=599).contains(&s) => {
                    problems.push(("status", "expected 400..=599".to_string()));
                }
                Some(_) => {}
            },
            _ => {}
        }
        if self.service != Service::Smtp {
            if self.stage.is_some() {
                problems.push(("stage", "only for the smtp service".to_string()));
            }
            if self.message.is_some() {
                problems.push(("message", "only for the smtp service".to_string()));
            }
        } else if self.fault == FaultKind::TimeoutAfterReceive
            && self.stage.is_some_and(|s| s != SmtpStage::Message)
        {
            problems.push((
                "stage",
                "timeout_after_receive happens after the message".to_string(),
            ));
        }
        problems
    }

    pub fn smtp_stage(&self) -> SmtpStage {
        self.stage.unwrap_or(match self.fault {
            FaultKind::TimeoutAfterReceive => SmtpStage::Message,
            _ => SmtpStage::Rcpt,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Matching requests seen so far.
    pub seen: u64,
    /// Requests hit so far.
    pub hits: u64,
}

/// What the service must do to the request at hand.
#[derive(Debug, Clone)]
pub struct Hit {
    pub kind: FaultKind,
    pub latency: Duration,
    pub status: u16,
    pub retry_after_s: Option<u64>,
    pub message: Option<String>,
}

impl Hit {
    /// Seconds a 429 tells the client to wait: the fault's value, else 1.
    pub fn retry_after(&self) -> u64 {
        self.retry_after_s.unwrap_or(1)
    }
}

/// How long `hang` and `timeout_after_receive` hold a connection before closing it, so a forgotten
/// client cannot pin tasks forever.
pub const HOLD_LIMIT: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct FaultStore {
    inner: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    next_id: u64,
    faults: Vec<Fault>,
}

impl FaultStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // Counters are updated in place; a poisoned lock still holds consistent numbers.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, spec: FaultSpec) -> Fault {
        let mut store = self.lock();
        store.next_id += 1;
        let fault = Fault {
            id: store.next_id,
            spec,
            seen: 0,
            hits: 0,
        };
        store.faults.push(fault.clone());
        fault
    }

    pub fn list(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn clear(&self) {
        self.lock().faults.clear();
    }

    /// Finds the fault for a request of `service` whose path (any of `paths`) is being answered,
    /// at `stage` for SMTP, and counts the request against the faults it passes.
    pub fn take(&self, service: Service, paths: &[&str], stage: Option<SmtpStage>) -> Option<Hit> {
        let mut store = self.lock();
        for fault in store.faults.iter_mut() {
            let spec = &fault.spec;
            if spec.service != service {
                continue;
            }
            if stage.is_some_and(|s| s != spec.smtp_stage()) {
                continue;
            }
            if let Some(prefix) = &spec.path_prefix {
                if !paths.iter().any(|p| p.starts_with(prefix.as_str())) {
                    continue;
                }
            }
            if spec.times.is_some_and(|t| fault.hits >= t) {
                continue;
            }
            fault.seen += 1;
            if fault.seen <= spec.after_n.unwrap_or(0) {
                continue;
            }
            fault.hits += 1;
            return Some(Hit {
                kind: spec.fault,
                latency: Duration::from_millis(spec.latency_ms.unwrap_or(0)),
                status: spec.status.unwrap_or(500),
                retry_after_s: spec.retry_after_s,
                message: spec.message.clone(),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fault: FaultKind) -> FaultSpec {
        FaultSpec {
            service: Service::Telegram,
            path_prefix: None,
            fault,
            latency_ms: None,
            status: Some(500),
            retry_after_s: None,
            after_n: None,
            times: None,
            stage: None,
            message: None,
        }
    }

    #[test]
    fn after_n_lets_requests_through_then_times_limits_the_hits() {
        let store = FaultStore::default();
        store.add(FaultSpec {
            after_n: Some(2),
            times: Some(1),
            ..spec(FaultKind::Status)
        });
        let hits: Vec<bool> = (0..5)
            .map(|_| store.take(Service::Telegram, &["/x"], None).is_some())
            .collect();
        assert_eq!(hits, [false, false, true, false, false]);
    }

    #[test]
    fn the_first_matching_fault_wins_and_path_prefix_filters() {
        let store = FaultStore::default();
        store.add(FaultSpec {
            path_prefix: Some("/sendMessage".into()),
            ..spec(FaultKind::Drop)
        });
        store.add(spec(FaultKind::Hang));
        let kind = |path| store.take(Service::Telegram, &[path], None).map(|h| h.kind);
        assert_eq!(kind("/sendMessage"), Some(FaultKind::Drop));
        assert_eq!(kind("/getMe"), Some(FaultKind::Hang));
        assert_eq!(
            store.take(Service::Pyrus, &["/auth"], None).map(|h| h.kind),
            None
        );
    }
}
