//! Season tickets: plans, the sale of a subscription (with its invoice, in one statement),
//! payments (an invoice paid in full activates its subscription), freezes, the daily end of
//! expired subscriptions, and reads. Money is `numeric(12,2)`, in and out as strings
//! (`"4000.00"`, [`Money`]); a free plan's sale is paid and active at once.
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, PgExecutor, Postgres};
use uuid::Uuid;

use crate::money::Money;

use super::{
    check, check_text,
    page::{self, Cte, Page, PageRequest},
    DomainError, FieldErrors,
};

crate::text_enum! {
    pub enum PaymentMethod { Cash = "cash", Card = "card", Transfer = "transfer" }
}

// ----- plans -----

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000]*[^\u0000\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
        )
    )]
    pub name: String,
    /// Null or absent: unlimited visits.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 365))]
    pub visits: Option<i32>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 730))]
    pub validity_days: i32,
    /// Roubles, e.g. "4500.00"; "0" for a free plan (its sale needs no payment).
    pub price: Money,
    /// The groups the plan pays for (each must exist).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub group_ids: Vec<Uuid>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 365))]
    pub max_freeze_days: i32,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub id: Uuid,
    pub name: String,
    pub visits: Option<i32>,
    pub validity_days: i32,
    pub price: String,
    pub max_freeze_days: i32,
    pub group_ids: Vec<Uuid>,
    pub active: bool,
}

pub async fn create_plan(db: impl PgExecutor<'_>, req: &NewPlan) -> Result<Plan, DomainError> {
    let mut fields = FieldErrors::new();
    check_text(&mut fields, "name", &req.name, 200);
    if req.visits.is_some_and(|v| !(1..=365).contains(&v)) {
        fields.insert(
            "visits".into(),
            "between 1 and 365, or null for unlimited".into(),
        );
    }
    if !(1..=730).contains(&req.validity_days) {
        fields.insert("validity_days".into(), "between 1 and 730".into());
    }
    if !(Money::ZERO..=crate::money::MAX).contains(&req.price) {
        fields.insert("price".into(), "between 0 and 10000000.00".into());
    }
    if req.group_ids.is_empty() || req.group_ids.len() > 1000 {
        fields.insert("group_ids".into(), "between 1 and 1000 groups".into());
    }
    if !(0..=365).contains(&req.max_freeze_days) {
        fields.insert("max_freeze_days".into(), "between 0 and 365".into());
    }
    check(fields)?;
    sqlx::query_as(
        "with p as (
             insert into subscription_plans (name, visits, validity_days, price, max_freeze_days)
             values ($1, $2, $3, $4::bigint / 100.0, $5) returning *
         ), g as (
             insert into plan_groups (plan_id, group_id)
             select p.id, g from p, unnest($6::uuid[]) as g on conflict do nothing
         )
         select p.id, p.name, p.visits, p.validity_days, p.price::text as price,
                p.max_freeze_days, $6::uuid[] as group_ids, p.active
         from p",
    )
    .bind(req.name.trim())
    .bind(req.visits)
    .bind(req.validity_days)
    .bind(req.price.kopecks())
    .bind(req.max_freeze_days)
    .bind(&req.group_ids)
    .fetch_one(db)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[(
                "plan_groups_group_id_fkey",
                "group_ids",
                "a group does not exist",
            )],
        )
    })
}

/// Active plans by name.
pub async fn plans(db: impl PgExecutor<'_>, page: PageRequest) -> Result<Page<Plan>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from subscription_plans where active",
        Cte::Inline,
        "p",
        "p.id, p.name, p.visits, p.validity_days, p.price::text as price, p.max_freeze_days, \
         array(select group_id from plan_groups g where g.plan_id = p.id order by group_id) \
             as group_ids, \
         p.active",
        "p.name, p.id",
        1,
    ));
    Ok(page::fetch(db, query, page).await?)
}

