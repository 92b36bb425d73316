//! Timepad API v1 (reference §1): the organisation's events and each event's orders, paged by
//! `limit` / `skip`, bearer token. Only what the import keeps is decoded.
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

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Some answers carry it as a string.
    #[serde(default)]
    pub total: serde_json::Value,
    #[serde(default = "Vec::new")]
    pub values: Vec<T>,
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
    pub amount: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct TicketType {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: i64,
    pub number: Option<String>,
    pub price_nominal: Option<f64>,
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
    #[serde(default)]
    pub answers: HashMap<String, serde_json::Value>,
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
            service: Service::new("timepad", url, "timepad", timeouts)?,
            token: token.to_string(),
            organization_id,
        })
    }

    /// A page of the organisation's events (all access statuses), in id order; only
    /// `event_ids` when given.
    pub async fn events(
        &self,
        ctx: &JobContext,
        skip: u64,
        event_ids: Option<&[i64]>,
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
        let request = self
            .service
            .get(&self.service.url("/v1/events"))
            .bearer_auth(&self.token)
            .query(&query);
        let response = self.service.send(ctx, request, never_refresh).await?;
        self.service.json(response).await
    }

    /// A page of an event's orders.
    pub async fn orders(
        &self,
        ctx: &JobContext,
        event_id: i64,
        skip: u64,
    ) -> Result<Page<Order>, CallError> {
        let request = self
            .service
            .get(&self.service.url(&format!("/v1/events/{event_id}/orders")))
            .bearer_auth(&self.token)
            .query(&[("limit", ORDERS_PAGE), ("skip", skip)]);
        let response = self.service.send(ctx, request, never_refresh).await?;
        self.service.json(response).await
    }
}
