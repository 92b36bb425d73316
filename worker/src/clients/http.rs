//! The one outbound HTTP client: every call to a provider goes through [`Service::send`], which
//! checks the run still holds its lease, takes the service's global rate-limit slot (or snoozes
//! the job), applies the connect and total timeouts, traces the call with the job id, and
//! classifies the answer once into the runtime's outcomes:
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx | the response |
//! | timeout, connection error, 5xx, 408, 425, a 2xx that is not JSON (a proxy's page) | transient: retried with backoff |
//! | 429 | snooze for `Retry-After` / `X-RateLimit-Reset` (else a minute): no attempt used |
//! | 401 whose body says the token expired / was revoked | [`CallError::AuthExpired`]: refresh once |
//! | other 4xx ([`CallError::Refused`]), JSON that does not decode | permanent: fails at once with the provider's words |
//!
//! Answers are read up to [`MAX_BODY`] (error bodies up to 64 KB); the provider's secrets
//! (tokens, keys, a token in a path) never reach a log line or a job's error.
use std::time::Duration;

use jobs::{JobContext, JobError};
use reqwest::{header::HeaderMap, RequestBuilder, Response, StatusCode};
use tracing::Instrument;

/// Timeouts of one provider.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

/// How an outbound call failed, classified once.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connection was never made: the provider saw nothing (safe to retry, even an effect).
    #[error("{service}: {message}")]
    Unsent {
        service: &'static str,
        message: String,
    },
    /// Retry later; the provider may have seen the request (a timeout, a 5xx).
    #[error("{service}: {message}")]
    Transient {
        service: &'static str,
        message: String,
    },
    #[error("{service}: throttled, retry in {retry_after:?}")]
    Throttled {
        service: &'static str,
        retry_after: Duration,
    },
    #[error("{service}: the access token expired or was revoked")]
    AuthExpired { service: &'static str },
    /// A 4xx the provider meant (not 401-expired, not 429): `body` is its excerpt.
    #[error("{service}: HTTP {status}: {body}")]
    Refused {
        service: &'static str,
        status: u16,
        body: String,
    },
    #[error("{service}: {message}")]
    Permanent {
        service: &'static str,
        message: String,
    },
    #[error(transparent)]
    Job(#[from] JobError),
}

impl From<CallError> for JobError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unsent { .. } | CallError::Transient { .. } => {
                JobError::transient(e.to_string())
            }
            CallError::Throttled {
                service,
                retry_after,
            } => JobError::snooze(format!("{service} asked to slow down"), retry_after),
            CallError::AuthExpired { .. }
            | CallError::Refused { .. }
            | CallError::Permanent { .. } => JobError::permanent(e.to_string()),
            CallError::Job(job) => job,
        }
    }
}

/// A provider: its base URL, a client with its connect timeout, its total timeout and the
/// global rate-limit key every call takes.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: &'static str,
    pub base: String,
    pub limit_key: &'static str,
    client: reqwest::Client,
    total: Duration,
    /// Replaced by `***` in everything logged or recorded.
    secrets: Vec<String>,
}

