//! Request rate limits (token buckets in memory, per api process): per user for requests with
//! a valid token or page session, per client address (IPv6 by /64, behind `TRUSTED_PROXIES`
//! the forwarded client) for the others and for logins.
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
    /// Refill per second of this bucket's rate (buckets of several rates share the map).
    per_sec: f64,
    capacity: f64,
}

impl Bucket {
    /// Full again by `now`: forgetting it changes nothing.
    fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_sec >= self.capacity
    }
}

/// Most buckets kept; beyond it the full ones are swept, then the least recently used.
pub const MAX_BUCKETS: usize = 100_000;

/// Token buckets keyed by (bucket, client key).
pub struct Limiter {
    buckets: Mutex<HashMap<(&'static str, String), Bucket>>,
    max: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::with_max(MAX_BUCKETS)
    }
}

impl Limiter {
    pub fn with_max(max: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one token; on refusal returns how long until one is available.
    pub fn check(&self, bucket: &'static str, key: String, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        let per_sec = f64::from(rate.count) / rate.period.as_secs_f64();
        let capacity = f64::from(rate.count);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.max && !buckets.contains_key(&(bucket, key.clone())) {
            // Forget the clients whose bucket has refilled (each at its own rate): they would
            // start full anyway. Still full of live buckets: drop the least recently used half
            // (a flood of new keys cannot grow the map without bound).
            buckets.retain(|_, b| !b.refilled(now));
            // Barely anything swept: cut now rather than sweep again at every new key.
            if buckets.len() > self.max * 9 / 10 {
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                buckets.retain(|_, b| b.at > cut);
            }
        }
        let b = buckets.entry((bucket, key)).or_insert(Bucket {
            tokens: capacity,
            at: now,
            per_sec,
            capacity,
        });
        b.per_sec = per_sec;
        b.capacity = capacity;
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
    } else if path == "/api/auth/login"
        || path == "/api/auth/password"
        || (method == axum::http::Method::POST && path == "/login")
    {
        Some("login")
    } else if method == axum::http::Method::GET && path.starts_with("/api/jobs") {
        Some("status")
    } else {
        Some("general")
    }
}

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: expected an address or a network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?
        };
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:1.2.3.4`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of it are the
/// client's word and could be forged).
pub fn client_ip(peer: IpAddr, forwarded: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let Some(chain) = forwarded else {
        return peer;
    };
    for hop in chain.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed hop: trust nothing further left.
            return peer;
        };
        let ip = canonical(ip);
        if !trusted.iter().any(|c| c.contains(ip)) {
            return ip;
        }
    }
    peer
}

/// The limiter key of an address: IPv4 as is, IPv6 by its /64 (one subscriber's network: a
/// client rotating through its own /64 is still one client).
pub fn address_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & (u128::MAX << 64);
            format!("ip6:{}/64", std::net::Ipv6Addr::from(net))
        }
    }
}

/// Middleware: a request with a valid bearer token or page session is limited per user
/// (an office behind one NAT shares an address, not a limit); one without, per address.
pub async fn limit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(bucket) = bucket_for(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let rate = match bucket {
        "login" => app.settings.login_rate,
        "status" => app.settings.status_rate,
        _ => app.settings.rate,
    };
    let peer: Option<IpAddr> = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = request.into_parts();
    // The user and token version (a revoked token drains its own version's bucket, not the
    // user's current one; the version itself is checked later, with the user's row).
    let user = bearer(&parts)
        .and_then(|t| app.tokens.verify(t))
        .map(|c| (c.sub, c.ver))
        .or_else(|| {
            crate::pages::session_cookie(&parts.headers).and_then(|t| app.tokens.verify_session(t))
        });
    // Every X-Forwarded-For line in order (a proxy may add its own line after the client's).
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let ip = peer.map(|p| client_ip(p, forwarded.as_deref(), &app.settings.trusted_proxies));
    let request = Request::from_parts(parts, body);

    // Logins are always per address too: guessing spreads over e-mails, not tokens.
    let key = match (user, bucket) {
        (Some((user, version)), b) if b != "login" => Some(format!("user:{user}:{version}")),
        _ => ip.map(address_key),
    };
    if let Some(key) = key {
        if let Err(wait) = app.limiter.check(bucket, key, rate) {
            tracing::warn!(bucket, ?ip, user = ?user.map(|(u, _)| u), "rate limited");
            return ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
            }
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_behind_trusted_proxies_and_ipv6_networks_key_the_limit() {
        let trusted: Vec<Cidr> = ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not from a proxy: the header is the client's word.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // From a proxy: the right-most hop that is not a proxy.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                Some("6.6.6.6, 198.51.100.7, 10.9.9.9"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(ip("10.1.2.3"), None, &trusted), ip("10.1.2.3"));
        assert_eq!(
            client_ip(ip("10.1.2.3"), Some("garbage"), &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.1.2.3"), Some("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("192.0.2.1")), "ip:192.0.2.1");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains(ip("fd12::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn the_limiters_memory_is_bounded_and_swept_at_each_buckets_own_rate() {
        let limiter = Limiter::with_max(100);
        let fast: Rate = "1000/1s".parse().unwrap();
        let slow: Rate = "1/1h".parse().unwrap();
        for i in 0..100 {
            assert!(limiter.check("general", format!("slow{i}"), slow).is_ok());
        }
        // A flood of new keys never grows the map past its bound.
        for i in 0..10_000 {
            let _ = limiter.check("general", format!("flood{i}"), fast);
            assert!(limiter.len() <= 100);
        }
        // A fast bucket refills within milliseconds and is swept; a slow one is not refilled.
        let limiter = Limiter::with_max(3);
        assert!(limiter.check("general", "slow".into(), slow).is_ok());
        assert!(limiter.check("general", "fast".into(), fast).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert!(limiter.check("general", "x".into(), fast).is_ok());
        assert!(limiter.check("general", "y".into(), fast).is_ok());
        assert!(
            limiter.check("general", "slow".into(), slow).is_err(),
            "the slow client's empty bucket was kept"
        );
    }

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
