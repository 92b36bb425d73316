//! Outbound clients of the providers (Timepad, Pyrus, Novofon, Telegram through the one HTTP
//! client in [`http`]; e-mail through lettre's SMTP transport in [`smtp`]), configured from
//! flags and environment. A provider without configuration is disabled: its jobs fail at once,
//! saying what is missing.
use std::{sync::Arc, time::Duration};

pub mod http;
pub mod json_stream;
pub mod novofon;
pub mod pyrus;
pub mod smtp;
pub mod telegram;
pub mod timepad;

use http::Timeouts;

/// Provider settings (flag or environment). No `Debug`: it holds secrets.
#[derive(clap::Args, Clone, Default)]
pub struct IntegrationsConfig {
    /// Connect timeout of every outbound HTTP call, in milliseconds.
    #[arg(long, env = "HTTP_CONNECT_TIMEOUT_MS", default_value_t = 3000)]
    pub http_connect_timeout_ms: u64,
    /// Total timeout of every outbound HTTP call (sending, waiting, reading), in milliseconds.
    #[arg(long, env = "HTTP_TIMEOUT_MS", default_value_t = 15_000)]
    pub http_timeout_ms: u64,

    /// Timepad API base, e.g. `https://api.timepad.ru`.
    #[arg(long, env = "TIMEPAD_URL")]
    pub timepad_url: Option<String>,
    #[arg(long, env = "TIMEPAD_TOKEN", hide_env_values = true)]
    pub timepad_token: Option<String>,
    /// The organisation whose events are imported.
    #[arg(long, env = "TIMEPAD_ORGANIZATION_ID")]
    pub timepad_organization_id: Option<String>,
    /// Overrides `HTTP_TIMEOUT_MS` for Timepad.
    #[arg(long, env = "TIMEPAD_TIMEOUT_MS")]
    pub timepad_timeout_ms: Option<u64>,

    /// Pyrus authentication endpoint, e.g. `https://accounts.pyrus.com/api/v4/auth`.
    #[arg(long, env = "PYRUS_AUTH_URL")]
    pub pyrus_auth_url: Option<String>,
    /// Pyrus API base, e.g. `https://api.pyrus.com/v4` (the `api_url` the authentication
    /// answers takes precedence, as Pyrus asks).
    #[arg(long, env = "PYRUS_API_URL")]
    pub pyrus_api_url: Option<String>,
    #[arg(long, env = "PYRUS_LOGIN")]
    pub pyrus_login: Option<String>,
    #[arg(long, env = "PYRUS_SECURITY_KEY", hide_env_values = true)]
    pub pyrus_security_key: Option<String>,
    /// The form whose tasks are rental applications.
    #[arg(long, env = "PYRUS_FORM_ID")]
    pub pyrus_form_id: Option<String>,
    /// Overrides `HTTP_TIMEOUT_MS` for Pyrus.
    #[arg(long, env = "PYRUS_TIMEOUT_MS")]
    pub pyrus_timeout_ms: Option<u64>,

    /// Novofon Call API (JSON-RPC), e.g. `https://callapi-jsonrpc.novofon.ru/v4.0`.
    #[arg(long, env = "NOVOFON_URL")]
    pub novofon_url: Option<String>,
    #[arg(long, env = "NOVOFON_ACCESS_TOKEN", hide_env_values = true)]
    pub novofon_access_token: Option<String>,
    /// The account's own number shown to the client (E.164), e.g. `74993720692`.
    #[arg(long, env = "NOVOFON_VIRTUAL_NUMBER")]
    pub novofon_virtual_number: Option<String>,
    /// Overrides `HTTP_TIMEOUT_MS` for Novofon.
    #[arg(long, env = "NOVOFON_TIMEOUT_MS")]
    pub novofon_timeout_ms: Option<u64>,

    /// Telegram Bot API base, e.g. `https://api.telegram.org`.
    #[arg(long, env = "TELEGRAM_URL")]
    pub telegram_url: Option<String>,
    #[arg(long, env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: Option<String>,
    /// Overrides `HTTP_TIMEOUT_MS` for Telegram.
    #[arg(long, env = "TELEGRAM_TIMEOUT_MS")]
    pub telegram_timeout_ms: Option<u64>,

