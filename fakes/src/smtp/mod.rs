//! The SMTP sink: a plain, line-based SMTP server (EHLO/HELO, AUTH PLAIN/LOGIN accepting any
//! credentials, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) that records every
//! message in the request log as service `smtp`, with faults applied per session stage.

mod mime;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::faults::{FaultKind, Hit, SmtpStage, HOLD_LIMIT};
use crate::log::Received;
use crate::{App, Service};

const HOST: &str = "fakes.artsvao.local";
/// Longest command line accepted (RFC 5321 says 512; AUTH lines may be longer).
const MAX_LINE: u64 = 64 * 1024;
/// Messages above this are refused with 552, as the advertised SIZE says.
const MAX_MESSAGE: usize = 35 * 1024 * 1024;
/// A client silent for this long is disconnected, as real servers do.
const IDLE: Duration = Duration::from_secs(300);

pub async fn serve(listener: TcpListener, app: Arc<App>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let app = app.clone();
                tokio::spawn(async move {
                    if let Err(error) = Session::new(stream, app).run().await {
                        tracing::debug!(%peer, %error, "smtp session ended");
                    }
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "smtp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    app: Arc<App>,
    greeted: bool,
    from: Option<String>,
    recipients: Vec<String>,
}

/// What a fault left to do at a stage.
enum Gate {
    Proceed,
    /// The fault answered in place of the normal reply.
    Answered,
    /// The session is over.
    Closed,
}

type Io<T> = std::io::Result<T>;

/// The default text after a fault's reply code.
fn reply_text(code: u16) -> &'static str {
    match code {
        421 => "4.7.0 Try again later, closing connection",
        450 => "4.2.1 Mailbox temporarily unavailable",
        451 => "4.7.1 Try again later",
        452 => "4.5.3 Too many recipients",
        454 => "4.7.0 Temporary authentication failure",
        530 => "5.7.0 Authentication required",
        535 => "5.7.8 Authentication credentials invalid",
        550 => "5.1.1 User unknown",
        551 => "5.1.6 User not local",
        552 => "5.3.4 Message size exceeds fixed limit",
        553 => "5.1.3 Bad destination mailbox address syntax",
        554 => "5.7.1 Transaction failed",
        c if c < 500 => "4.0.0 Temporary failure",
        _ => "5.0.0 Permanent failure",
    }
}

/// The address inside `FROM:<a@b>` / `TO:<a@b>`, tolerating a missing `<>` or spaces.
fn address(argument: &str, keyword: &str) -> Option<String> {
    let rest = argument.trim();
    if rest.len() < keyword.len() || !rest[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let address = match (rest.find('<'), rest.find('>')) {
        (Some(open), Some(close)) if open < close => &rest[open + 1..close],
        _ => rest.split_whitespace().next().unwrap_or(""),
    };
    Some(address.to_string())
}

impl Session {
    fn new(stream: TcpStream, app: Arc<App>) -> Self {
        let (read, write) = stream.into_split();
        Self {
            reader: BufReader::new(read),
            writer: write,
            app,
            greeted: false,
            from: None,
            recipients: Vec::new(),
        }
    }

    async fn reply(&mut self, line: &str) -> Io<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await
    }

    /// One line without its CRLF; `None` at end of stream or after the idle timeout.
    async fn line(&mut self) -> Io<Option<String>> {
        let mut buf = Vec::new();
        let mut limited = (&mut self.reader).take(MAX_LINE);
        match tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut buf)).await {
            Err(_) => {
                self.reply("421 4.4.2 Idle timeout, closing connection")
                    .await?;
                Ok(None)
            }
            Ok(Ok(0)) => Ok(None),
            Ok(Ok(_)) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Holds the connection without answering: reads and discards until the client gives up.
    async fn hold(&mut self) {
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(HOLD_LIMIT, async {
            while matches!(self.reader.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// Applies the fault (if any) for `stage`; `log` is the entry already recorded for this step
    /// (messages), otherwise one is recorded when a fault hits.
    async fn gate(&mut self, stage: SmtpStage, path: &str, log: Option<u64>) -> Io<Gate> {
        let Some(hit) = self.app.faults.take(Service::Smtp, &[path], Some(stage)) else {
            return Ok(Gate::Proceed);
        };
        let id = log.unwrap_or_else(|| {
            self.app.log.record(Received {
                service: Service::Smtp,
                method: stage.command().to_string(),
                path: path.to_string(),
                query: None,
                body: serde_json::Value::Null,
            })
        });
        self.app.log.faulted(id, hit.kind.name());
        tracing::info!(stage = stage.command(), %path, fault = hit.kind.name(), "smtp fault hit");
        self.apply(hit, id).await
    }

    async fn apply(&mut self, hit: Hit, id: u64) -> Io<Gate> {
        match hit.kind {
            FaultKind::Latency => {
                tokio::time::sleep(hit.latency).await;
                Ok(Gate::Proceed)
            }
            FaultKind::Status => {
                let text = hit.message.as_deref().unwrap_or(reply_text(hit.status));
                self.reply(&format!("{} {text}", hit.status)).await?;
                self.app.log.answered(id, hit.status);
                // 421 means the server is closing the channel.
                Ok(if hit.status == 421 {
                    Gate::Closed
                } else {
                    Gate::Answered
                })
            }
            FaultKind::Drop => Ok(Gate::Closed),
            FaultKind::Hang | FaultKind::TimeoutAfterReceive => {
                self.hold().await;
                Ok(Gate::Closed)
            }
        }
    }

    async fn run(mut self) -> Io<()> {
        match self.gate(SmtpStage::Connect, "", None).await? {
            Gate::Proceed => {
                self.reply(&format!("220 {HOST} ESMTP artsvao-fakes"))
                    .await?
            }
            Gate::Answered => {}
            Gate::Closed => return Ok(()),
        }
        while let Some(line) = self.line().await? {
            let (verb, argument) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let verb = verb.to_ascii_uppercase();
            let keep_going = match verb.as_str() {
                "EHLO" | "HELO" => self.hello(&verb, argument).await?,
                "AUTH" => self.auth(argument).await?,
                "MAIL" => self.mail(argument).await?,
                "RCPT" => self.rcpt(argument).await?,
                "DATA" => self.data().await?,
                "RSET" => {
                    self.from = None;
                    self.recipients.clear();
                    self.reply("250 2.0.0 Ok").await?;
                    true
                }
                "NOOP" => {
                    self.reply("250 2.0.0 Ok").await?;
                    true
                }
                "VRFY" => {
                    self.reply("252 2.0.0 Cannot VRFY user, but will accept message")
                        .await?;
                    true
                }
                "STARTTLS" => {
                    self.reply("454 4.7.0 TLS not available").await?;
                    true
                }
                "QUIT" => {
                    self.reply("221 2.0.0 Bye").await?;
                    false
                }
                _ => {
                    self.reply("500 5.5.2 Syntax error, command unrecognized")
                        .await?;
                    true
                }
            };
            if !keep_going {
                break;
            }
        }
        self.writer.shutdown().await.ok();
        Ok(())
    }

    /// Runs the stage's fault gate; `Some(keep_going)` when the fault replaced the reply.
    async fn gated(&mut self, stage: SmtpStage, path: &str) -> Io<Option<bool>> {
        Ok(match self.gate(stage, path, None).await? {
            Gate::Proceed => None,
            Gate::Answered => Some(true),
            Gate::Closed => Some(false),
        })
    }

    async fn hello(&mut self, verb: &str, domain: &str) -> Io<bool> {
        if let Some(keep_going) = self.gated(SmtpStage::Ehlo, domain.trim()).await? {
            return Ok(keep_going);
        }
        self.greeted = true;
        self.from = None;
        self.recipients.clear();
        if verb == "HELO" {
            self.reply(&format!("250 {HOST}")).await?;
        } else {
            let lines = [
                format!("250-{HOST} Hello {}", domain.trim()),
                "250-PIPELINING".to_string(),
                format!("250-SIZE {MAX_MESSAGE}"),
                "250-8BITMIME".to_string(),
                "250-SMTPUTF8".to_string(),
                "250-AUTH PLAIN LOGIN".to_string(),
                "250 ENHANCEDSTATUSCODES".to_string(),
            ];
            self.reply(&lines.join("\r\n")).await?;
        }
        Ok(true)
    }

    /// Any credentials are accepted; only the exchange is checked.
    async fn auth(&mut self, argument: &str) -> Io<bool> {
        let mut words = argument.split_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next();
        let prompts: &[&str] = match (mechanism.as_str(), initial) {
            ("PLAIN", None) => &["334 "],
            ("PLAIN", Some(_)) => &[],
            ("LOGIN", None) => &["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"],
            ("LOGIN", Some(_)) => &["334 UGFzc3dvcmQ6"],
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication type")
                    .await?;
                return Ok(true);
            }
        };
        for prompt in prompts {
            self.reply(prompt).await?;
            match self.line().await? {
                None => return Ok(false),
                Some(answer) if answer.trim() == "*" => {
                    self.reply("501 5.7.0 Authentication cancelled").await?;
                    return Ok(true);
                }
                Some(_) => {}
            }
        }
        self.reply("235 2.7.0 Authentication successful").await?;
        Ok(true)
    }

    async fn mail(&mut self, argument: &str) -> Io<bool> {
        let Some(from) = address(argument, "FROM:") else {
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>").await?;
            return Ok(true);
        };
        if !self.greeted {
            self.reply("503 5.5.1 Error: send HELO/EHLO first").await?;
            return Ok(true);
        }
        if self.from.is_some() {
            self.reply("503 5.5.1 Error: nested MAIL command").await?;
            return Ok(true);
        }
        if let Some(keep_going) = self.gated(SmtpStage::Mail, &from).await? {
            return Ok(keep_going);
        }
        self.from = Some(from);
        self.reply("250 2.1.0 Ok").await?;
        Ok(true)
    }

    async fn rcpt(&mut self, argument: &str) -> Io<bool> {
        let Some(to) = address(argument, "TO:") else {
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>").await?;
            return Ok(true);
        };
        if self.from.is_none() {
            self.reply("503 5.5.1 Error: need MAIL command").await?;
            return Ok(true);
        }
        if let Some(keep_going) = self.gated(SmtpStage::Rcpt, &to).await? {
            return Ok(keep_going);
        }
        self.recipients.push(to);
        self.reply("250 2.1.5 Ok").await?;
        Ok(true)
    }

    async fn data(&mut self) -> Io<bool> {
        if self.recipients.is_empty() {
            self.reply("503 5.5.1 Error: need RCPT command").await?;
            return Ok(true);
        }
        let path = self.recipients.join(",");
        if let Some(keep_going) = self.gated(SmtpStage::Data, &path).await? {
            return Ok(keep_going);
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        let mut message = String::new();
        let mut too_big = false;
        loop {
            let Some(line) = self.line().await? else {
                return Ok(false);
            };
            if line == "." {
                break;
            }
            // Dot-unstuffing: a leading dot was doubled by the client.
            let line = line.strip_prefix('.').unwrap_or(&line);
            if message.len() + line.len() + 2 > MAX_MESSAGE {
                too_big = true;
                continue;
            }
            message.push_str(line);
            message.push_str("\r\n");
        }
        let from = self.from.take().unwrap_or_default();
        let recipients = std::mem::take(&mut self.recipients);
        if too_big {
            self.reply("552 5.3.4 Message size exceeds fixed limit")
                .await?;
            return Ok(true);
        }
        let id = self.app.log.record(Received {
            service: Service::Smtp,
            method: "DATA".to_string(),
            path: path.clone(),
            query: None,
            body: mime::describe(&from, &recipients, &message),
        });
        match self.gate(SmtpStage::Message, &path, Some(id)).await? {
            Gate::Proceed => {}
            Gate::Answered => return Ok(true),
            Gate::Closed => return Ok(false),
        }
        self.reply(&format!("250 2.0.0 Ok: queued as FAKE{id:08}"))
            .await?;
        self.app.log.answered(id, 250);
        tracing::debug!(%from, to = %path, "message received");
        Ok(true)
    }
}
