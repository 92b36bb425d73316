//! The browser pages, server-rendered HTML in Russian with a little JavaScript (no build step):
//! `/login`, «Мои задачи» (`/jobs`: the user's jobs with live progress over SSE, downloads,
//! cancel, the timesheet order form) and the ops dashboard (`/ops`, admins).
//!
//! Sessions: `POST /login` sets the `HttpOnly`, `SameSite=Strict` cookie `artsvao_session`
//! (a token for the pages only: the API routes read only the bearer header, so the cookie
//! opens nothing there). Forms post back to the pages; `SameSite=Strict` keeps other sites'
//! forms from carrying the cookie, and a cross-origin `Origin` header is refused as well.
//! The pages use the same domain calls as the API: nothing here is a second implementation.
use axum::{
    extract::{FromRequestParts, Path, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use jobs::ledger::{self, JobRun, ListFilter};
use shared::domain::page::PageRequest;
use uuid::Uuid;

use crate::{
    auth::{authenticate, CurrentUser, Role},
    http::ApiError,
    routes::{
        admin,
        exports::{order_timesheet, TimesheetRequest},
        jobs::{parse_id, JobStatus},
    },
    state::AppState,
};

mod html;
use html::{esc, layout};

pub const COOKIE: &str = "artsvao_session";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/jobs", get(jobs_page))
        .route("/jobs/timesheet", post(order))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/status", get(status))
        .route("/jobs/{id}/download", get(download))
        .route("/ops", get(ops_page))
        .route("/ops/jobs/{id}/retry", post(retry_one))
        .route("/ops/jobs/retry", post(retry_kind))
        .layer(axum::middleware::map_response(page_headers))
}

/// Pages hold signed links and personal data: never cached, never framed, scripts and styles
/// only from the page itself.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response
}

/// A page failure: no session → the login page; anything else → an HTML page with the status.
pub enum PageError {
    Login,
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthorized => Self::Login,
            other => Self::Api(other),
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::Api(error) => {
                let what = match &error {
                    ApiError::Forbidden => "Эта страница доступна только администраторам.".into(),
                    ApiError::NotFound => "Такой задачи нет.".into(),
                    ApiError::Conflict(m) => format!("Не получилось: {m}"),
                    ApiError::Validation(fields) => fields
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                    ApiError::TooManyRequests { .. } | ApiError::Overloaded { .. } => {
                        "Слишком много запросов. Повторите через минуту.".into()
                    }
                    _ => "Сервис временно недоступен. Повторите позже.".into(),
                };
                // The API's response gives the status and headers (Retry-After) and logs once.
                let mut response = error.into_response();
                let body = layout(
                    "Ошибка",
                    None,
                    &format!(
                        "<h1>Ошибка {}</h1><p class=\"error\">{}</p><p><a href=\"/jobs\">Мои задачи</a></p>",
                        response.status().as_u16(),
                        esc(&what)
                    ),
                );
                *response.body_mut() = axum::body::Body::from(body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
        }
    }
}

/// The user of the page session cookie (active now), else a redirect to `/login`.
pub struct PageUser(pub CurrentUser);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, PageError> {
        let (user, version) = session_cookie(&parts.headers)
            .and_then(|t| app.tokens.verify_session(t))
            .ok_or(PageError::Login)?;
        Ok(Self(CurrentUser::active(app, user, version).await?))
    }
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// A form post must come from our own pages: an `Origin` naming another host is refused
/// (browsers send it on POST; `SameSite=Strict` already keeps the cookie off cross-site posts).
fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    if origin_host == host {
        Ok(())
    } else {
        tracing::warn!(origin, host, "page form from another origin refused");
        Err(PageError::Api(ApiError::Forbidden))
    }
}

/// Most fields a page form may send (a multiple select sends one per choice; the order form
/// takes at most `MAX_GROUPS`): the rest is ignored, not collected.
const MAX_FORM_FIELDS: usize = crate::routes::exports::MAX_GROUPS + 10;

