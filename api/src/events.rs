//! The SSE hub: one reader per api process tells open job streams when their job has new
//! events, and caps how many streams one user holds.
//!
//! Before, each stream read its job's events every 200 ms: 500 open streams were 2,500 queries
//! a second doing nothing. Now one task reads, every [`TICK`] and only while a stream is open,
//! which jobs got events since its cursor (`job_events` primary-key range: one indexed query
//! per process whatever the number of streams) and wakes those streams; a woken stream reads
//! its own events after its own last id, so it never skips one. Identity values are taken at
//! insert and become visible at commit, so a transaction committing late can land an event
//! below the hub's cursor: each stream therefore also re-reads on its own every
//! [`FALLBACK`] (25× rarer than the old poll).
//!
//! LISTEN/NOTIFY was measured against for this: a notification per job-event statement would
//! put the notify queue's global lock into every claim, progress write and outcome of the
//! queue's hot path (10,000+ jobs/s), to serve the few jobs someone is watching.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the hub looks for new events while streams are open.
pub const TICK: Duration = Duration::from_millis(200);
/// How often a stream re-reads its job's events without a wake.
pub const FALLBACK: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Inner {
    /// Job id → the wakers of its open streams.
    streams: HashMap<String, Vec<Weak<Notify>>>,
    /// User → open streams in this process.
    per_user: HashMap<Uuid, usize>,
    running: bool,
}

pub struct EventHub {
    db: PgPool,
    per_user_cap: usize,
    stop: CancellationToken,
    inner: Arc<Mutex<Inner>>,
}

/// An open stream's place in the hub: its waker; dropping it frees the user's slot.
pub struct Subscription {
    pub wake: Arc<Notify>,
    user: Uuid,
    job: String,
    inner: Arc<Mutex<Inner>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = lock(&self.inner);
        if let Some(n) = inner.per_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_user.remove(&self.user);
            }
        }
        if let Some(wakers) = inner.streams.get_mut(&self.job) {
            wakers.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), &*self.wake));
            if wakers.is_empty() {
                inner.streams.remove(&self.job);
            }
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventHub {
    pub fn new(db: PgPool, per_user_cap: usize, stop: CancellationToken) -> Self {
        Self {
            db,
            per_user_cap,
            stop,
            inner: Arc::default(),
        }
    }

    /// Opens a stream of `job` for `user`, or `None` when the user already holds the cap.
    pub fn subscribe(&self, user: Uuid, job: &str) -> Option<Subscription> {
        let wake = Arc::new(Notify::new());
        let start = {
            let mut inner = lock(&self.inner);
            let open = inner.per_user.entry(user).or_default();
            if *open >= self.per_user_cap {
                return None;
            }
            *open += 1;
            inner
                .streams
                .entry(job.to_string())
                .or_default()
                .push(Arc::downgrade(&wake));
            !std::mem::replace(&mut inner.running, true)
        };
        if start {
            tokio::spawn(run(self.db.clone(), self.inner.clone(), self.stop.clone()));
        }
        Some(Subscription {
            wake,
            user,
            job: job.to_string(),
            inner: self.inner.clone(),
        })
    }

    /// Streams open in this process (for tests and the ops page).
    pub fn open_streams(&self) -> usize {
        lock(&self.inner).per_user.values().sum()
    }
}

/// The hub's reader: runs while streams are open, then stops (the next subscriber restarts it).
async fn run(db: PgPool, inner: Arc<Mutex<Inner>>, stop: CancellationToken) {
    let mut cursor: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.cancelled() => break,
        }
        {
            let mut guard = lock(&inner);
            if guard.streams.is_empty() {
                guard.running = false;
                return;
            }
        }
        let watched: Vec<String> = lock(&inner).streams.keys().cloned().collect();
        let read = match cursor {
            // The hub starts from now and wakes every stream once: whatever committed between
            // a stream's first read and this one is read by the stream itself.
            None => sqlx::query_scalar::<_, Option<i64>>("select max(id) from job_events")
                .fetch_one(&db)
                .await
                .map(|max| {
                    cursor = Some(max.unwrap_or(0));
                    watched
                }),
            // Every new event moves the cursor (a busy queue's events are read once, not
            // again at each tick); only watched jobs are named.
            Some(after) => sqlx::query_as::<_, (Option<i64>, Vec<String>)>(
                "select max(id), coalesce(array_agg(distinct job_id)
                                              filter (where job_id = any($2)), '{}')
                 from job_events where id > $1",
            )
            .bind(after)
            .bind(&watched)
            .fetch_one(&db)
            .await
            .map(|(top, changed)| {
                if let Some(top) = top {
                    cursor = Some(top);
                }
                changed
            }),
        };
        match read {
            Ok(changed) => {
                let guard = lock(&inner);
                for job in &changed {
                    for waker in guard.streams.get(job).into_iter().flatten() {
                        if let Some(n) = waker.upgrade() {
                            n.notify_one();
                        }
                    }
                }
            }
            // Streams fall back to their own reads meanwhile.
            Err(error) => tracing::warn!(%error, "SSE hub: cannot read job events"),
        }
    }
    lock(&inner).running = false;
}
