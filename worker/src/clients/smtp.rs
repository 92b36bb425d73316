//! E-mail over SMTP (reference §5) with lettre: `SMTP_URL` says how to reach the relay —
//! `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS from the first byte),
//! `smtp://host:25` (plain, for a local relay or the fakes' sink), with `user:password@` for
//! AUTH. Every connect and every command has `SMTP_TIMEOUT_MS`. The answer is classified into
//! [`Mailed`]: 4yz and broken connections are tried again later, 5yz is final and a 5.1.x
//! (mailbox) marks the address bad; a 5yz that speaks of a quota waits for the quota instead.
//!
//! Each message carries a `Message-ID` derived from its notification id, so a resend after a
//! crash is recognisably the same message (mail systems collapse duplicates by Message-ID).
use std::time::Duration;

use jobs::JobContext;
use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::{response::Severity, AsyncSmtpTransport},
    AsyncTransport, Message, Tokio1Executor,
};
use uuid::Uuid;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Scheme, host and port (no credentials), for the start-up log.
    origin: String,
    /// The domain part of `Message-ID`s (the sender's).
    domain: String,
}

/// How sending one message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Mailed {
    /// The relay took it (250 after DATA): accepted, not yet delivered.
    Accepted,
    /// 5yz: final. `mailbox_bad` for 5.1.x (no such user, bad address): not mailed again.
    Rejected { message: String, mailbox_bad: bool },
    /// Try again later: 4yz, a connection or TLS failure, a timeout, an authentication the
    /// relay refused (the channel's configuration, not this message); `quota`: a 5yz about a
    /// sending quota, which resets with time.
    Later { message: String, quota: bool },
}

/// A quota or throttling text inside a 5yz (`550 5.4.5 Daily sending quota exceeded`): the
/// relay will take mail again when its window resets.
fn quota_reply(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("5.4.5") || t.contains("quota") || t.contains("too many")
}

/// The relay refused our credentials or demands them (530, 535, 5.7.8 / 5.7.0 with AUTH):
/// every message would be refused the same way — the channel is down, not this message.
fn auth_reply(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("(530)") || t.contains("(535)") || t.contains("5.7.8") || t.contains("authenticat")
}

impl Mailer {
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("SMTP_URL does not parse: {e}"))?;
        let origin = format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or("?"),
            parsed.port().map(|p| p.to_string()).unwrap_or_default()
        );
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("SMTP_URL is not usable: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("SMTP_FROM is not an address: {e}"))?;
        let domain = from.email.domain().to_string();
        Ok(Self {
            transport,
            from,
            origin,
            domain,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The message id of notification `id`: the same on every attempt.
    pub fn message_id(&self, id: Uuid) -> String {
        format!("<notification-{id}@{}>", self.domain)
    }

    /// Sends one plain-text message. The caller has taken the rate-limit slots and committed
    /// `sending` (fenced on its lease).
    pub async fn send(
        &self,
        ctx: &JobContext,
        id: Uuid,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Mailed {
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => {
                return Mailed::Rejected {
                    message: format!("not an e-mail address: {e}"),
                    mailbox_bad: true,
                }
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(self.message_id(id)))
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_string());
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                return Mailed::Rejected {
                    message: format!("the message cannot be built: {e}"),
                    mailbox_bad: false,
                }
            }
        };
        let started = std::time::Instant::now();
        let sent = self.transport.send(message).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let e = match sent {
            Ok(_) => {
                tracing::debug!(service = "smtp", job.id = %ctx.id, elapsed_ms, "accepted");
                return Mailed::Accepted;
            }
            Err(e) => e,
        };
        metrics::counter!("outbound_failures_total", "service" => "smtp").increment(1);
        let text = e.to_string();
        tracing::warn!(service = "smtp", job.id = %ctx.id, elapsed_ms, error = %text, "smtp send failed");
        let permanent = e.is_permanent()
            || e.status()
                .is_some_and(|c| c.severity == Severity::PermanentNegativeCompletion);
        if permanent && quota_reply(&text) {
            Mailed::Later {
                message: text,
                quota: true,
            }
        } else if permanent && !auth_reply(&text) {
            let mailbox_bad = text.contains("5.1.");
            Mailed::Rejected {
                message: text,
                mailbox_bad,
            }
        } else {
            Mailed::Later {
                message: text,
                quota: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_texts_in_a_5yz_wait_instead_of_failing() {
        assert!(quota_reply("550 5.4.5 Daily sending quota exceeded"));
        assert!(quota_reply("554 Too many messages"));
        assert!(!quota_reply("550 5.1.1 User unknown"));
        assert!(!quota_reply(
            "550 5.1.1 <separate.generated@corporate.ru>: User unknown"
        ));
        assert!(auth_reply(
            "permanent error (535): 5.7.8 Authentication credentials invalid"
        ));
        assert!(!auth_reply("permanent error (550): 5.1.1 User unknown"));
    }
}