/// A form body's fields, repeated names kept; a field holding NUL (`%00`, which PostgreSQL
/// cannot store) is a 422 naming it.
fn form(body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body)
        .take(MAX_FORM_FIELDS)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(name) = crate::http::extract::nul_field(&fields) {
        return Err(PageError::Api(ApiError::field(
            &name,
            "must not contain the NUL character",
        )));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// ----- login -----

/// A page's query string, read leniently: the first value of each name (a repeated, unknown
/// or undecodable parameter never makes an error page).
pub struct PageQuery(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Self(
            form_urlencoded::parse(query.as_bytes())
                .take(20)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

impl PageQuery {
    fn get(&self, name: &str) -> Option<&str> {
        field(&self.0, name)
    }
}

async fn login_form(q: PageQuery) -> Html<String> {
    Html(login_html(
        q.get("error").map(|_| "Неверная почта или пароль."),
        "",
    ))
}

fn login_html(error: Option<&str>, email: &str) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    layout(
        "Вход",
        None,
        &format!(
            "<h1>Вход в CRM АРТСВАО</h1>{error}
<form method=\"post\" action=\"/login\" class=\"card narrow\">
  <label>Электронная почта <input type=\"email\" name=\"email\" id=\"email\" value=\"{}\" required autofocus></label>
  <label>Пароль <input type=\"password\" name=\"password\" id=\"password\" required></label>
  <button type=\"submit\" id=\"login\">Войти</button>
</form>",
            esc(email)
        ),
    )
}

#[tracing::instrument(skip_all)]
async fn login(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    let fields = match form(&body) {
        Ok(fields) => fields,
        Err(e) => return e.into_response(),
    };
    let email = field(&fields, "email").unwrap_or("").trim().to_string();
    let password = field(&fields, "password").unwrap_or("").to_string();
    if email.is_empty() || password.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Html(login_html(Some("Введите почту и пароль."), &email)),
        )
            .into_response();
    }
    let user = match authenticate(&app, &email, password).await {
        Ok(found) => found,
        Err(ApiError::Unauthorized) => {
            return (
                StatusCode::UNAUTHORIZED,
                Html(login_html(Some("Неверная почта или пароль."), &email)),
            )
                .into_response()
        }
        Err(other) => return PageError::Api(other).into_response(),
    };
    let token = match app.tokens.sign_session(user.id, user.token_version) {
        Ok(t) => t,
        Err(e) => return PageError::Api(e).into_response(),
    };
    let secure = if app.settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        app.tokens.ttl_secs
    );
    let mut response = Redirect::to("/jobs").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(headers: HeaderMap) -> Response {
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("artsvao_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

// ----- «Мои задачи» -----

/// Job kinds as people call them.
fn kind_label(kind: &str) -> &str {
    match kind {
        "timesheet_export" => "Табель посещаемости",
        "bulk_schedule" => "Расписание на период",
        "timepad_import" => "Импорт из Timepad",
        "pyrus_sync" => "Импорт из Pyrus",
        "call" => "Звонок",
        "notification" => "Уведомление",
        "broadcast" => "Рассылка",
        "lesson_reminders" => "Напоминания о занятиях",
        "end_subscriptions" => "Окончание абонементов",
        "prune_jobs" => "Очистка старых задач",
        other => other,
    }
}

fn state_label(state: &str) -> &str {
    match state {
        "queued" => "в очереди",
        "running" => "выполняется",
        "succeeded" => "готово",
        "failed" => "ошибка",
        "cancelled" => "отменено",
        other => other,
    }
}

fn moscow(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&shared::time::MOSCOW)
        .format("%d.%m.%Y %H:%M")
        .to_string()
}

#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn jobs_page(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    q: PageQuery,
) -> Result<Html<String>, PageError> {
    let runs = ledger::list(
        &app.db,
        Some(user.id),
        &ListFilter::default(),
        PageRequest::default(),
    )
    .await?;
    let mut rows = String::new();
    for run in runs.items {
        let highlighted = q.get("job") == Some(run.id.as_str());
        rows.push_str(&job_row(&app, &user, run, highlighted)?);
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"5\" class=\"muted\">Задач пока нет.</td></tr>".into();
    }
    let groups = groups_for(&app, &user).await?;
    let options: String = groups
        .iter()
        .map(|(id, name)| format!("<option value=\"{id}\">{}</option>", esc(name)))
        .collect();
    let error = q
        .get("error")
        .map(|e| format!("<p class=\"error\" id=\"order-error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let month = shared::time::today().format("%Y-%m");
    let body = format!(
        "<h1>Мои задачи</h1>
<section class=\"card\">
<h2>Заказать табель посещаемости</h2>{error}
<form method=\"post\" action=\"/jobs/timesheet\" id=\"order-form\">
  <label>Месяц <input type=\"month\" name=\"month\" id=\"month\" value=\"{month}\" required></label>
  <fieldset><legend>Группы</legend>
    <label><input type=\"radio\" name=\"scope\" value=\"all\" checked> {all}</label>
    <label><input type=\"radio\" name=\"scope\" value=\"chosen\"> выбранные:</label>
    <select name=\"group_ids\" id=\"group_ids\" multiple size=\"6\">{options}</select>
  </fieldset>
  <button type=\"submit\" id=\"order\">Заказать табель</button>
</form>
</section>
<table class=\"jobs\" id=\"jobs\">
<thead><tr><th>Задача</th><th>Создана</th><th>Состояние</th><th>Ход</th><th></th></tr></thead>
<tbody>{rows}</tbody>
</table>
<script>{script}</script>",
        script = html::JOBS_SCRIPT,
        all = if user.role == Role::Teacher {
            "все мои группы"
        } else {
            "все группы"
        },
    );
    Ok(Html(layout("Мои задачи", Some(&user), &body)))
}

/// One job's table row; its `data-events` link (signed for this user) feeds the live bar.
fn job_row(
    app: &AppState,
    user: &CurrentUser,
    run: JobRun,
    highlighted: bool,
) -> Result<String, ApiError> {
    let terminal = run.is_terminal();
    let status = JobStatus::of(run, app, user)?;
    let download = if status.artifact_url.is_some() {
        format!(
            "<a class=\"download button\" href=\"/jobs/{}/download\" download>Скачать</a>",
            esc(&status.id)
        )
    } else {
        String::new()
    };
    let cancel = if terminal {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"/jobs/{}/cancel\" class=\"cancel\"><button type=\"submit\">Отменить</button></form>",
            esc(&status.id)
        )
    };
    let message = status
        .error
        .as_deref()
        .map(|e| format!("<div class=\"error\">{}</div>", esc(e)))
        .or_else(|| {
            status
                .progress
                .message
                .as_deref()
                .map(|m| format!("<div class=\"muted\">{}</div>", esc(m)))
        })
        .unwrap_or_default();
    Ok(format!(
        "<tr id=\"job-{id}\" class=\"job{new}\" data-id=\"{id}\" data-state=\"{state}\" data-events=\"{events}\">
<td>{kind}<div class=\"muted\">{id}</div></td>
<td>{created}</td>
<td class=\"state\">{state_label}</td>
<td class=\"progress-cell\"><progress max=\"100\" value=\"{pct}\"></progress> <span class=\"pct\">{pct} %</span><div class=\"message\">{message}</div></td>
<td class=\"actions\">{download}{cancel}</td>
</tr>",
        id = esc(&status.id),
        new = if highlighted { " new" } else { "" },
        state = esc(&status.state),
        events = esc(&status.events_url),
        kind = esc(kind_label(&status.kind)),
        created = moscow(status.created_at),
        state_label = esc(state_label(&status.state)),
        pct = status.progress.percent,
    ))
}

/// The groups a user may order a timesheet for (a teacher: their own; first 200 by name).
async fn groups_for(app: &AppState, user: &CurrentUser) -> Result<Vec<(Uuid, String)>, ApiError> {
    let teacher = if user.role == Role::Teacher {
        let own = shared::domain::groups::ownership(&app.db, user.id, &[], None)
            .await?
            .own_teacher;
        match own {
            Some(t) => Some(t),
            None => return Ok(Vec::new()),
        }
    } else {
        None
    };
    let page = PageRequest {
        limit: PageRequest::MAX_LIMIT,
        offset: 0,
    };
    Ok(shared::domain::groups::list(&app.db, teacher, None, page)
        .await?
        .items
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect())
}

/// The order form: the same checks and job as `POST /api/exports/timesheets`; lands on the
/// new (or the identical open) job's row.
#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn order(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    let fields = form(&body)?;
    let chosen = field(&fields, "scope") == Some("chosen");
    let mut group_ids = Vec::new();
    let mut bad = false;
    for (_, v) in fields.iter().filter(|(k, _)| k == "group_ids") {
        match Uuid::parse_str(v) {
            Ok(id) => group_ids.push(id),
            Err(_) => bad = true,
        }
    }
    let back = |message: &str| redirect_with("/jobs", "error", message);
    if bad {
        return Ok(back("Выбрана неизвестная группа."));
    }
    if group_ids.len() > crate::routes::exports::MAX_GROUPS {
        return Ok(back("Слишком много групп: выберите «все группы»."));
    }
    if chosen && group_ids.is_empty() {
        return Ok(back("Выберите хотя бы одну группу или «все группы»."));
    }
    let request = TimesheetRequest {
        month: field(&fields, "month").unwrap_or("").trim().to_string(),
        group_ids: chosen.then_some(group_ids),
        teacher_id: None,
    };
    match order_timesheet(&app, &user, &headers, request).await {
        Ok(enqueued) => Ok(
            Redirect::to(&format!("/jobs?job={id}#job-{id}", id = enqueued.job_id)).into_response(),
        ),
        Err(ApiError::Validation(fields)) => {
            let text = fields
                .iter()
                .map(|(k, v)| {
                    let name = match k.as_str() {
                        "month" => "Месяц",
                        "group_ids" => "Группы",
                        other => other,
                    };
                    format!("{name}: {v}")
                })
                .collect::<Vec<_>>()
                .join("; ");
            Ok(back(&text))
        }
        Err(other) => Err(other.into()),
    }
}

