//! Which job kinds this process runs, with their handlers and concurrency.
use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;
use jobs::{enqueue::EnqueueError, Enqueued, Job, JobContext, JobError, KindSpec, Requester};
use serde::Serialize;
use serde_json::Value;

pub(crate) type BoxHandler =
    Arc<dyn Fn(Vec<u8>, JobContext) -> BoxFuture<'static, Result<Value, JobError>> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Registered {
    pub spec: KindSpec,
    pub concurrency: usize,
    pub handler: BoxHandler,
}

pub(crate) type FireFn = Arc<
    dyn for<'c> Fn(
            &'c mut sqlx::PgConnection,
            Requester,
        ) -> BoxFuture<'c, Result<Enqueued, EnqueueError>>
        + Send
        + Sync,
>;

/// A cron schedule: enqueues its job at every tick (see [`crate::cron`]).
#[derive(Clone)]
pub(crate) struct Scheduled {
    pub name: String,
    pub expr: String,
    /// `None` when switched off (`off`).
    pub schedule: Option<cron::Schedule>,
    pub fire: FireFn,
}

/// The job kinds a worker runs and the cron schedules it drives. Production binaries use
/// [`Registry::production`]; tests may register their own kinds and schedules.
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) kinds: Vec<Registered>,
    pub(crate) schedules: Vec<Scheduled>,
    /// Schedules whose expression did not parse; [`Registry::validate`] reports them.
    invalid: Vec<String>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every production job kind with its default concurrency, and the production schedules
    /// (see [`crate::handlers::register_production`]). `retention_days`: finished jobs older
    /// than this are pruned daily.
    pub fn production(retention_days: u32, integrations: &crate::clients::Integrations) -> Self {
        crate::handlers::register_production(Self::new(), retention_days, integrations)
    }

    /// Adds a cron schedule `name` that enqueues `job` at every tick of `expr` (6 fields,
    /// seconds first, Moscow time; `off` disables it). Replaces a schedule of the same name.
    pub fn schedule<J: Job + Clone>(mut self, name: &str, expr: &str, job: J) -> Self {
        self.schedules.retain(|s| s.name != name);
        self.invalid.retain(|s| !s.starts_with(&format!("{name}:")));
        let schedule = match parse_cron(expr) {
            Ok(s) => s,
            Err(e) => {
                self.invalid.push(format!("{name}: {e}"));
                return self;
            }
        };
        let fire: FireFn = Arc::new(move |conn, requester| {
            let job = job.clone();
            Box::pin(async move { jobs::enqueue(conn, &requester, &job).await })
        });
        self.schedules.push(Scheduled {
            name: name.to_string(),
            expr: expr.to_string(),
            schedule,
            fire,
        });
        self
    }

    /// Replaces the expressions of declared schedules (`WORKER_CRON`, `name=expr` or `name=off`).
    pub fn with_cron_overrides(mut self, overrides: &[(String, String)]) -> Result<Self, String> {
        for (name, expr) in overrides {
            let Some(pos) = self.schedules.iter().position(|s| &s.name == name) else {
                let known: Vec<&str> = self.schedules.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "unknown schedule {name:?} in cron override; known: {}",
                    known.join(", ")
                ));
            };
            let s = &mut self.schedules[pos];
            s.schedule = parse_cron(expr).map_err(|e| format!("{name}: {e}"))?;
            s.expr = expr.clone();
        }
        Ok(self)
    }

    /// Errors collected while declaring schedules.
    pub fn validate(&self) -> Result<(), String> {
        if self.invalid.is_empty() {
            Ok(())
        } else {
            Err(self.invalid.join("; "))
        }
    }

    /// Names of the schedules that are on.
    pub fn schedule_names(&self) -> Vec<String> {
        self.schedules
            .iter()
            .filter(|s| s.schedule.is_some())
            .map(|s| s.name.clone())
            .collect()
    }

    /// Adds a kind: `handler` gets the decoded payload and the job's context; its `Ok` value
    /// becomes the job's result JSON. A payload that does not decode fails the job for good.
    pub fn register<J, F, Fut, R>(mut self, concurrency: usize, handler: F) -> Self
    where
        J: Job,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, JobError>> + Send + 'static,
        R: Serialize,
    {
        let handler = Arc::new(handler);
        let boxed: BoxHandler = Arc::new(move |payload: Vec<u8>, ctx: JobContext| {
            let handler = handler.clone();
            Box::pin(async move {
                let job: J = serde_json::from_slice(&payload).map_err(|e| {
                    JobError::permanent(format!("payload does not match {}: {e}", J::KIND))
                })?;
                let output = handler(job, ctx).await?;
                serde_json::to_value(output)
                    .map_err(|e| JobError::permanent(format!("cannot encode result: {e}")))
            })
        });
        self.kinds.retain(|k| k.spec.kind != J::KIND);
        self.kinds.push(Registered {
            spec: KindSpec::of::<J>(),
            concurrency: concurrency.max(1),
            handler: boxed,
        });
        self
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.spec.kind).collect()
    }

    /// Keeps only the named kinds (`--queues`); an unknown name is an error.
    pub fn only(mut self, queues: &[String]) -> Result<Self, String> {
        if queues.is_empty() {
            return Ok(self);
        }
        for q in queues {
            if !self.kinds.iter().any(|k| k.spec.kind == q) {
                return Err(format!(
                    "unknown queue {q:?}; known: {}",
                    self.kinds().join(", ")
                ));
            }
        }
        self.kinds
            .retain(|k| queues.iter().any(|q| q == k.spec.kind));
        Ok(self)
    }

    /// Overrides concurrency per kind (`kind=n`).
    pub fn with_concurrency(mut self, overrides: &[(String, usize)]) -> Result<Self, String> {
        for (kind, n) in overrides {
            let Some(k) = self.kinds.iter_mut().find(|k| k.spec.kind == kind) else {
                return Err(format!("unknown queue {kind:?} in concurrency override"));
            };
            k.concurrency = (*n).max(1);
        }
        Ok(self)
    }
}

/// `off` → `None`; otherwise a 6- or 7-field cron expression (seconds first).
fn parse_cron(expr: &str) -> Result<Option<cron::Schedule>, String> {
    if expr.trim() == "off" {
        return Ok(None);
    }
    expr.parse::<cron::Schedule>()
        .map(Some)
        .map_err(|e| format!("bad cron expression {expr:?}: {e}"))
}
