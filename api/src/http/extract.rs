//! Extractors whose rejections are [`ApiError`]s, so a bad body or query answers in the same
//! JSON error shape as everything else.
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{header, request::Parts},
    response::{IntoResponse, Response},
    Json,
};

use super::error::ApiError;

/// `Json` whose rejection is an [`ApiError`] (same error shape as everything else). A string
/// holding NUL (`\u0000`, which PostgreSQL cannot store in text) is a 422 naming its field.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ApiError::BadRequest(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await?;
        read_json(&bytes).map(Self)
    }
}

/// Reads a JSON body as `T` the way every route does (see [`AppJson`]): not JSON is 400; not
/// an object, a NUL, an expanded-year date or a typed-read failure is 422 naming the field.
pub fn read_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Read once as plain JSON first: a string PostgreSQL cannot store (NUL) or a date
    // chrono could overflow (an expanded year, `+262143-12-20`) is named here, including in
    // fields the typed read would skip; what is not JSON at all is a 400.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    // Every body is an object: serde would also read a struct from an array
    // (`[null, null]`), which no client means.
    if !value.is_object() {
        return Err(ApiError::field("body", "a JSON object"));
    }
    if let Some((field, problem)) = unstorable(&value, "") {
        return Err(ApiError::field(
            if field.is_empty() { "body" } else { &field },
            problem,
        ));
    }
    typed(bytes, value)
}

/// Reads a JSON body as `T` without [`read_json`]'s checks for what may be stored (a NUL, an
/// expanded year, a non-object): for a body that is only read, such as Telegram's updates.
/// Not JSON is 400; a typed-read failure is 422 naming the field.
pub fn read_json_unstored<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    typed(bytes, value)
}

/// The typed read of `bytes`, already parsed as `value`. JSON has one number type: `1.0` is
/// the integer 1 (as JSON Schema says), which serde would refuse for an integer field. Such
/// numbers are rewritten; the (rare) body that had one is read from the rewritten text, so
/// errors still name their field.
fn typed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    mut value: serde_json::Value,
) -> Result<T, ApiError> {
    let Json(value) = if integral_floats_to_integers(&mut value) {
        let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::Internal(e.into()))?;
        Json::<T>::from_bytes(&bytes)?
    } else {
        Json::<T>::from_bytes(bytes)?
    };
    Ok(value)
}

/// Rewrites every float with no fractional part whose integer a double holds exactly
/// (|x| ≤ 2^53: `644.0`, `-3e2`) as that integer; whether any was. Beyond 2^53 a double is
/// already rounded (`9007199254740993.0` reads as …992), so it stays a float and an integer
/// field refuses it rather than take a neighbouring id.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if f.fract() == 0.0 && f.abs() <= EXACT {
                *value = Value::from(f as i64);
                true
            } else {
                false
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| integral_floats_to_integers(v) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| integral_floats_to_integers(v) | any),
        _ => false,
    }
}

/// The path (`items[2].name`, or a key that itself holds NUL) of the first string PostgreSQL
/// cannot store (NUL) or that writes a date with an expanded year, and the problem.
fn unstorable(value: &serde_json::Value, at: &str) -> Option<(String, &'static str)> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some((
            at.to_string(),
            "must not contain the NUL character (\\u0000)",
        )),
        Value::String(s) if expanded_year(s) => {
            Some((at.to_string(), "dates take a four-digit year (YYYY-MM-DD)"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| unstorable(v, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let name = k.replace('\0', "\\u0000");
            let path = if at.is_empty() {
                name
            } else {
                format!("{at}.{name}")
            };
            if k.contains('\0') {
                Some((path, "must not contain the NUL character (\\u0000)"))
            } else {
                unstorable(v, &path)
            }
        }),
        _ => None,
    }
}

/// `+262143-12-20`, `-10000-01-01`: ISO 8601's expanded years, which chrono parses and date
/// arithmetic then overflows; nobody at the centre books a lesson past the year 9999. A string
/// is refused only when one of the parsers our date fields deserialize with reads it as a date
/// beyond four year digits (chrono's own leniency, spaces included, is thus covered): a phone
/// such as `+49170-1234567` is no date. Unsigned years are capped at four digits by chrono.
fn expanded_year(s: &str) -> bool {
    use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime};
    if !s.trim_start().starts_with(['+', '-']) {
        return false;
    }
    let year = s
        .parse::<NaiveDate>()
        .map(|d| d.year())
        .or_else(|_| s.parse::<NaiveDateTime>().map(|d| d.year()))
        .or_else(|_| s.parse::<DateTime<FixedOffset>>().map(|d| d.year()));
    year.is_ok_and(|y| !(-9999..=9999).contains(&y))
}

/// A JSON content type: `application/json` or `application/*+json`, any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The first field (name) of a form or query string whose name or value holds NUL, which
/// PostgreSQL cannot store: written with `%00` where the NUL was.
pub fn nul_field(pairs: &[(String, String)]) -> Option<String> {
    pairs
        .iter()
        .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        .map(|(k, _)| k.replace('\0', "%00"))
}

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Query` whose rejection is an [`ApiError`]; a value holding NUL (`%00`) is a 422 naming
/// its parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        if query.contains("%00") {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            if let Some(name) = nul_field(&pairs) {
                return Err(ApiError::field(
                    &name,
                    "must not contain the NUL character (%00)",
                ));
            }
        }
        let Query(value) = Query::<T>::try_from_uri(&parts.uri)?;
        Ok(Self(value))
    }
}

/// `Path` whose rejection is a 400 in the JSON error shape (a path id that is not a UUID).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Parses an optional query value into a typed value (an enum of the domain), reporting a bad
/// one on the field `name` with what is expected.
pub fn query_value<T: std::str::FromStr<Err = String>>(
    name: &str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse::<T>()
                .map_err(|expected| ApiError::field(name, expected))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut v =
            serde_json::json!({"a": 644.0, "b": [1.5, -3e2, 7], "c": {"d": 1e30}, "e": "2.0"});
        assert!(integral_floats_to_integers(&mut v));
        assert_eq!(
            v,
            serde_json::json!({"a": 644, "b": [1.5, -300, 7], "c": {"d": 1e30}, "e": "2.0"})
        );
        let mut plain = serde_json::json!({"a": 1, "b": "x"});
        assert!(!integral_floats_to_integers(&mut plain));
    }

    #[test]
    fn only_whole_dates_with_expanded_years_are_refused() {
        for date in [
            "+262142-12-20",
            "-10000-01-01",
            "+99999-02-28T10:00:00+03:00",
            "+262142-12- 31T23:30:00Z",
            " +10000-1-1",
        ] {
            assert!(expanded_year(date), "{date}");
        }
        for text in [
            "+49170-1234567",
            "+74951-23-45",
            "-15000-рублей",
            "2026-12-01",
            "+2026-12-01",
            "+10000-13-01",
            "+10000-01-01x",
            "+",
            "",
        ] {
            assert!(!expanded_year(text), "{text}");
        }
    }
}
