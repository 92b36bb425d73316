//! Timepad API v1 (reference §1): the organisation's events and each event's orders, paged by
//! `limit` / `skip`, bearer token. Only what the import keeps is decoded, item by item: one
//! record Timepad sends in an unexpected shape is reported and skipped, not fatal to the page.
use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use jobs::JobContext;
use serde::Deserialize;

use super::http::{CallError, Service, Timeouts};

/// Largest page of events Timepad serves.
pub const EVENTS_PAGE: u64 = 100;
/// Largest page of orders Timepad serves.
pub const ORDERS_PAGE: u64 = 250;

pub struct Timepad {
    pub service: Service,
    token: String,
    pub organization_id: u64,
}

/// A page as it comes: `values` still undecoded.
#[derive(Debug, Clone, Deserialize)]
struct RawPage {
    /// Some answers carry it as a string.
    #[serde(default)]
    total: serde_json::Value,
    /// Kept as text until each is decoded on its own (no tree of values built first).
    #[serde(default = "Vec::new")]
    values: Vec<Box<serde_json::value::RawValue>>,
}

/// Just the id of a record that does not decode.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<i64>,
}

/// A page: the items that decoded, the ones that did not (their id if they have one, why),
/// and how many items came in all.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub total: Option<u64>,
    pub received: u64,
    pub values: Vec<T>,
    pub invalid: Vec<(Option<i64>, String)>,
}

impl RawPage {
    fn decode<T: serde::de::DeserializeOwned>(self) -> Page<T> {
        let total = match &self.total {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let received = self.values.len() as u64;
        let mut values = Vec::with_capacity(self.values.len());
        let mut invalid = Vec::new();
        for raw in self.values {
            match serde_json::from_str(raw.get()) {
                Ok(v) => values.push(v),
                Err(e) => {
                    let id = serde_json::from_str::<IdOnly>(raw.get())
                        .ok()
                        .and_then(|i| i.id);
                    invalid.push((id, e.to_string()));
                }
            }
        }
        Page {
            total,
            received,
            values,
            invalid,
        }
    }
}

/// An event's orders: a page, or Timepad's own refusal to show them (a 403, 404 or 422 with
/// its JSON error: the event was deleted, made private to another account, …).
#[derive(Debug)]
pub enum EventOrders {
    Page(Page<Order>),
    Refused { status: u16, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: i64,
    pub name: String,
    pub starts_at: Option<DateTime<FixedOffset>>,
    pub ends_at: Option<DateTime<FixedOffset>>,
    pub url: Option<String>,
    pub access_status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub name: String,
    pub title: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Payment {
    /// Roubles as Timepad wrote them; read exactly by `clients::money`.
    pub amount: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct TicketType {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: i64,
    pub number: Option<String>,
    pub price_nominal: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub ticket_type: Option<TicketType>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: i64,
    pub created_at: Option<DateTime<FixedOffset>>,
    pub status: Status,
    pub mail: Option<String>,
    #[serde(default)]
    pub payment: Option<Payment>,
    #[serde(default)]
    pub tickets: Vec<Ticket>,
    /// Questionnaire answers by field id: `mail`, `name`, `surname`, often `phone`.
    #[serde(default, deserialize_with = "map_or_empty_list")]
    pub answers: HashMap<String, serde_json::Value>,
}

/// A JSON object, or the `[]` PHP writes for an empty one.
fn map_or_empty_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<HashMap<String, serde_json::Value>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
        serde_json::Value::Array(a) if a.is_empty() => Ok(HashMap::new()),
        serde_json::Value::Null => Ok(HashMap::new()),
        other => Err(serde::de::Error::custom(format!(
            "answers: expected an object, got {other}"
        ))),
    }
}

impl Order {
    pub fn answer(&self, key: &str) -> Option<&str> {
        self.answers
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// Timepad's token is static: a 401 is permanent (a wrong or revoked token needs a person).
fn never_refresh(_: &str) -> bool {
    false
}

impl Timepad {
    pub fn new(
        url: &str,
        token: &str,
        organization_id: u64,
        timeouts: Timeouts,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            service: Service::new("timepad", url, "timepad", timeouts)?.with_secret(token),
            token: token.to_string(),
            organization_id,
        })
    }

    /// A page of the organisation's events (all access statuses), in id order; only
    /// `event_ids` when given, only those starting from `starts_at_min` when given.
    pub async fn events(
        &self,
        ctx: &JobContext,
        skip: u64,
        event_ids: Option<&[i64]>,
        starts_at_min: Option<DateTime<chrono::Utc>>,
    ) -> Result<Page<Event>, CallError> {
        let mut query = vec![
            ("organization_ids", self.organization_id.to_string()),
            ("limit", EVENTS_PAGE.to_string()),
            ("skip", skip.to_string()),
            ("sort", "+id".to_string()),
            ("fields", "ends_at,access_status".to_string()),
            (
                "access_statuses",
                "public,link_only,private,draft".to_string(),
            ),
        ];
        if let Some(ids) = event_ids {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            query.push(("event_ids", ids.join(",")));
        }
        if let Some(min) = starts_at_min {
            query.push((
                "starts_at_min",
                min.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            ));
        }
        let request = self
            .service
            .get(&self.service.url("/v1/events"))
            .bearer_auth(&self.token)
            .query(&query);
        let response = self.service.send(ctx, request, never_refresh).await?;
        Ok(self.service.json::<RawPage>(response).await?.decode())
    }

    /// A page of an event's orders, or Timepad's refusal to show them. A 4xx without
    /// Timepad's JSON error (a gateway's page during a deploy) stays an error.
    pub async fn orders(
        &self,
        ctx: &JobContext,
        event_id: i64,
        skip: u64,
    ) -> Result<EventOrders, CallError> {
        let request = self
            .service
            .get(&self.service.url(&format!("/v1/events/{event_id}/orders")))
            .bearer_auth(&self.token)
            .query(&[("limit", ORDERS_PAGE), ("skip", skip)]);
        match self.service.send(ctx, request, never_refresh).await {
            Ok(response) => Ok(EventOrders::Page(
                self.service.json::<RawPage>(response).await?.decode(),
            )),
            Err(CallError::Refused { status, body, .. })
                if matches!(status, 403 | 404 | 422) && body.contains("response_status") =>
            {
                Ok(EventOrders::Refused {
                    status,
                    message: body,
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_in_an_unexpected_shape_is_set_aside_not_fatal_to_its_page() {
        let raw: RawPage = serde_json::from_value(serde_json::json!({
            "total": "4",
            "values": [
                {"id": 1, "status": {"name": "paid"}, "mail": "a@example.ru",
                 "answers": {"phone": "+79160000001"}},
                // No status.
                {"id": 2, "answers": {}},
                {"id": 3, "status": {"name": "paid"}, "answers": {}, "tickets": [{"id": "x"}]},
                // PHP's empty dictionary for the answers is fine.
                {"id": 4, "status": {"name": "booked"}, "answers": []},
            ]
        }))
        .unwrap();
        let page: Page<Order> = raw.decode();
        assert_eq!(page.total, Some(4));
        assert_eq!(page.received, 4);
        assert_eq!(page.values.len(), 2);
        assert_eq!(page.values[0].answer("phone"), Some("+79160000001"));
        let ids: Vec<Option<i64>> = page.invalid.iter().map(|i| i.0).collect();
        assert_eq!(ids, vec![Some(2), Some(3)]);
        assert!(page.invalid[0].1.contains("status"), "{:?}", page.invalid);
    }
}