// ----- subscriptions -----

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub id: Uuid,
    pub client_id: Uuid,
    pub plan_id: Uuid,
    pub visits_total: Option<i32>,
    pub visits_used: i32,
    pub visits_left: Option<i32>,
    pub visits_burned: i32,
    pub begins_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub freeze_from: Option<NaiveDate>,
    pub freeze_to: Option<NaiveDate>,
    /// inactive (not paid), active, frozen (today within the freeze), ended.
    pub status: String,
    pub price: String,
    pub created_at: DateTime<Utc>,
}

/// A subscription as shown, from `s`; `frozen` is derived from the Moscow date.
const SUBSCRIPTION: &str = "s.id, s.client_id, s.plan_id, s.visits_total, s.visits_used, \
     s.visits_total - s.visits_used as visits_left, s.visits_burned, s.begins_on, s.ends_on, \
     s.freeze_from, s.freeze_to, \
     case when s.status = 'active' and s.freeze_from is not null \
               and current_date_msk() between s.freeze_from and s.freeze_to then 'frozen' \
          else s.status end as status, \
     s.price::text as price, s.created_at";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvoiceBrief {
    pub id: Uuid,
    pub amount: String,
    pub status: String,
}

/// A sold subscription and its invoice.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sale {
    pub subscription: Subscription,
    pub invoice: InvoiceBrief,
}

#[derive(sqlx::FromRow)]
struct SaleRow {
    #[sqlx(flatten)]
    subscription: Subscription,
    invoice_id: Uuid,
    invoice_amount: String,
    invoice_status: String,
}

/// Sells a subscription from `begins_on` (at most a month back): the subscription (inactive
/// until paid, unless the plan is free) and its invoice, in one statement. A free plan's invoice (0.00) is paid at once
/// and its subscription active: there is nothing to pay, so nothing to wait for.
pub async fn sell(
    db: impl PgExecutor<'_>,
    client_id: Uuid,
    plan_id: Uuid,
    begins_on: NaiveDate,
) -> Result<Sale, DomainError> {
    if begins_on < crate::time::today() - Duration::days(31) {
        return Err(DomainError::field(
            "begins_on",
            "at most a month in the past",
        ));
    }
    let row: Option<SaleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with p as (select * from subscription_plans where id = $2 and active),
         s as (
             insert into subscriptions
                 (client_id, plan_id, visits_total, begins_on, ends_on, price, status)
             select $1, p.id, p.visits, $3, $3 + p.validity_days - 1, p.price,
                    case when p.price = 0 then 'active' else 'inactive' end
             from p
             returning *
         ), i as (
             insert into invoices (client_id, subscription_id, amount, status, paid_at)
             select s.client_id, s.id, s.price,
                    case when s.price = 0 then 'paid' else 'open' end,
                    case when s.price = 0 then now() end
             from s
             returning id, amount::text as amount, status
         )
         select {SUBSCRIPTION}, i.id as invoice_id, i.amount as invoice_amount,
                i.status as invoice_status
         from s, i"
    )))
    .bind(client_id)
    .bind(plan_id)
    .bind(begins_on)
    .fetch_optional(db)
    .await
    .map_err(|e| {
        DomainError::on_constraint(
            e,
            &[(
                "subscriptions_client_id_fkey",
                "client_id",
                "no such client",
            )],
        )
    })?;
    let row = row.ok_or_else(|| DomainError::field("plan_id", "no such active plan"))?;
    Ok(Sale {
        subscription: row.subscription,
        invoice: InvoiceBrief {
            id: row.invoice_id,
            amount: row.invoice_amount,
            status: row.invoice_status,
        },
    })
}