    /// The mail relay: `smtp://user:password@host:587?tls=required` (STARTTLS),
    /// `smtps://user:password@host:465` (TLS), `smtp://host:25` (plain).
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender, e.g. `АРТСВАО <crm@artsvao.ru>`.
    #[arg(long, env = "SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Timeout of the connection and of every SMTP command, in milliseconds.
    #[arg(long, env = "SMTP_TIMEOUT_MS", default_value_t = 15_000)]
    pub smtp_timeout_ms: u64,

    /// Consecutive transient failures of a notification channel that pause it.
    #[arg(long, env = "NOTIFY_BREAKER_FAILURES", default_value_t = 5)]
    pub notify_breaker_failures: u32,
    /// How long a paused channel waits before one probe, in seconds.
    #[arg(long, env = "NOTIFY_BREAKER_PAUSE_SECS", default_value_t = 60)]
    pub notify_breaker_pause_secs: u64,
}

/// A setting that is set: an empty value (compose passes `${VAR:-}`) is unset.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A numeric id setting: unset, or a number, or the reason it is not.
fn id(name: &str, v: &Option<String>) -> Result<Option<u64>, String> {
    set(v)
        .map(|s| {
            s.parse()
                .map_err(|_| format!("{name} is not a number: {s:?}"))
        })
        .transpose()
}

impl IntegrationsConfig {
    fn timeouts(&self, own: Option<u64>) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.http_connect_timeout_ms.max(1)),
            total: Duration::from_millis(own.unwrap_or(self.http_timeout_ms).max(1)),
        }
    }
}

/// The configured providers; `None` = disabled (with the reason).
#[derive(Clone)]
pub struct Integrations {
    pub timepad: Result<Arc<timepad::Timepad>, String>,
    pub pyrus: Result<Arc<pyrus::Pyrus>, String>,
    pub novofon: Result<Arc<novofon::Novofon>, String>,
    pub telegram: Result<Arc<telegram::Telegram>, String>,
    pub mailer: Result<Arc<smtp::Mailer>, String>,
    /// The notification channels' circuit breaker settings.
    pub breaker: jobs::breaker::Breaker,
}

/// A provider's text made fit to store: NULs (PostgreSQL refuses them) and other control
/// characters but line breaks and tabs dropped, trimmed, at most `max` characters; `None` when
/// nothing is left.
pub fn clean_text(raw: &str, max: usize) -> Option<String> {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let trimmed = kept.trim();
    (!trimmed.is_empty()).then(|| trimmed.chars().take(max).collect())
}

/// A provider's amount of money (its JSON text, read exactly) that fits `numeric(12, 2)`; else
/// `None` (logged by the caller): a stray value must not fail the page that carries it.
pub fn money(raw: Option<&serde_json::value::RawValue>) -> Option<shared::money::Money> {
    raw.and_then(|raw| shared::money::Money::from_service_text(raw.get()))
}

/// The error of a job whose provider is not configured.
pub fn disabled(service: &str, reason: &str) -> jobs::JobError {
    jobs::JobError::permanent(format!("{service} is disabled: {reason}"))
}

