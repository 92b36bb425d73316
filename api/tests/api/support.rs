//! Test harness: the real api on 127.0.0.1:0 and a real in-process worker runtime over a fresh
//! database, plus test-only job kinds. Tests talk to the api over HTTP.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Datelike;
use clap::Parser;
use jobs::{Job, JobContext, JobError, Requester};
use reqwest::{Client, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::{Registry, Runtime, RuntimeConfig};

pub struct TestApp {
    pub base: String,
    pub db: PgPool,
    pub http: Client,
    shutdown: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
/// The bearer token of `/metrics` in tests (`METRICS_TOKEN`).
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

/// Last month (Moscow calendar): inside the export window whenever the tests run.
pub fn last_month() -> shared::time::Month {
    let first = shared::time::today()
        .with_day(1)
        .expect("every month has a first day");
    shared::time::Month::of(first - chrono::Days::new(1))
}

pub fn api_config(extra: &[&str]) -> api::ApiConfig {
    let defaults = [
        ("--jwt-secret", SECRET),
        ("--rate-limit", "100000/60s"),
        ("--login-rate-limit", "100000/60s"),
        ("--status-rate-limit", "100000/60s"),
        ("--metrics-token", METRICS_TOKEN),
    ];
    let mut args = vec!["artsvao-api"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    api::ApiConfig::parse_from(args)
}

pub fn fast_runtime() -> RuntimeConfig {
    RuntimeConfig {
        poll_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(500),
        dead_after: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(5),
        claim_batch: 50,
    }
}

impl TestApp {
    /// The api plus a worker running `registry`.
    pub async fn spawn(db: PgPool, registry: Registry) -> Self {
        Self::spawn_with(db, Some(registry), api_config(&[])).await
    }

    /// The api alone (no worker), with a given config.
    pub async fn spawn_with(
        db: PgPool,
        registry: Option<Registry>,
        config: api::ApiConfig,
    ) -> Self {
        shared::telemetry::init_for_tests();
        jobs::engine::migrate(&db).await.expect("migrate");
        let state = api::state(&config, db.clone()).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(api::serve(listener, state, shutdown.clone()));
        let mut app = Self {
            base,
            db,
            http: Client::new(),
            shutdown,
            workers: Vec::new(),
        };
        if let Some(registry) = registry {
            app.start_worker(registry);
        }
        app
    }

    /// Starts one more worker runtime (its own process identity) on the same database.
    pub fn start_worker(&mut self, registry: Registry) {
        let runtime = Runtime::new(self.db.clone(), self.db.clone(), registry, fast_runtime());
        let stop = self.shutdown.clone();
        self.workers.push(tokio::spawn(runtime.run(stop)));
    }

    /// Starts one more worker runtime whose jobs share `limiter` (global rate limits).
    pub fn start_worker_with_limiter(&mut self, registry: Registry, limiter: jobs::Limiter) {
        let runtime = Runtime::new(self.db.clone(), self.db.clone(), registry, fast_runtime())
            .with_limiter(limiter);
        let stop = self.shutdown.clone();
        self.workers.push(tokio::spawn(runtime.run(stop)));
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for w in self.workers {
            let _ = w.await;
        }
    }

    /// Creates a user with the role and returns (id, bearer token) obtained by a real login.
    pub async fn user(&self, role: &str) -> (Uuid, String) {
        let email = format!("{role}-{}@artsvao.test", Uuid::new_v4());
        let id = api::auth::upsert_user(
            &self.db,
            &email,
            "correct horse battery",
            api::auth::Role::parse(role).unwrap(),
        )
        .await
        .unwrap();
        let res = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        (id, body["access_token"].as_str().unwrap().to_string())
    }

    pub async fn get(&self, token: &str, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Response {
        self.http
            .patch(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Enqueues a job as `user` the way an api handler does: inside a transaction.
    pub async fn enqueue<J: Job>(&self, user: Uuid, job: J) -> String {
        let mut tx = self.db.begin().await.unwrap();
        let requester = Requester {
            user_id: Some(user),
            request_id: Some("test-request".into()),
        };
        let out = jobs::enqueue(&mut tx, &requester, &job).await.unwrap();
        tx.commit().await.unwrap();
        jobs::committed(std::slice::from_ref(&out));
        out.job_id
    }

    /// Polls `GET /api/jobs/{id}` until `done(status)` or the deadline.
    pub async fn wait_until(
        &self,
        token: &str,
        id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let res = self.get(token, &format!("/api/jobs/{id}")).await;
            assert_eq!(res.status(), StatusCode::OK);
            let status: Value = res.json().await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state in {within:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the job is running (10 s at most).
    pub async fn wait_running(&self, token: &str, id: &str) -> Value {
        self.wait_until(token, id, Duration::from_secs(10), |s| {
            s["state"] == "running"
        })
        .await
    }

    pub async fn wait_terminal(&self, token: &str, id: &str, within: Duration) -> Value {
        self.wait_until(token, id, within, |s| {
            matches!(
                s["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

/// POSTs and asserts a 2xx answer; returns its JSON body.
pub async fn ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = app.post(token, path, body).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Asserts the JSON error shape and returns its `error` object.
pub async fn error_body(res: Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"].clone()
}

/// When each attempt of a test job started, shared between the handler and the test.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<Mutex<Vec<(String, u32, Instant)>>>);

impl Calls {
    pub fn record(&self, ctx: &JobContext) {
        self.0
            .lock()
            .unwrap()
            .push((ctx.id.clone(), ctx.attempt, Instant::now()));
    }
    pub fn of(&self, id: &str) -> Vec<(u32, Instant)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| (c.1, c.2))
            .collect()
    }
}

/// Fails (transiently) on its first `fail_times` attempts, then succeeds.
#[derive(Serialize, Deserialize)]
pub struct Flaky {
    pub fail_times: u32,
}
impl Job for Flaky {
    const KIND: &'static str = "test_flaky";
    const TIMEOUT: Duration = Duration::from_secs(5);
    const BACKOFF_BASE: Duration = Duration::from_millis(400);
}

/// Always fails permanently.
#[derive(Serialize, Deserialize)]
pub struct Broken;
impl Job for Broken {
    const KIND: &'static str = "test_broken";
    const TIMEOUT: Duration = Duration::from_secs(5);
}

/// Sleeps past its 300 ms timeout.
#[derive(Serialize, Deserialize)]
pub struct Sleepy {
    pub millis: u64,
}
impl Job for Sleepy {
    const KIND: &'static str = "test_sleepy";
    const MAX_ATTEMPTS: u32 = 2;
    const TIMEOUT: Duration = Duration::from_millis(300);
    const BACKOFF_BASE: Duration = Duration::from_millis(100);
}

/// Reports progress in `steps` steps `step_ms` apart; each report is a cancel checkpoint.
#[derive(Clone, Serialize, Deserialize)]
pub struct Steps {
    pub steps: u8,
    pub step_ms: u64,
}
impl Steps {
    pub fn new(steps: u8, step_ms: u64) -> Self {
        Self { steps, step_ms }
    }
}
impl Job for Steps {
    const KIND: &'static str = "test_steps";
    const TIMEOUT: Duration = Duration::from_secs(60);
}

pub fn test_registry(calls: &Calls) -> Registry {
    let (c1, c2, c3, c4) = (calls.clone(), calls.clone(), calls.clone(), calls.clone());
    Registry::new()
        .register(4, move |job: Flaky, ctx: JobContext| {
            let calls = c1.clone();
            async move {
                calls.record(&ctx);
                if ctx.attempt <= job.fail_times {
                    return Err(JobError::transient(format!(
                        "flaky failure on attempt {}",
                        ctx.attempt
                    )));
                }
                Ok(json!({"attempt": ctx.attempt}))
            }
        })
        .register(4, move |_: Broken, ctx: JobContext| {
            let calls = c2.clone();
            async move {
                calls.record(&ctx);
                Err::<(), _>(JobError::permanent("the timesheet template is missing"))
            }
        })
        .register(4, move |job: Sleepy, ctx: JobContext| {
            let calls = c3.clone();
            async move {
                calls.record(&ctx);
                tokio::time::sleep(Duration::from_millis(job.millis)).await;
                Ok(())
            }
        })
        .register(4, move |job: Steps, ctx: JobContext| {
            let calls = c4.clone();
            async move {
                calls.record(&ctx);
                for i in 1..=job.steps {
                    tokio::time::sleep(Duration::from_millis(job.step_ms)).await;
                    let pct = (u32::from(i) * 100 / u32::from(job.steps)) as u8;
                    ctx.progress(pct, format!("step {i} of {}", job.steps))
                        .await?;
                }
                Ok(json!({"steps": job.steps}))
            }
        })
}

/// Counts the statements sqlx runs on this thread (`sqlx::query` events). `sqlx::test` runs
/// the test, the api and its handlers on one current-thread runtime, so a thread-local
/// subscriber sees every statement of a request.
pub fn count_statements() -> (
    Arc<std::sync::atomic::AtomicUsize>,
    tracing::subscriber::DefaultGuard,
) {
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt, Layer};
    struct Counter(Arc<std::sync::atomic::AtomicUsize>);
    impl<S: tracing::Subscriber> Layer<S> for Counter {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() == "sqlx::query" {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(
        Counter(count.clone())
            .with_filter(Targets::new().with_target("sqlx::query", tracing::Level::TRACE)),
    );
    (count, tracing::subscriber::set_default(subscriber))
}
