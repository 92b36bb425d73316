//! Test harness: starts the fakes in-process on ephemeral ports and talks to them over HTTP and
//! raw SMTP.

use std::time::Duration;

use clap::Parser;
use fakes::{Config, Running};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub const TELEGRAM_TOKEN: &str = "123456789:AAFakeTelegramTokenForArtsvaoTests1";
pub const TIMEPAD_TOKEN: &str = "fakes-timepad-token";
pub const NOVOFON_TOKEN: &str = "fakes-novofon-access-token";

pub struct Fakes {
    pub running: Running,
    pub http: reqwest::Client,
    pub base: String,
}

impl Drop for Fakes {
    fn drop(&mut self) {
        self.running.abort();
    }
}

impl Fakes {
    /// Defaults plus `args`, on 127.0.0.1:0 for both listeners.
    pub async fn start(args: &[&str]) -> Self {
        let mut argv = vec![
            "artsvao-fakes",
            "--http-addr",
            "127.0.0.1:0",
            "--smtp-addr",
            "127.0.0.1:0",
            "--timepad-token",
            TIMEPAD_TOKEN,
            "--novofon-access-token",
            NOVOFON_TOKEN,
            "--telegram-bot-token",
            TELEGRAM_TOKEN,
            "--pyrus-login",
            "bot@artsvao.example",
            "--pyrus-security-key",
            "key",
        ];
        argv.extend_from_slice(args);
        let running = fakes::start(Config::parse_from(argv))
            .await
            .expect("the fakes start");
        let base = format!("http://{}", running.http_addr);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client");
        Self {
            running,
            http,
            base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn telegram(&self, method: &str) -> String {
        self.url(&format!("/telegram/bot{TELEGRAM_TOKEN}/{method}"))
    }

    pub async fn answer(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.expect("the request is answered")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        Self::answer(
            self.http
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("the request is answered"),
        )
        .await
    }

    /// Registers a fault and returns it (with its id).
    pub async fn fault(&self, spec: Value) -> Value {
        let (status, fault) = self.post("/_fakes/faults", &spec).await;
        assert_eq!(status, 201, "fault refused: {fault}");
        fault
    }

    pub async fn requests(&self, service: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/_fakes/requests?service={service}"), None)
            .await;
        assert_eq!(status, 200);
        body["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn smtp(&self) -> Smtp {
        let stream = TcpStream::connect(self.running.smtp_addr)
            .await
            .expect("smtp connects");
        let (read, write) = stream.into_split();
        Smtp {
            reader: BufReader::new(read),
            writer: write,
        }
    }
}

/// A raw SMTP client: sends lines, reads (multi-line) replies.
pub struct Smtp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Smtp {
    /// The last line of the next reply (`250-…` continuation lines skipped); empty at EOF.
    pub async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                    .await
                    .expect("an smtp reply in time")
                    .expect("smtp reads");
            if read == 0 {
                return String::new();
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("smtp writes");
    }

    pub async fn command(&mut self, line: &str) -> String {
        self.send(line).await;
        self.reply().await
    }
}