impl Integrations {
    pub fn from_config(c: &IntegrationsConfig) -> Self {
        let timepad = match (
            set(&c.timepad_url),
            set(&c.timepad_token),
            id("TIMEPAD_ORGANIZATION_ID", &c.timepad_organization_id),
        ) {
            (_, _, Err(why)) => Err(why),
            (Some(url), Some(token), Ok(Some(org))) => {
                timepad::Timepad::new(url, token, org, c.timeouts(c.timepad_timeout_ms))
                    .map(Arc::new)
                    .map_err(|e| format!("cannot build its client: {e}"))
            }
            _ => Err("set TIMEPAD_URL, TIMEPAD_TOKEN and TIMEPAD_ORGANIZATION_ID".into()),
        };
        let pyrus = match (
            set(&c.pyrus_auth_url),
            set(&c.pyrus_login),
            set(&c.pyrus_security_key),
            id("PYRUS_FORM_ID", &c.pyrus_form_id),
        ) {
            (_, _, _, Err(why)) => Err(why),
            (Some(auth), Some(login), Some(key), Ok(Some(form))) => pyrus::Pyrus::new(
                auth,
                set(&c.pyrus_api_url),
                login,
                key,
                form,
                c.timeouts(c.pyrus_timeout_ms),
            )
            .map(Arc::new)
            .map_err(|e| format!("cannot build its client: {e}")),
            _ => {
                Err("set PYRUS_AUTH_URL, PYRUS_LOGIN, PYRUS_SECURITY_KEY and PYRUS_FORM_ID".into())
            }
        };
        let novofon = match (
            set(&c.novofon_url),
            set(&c.novofon_access_token),
            set(&c.novofon_virtual_number),
        ) {
            (Some(url), Some(token), Some(number)) => {
                novofon::Novofon::new(url, token, number, c.timeouts(c.novofon_timeout_ms))
                    .map(Arc::new)
                    .map_err(|e| format!("cannot build its client: {e}"))
            }
            _ => Err("set NOVOFON_URL, NOVOFON_ACCESS_TOKEN and NOVOFON_VIRTUAL_NUMBER".into()),
        };
        let telegram = match (set(&c.telegram_url), set(&c.telegram_bot_token)) {
            (Some(url), Some(token)) => {
                telegram::Telegram::new(url, token, c.timeouts(c.telegram_timeout_ms))
                    .map(Arc::new)
                    .map_err(|e| format!("cannot build its client: {e}"))
            }
            _ => Err("set TELEGRAM_URL and TELEGRAM_BOT_TOKEN".into()),
        };
        let mailer = match (set(&c.smtp_url), set(&c.smtp_from)) {
            (Some(url), Some(from)) => {
                smtp::Mailer::new(url, from, Duration::from_millis(c.smtp_timeout_ms.max(1)))
                    .map(Arc::new)
            }
            _ => Err("set SMTP_URL and SMTP_FROM".into()),
        };
        let breaker = jobs::breaker::Breaker {
            threshold: c.notify_breaker_failures.max(1),
            pause: Duration::from_secs(c.notify_breaker_pause_secs.max(1)),
            ..Default::default()
        };
        Self {
            timepad,
            pyrus,
            novofon,
            telegram,
            mailer,
            breaker,
        }
    }

    /// Every provider disabled (tests that do not talk to the outside).
    pub fn none() -> Self {
        Self::from_config(&IntegrationsConfig::default())
    }

    /// One line per provider for the start-up log (no secrets).
    pub fn describe(&self) -> Vec<String> {
        vec![
            match &self.timepad {
                Ok(t) => format!("timepad: {}", t.service.origin()),
                Err(why) => format!("timepad: disabled ({why})"),
            },
            match &self.pyrus {
                Ok(_) => "pyrus: configured".to_string(),
                Err(why) => format!("pyrus: disabled ({why})"),
            },
            match &self.novofon {
                Ok(n) => format!("novofon: {}", n.service.origin()),
                Err(why) => format!("novofon: disabled ({why})"),
            },
            match &self.telegram {
                Ok(t) => format!("telegram: {}", t.service.origin()),
                Err(why) => format!("telegram: disabled ({why})"),
            },
            match &self.mailer {
                Ok(m) => format!("smtp: {}", m.origin()),
                Err(why) => format!("smtp: disabled ({why})"),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_loses_nuls_and_controls_and_is_cut() {
        assert_eq!(clean_text("  Анна\u{0}\u{7}  ", 10), Some("Анна".into()));
        assert_eq!(clean_text("a\nb\tc", 10), Some("a\nb\tc".into()));
        assert_eq!(clean_text("\u{0} ", 10), None);
        assert_eq!(clean_text("Ёлочка", 3), Some("Ёло".into()));
    }

    #[test]
    fn provider_money_is_read_from_its_json_text() {
        let read = |json: &str| {
            let raw: Box<serde_json::value::RawValue> =
                serde_json::from_str(json).expect("valid JSON");
            money(Some(&raw)).map(shared::money::Money::kopecks)
        };
        assert_eq!(read("1500.5"), Some(150_050));
        assert_eq!(read("\"700\""), Some(70_000));
        assert_eq!(read("1e10"), None);
        assert_eq!(read("10000000000"), None);
        assert_eq!(read("{}"), None);
    }
}