pub async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<Subscription, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {SUBSCRIPTION} from subscriptions s where s.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Subscriptions (of one client, or all that `reader` may see), latest ending first.
pub async fn list(
    db: impl PgExecutor<'_>,
    client_id: Option<Uuid>,
    reader: super::Reader,
    page: PageRequest,
) -> Result<Page<Subscription>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from subscriptions
         where ($1::uuid is null or client_id = $1)
           and ($2::uuid is null or client_id in (select * from teacher_clients($2)))",
        Cte::Inline,
        "s",
        SUBSCRIPTION,
        "s.ends_on desc, s.id",
        3,
    ))
    .bind(client_id)
    .bind(reader.teacher());
    Ok(page::fetch(db, query, page).await?)
}

/// Freezes an active subscription from `from` (today or later: never retroactive) to `to`;
/// its end moves by the freeze's length. One freeze per subscription, at most the plan's
/// `max_freeze_days`.
pub async fn freeze(
    db: impl Acquire<'_, Database = Postgres>,
    id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Subscription, DomainError> {
    let mut fields = FieldErrors::new();
    if from < crate::time::today() {
        fields.insert("from".into(), "a freeze cannot start in the past".into());
    }
    if to < from {
        fields.insert("to".into(), "must not be before from".into());
    }
    check(fields)?;
    let days = (to - from).num_days() + 1;
    let mut tx = db.begin().await?;
    let current: Option<(String, Option<NaiveDate>, NaiveDate, i32)> = sqlx::query_as(
        "select s.status, s.freeze_from, s.ends_on, p.max_freeze_days
         from subscriptions s join subscription_plans p on p.id = s.plan_id
         where s.id = $1 for update of s",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (status, frozen_before, ends_on, max_days) = current.ok_or(DomainError::NotFound)?;
    if status != "active" {
        return Err(DomainError::Conflict(format!(
            "only an active subscription can be frozen (this one is {status})"
        )));
    }
    if frozen_before.is_some() {
        return Err(DomainError::Conflict(
            "this subscription was already frozen".into(),
        ));
    }
    if days > i64::from(max_days) {
        return Err(DomainError::field(
            "to",
            format!("the plan allows at most {max_days} days of freeze"),
        ));
    }
    if from > ends_on {
        return Err(DomainError::field("from", "after the subscription ends"));
    }
    sqlx::query(
        "update subscriptions set freeze_from = $2, freeze_to = $3,
             ends_on = ends_on + $4::int, updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(days as i32)
    .execute(&mut *tx)
    .await?;
    let subscription = fetch(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(subscription)
}

/// What the daily end of subscriptions did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    pub ended: i64,
    pub visits_burned: i64,
}

/// Ends subscriptions whose period is over (Moscow date); left-over visits of an active one
/// burn. A subscription whose visits are used up stays active until its end date, so a visit
/// given back (a mark corrected, a lesson cancelled) can still be used. Idempotent.
pub async fn end_expired(db: impl PgExecutor<'_>) -> Result<Ended, DomainError> {
    let (ended, visits_burned): (i64, i64) = sqlx::query_as(
        "with doomed as (
             select id from subscriptions
             where status in ('active', 'inactive') and ends_on < current_date_msk()
             order by id for update
         ), ended as (
             update subscriptions s
             set status = 'ended', ended_at = now(), updated_at = now(),
                 visits_burned = case when s.status = 'active' and s.visits_total is not null
                                      then s.visits_total - s.visits_used else 0 end
             from doomed d where s.id = d.id
             returning s.visits_burned
         ), unpaid as (
             -- An unpaid ticket whose period passed is never activated: its invoice closes.
             -- One partly paid stays open for the office to settle (refund) by hand.
             update invoices i set status = 'cancelled'
             from doomed d where i.subscription_id = d.id and i.status = 'open'
               and not exists (select 1 from payments p where p.invoice_id = i.id)
         )
         select count(*), coalesce(sum(visits_burned), 0)::bigint from ended",
    )
    .fetch_one(db)
    .await?;
    Ok(Ended {
        ended,
        visits_burned,
    })
}

/// The notices of subscriptions ending within `days` days ("ending soon", once per
/// subscription) and of those ended in the last two days ("ended", once), for the recipient's
/// preferred channel. Call in the transaction that ended them.
pub async fn notices(
    db: impl PgExecutor<'_>,
    days: i32,
) -> Result<Vec<super::notifications::NewNotice>, DomainError> {
    use super::notifications::{NewNotice, Recipient, Template};
    let rows: Vec<(Uuid, Uuid, chrono::NaiveDate, Option<i32>, bool)> = sqlx::query_as(
        "select s.id, s.client_id, s.ends_on, s.visits_total - s.visits_used, false
         from subscriptions s
         where s.status = 'active'
           and s.ends_on between current_date_msk() and current_date_msk() + $1
         union all
         select s.id, s.client_id, s.ends_on, null, true
         from subscriptions s
         where s.status = 'ended' and s.ended_at > now() - interval '2 days'
           -- a ticket never paid for never began: nobody is told it ended
           and exists (select 1 from invoices i
                       where i.subscription_id = s.id and i.status = 'paid')",
    )
    .bind(days)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, client_id, ends_on, visits_left, ended)| NewNotice {
            recipient: Recipient::Client(client_id),
            channel: None,
            template: if ended {
                Template::SubscriptionEnded
            } else {
                Template::SubscriptionEnding
            },
            params: serde_json::json!({
                "subscription_id": id,
                "ends_on": ends_on.format("%d.%m.%Y").to_string(),
                "visits_left": visits_left,
            }),
            dedup_key: format!(
                "subscription_{}:{id}",
                if ended { "ended" } else { "ending" }
            ),
            not_after: None,
        })
        .collect())
}