#[tracing::instrument(skip_all, fields(user.id = %user.id, job.id = %id))]
async fn cancel(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    let id = parse_id(&id)?;
    // Only one's own jobs here, admins included (they cancel others' from the API).
    ledger::cancel(&app.db, &id, Some(user.id))
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!("cancel requested from the page");
    Ok(Redirect::to(&format!("/jobs?job={id}#job-{id}")).into_response())
}

/// «Скачать»: the job's file through a freshly signed link (a page left open for hours still
/// downloads; the link in the page is this route, not a signed URL that expires).
async fn download(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let run = ledger::get(&app.db, &id, Some(user.id))
        .await?
        .ok_or(ApiError::NotFound)?;
    let url = JobStatus::of(run, &app, &user)?
        .artifact_url
        .ok_or(ApiError::NotFound)?;
    Ok(Redirect::to(&url).into_response())
}

/// The status JSON with fresh signed links, for the page's script (a link expired, a job
/// ended and its download appears).
async fn status(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, PageError> {
    let id = parse_id(&id)?;
    let run = ledger::get(&app.db, &id, Some(user.id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(JobStatus::of(run, &app, &user)?))
}

// ----- ops -----

#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn ops_page(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    q: PageQuery,
) -> Result<Html<String>, PageError> {
    let o = admin::read_overview(&app, &user).await?;
    let notice = q
        .get("notice")
        .map(|n| format!("<p class=\"notice\" id=\"notice\">{}</p>", esc(n)))
        .unwrap_or_default();
    let kinds: String = o
        .kinds
        .iter()
        .map(|k| {
            let retry_all = if k.failed_24h > 0 {
                format!(
                    "<form method=\"post\" action=\"/ops/jobs/retry\"><input type=\"hidden\" name=\"kind\" value=\"{}\"><button type=\"submit\">Повторить все ошибки</button></form>",
                    esc(&k.kind)
                )
            } else {
                String::new()
            };
            format!(
                "<tr data-kind=\"{kind}\"><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0} с</td><td>{:.1}</td><td>{retry_all}</td></tr>",
                k.queued, k.running, k.failed_24h, k.oldest_queued_secs, k.per_minute_5m,
                kind = esc(&k.kind)
            )
        })
        .collect();
    let failed: String = o
        .failed
        .iter()
        .map(|j| {
            format!(
                "<tr id=\"failed-{id}\" data-id=\"{id}\"><td>{kind}</td><td class=\"muted\">{id}</td><td>{user}</td><td>{at}</td><td>{attempts}</td><td class=\"error\">{error}</td>
<td><form method=\"post\" action=\"/ops/jobs/{id}/retry\"><button type=\"submit\" class=\"retry\">Повторить</button></form></td></tr>",
                id = esc(&j.id),
                kind = esc(&j.kind),
                user = j.requested_by.map(|u| u.to_string()).unwrap_or_else(|| "—".into()),
                at = j.finished_at.map(moscow).unwrap_or_default(),
                attempts = j.attempts,
                error = esc(j.error.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let running: String = o
        .running
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td class=\"muted\">{}</td><td>{}</td><td>{} %</td><td>{}</td><td>{}</td></tr>",
                esc(&r.kind),
                esc(&r.id),
                r.attempts,
                r.progress_percent,
                esc(r.worker.as_deref().unwrap_or("—")),
                r.started_at.map(moscow).unwrap_or_default()
            )
        })
        .collect();
    let workers: String = o
        .workers
        .iter()
        .map(|w| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&w.process),
                if w.alive { "да" } else { "нет" },
                w.last_heartbeat
                    .with_timezone(&shared::time::MOSCOW)
                    .format("%d.%m %H:%M:%S"),
                w.running,
                esc(&w.kinds.join(", "))
            )
        })
        .collect();
    let cron: String = o
        .cron
        .iter()
        .map(|c| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                esc(&c.expr),
                c.last_tick_at.map(moscow).unwrap_or_else(|| "—".into()),
                esc(c.last_job_state.as_deref().map(state_label).unwrap_or("—")),
                c.next_tick_at.map(moscow).unwrap_or_else(|| "—".into()),
            )
        })
        .collect();
    let limits: String = o
        .rate_limits
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.key),
                r.next_free_at
                    .with_timezone(&shared::time::MOSCOW)
                    .format("%H:%M:%S%.3f"),
                r.last_seen_at
                    .with_timezone(&shared::time::MOSCOW)
                    .format("%d.%m %H:%M:%S")
            )
        })
        .collect();
    let breakers: String = o
        .breakers
        .iter()
        .map(|b| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.key),
                esc(&b.state),
                b.failures,
                b.open_until.map(moscow).unwrap_or_else(|| "—".into())
            )
        })
        .collect();
    let table = |id: &str, title: &str, head: &str, rows: &str, empty: &str| {
        let rows = if rows.is_empty() {
            format!("<tr><td colspan=\"8\" class=\"muted\">{empty}</td></tr>")
        } else {
            rows.to_string()
        };
        format!("<section class=\"card\"><h2>{title}</h2><table id=\"{id}\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>")
    };
    let body = [
        format!("<h1>Операции</h1>{notice}<p><a href=\"/ops\">Обновить</a></p>"),
        table("kinds", "Очереди", "<th>Вид</th><th>В очереди</th><th>Выполняются</th><th>Ошибки за 24 ч</th><th>Ждёт дольше всех</th><th>Готово в минуту (5 мин)</th><th></th>", &kinds, "Задач нет."),
        table("failed", "Последние ошибки", "<th>Вид</th><th>Задача</th><th>Кто</th><th>Когда</th><th>Попыток</th><th>Ошибка</th><th></th>", &failed, "Ошибок нет."),
        table("running", "Выполняются", "<th>Вид</th><th>Задача</th><th>Попытка</th><th>Ход</th><th>Воркер</th><th>С</th>", &running, "Ничего не выполняется."),
        table("workers", "Воркеры", "<th>Процесс</th><th>Жив</th><th>Пульс</th><th>Задач</th><th>Виды</th>", &workers, "Воркеров нет."),
        table("cron", "Расписания", "<th>Имя</th><th>Выражение</th><th>Последний запуск</th><th>Итог</th><th>Следующий</th>", &cron, "Расписаний нет (их записывают воркеры при старте)."),
        table("limits", "Ограничения частоты", "<th>Ключ</th><th>Следующий слот</th><th>Обращение</th>", &limits, "Ключей нет."),
        table("breakers", "Предохранители", "<th>Канал</th><th>Состояние</th><th>Сбоев подряд</th><th>Открыт до</th>", &breakers, "Предохранители не срабатывали."),
    ]
    .concat();
    Ok(Html(layout("Операции", Some(&user), &body)))
}

