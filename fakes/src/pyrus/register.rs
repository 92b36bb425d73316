//! `GET|POST /pyrus/v4/forms/{id}/register`: filter parsing and the streamed `{"tasks": [...]}`
//! body, written a chunk of tasks at a time so 20,000 tasks never sit in memory as one string.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

use super::data::{self, Header};
use super::{error, Pyrus};
use crate::App;

/// `0 < item_count ≤ 20000`; without one the register returns up to the maximum.
pub const MAX_ITEMS: u64 = 20_000;
/// Tasks serialised per body chunk.
const CHUNK: usize = 250;

pub async fn get(
    State(app): State<Arc<App>>,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let params = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    respond(&app.pyrus, &form_id, &headers, params)
}

pub async fn post(
    State(app): State<Arc<App>>,
    Path(form_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        HashMap::new()
    } else {
        match serde_json::from_slice::<HashMap<String, Value>>(&body) {
            Ok(params) => params,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "Invalid JSON in the request body.",
                )
            }
        }
    };
    respond(&app.pyrus, &form_id, &headers, params)
}

fn respond(
    pyrus: &Pyrus,
    form_id: &str,
    headers: &HeaderMap,
    params: HashMap<String, Value>,
) -> Response {
    if let Err(refused) = pyrus.authorise(headers) {
        return refused.into_response();
    }
    if form_id.parse::<u64>().ok() != Some(pyrus.form_id) {
        return error(
            StatusCode::FORBIDDEN,
            "access_denied_form",
            "Access to the form is denied",
        );
    }
    let filter = match Filter::parse(&params, pyrus.tasks) {
        Ok(filter) => filter,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, &message),
    };
    let pages = Pages {
        seed: pyrus.seed,
        form_id: pyrus.form_id,
        count: pyrus.tasks,
        filter,
        stage: Stage::Open,
    };
    let mut response = Body::from_stream(futures::stream::iter(pages)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    pyrus.rate_headers(headers);
    response
}

type Problem = (&'static str, String);

/// The register filters the fake understands. Others (`fld{id}`, `due_filter`, `format`) are
/// accepted and ignored.
struct Filter {
    /// Task indexes to consider, ascending.
    candidates: Candidates,
    /// `id=v1,v2` and `task_ids`: only these ids.
    exact: Option<HashSet<u64>>,
    id_gt: Option<u64>,
    id_lt: Option<u64>,
    include_archived: bool,
    steps: Option<HashSet<u64>>,
    dates: Vec<(DateField, bool, DateTime<Utc>)>,
    field_ids: Option<HashSet<u64>>,
    remaining: u64,
}

enum Candidates {
    Range(std::ops::Range<u64>),
    List(std::collections::btree_set::IntoIter<u64>),
}

impl Iterator for Candidates {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        match self {
            Self::Range(r) => r.next(),
            Self::List(l) => l.next(),
        }
    }
}

#[derive(Clone, Copy)]
enum DateField {
    Created,
    Modified,
    Closed,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

fn number(key: &'static str, v: &str) -> Result<u64, Problem> {
    v.trim().parse().map_err(|_| {
        (
            "invalid_value_format",
            format!("{key}: {v} is not a number"),
        )
    })
}

/// Arrays in POST bodies, comma-separated lists in queries.
fn numbers(key: &'static str, v: &Value) -> Result<Vec<u64>, Problem> {
    match v {
        Value::Array(items) => items.iter().map(|i| number(key, &text(i))).collect(),
        other => text(other)
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| number(key, s))
            .collect(),
    }
}

fn utc(key: &'static str, v: &Value) -> Result<DateTime<Utc>, Problem> {
    let raw = text(v);
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(&raw, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc()))
        .map_err(|_| {
            (
                "invalid_value_format",
                format!("{key}: expected YYYY-MM-DDThh:mm:ssZ"),
            )
        })
}

