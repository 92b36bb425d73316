//! Request rate limits per client IP and per user (token buckets in memory, per api process).
//!
//! Buckets: `login` (strict, against password guessing), `status` (job status reads and SSE,
//! generous so a browser polling every second is never throttled) and `general` (everything
//! else, the audit's 100 requests / 60 s). In-memory is a deliberate choice: these limits
//! protect one process from one client; with N api replicas a client gets at most N × the
//! limit, which still stops abuse. Limits on external services are global (in PostgreSQL).
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{auth::bearer, http::ApiError, state::AppState};

/// `count` requests per `period` with bursts up to `count`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;
    /// `100/60s`, `10/1m`, `600/60s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (count, period) = s
            .split_once('/')
            .ok_or("expected COUNT/PERIOD, e.g. 100/60s")?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("bad count in {s:?}"))?;
        let period = period.trim();
        let (num, unit) = period.split_at(
            period
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(period.len()),
        );
        let num: u64 = if num.is_empty() {
            1
        } else {
            num.parse().map_err(|_| format!("bad period in {s:?}"))?
        };
        let secs = match unit {
            "s" | "" => num,
            "m" => num * 60,
            "h" => num * 3600,
            _ => return Err(format!("bad period unit in {s:?} (s, m, h)")),
        };
        if count == 0 || secs == 0 {
            return Err(format!("rate must be positive: {s:?}"));
        }
        Ok(Self {
            count,
            period: Duration::from_secs(secs),
        })
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by (bucket, client key).
pub struct Limiter {
    buckets: Mutex<HashMap<(&'static str, String), Bucket>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl Limiter {
    /// Takes one token; on refusal returns how long until one is available.
    pub fn check(&self, bucket: &'static str, key: String, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        let per_sec = f64::from(rate.count) / rate.period.as_secs_f64();
        let capacity = f64::from(rate.count);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 50_000 {
            // Forget clients whose bucket has refilled: they would start full anyway.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < capacity
            });
        }
        let b = buckets.entry((bucket, key)).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

fn bucket_for(method: &axum::http::Method, path: &str) -> Option<&'static str> {
    if path.starts_with("/api/health/") || path == "/metrics" {
        None
    } else if path == "/api/auth/login" || (method == axum::http::Method::POST && path == "/login")
    {
        Some("login")
    } else if method == axum::http::Method::GET && path.starts_with("/api/jobs") {
        Some("status")
    } else {
        Some("general")
    }
}

/// Middleware: applies the bucket of the route per client IP and, when a token is present,
/// per user (the token's subject; a forged token fails authentication anyway).
pub async fn limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(bucket) = bucket_for(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let rate = match bucket {
        "login" => app.settings.login_rate,
        "status" => app.settings.status_rate,
        _ => app.settings.rate,
    };
    let ip: Option<IpAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = request.into_parts();
    let user = bearer(&parts)
        .and_then(|t| app.tokens.verify(t))
        .map(|c| c.sub);
    let request = Request::from_parts(parts, body);

    let mut refusal = None;
    if let Some(ip) = ip {
        if let Err(wait) = app.limiter.check(bucket, format!("ip:{ip}"), rate) {
            refusal = Some(wait);
        }
    }
    if let (None, Some(user)) = (refusal, user) {
        if let Err(wait) = app.limiter.check(bucket, format!("user:{user}"), rate) {
            refusal = Some(wait);
        }
    }
    if let Some(wait) = refusal {
        tracing::warn!(bucket, ?ip, "rate limited");
        return ApiError::TooManyRequests {
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        }
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_limit() {
        let rate: Rate = "3/60s".parse().unwrap();
        let limiter = Limiter::default();
        for _ in 0..3 {
            assert!(limiter.check("general", "a".into(), rate).is_ok());
        }
        let wait = limiter.check("general", "a".into(), rate).unwrap_err();
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert!(limiter.check("general", "b".into(), rate).is_ok());
        assert!("10/1m".parse::<Rate>().unwrap().period == Duration::from_secs(60));
        assert!("0/1m".parse::<Rate>().is_err());
    }
}
