//! Pyrus API v4 (reference §3): authentication with a token cached in PostgreSQL (shared by
//! every replica, refreshed once on a 401 that says it expired or was revoked — never per
//! request, which would churn Pyrus' per-user token limit), and a form's register paged by
//! task id and parsed as a stream.
use futures::StreamExt;
use jobs::JobContext;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use super::{
    http::{CallError, Service, Timeouts},
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

/// The 401 bodies that mean "authenticate again" (reference §3.1).
fn token_gone(body: &str) -> bool {
    [
        "expired_token",
        "revoked_token",
        "invalid_token",
        "token_not_specified",
    ]
    .iter()
    .any(|code| body.contains(code))
}

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
            service: Service::new("pyrus", auth_url, "pyrus", timeouts)?,
            auth_url: auth_url.to_string(),
            api_url: api_url.map(str::to_string),
            login: login.to_string(),
            security_key: security_key.to_string(),
            form_id,
        })
    }

    async fn cached(db: &PgPool) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
        sqlx::query_as("select token, api_url from integration_tokens where service = 'pyrus'")
            .fetch_optional(db)
            .await
    }

    /// The cached token (and API base), authenticating if there is none.
    async fn token(&self, ctx: &JobContext) -> Result<(String, String), CallError> {
        match Self::cached(ctx.db()).await.map_err(db_error)? {
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

    /// A new token, unless another replica replaced `stale` meanwhile (then that one). Under a
    /// transaction-level advisory lock, so replicas never authenticate at the same time.
    async fn authenticate(
        &self,
        ctx: &JobContext,
        stale: Option<&str>,
    ) -> Result<(String, String), CallError> {
        let mut tx = ctx.db().begin().await.map_err(db_error)?;
        sqlx::query("select pg_advisory_xact_lock(hashtext('integration-token:pyrus'))")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let current: Option<(String, Option<String>)> =
            sqlx::query_as("select token, api_url from integration_tokens where service = 'pyrus'")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        if let Some((token, api)) = current {
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
        sqlx::query(
            "insert into integration_tokens (service, token, api_url) values ('pyrus', $1, $2)
             on conflict (service) do update
             set token = excluded.token, api_url = excluded.api_url, updated_at = now()",
        )
        .bind(&answer.access_token)
        .bind(&answer.api_url)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        tracing::info!(job.id = %ctx.id, "pyrus: authenticated, token cached for every replica");
        Ok((answer.access_token, self.api_base(answer.api_url)))
    }

    /// Up to `count` tasks of the form with an id above `after` (closed ones included), in id
    /// order, handed to `each` as they are parsed. Returns how many. A 401 about the token
    /// authenticates once and repeats the request.
    pub async fn register_page(
        &self,
        ctx: &JobContext,
        after: Option<i64>,
        count: u32,
        mut each: impl FnMut(Task),
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
        let mut items = ArrayItems::new("tasks");
        let mut stream = response.bytes_stream();
        let mut parsed = Vec::new();
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CallError::Transient {
                service: "pyrus",
                message: format!("reading the register: {e}"),
            })?;
            items
                .feed(&chunk, &mut parsed)
                .map_err(|e| self.service.permanent(e.to_string()))?;
            for raw in parsed.drain(..) {
                let task: Task = serde_json::from_slice(&raw)
                    .map_err(|e| self.service.permanent(format!("undecodable task: {e}")))?;
                n += 1;
                each(task);
            }
        }
        if !items.finished() {
            return Err(self
                .service
                .permanent("the register's answer has no complete `tasks` array"));
        }
        Ok(n)
    }
}

fn db_error(e: sqlx::Error) -> CallError {
    CallError::Job(e.into())
}