/// The "payment received" notice of a payment (once per payment), to the invoice's client.
pub async fn payment_notice(
    db: impl PgExecutor<'_>,
    payment: &Payment,
    amount: Money,
) -> Result<Vec<super::notifications::NewNotice>, DomainError> {
    use super::notifications::{NewNotice, Recipient, Template};
    let client: Uuid = sqlx::query_scalar("select client_id from invoices where id = $1")
        .bind(payment.invoice.id)
        .fetch_one(db)
        .await?;
    Ok(vec![NewNotice {
        recipient: Recipient::Client(client),
        channel: None,
        template: Template::PaymentReceived,
        params: serde_json::json!({
            "payment_id": payment.payment_id,
            "amount": amount.to_string(),
            "invoice_status": payment.invoice.status,
        }),
        dedup_key: format!("payment:{}", payment.payment_id),
        not_after: None,
    }])
}

// ----- invoices and payments -----

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invoice {
    pub id: Uuid,
    pub client_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub amount: String,
    pub status: String,
    pub paid: String,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

const INVOICE: &str = "i.id, i.client_id, i.subscription_id, i.amount::text as amount, i.status, \
     coalesce((select sum(p.amount) from payments p where p.invoice_id = i.id), 0)::text as paid, \
     i.created_at, i.paid_at";

/// Invoices (of one client, or all), newest first.
pub async fn invoices(
    db: impl PgExecutor<'_>,
    client_id: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<Invoice>, DomainError> {
    let query = sqlx::query(page::page_sql(
        "select * from invoices where $1::uuid is null or client_id = $1",
        Cte::Inline,
        "i",
        INVOICE,
        "i.created_at desc, i.id",
        2,
    ))
    .bind(client_id);
    Ok(page::fetch(db, query, page).await?)
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub invoice_id: Uuid,
    /// Roubles, e.g. "1500.50": at least a kopeck, at most what is left to pay.
    #[cfg_attr(
        feature = "openapi",
        // A field of a `$ref` type drops its own pattern (utoipa 5.5), hence the string.
        schema(
            value_type = String,
            max_length = 11,
            pattern = r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,6}(\.[0-9]{1,2})?|10000000(\.00?)?)$"
        )
    )]
    pub amount: Money,
    pub method: PaymentMethod,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PaidInvoice {
    pub id: Uuid,
    pub status: String,
    pub amount: String,
    pub paid: String,
}