impl Filter {
    fn parse(p: &HashMap<String, Value>, count: u64) -> Result<Self, Problem> {
        let remaining = match p.get("item_count") {
            None => MAX_ITEMS,
            Some(v) => match text(v).parse::<i64>() {
                Ok(n) if (1..=MAX_ITEMS as i64).contains(&n) => n as u64,
                _ => {
                    return Err((
                        "items_count_out_of_range",
                        format!(
                            "item_count must be more than 0 and less than or equal to {MAX_ITEMS}"
                        ),
                    ))
                }
            },
        };
        if let Some(sort) = p.get("sort").map(text) {
            if sort != "id" {
                return Err((
                    "validation_error",
                    format!("sort: only id is supported, got {sort}"),
                ));
            }
        }
        let (mut id_gt, mut id_lt, mut exact) = (None, None, None::<BTreeSet<u64>>);
        if let Some(v) = p.get("id") {
            // `gt{v}`, `lt{v}`, `gt{a},lt{b}` or `v1,v2,…`.
            for part in text(v).split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if let Some(n) = part.strip_prefix("gt") {
                    id_gt = Some(number("id", n)?);
                } else if let Some(n) = part.strip_prefix("lt") {
                    id_lt = Some(number("id", n)?);
                } else {
                    exact
                        .get_or_insert_with(BTreeSet::new)
                        .insert(number("id", part)?);
                }
            }
        }
        if let Some(v) = p.get("task_ids") {
            let ids = numbers("task_ids", v)?;
            exact = Some(match exact {
                Some(e) => ids.into_iter().filter(|i| e.contains(i)).collect(),
                None => ids.into_iter().collect(),
            });
        }
        let exact_set: Option<HashSet<u64>> = exact.as_ref().map(|e| e.iter().copied().collect());
        let candidates = match exact {
            Some(ids) => Candidates::List(
                ids.into_iter()
                    .map(data::index_of)
                    .filter(|i| *i < count)
                    .collect::<BTreeSet<_>>()
                    .into_iter(),
            ),
            None => {
                let start = id_gt.map_or(0, data::index_of);
                let end = id_lt.map_or(count, |v| (data::index_of(v) + 1).min(count));
                Candidates::Range(start..end.max(start))
            }
        };
        let include_archived = p
            .get("include_archived")
            .is_some_and(|v| matches!(text(v).to_lowercase().as_str(), "y" | "yes" | "true" | "1"));
        let steps = p
            .get("steps")
            .map(|v| numbers("steps", v))
            .transpose()?
            .map(HashSet::from_iter);
        let field_ids = p
            .get("field_ids")
            .map(|v| numbers("field_ids", v))
            .transpose()?
            .map(HashSet::from_iter);
        let mut dates = Vec::new();
        for (key, field, after) in [
            ("created_after", DateField::Created, true),
            ("created_before", DateField::Created, false),
            ("modified_after", DateField::Modified, true),
            ("modified_before", DateField::Modified, false),
            ("closed_after", DateField::Closed, true),
            ("closed_before", DateField::Closed, false),
        ] {
            if let Some(v) = p.get(key) {
                dates.push((field, after, utc(key, v)?));
            }
        }
        Ok(Self {
            candidates,
            exact: exact_set,
            id_gt,
            id_lt,
            include_archived,
            steps,
            dates,
            field_ids,
            remaining,
        })
    }

    fn accepts(&self, h: &Header) -> bool {
        let dates_ok = self.dates.iter().all(|(field, after, t)| {
            let value = match field {
                DateField::Created => Some(h.create_date),
                DateField::Modified => Some(h.last_modified_date),
                DateField::Closed => h.close_date,
            };
            value.is_some_and(|v| if *after { v > *t } else { v < *t })
        });
        self.exact.as_ref().is_none_or(|e| e.contains(&h.id))
            && self.id_gt.is_none_or(|v| h.id > v)
            && self.id_lt.is_none_or(|v| h.id < v)
            && (self.include_archived || h.close_date.is_none())
            && self
                .steps
                .as_ref()
                .is_none_or(|s| s.contains(&h.current_step))
            && dates_ok
    }
}

enum Stage {
    Open,
    Tasks { first: bool },
    Done,
}

/// The response body as an iterator of chunks: `{"tasks":[`, tasks in batches, `]}`.
struct Pages {
    seed: u64,
    form_id: u64,
    count: u64,
    filter: Filter,
    stage: Stage,
}

impl Iterator for Pages {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.stage {
            Stage::Open => {
                self.stage = Stage::Tasks { first: true };
                return Some(Ok(Bytes::from_static(b"{\"tasks\":[")));
            }
            Stage::Tasks { first } => first,
            Stage::Done => return None,
        };
        let mut out = Vec::with_capacity(CHUNK * 1500);
        let mut written = 0;
        let field_ids = self.filter.field_ids.clone();
        let wanted = |id: u64| field_ids.as_ref().is_none_or(|f| f.contains(&id));
        while written < CHUNK && self.filter.remaining > 0 {
            let Some(index) = self.filter.candidates.next() else {
                self.filter.remaining = 0;
                break;
            };
            let h = data::header(self.seed, index, self.count);
            if !self.filter.accepts(&h) {
                continue;
            }
            if !(first && written == 0) {
                out.push(b',');
            }
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(
                &mut out,
                &data::task_json(self.seed, self.form_id, &h, &wanted),
            );
            written += 1;
            self.filter.remaining -= 1;
        }
        if self.filter.remaining == 0 {
            out.extend_from_slice(b"]}");
            self.stage = Stage::Done;
        } else {
            self.stage = Stage::Tasks {
                first: first && written == 0,
            };
        }
        Some(Ok(Bytes::from(out)))
    }
}
