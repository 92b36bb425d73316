//! Which job kinds this process runs, with their handlers and concurrency.
use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;
use jobs::{Job, JobContext, JobError, KindSpec};
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

/// The job kinds a worker runs. Production binaries use [`Registry::production`]; tests may
/// register their own kinds.
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) kinds: Vec<Registered>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every production job kind with its default concurrency.
    pub fn production() -> Self {
        Self::new()
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