/// A recorded payment, the invoice after it, and the subscription it activated.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payment {
    pub payment_id: Uuid,
    pub invoice: PaidInvoice,
    pub activated_subscription: Option<Uuid>,
}

/// Records a payment. An invoice paid in full becomes `paid` and activates its subscription,
/// in the same transaction; overpaying is refused.
pub async fn pay(
    db: impl Acquire<'_, Database = Postgres>,
    req: &NewPayment,
    by: Uuid,
) -> Result<Payment, DomainError> {
    if req.amount <= Money::ZERO {
        return Err(DomainError::field("amount", "at least 0.01"));
    }
    let mut tx = db.begin().await?;
    // Locks in the order the daily end takes them: the invoice's subscription, then the
    // invoice. The sum of its payments is read by a later statement, whose snapshot sees every
    // payment committed before the locks were granted (a subquery of the locking statement
    // would use the older snapshot and let two payments overpay). An open invoice's
    // subscription waits for it; one whose period is over takes no money (paying in full
    // would activate a ticket the daily end burns at once).
    let over: Option<bool> = sqlx::query_scalar(
        "select status = 'ended' or ends_on < current_date_msk() from subscriptions
         where id = (select subscription_id from invoices where id = $1) for no key update",
    )
    .bind(req.invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let invoice: Option<(String, i64)> = sqlx::query_as(
        "select status, (amount * 100)::bigint from invoices where id = $1 for update",
    )
    .bind(req.invoice_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, amount)) = invoice else {
        return Err(DomainError::field("invoice_id", "no such invoice"));
    };
    if status == "open" && over == Some(true) {
        return Err(DomainError::Conflict(
            "the invoice's subscription period is over; nothing can be paid on it".into(),
        ));
    }
    let amount = Money::from_kopecks(amount);
    let paid: i64 = sqlx::query_scalar(
        "select (coalesce(sum(amount), 0) * 100)::bigint from payments where invoice_id = $1",
    )
    .bind(req.invoice_id)
    .fetch_one(&mut *tx)
    .await?;
    if status != "open" {
        return Err(DomainError::Conflict(format!("the invoice is {status}")));
    }
    let paid = Money::from_kopecks(paid);
    let left = amount.checked_sub(paid).unwrap_or(Money::ZERO);
    if req.amount > left {
        return Err(DomainError::field(
            "amount",
            format!("more than the {left} left to pay"),
        ));
    }
    // `req.amount <= left = amount - paid`: the sum is at most the invoice's amount, which the
    // column bounds to 12 digits, far inside i64.
    let paid_after = Money::from_kopecks(paid.kopecks() + req.amount.kopecks());
    let full = paid_after == amount;
    let (payment_id, id, status, amount, paid, activated): (
        Uuid,
        Uuid,
        String,
        String,
        String,
        Option<Uuid>,
    ) = sqlx::query_as(
        "with p as (
             insert into payments (invoice_id, amount, method, created_by)
             values ($1, $2::bigint / 100.0, $3, $4) returning id
         ), i as (
             update invoices set status = case when $5 then 'paid' else status end,
                 paid_at = case when $5 then now() else paid_at end
             where id = $1 returning id, status, amount::text as amount
         ), s as (
             update subscriptions set status = 'active', updated_at = now()
             where $5 and id = (select subscription_id from invoices where id = $1)
               and status = 'inactive'
             returning id
         )
         select (select id from p), i.id, i.status, i.amount,
                ($6::bigint / 100.0)::numeric(12, 2)::text, (select id from s)
         from i",
    )
    .bind(req.invoice_id)
    .bind(req.amount.kopecks())
    .bind(req.method)
    .bind(by)
    .bind(full)
    .bind(paid_after.kopecks())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Payment {
        payment_id,
        invoice: PaidInvoice {
            id,
            status,
            amount,
            paid,
        },
        activated_subscription: activated,
    })
}