/// The largest answer read into memory (a page of 250 Timepad orders is ~1 MB).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// The part of an error answer that is read (and an excerpt of it kept).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How long a call may wait for its rate-limit slot before the job snoozes instead.
const SLOT_WAIT: Duration = Duration::from_secs(2);
/// Snooze after a 429 that says nothing about when to come back.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Service {
    pub fn new(
        name: &'static str,
        base: &str,
        limit_key: &'static str,
        timeouts: Timeouts,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.total)
            .user_agent("artsvao-crm/1.0")
            .build()?;
        Ok(Self {
            name,
            base: base.trim_end_matches('/').to_string(),
            limit_key,
            client,
            total: timeouts.total,
            secrets: Vec::new(),
        })
    }

    /// A secret of this provider (a token, a key): never logged, never in a job's error.
    pub fn with_secret(mut self, secret: &str) -> Self {
        if secret.len() >= 4 {
            self.secrets.push(secret.to_string());
        }
        self
    }

    /// `text` with the provider's secrets replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), "***")
        })
    }

    /// Scheme, host and port of the base URL (for the start-up log: no user, path or query).
    pub fn origin(&self) -> String {
        reqwest::Url::parse(&self.base)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "(unparsable URL)".into())
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, url: &str) -> RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: &str) -> RequestBuilder {
        self.client.post(url)
    }

    /// Sends `request` for the job of `ctx` (lease check, rate-limit slot, timeouts, a span
    /// with the job id) and classifies the answer. `auth_expired` tells whether a 401 body
    /// means "refresh the token and try again" for this provider.
    pub async fn send(
        &self,
        ctx: &JobContext,
        request: RequestBuilder,
        auth_expired: fn(&str) -> bool,
    ) -> Result<Response, CallError> {
        self.prepare(ctx).await?;
        self.execute(ctx, request, auth_expired).await
    }

    /// What comes before a call: the run must still hold its lease (a run that lost it must
    /// not reach the provider), and the service's rate-limit slot is taken (or the job
    /// snoozes). Separate from [`Service::execute`] for a handler that must record something
    /// between the two (a click-to-call marks itself `dialling` only once it may dial).
    pub async fn prepare(&self, ctx: &JobContext) -> Result<(), CallError> {
        ctx.check_lease().await?;
        ctx.acquire(self.limit_key, SLOT_WAIT).await?;
        Ok(())
    }

    /// Sends `request` (after [`Service::prepare`]) and classifies the answer. A connection
    /// that was never made is [`CallError::Unsent`]: the provider cannot have acted on it.
    pub async fn execute(
        &self,
        ctx: &JobContext,
        request: RequestBuilder,
        auth_expired: fn(&str) -> bool,
    ) -> Result<Response, CallError> {
        let request = request
            .timeout(self.total)
            .build()
            .map_err(|e| self.permanent(format!("bad request: {}", e.without_url())))?;
        let span = tracing::info_span!(
            "outbound",
            service = self.name,
            method = %request.method(),
            path = %self.redact(request.url().path()),
            job.id = %ctx.id,
        );
        let started = std::time::Instant::now();
        let sent = self.client.execute(request).instrument(span.clone()).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                // A connect timeout is both: the connection was never made.
                let unsent = e.is_connect();
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                // Without the URL: it may carry a token (a query, Telegram's path).
                let e = self.redact(&e.without_url().to_string());
                span.in_scope(|| tracing::warn!(elapsed_ms, error = %e, "{what}"));
                metrics::counter!("outbound_failures_total", "service" => self.name).increment(1);
                let message = format!("{what} after {elapsed_ms} ms: {e}");
                return Err(if unsent {
                    CallError::Unsent {
                        service: self.name,
                        message,
                    }
                } else {
                    CallError::Transient {
                        service: self.name,
                        message,
                    }
                });
            }
        };
        let status = response.status();
        span.in_scope(|| tracing::debug!(elapsed_ms, status = status.as_u16(), "answered"));
        if status.is_success() {
            return Ok(response);
        }
        metrics::counter!("outbound_failures_total", "service" => self.name).increment(1);
        let headers = response.headers().clone();
        let body = match read_capped(response, MAX_ERROR_BODY, true).await {
            Ok(bytes) => self.redact(&String::from_utf8_lossy(&bytes)),
            Err(_) => String::new(),
        };
        let excerpt: String = body.chars().take(300).collect();
        span.in_scope(
            || tracing::warn!(status = status.as_u16(), body = %excerpt, "provider refused"),
        );
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS => CallError::Throttled {
                service: self.name,
                retry_after: retry_after(&headers, &body).unwrap_or(DEFAULT_RETRY_AFTER),
            },
            StatusCode::UNAUTHORIZED if auth_expired(&body) => {
                CallError::AuthExpired { service: self.name }
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s.as_u16() == 425 => {
                CallError::Transient {
                    service: self.name,
                    message: format!("HTTP {}: {excerpt}", s.as_u16()),
                }
            }
            s => CallError::Refused {
                service: self.name,
                status: s.as_u16(),
                body: excerpt,
            },
        })
    }

    /// Decodes a JSON body of at most [`MAX_BODY`] bytes. JSON that does not decode is
    /// permanent (the provider changed); an answer that is not JSON at all — a proxy's or a
    /// maintenance page with a 200 — is transient.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: Response,
    ) -> Result<T, CallError> {
        let bytes = read_capped(response, MAX_BODY, false)
            .await
            .map_err(|e| self.read_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            let json_like = bytes
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{' || *b == b'[');
            if json_like {
                self.permanent(format!("undecodable answer: {e}"))
            } else {
                CallError::Transient {
                    service: self.name,
                    message: "the answer is not JSON (a proxy or maintenance page?)".into(),
                }
            }
        })
    }

    /// How reading an answer failed, as an outcome: too large is permanent, a broken stream
    /// transient.
    pub fn read_error(&self, e: ReadError) -> CallError {
        match e {
            ReadError::TooLarge(limit) => {
                self.permanent(format!("the answer exceeds {} MB", limit / (1024 * 1024)))
            }
            ReadError::Broken(e) => CallError::Transient {
                service: self.name,
                message: format!(
                    "reading the answer: {}",
                    self.redact(&e.without_url().to_string())
                ),
            },
        }
    }

    pub fn permanent(&self, message: impl Into<String>) -> CallError {
        CallError::Permanent {
            service: self.name,
            message: message.into(),
        }
    }
}

/// Why an answer could not be read.
#[derive(Debug)]
pub enum ReadError {
    TooLarge(usize),
    Broken(reqwest::Error),
}

/// The body, refusing one over `limit` bytes (by its `Content-Length`, or as it streams in);
/// with `truncate`, the first `limit` bytes instead.
async fn read_capped(
    mut response: Response,
    limit: usize,
    truncate: bool,
) -> Result<Vec<u8>, ReadError> {
    if !truncate && response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Broken)? {
        if body.len() + chunk.len() > limit {
            if truncate {
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` (seconds), `X-RateLimit-Reset` (seconds until the window resets, Pyrus), or a
/// `retry_after` / `parameters.retry_after` in a JSON body (Telegram).
fn retry_after(headers: &HeaderMap, body: &str) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let seconds = header("retry-after")
        .or_else(|| header("x-ratelimit-reset"))
        .or_else(|| {
            let v: serde_json::Value = serde_json::from_str(body).ok()?;
            v.get("retry_after")
                .or_else(|| v.get("parameters").and_then(|p| p.get("retry_after")))
                .and_then(serde_json::Value::as_u64)
        })?;
    Some(Duration::from_secs(seconds.clamp(1, 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_hints_come_from_headers_or_the_body() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h, ""), Some(Duration::from_secs(7)));
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset", "120".parse().unwrap());
        assert_eq!(retry_after(&h, ""), Some(Duration::from_secs(120)));
        let body = r#"{"ok":false,"error_code":429,"parameters":{"retry_after":3}}"#;
        assert_eq!(
            retry_after(&HeaderMap::new(), body),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after(&HeaderMap::new(), "nope"), None);
    }
}