#[tracing::instrument(skip_all, fields(user.id = %user.id, job.id = %id))]
async fn retry_one(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    let notice = match admin::retry_job(&app, &user, &id).await {
        Ok(()) => format!("Задача {id} снова в очереди."),
        Err(ApiError::Conflict(m)) => format!("Задача {id} не повторена: {m}"),
        Err(other) => return Err(other.into()),
    };
    Ok(ops_redirect(&notice))
}

#[tracing::instrument(skip_all, fields(user.id = %user.id))]
async fn retry_kind(
    State(app): State<AppState>,
    PageUser(user): PageUser,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    same_origin(&headers)?;
    let fields = form(&body)?;
    let kind = field(&fields, "kind").unwrap_or("");
    let done = admin::retry_all(&app, &user, kind).await?;
    Ok(ops_redirect(&format!(
        "{}: повторено {}, осталось с ошибкой {}.",
        kind, done.retried, done.still_failed
    )))
}

fn ops_redirect(notice: &str) -> Response {
    redirect_with("/ops", "notice", notice)
}

/// A redirect back to `page` carrying a message in its query (cut to 300 characters: a
/// `Location` header of any length is one proxies refuse).
fn redirect_with(page: &str, name: &str, message: &str) -> Response {
    let message: String = message.chars().take(300).collect();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, &message)
        .finish();
    Redirect::to(&format!("{page}?{query}")).into_response()
}
