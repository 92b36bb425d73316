//! Pyrus API v4 (reference §3): authentication with a token cached in PostgreSQL per login
//! (shared by every replica, refreshed once on a 401, as Pyrus' own client does — never per
//! request, which would churn Pyrus' per-user token limit), and a form's register paged by
//! task id and parsed as a stream.
use futures::StreamExt;
use jobs::JobContext;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{
    http::{CallError, ReadError, Service, Timeouts, MAX_BODY},
    json_stream::ArrayItems,
};

pub struct Pyrus {
    service: Service,
    auth_url: String,
    api_url: Option<String>,
    login: String,
    security_key: String,
    pub form_id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub value: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: i64,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub is_closed: bool,
}

impl Task {
    pub fn field(&self, id: i64) -> Option<&serde_json::Value> {
        self.fields
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.value.as_ref())
    }
}

#[derive(Deserialize)]
struct AuthAnswer {
    access_token: String,
    api_url: Option<String>,
}

/// Any 401 of the API means "authenticate again" (Pyrus' own client re-authenticates on every
/// 401, whatever its code: `expired_token`, `revoked_token`, `invalid_token`, …); once.
fn token_gone(_body: &str) -> bool {
    true
}

/// A register page as it streams in: a task, or an item that does not decode (its id if it
/// has one, and why).
pub type Item = Result<Task, (Option<i64>, String)>;

impl Pyrus {
    pub fn new(
        auth_url: &str,
        api_url: Option<&str>,
        login: &str,
        security_key: &str,
        form_id: u64,
        timeouts: Timeouts,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            service: Service::new("pyrus", auth_url, "pyrus", timeouts)?.with_secret(security_key),
            auth_url: auth_url.to_string(),
            api_url: api_url.map(str::to_string),
            login: login.to_string(),
            security_key: security_key.to_string(),
            form_id,
        })
    }

    /// The row of `integration_tokens` for this login (a new login is a new token).
    fn token_key(&self) -> String {
        format!("pyrus:{}", self.login)
    }

    async fn cached(&self, db: &PgPool) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
        sqlx::query_as("select token, api_url from integration_tokens where service = $1")
            .bind(self.token_key())
            .fetch_optional(db)
            .await
    }

    /// The cached token (and API base), authenticating if there is none.
    async fn token(&self, ctx: &JobContext) -> Result<(String, String), CallError> {
        match self.cached(ctx.db()).await.map_err(db_error)? {
            Some((token, api)) => Ok((token, self.api_base(api))),
            None => self.authenticate(ctx, None).await,
        }
    }

    fn api_base(&self, from_auth: Option<String>) -> String {
        let base = from_auth
            .or_else(|| self.api_url.clone())
            .unwrap_or_else(|| "https://api.pyrus.com/v4/".into());
        if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        }
    }

    /// A new token, unless another replica replaced `stale` meanwhile (then that one). No
    /// transaction is open across the call: the new token is stored only if the cached one is
    /// still `stale` (compare-and-set), else the other replica's newer one is used. Replicas
    /// refreshing at the same instant may each log in once — a handful of tokens a day against
    /// Pyrus' limit of 20 per login.
    async fn authenticate(
        &self,
        ctx: &JobContext,
        stale: Option<&str>,
    ) -> Result<(String, String), CallError> {
        if let Some((token, api)) = self.cached(ctx.db()).await.map_err(db_error)? {
            if stale != Some(token.as_str()) {
                return Ok((token, self.api_base(api)));
            }
        }
        let request = self
            .service
            .post(&self.auth_url)
            .json(&json!({"login": self.login, "security_key": self.security_key}));
        // A 401 here is wrong credentials: permanent.
        let response = self.service.send(ctx, request, |_| false).await?;
        let answer: AuthAnswer = self.service.json(response).await?;
        let stored: Option<(String, Option<String>)> = sqlx::query_as(
            "insert into integration_tokens as t (service, token, api_url) values ($1, $2, $3)
             on conflict (service) do update
             set token = excluded.token, api_url = excluded.api_url, updated_at = now()
             where t.token is not distinct from $4
             returning token, api_url",
        )
        .bind(self.token_key())
        .bind(&answer.access_token)
        .bind(&answer.api_url)
        .bind(stale)
        .fetch_optional(ctx.db())
        .await
        .map_err(db_error)?;
        if stored.is_none() {
            // Another replica stored a newer token meanwhile: use it (ours is simply unused).
            if let Some((token, api)) = self.cached(ctx.db()).await.map_err(db_error)? {
                return Ok((token, self.api_base(api)));
            }
        }
        tracing::info!(job.id = %ctx.id, "pyrus: authenticated, token cached for every replica");
        Ok((answer.access_token, self.api_base(answer.api_url)))
    }

    /// Up to `count` tasks of the form with an id above `after` (closed ones included), in id
    /// order, handed to `each` as they are parsed (an item that does not decode as a task too,
    /// as an error). Returns how many items. A 401 authenticates once and repeats the request.
    /// The answer is read up to [`MAX_BODY`] × 8 (a page of 1,000 tasks is ~2 MB).
    pub async fn register_page(
        &self,
        ctx: &JobContext,
        after: Option<i64>,
        count: u32,
        mut each: impl FnMut(Item),
    ) -> Result<usize, CallError> {
        let (mut token, mut api) = self.token(ctx).await?;
        let mut body = json!({"sort": "id", "item_count": count, "include_archived": "y"});
        if let Some(after) = after {
            body["id"] = json!(format!("gt{after}"));
        }
        let mut refreshed = false;
        let response = loop {
            let request = self
                .service
                .post(&format!("{api}forms/{}/register", self.form_id))
                .bearer_auth(&token)
                .json(&body);
            match self.service.send(ctx, request, token_gone).await {
                Err(CallError::AuthExpired { .. }) if !refreshed => {
                    refreshed = true;
                    (token, api) = self.authenticate(ctx, Some(&token)).await?;
                }
                Err(CallError::AuthExpired { service }) => {
                    return Err(CallError::Permanent {
                        service,
                        message: "the token was refused again right after a new authentication"
                            .into(),
                    })
                }
                other => break other?,
            }
        };
        let limit = MAX_BODY * 8;
        let mut items = ArrayItems::new("tasks");
        let mut stream = response.bytes_stream();
        let mut parsed = Vec::new();
        let mut n = 0;
        let mut read = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.service.read_error(ReadError::Broken(e)))?;
            read += chunk.len();
            if read > limit {
                return Err(self.service.read_error(ReadError::TooLarge(limit)));
            }
            items
                .feed(&chunk, &mut parsed)
                .map_err(|e| self.service.permanent(e.to_string()))?;
            for raw in parsed.drain(..) {
                n += 1;
                each(serde_json::from_slice::<Task>(&raw).map_err(|e| {
                    let id = serde_json::from_slice::<serde_json::Value>(&raw)
                        .ok()
                        .and_then(|v| v.get("id").and_then(serde_json::Value::as_i64));
                    (id, format!("the task does not decode: {e}"))
                }));
            }
        }
        if !items.finished() {
            // Cut short (a dropped connection that still ended cleanly): try again.
            return Err(CallError::Transient {
                service: "pyrus",
                message: "the register's answer ended before its `tasks` array did".into(),
            });
        }
        Ok(n)
    }
}

fn db_error(e: sqlx::Error) -> CallError {
    CallError::Job(e.into())
}
