//! The client search planner: what a search string means and the one statement that answers
//! it (page and total together).
use sqlx::{postgres::PgArguments, query::Query, Postgres};

use crate::domain::page::{page_sql, Cte};

use super::COLUMNS;

/// How a search string is looked up. A surname (maybe followed by the first name) is the
/// common case: a prefix of the normalised full name, answered by the `clients_name_key` btree
/// as a range; when no name starts with it (a first name alone, a fragment) it falls back to a
/// substring match. A phone fragment matches the start of the number (with or without the
/// country code 7) or its end. Anything else (an e-mail, letters mixed with digits) is a
/// case-insensitive substring of names, phone and e-mail, via the trigram index.
#[derive(Debug, PartialEq)]
pub enum Search {
    /// `[from, to)` over `name_key`, and the substring pattern of the fallback.
    Name {
        from: String,
        to: String,
        like: String,
    },
    /// `[from, to)` ranges over the international digits, and over the reversed number.
    Phone {
        starts: [(String, String); 2],
        ends: (String, String),
    },
    Text {
        like: String,
    },
}

/// The smallest string greater than every string starting with `prefix` (byte order).
fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
}

fn range(prefix: String) -> (String, String) {
    let end = prefix_end(&prefix);
    (prefix, end)
}

/// `%needle%` with LIKE's wildcards escaped.
fn substring(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl Search {
    /// The plan for a search string; `None` when it is blank.
    pub fn plan(raw: &str) -> Option<Self> {
        let s = raw.trim();
        if s.is_empty() {
            return None;
        }
        if s.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c)) {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                // A full local number: trunk 8 means country code 7.
                let digits = match digits.strip_prefix('8') {
                    Some(rest) if digits.len() == 11 => format!("7{rest}"),
                    _ => digits,
                };
                let reversed: String = digits.chars().rev().collect();
                return Some(Self::Phone {
                    starts: [range(digits.clone()), range(format!("7{digits}"))],
                    ends: range(reversed),
                });
            }
        }
        let text = s
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if text
            .chars()
            .any(|c| c.is_ascii_digit() || "@._".contains(c))
        {
            return Some(Self::Text {
                like: substring(&text),
            });
        }
        let (from, to) = range(text.replace('ё', "е"));
        Some(Self::Name {
            from,
            to,
            like: substring(&text),
        })
    }

    /// Binds the plan's parameters (after `$1`, the archived flag).
    pub(super) fn bind<'q>(
        self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        match self {
            Self::Name { from, to, like } => query.bind(from).bind(to).bind(like),
            Self::Phone { starts, ends } => {
                let [(a, b), (c, d)] = starts;
                query
                    .bind(a)
                    .bind(b)
                    .bind(c)
                    .bind(d)
                    .bind(ends.0)
                    .bind(ends.1)
            }
            Self::Text { like } => query.bind(like),
        }
    }
}

/// The list statements, one per kind of search and reader (each a static text, so its
/// prepared plan is reused). `$1` is the `archived` flag, then the search's parameters, then —
/// for a teacher — their user id; limit and offset come last.
pub(super) fn list_sql(search: Option<&Search>, scoped: bool) -> sqlx::AssertSqlSafe<String> {
    const ORDER: &str = "c.name_key, c.id";
    let search_params = match search {
        None => 0,
        Some(Search::Phone { .. }) => 6,
        Some(Search::Text { .. }) => 1,
        Some(Search::Name { .. }) => 3,
    };
    let mut next = 2 + search_params;
    // A teacher's clients (a few dozen) are read through the function, which the planner
    // inlines; the office's statements carry no scope at all.
    let visible = if scoped {
        let clause = format!(
            "($1 or c.archived_at is null) and c.id in (select * from teacher_clients(${next}))"
        );
        next += 1;
        clause
    } else {
        "($1 or c.archived_at is null)".to_string()
    };
    match search {
        None => page_sql(
            &format!("select * from clients c where {visible}"),
            Cte::Inline,
            "c",
            COLUMNS,
            ORDER,
            next,
        ),
        Some(Search::Phone { .. }) => page_sql(
            &format!(
                "select * from clients c
                 where {visible}
                   and (substr(c.phone, 2) collate \"C\" >= $2 and substr(c.phone, 2) collate \"C\" < $3
                     or substr(c.phone, 2) collate \"C\" >= $4 and substr(c.phone, 2) collate \"C\" < $5
                     or reverse(c.phone) collate \"C\" >= $6 and reverse(c.phone) collate \"C\" < $7)"
            ),
            Cte::Materialized,
            "c",
            COLUMNS,
            ORDER,
            next,
        ),
        Some(Search::Text { .. }) => page_sql(
            &format!("select * from clients c where {visible} and c.search_text like $2"),
            Cte::Materialized,
            "c",
            COLUMNS,
            ORDER,
            next,
        ),
        // Prefix matches, else (one-time filter: the fallback runs only when there are none)
        // substring matches; each branch hands at most limit + offset ordered rows to the page.
        Some(Search::Name { .. }) => {
            let (limit, offset) = (next, next + 1);
            sqlx::AssertSqlSafe(format!(
                "with prefix as not materialized (
                     select * from clients c
                     where c.name_key >= $2 and c.name_key < $3 and {visible}
                 ), other as materialized (
                     select * from clients c
                     where c.search_text like $4 and {visible} and not exists (select 1 from prefix)
                 )
                 select t.total, p.* from
                     (select (select count(*) from prefix) + (select count(*) from other) as total) t
                 left join lateral (
                     select true as page_row, {COLUMNS} from (
                         (select * from prefix c order by {ORDER} limit ${limit} + ${offset})
                         union all
                         (select * from other c order by {ORDER} limit ${limit} + ${offset})
                     ) c order by {ORDER} limit ${limit} offset ${offset}
                 ) p on true"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_become_ranges_or_patterns() {
        let r = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            Search::plan(" Фёдоров  Пётр "),
            Some(Search::Name {
                from: "федоров петр".into(),
                to: "федоров петс".into(),
                like: "%фёдоров пётр%".into()
            })
        );
        assert_eq!(
            Search::plan("916 123"),
            Some(Search::Phone {
                starts: [r("916123", "916124"), r("7916123", "7916124")],
                ends: r("321619", "32161:"),
            })
        );
        let Some(Search::Phone { starts, .. }) = Search::plan("8 916 123 45 67") else {
            panic!("a phone")
        };
        assert_eq!(starts[0], r("79161234567", "79161234568"));
        assert_eq!(
            Search::plan("50%_off"),
            Some(Search::Text {
                like: "%50\\%\\_off%".into()
            })
        );
        assert_eq!(
            Search::plan("Ivan@Mail"),
            Some(Search::Text {
                like: "%ivan@mail%".into()
            })
        );
        assert_eq!(Search::plan("  "), None);
        assert_eq!(prefix_end("az"), "a{");
    }
}
