//! Paging, one way for every list: a validated [`PageRequest`], one statement that returns the
//! page and the total count ([`page_sql`]), decoded into a [`Page`] (`{items, total}`).
use serde::Serialize;
use sqlx::{postgres::PgRow, FromRow, Row};

use super::FieldErrors;

/// A validated `limit` / `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 200;
    /// Deeper pages are refused: nobody pages a million rows, and `limit + offset` must not
    /// overflow in SQL.
    pub const MAX_OFFSET: i64 = 1_000_000;

    /// Checks the query's values, each problem under its name.
    pub fn new(limit: Option<i64>, offset: Option<i64>) -> Result<Self, FieldErrors> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        let offset = offset.unwrap_or(0);
        let mut fields = FieldErrors::new();
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            fields.insert(
                "limit".into(),
                format!("must be between 1 and {}", Self::MAX_LIMIT),
            );
        }
        if !(0..=Self::MAX_OFFSET).contains(&offset) {
            fields.insert(
                "offset".into(),
                format!("must be between 0 and {}", Self::MAX_OFFSET),
            );
        }
        if fields.is_empty() {
            Ok(Self { limit, offset })
        } else {
            Err(fields)
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// One page of a list and the number of rows matching in all.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
        }
    }
}

/// How [`page_sql`] evaluates its `matched` set.
#[derive(Debug, Clone, Copy)]
pub enum Cte {
    /// Inlined into the count and the page: the count can be an index-only scan and the page an
    /// ordered index scan that stops at `limit`. For sets an index walks in page order.
    Inline,
    /// Computed once (e.g. by a bitmap scan), then counted and sorted: for small matched sets
    /// whose order no index gives — else the planner may walk the whole order index filtering.
    Materialized,
}

/// The one statement behind a list: `matched` selects the rows (its own parameters come
/// first), `columns` are the output columns over the row alias `alias`, ordered by `order`;
/// limit and offset bind as parameters `$limit_param` and the next. Every row carries `total`;
/// an empty page is one row whose other columns are NULL. Decode with [`decode`].
pub fn page_sql(
    matched: &str,
    cte: Cte,
    alias: &str,
    columns: &str,
    order: &str,
    limit_param: usize,
) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "with matched as {cte} ({matched})
         select t.total, p.* from (select count(*) as total from matched) t
         left join lateral (
             select true as page_row, {columns} from matched {alias}
             order by {order} limit ${limit_param} offset ${offset}) p on true",
        offset = limit_param + 1,
        cte = match cte {
            Cte::Inline => "not materialized",
            Cte::Materialized => "materialized",
        }
    ))
}

/// Runs a [`page_sql`] statement whose own parameters are bound, with the page's limit and
/// offset, and decodes the page.
pub async fn fetch<'q, T>(
    db: impl sqlx::PgExecutor<'q>,
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    page: PageRequest,
) -> Result<Page<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow>,
{
    let rows = query
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(db)
        .await?;
    decode(&rows)
}

/// The page of a [`page_sql`]-shaped answer (`total` on every row, `page_row` NULL on the row
/// of an empty page).
pub fn decode<T>(rows: &[PgRow]) -> Result<Page<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow>,
{
    let total = match rows.first() {
        Some(row) => row.try_get("total")?,
        None => 0,
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<Option<bool>, _>("page_row")?.is_some() {
            items.push(T::from_row(row)?);
        }
    }
    Ok(Page { items, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_is_bounded_and_names_the_field() {
        assert_eq!(
            PageRequest::new(None, None),
            Ok(PageRequest {
                limit: 50,
                offset: 0
            })
        );
        let e = PageRequest::new(Some(0), Some(i64::MAX)).unwrap_err();
        assert!(e.contains_key("limit") && e.contains_key("offset"), "{e:?}");
        assert!(PageRequest::new(Some(200), Some(-1))
            .unwrap_err()
            .contains_key("offset"));
    }
}
