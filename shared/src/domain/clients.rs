//! Clients: the phone and e-mail rules, create / update / archive, the search planner and
//! match-or-create by phone or e-mail (how imported buyers become clients without duplicates).
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{
    page::{self, Page, PageRequest},
    DomainError, FieldErrors,
};

mod search;
pub use search::Search;

/// A phone number in E.164 (`+79161234567`), parsed once from what people type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Russian numbers in the usual local forms (`8 916 123-45-67`, `+7 (916) 123 45 67`,
    /// `9161234567`); other countries need `+` and the country code.
    pub fn parse(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let allowed = trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()".contains(c));
        if !allowed || digits.is_empty() {
            return None;
        }
        let e164 = if trimmed.starts_with('+') {
            digits
        } else if digits.len() == 11 && (digits.starts_with('8') || digits.starts_with('7')) {
            format!("7{}", &digits[1..])
        } else if digits.len() == 10 {
            format!("7{digits}")
        } else {
            return None;
        };
        let ok = (8..=15).contains(&e164.len()) && !e164.starts_with('0');
        let russian_ok = !e164.starts_with('7') || e164.len() == 11;
        (ok && russian_ok).then(|| Self(format!("+{e164}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validation message for a number that does not parse.
    pub const EXPECTED: &'static str = "expected a phone number like +7 916 123-45-67";
}

impl std::fmt::Display for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Option<Self> {
        let e = raw.trim();
        let ok = e.chars().count() <= 254
            && !e.chars().any(char::is_whitespace)
            && matches!(e.split_once('@'), Some((user, domain))
                if !user.is_empty() && domain.contains('.') && !domain.contains('@')
                   && !domain.starts_with('.') && !domain.ends_with('.'));
        ok.then(|| Self(e.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub const EXPECTED: &'static str = "expected an e-mail address";
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest free text of a client field.
pub const MAX_TEXT: usize = 500;

/// A client as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: Uuid,
    pub last_name: String,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub guardian_id: Option<Uuid>,
    pub telegram_chat_id: Option<i64>,
    pub notify_telegram: bool,
    pub notify_email: bool,
    pub comment: Option<String>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ClientRow {
    /// «Фамилия Имя Отчество».
    pub fn full_name(&self) -> String {
        full_name(
            &self.last_name,
            &self.first_name,
            self.middle_name.as_deref(),
        )
    }
}

pub fn full_name(last: &str, first: &str, middle: Option<&str>) -> String {
    [Some(last), Some(first), middle]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Columns every read selects, in [`ClientRow`] order.
pub const COLUMNS: &str = "c.id, c.last_name, c.first_name, c.middle_name, c.phone, c.email, \
     c.birth_date, c.guardian_id, c.telegram_chat_id, c.notify_telegram, c.notify_email, \
     c.comment, c.archived_at, c.created_at, c.updated_at";

/// The writable fields of a client.
#[derive(Debug, Clone)]
pub struct ClientInput {
    pub last_name: String,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub birth_date: Option<NaiveDate>,
    pub guardian_id: Option<Uuid>,
    pub telegram_chat_id: Option<i64>,
    pub notify_telegram: bool,
    pub notify_email: bool,
    pub comment: Option<String>,
}

impl Default for ClientInput {
    /// A new client: no data, both channels on.
    fn default() -> Self {
        Self {
            last_name: String::new(),
            first_name: String::new(),
            middle_name: None,
            phone: None,
            email: None,
            birth_date: None,
            guardian_id: None,
            telegram_chat_id: None,
            notify_telegram: true,
            notify_email: true,
            comment: None,
        }
    }
}

impl ClientInput {
    /// The current values of a stored client (for a partial update).
    pub fn from_row(r: &ClientRow) -> Self {
        Self {
            last_name: r.last_name.clone(),
            first_name: r.first_name.clone(),
            middle_name: r.middle_name.clone(),
            phone: r.phone.clone().map(Phone),
            email: r.email.clone().map(Email),
            birth_date: r.birth_date,
            guardian_id: r.guardian_id,
            telegram_chat_id: r.telegram_chat_id,
            notify_telegram: r.notify_telegram,
            notify_email: r.notify_email,
            comment: r.comment.clone(),
        }
    }

    /// The rules every client meets, whoever writes it: both names, lengths, a past birth date,
    /// not their own guardian (`id` of the client being saved, if any). Problems are added to
    /// `fields` unless the field already has one.
    pub fn check(&self, id: Option<Uuid>, fields: &mut FieldErrors) {
        let mut put = |name: &str, problem: String| {
            fields.entry(name.into()).or_insert(problem);
        };
        for (name, value, required) in [
            ("last_name", Some(&self.last_name), true),
            ("first_name", Some(&self.first_name), true),
            ("middle_name", self.middle_name.as_ref(), false),
            ("comment", self.comment.as_ref(), false),
        ] {
            match value {
                Some(v) if v.chars().count() > MAX_TEXT => {
                    put(name, format!("at most {MAX_TEXT} characters"))
                }
                Some(v) if required && v.trim().is_empty() => put(name, "required".into()),
                None if required => put(name, "required".into()),
                _ => {}
            }
        }
        if let Some(d) = self.birth_date {
            if let Err(problem) = check_birth_date(d) {
                put("birth_date", problem.into());
            }
        }
        if id.is_some() && self.guardian_id == id {
            put(
                "guardian_id",
                "a client cannot be their own guardian".into(),
            );
        }
    }
}

/// A birth date is in the past (Moscow calendar) and after 1900.
pub fn check_birth_date(d: NaiveDate) -> Result<(), &'static str> {
    if d <= crate::time::today() && chrono::Datelike::year(&d) >= 1900 {
        Ok(())
    } else {
        Err("must be a past date after 1900")
    }
}

/// Inserts (`id` None) or updates a client in one statement; a guardian that does not exist
/// is reported on the field.
pub async fn save(
    db: impl PgExecutor<'_>,
    id: Option<Uuid>,
    c: &ClientInput,
) -> Result<ClientRow, DomainError> {
    let mut fields = FieldErrors::new();
    c.check(id, &mut fields);
    super::check(fields)?;
    let sql = format!(
        "with saved as (
             insert into clients as c (id, last_name, first_name, middle_name, phone, email,
                 birth_date, guardian_id, telegram_chat_id, notify_telegram, notify_email, comment)
             values (coalesce($1, gen_random_uuid()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             on conflict (id) do update set
                 last_name = excluded.last_name, first_name = excluded.first_name,
                 middle_name = excluded.middle_name, phone = excluded.phone,
                 email = excluded.email, birth_date = excluded.birth_date,
                 guardian_id = excluded.guardian_id, telegram_chat_id = excluded.telegram_chat_id,
                 notify_telegram = excluded.notify_telegram, notify_email = excluded.notify_email,
                 comment = excluded.comment, updated_at = now()
             returning *
         )
         select {COLUMNS} from saved c"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(c.last_name.trim())
        .bind(c.first_name.trim())
        .bind(c.middle_name.as_deref().map(str::trim))
        .bind(&c.phone)
        .bind(&c.email)
        .bind(c.birth_date)
        .bind(c.guardian_id)
        .bind(c.telegram_chat_id)
        .bind(c.notify_telegram)
        .bind(c.notify_email)
        .bind(c.comment.as_deref().map(str::trim))
        .fetch_one(db)
        .await
        .map_err(|e| {
            DomainError::on_constraint(
                e,
                &[
                    ("clients_guardian_id_fkey", "guardian_id", "no such client"),
                    (
                        "clients_not_own_guardian",
                        "guardian_id",
                        "a client cannot be their own guardian",
                    ),
                ],
            )
        })
}

pub async fn fetch(db: impl PgExecutor<'_>, id: Uuid) -> Result<ClientRow, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from clients c where c.id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// Archives a client (kept for history; hidden from lists by default). Idempotent.
pub async fn archive(db: impl PgExecutor<'_>, id: Uuid) -> Result<ClientRow, DomainError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "with a as (
             update clients set archived_at = coalesce(archived_at, now()), updated_at = now()
             where id = $1 returning *
         )
         select {COLUMNS} from a c"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(DomainError::NotFound)
}

/// What a client list shows.
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// Free text: see [`Search`].
    pub search: Option<String>,
    pub archived: bool,
    /// A teacher sees only the clients of their groups.
    pub reader: super::Reader,
}

/// Longest accepted search text.
pub const MAX_SEARCH: usize = 100;

/// One page of clients in name order and the total, in ONE statement (see [`Search`]).
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &ListFilter,
    page: PageRequest,
) -> Result<Page<ClientRow>, DomainError> {
    if filter
        .search
        .as_deref()
        .is_some_and(|s| s.chars().count() > MAX_SEARCH)
    {
        return Err(DomainError::field(
            "search",
            format!("at most {MAX_SEARCH} characters"),
        ));
    }
    let search = filter.search.as_deref().and_then(Search::plan);
    let sql = search::list_sql(search.as_ref(), filter.reader.teacher().is_some());
    let query = sqlx::query(sql).bind(filter.archived);
    let query = match search {
        None => query,
        Some(s) => s.bind(query),
    };
    let query = match filter.reader.teacher() {
        None => query,
        Some(user) => query.bind(user),
    };
    Ok(page::fetch(db, query, page).await?)
}

/// A buyer or applicant from outside (an import) to find among clients or create.
#[derive(Debug, Clone)]
pub struct Contact {
    pub last_name: String,
    pub first_name: String,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
}

/// How [`match_or_create`] resolved a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Match {
    /// One client has this e-mail and/or phone (and no other client claims the other).
    Matched {
        client_id: Uuid,
    },
    Created {
        client_id: Uuid,
    },
    /// The e-mail and the phone point at different clients, or one of them at several that
    /// the name does not tell apart: recorded for a person to decide, nothing guessed.
    Conflict {
        candidates: Vec<Uuid>,
    },
}

/// Finds the client a contact belongs to — by e-mail, by phone, or both — or creates one.
/// Phones are shared in families (a parent's number on a child's card): when several clients
/// share the e-mail or the phone, the one whose surname and first name equal the contact's is
/// taken, else it is a conflict. Runs in the caller's transaction (see [`match_or_create_many`]).
pub async fn match_or_create(
    conn: &mut PgConnection,
    contact: &Contact,
) -> Result<Match, DomainError> {
    let mut matches = match_or_create_many(conn, std::slice::from_ref(contact)).await?;
    matches
        .pop()
        .ok_or_else(|| DomainError::field("contact", "an e-mail or a phone"))
}

/// A known client as matching sees it.
struct Known {
    id: Uuid,
    email: Option<String>,
    phone: Option<String>,
    name_key: String,
}

fn name_key(last: &str, first: &str) -> String {
    format!(
        "{} {}",
        last.trim().to_lowercase(),
        first.trim().to_lowercase()
    )
    .replace('ё', "е")
}

/// [`match_or_create`] for many contacts (an import's page), set-based: one statement takes
/// transaction-level advisory locks on every e-mail and phone (sorted, so two imports never
/// wait on each other crosswise, and two imports of the same new buyer create one client), one
/// reads every candidate, one inserts the new clients. Contacts are resolved in order, each
/// seeing the clients created for the ones before it. A contact with neither an e-mail nor a
/// phone is an error.
pub async fn match_or_create_many(
    conn: &mut PgConnection,
    contacts: &[Contact],
) -> Result<Vec<Match>, DomainError> {
    if contacts
        .iter()
        .any(|c| c.phone.is_none() && c.email.is_none())
    {
        return Err(DomainError::field("contact", "an e-mail or a phone"));
    }
    let emails: Vec<&str> = contacts
        .iter()
        .filter_map(|c| c.email.as_ref().map(Email::as_str))
        .collect();
    let phones: Vec<&str> = contacts
        .iter()
        .filter_map(|c| c.phone.as_ref().map(Phone::as_str))
        .collect();
    let mut keys: Vec<String> = emails
        .iter()
        .map(|e| format!("client-email:{e}"))
        .chain(phones.iter().map(|p| format!("client-phone:{p}")))
        .collect();
    keys.sort();
    keys.dedup();
    sqlx::query(
        "select pg_advisory_xact_lock(hashtextextended(k, 0))
         from (select unnest($1::text[]) as k order by 1) keys",
    )
    .bind(&keys)
    .execute(&mut *conn)
    .await?;
    // One index probe per e-mail and per phone: the lateral subqueries (kept apart by
    // `offset 0`) can only run as nested loops. The plain `lower(email) = any($1)` was planned
    // as a sequential scan that ran `lower()` on every client (10 ms a page at 26,000 clients
    // against 3 ms; an OR of the two scanned the table too).
    let rows: Vec<(Uuid, Option<String>, Option<String>, String)> = sqlx::query_as(
        "select id, email, phone, name_key from (
             select c.id, lower(c.email) as email, c.phone, c.name_key, c.archived_at, c.created_at
             from unnest($1::text[]) e(v) cross join lateral (
                 select * from clients c where c.email is not null and lower(c.email) = e.v
                 offset 0) c
             union
             select c.id, lower(c.email), c.phone, c.name_key, c.archived_at, c.created_at
             from unnest($2::text[]) p(v) cross join lateral (
                 select * from clients c where c.phone = p.v offset 0) c
         ) k
         order by archived_at nulls first, created_at, id",
    )
    .persistent(false)
    .bind(&emails)
    .bind(&phones)
    .fetch_all(&mut *conn)
    .await?;
    let mut known: Vec<Known> = rows
        .into_iter()
        .map(|(id, email, phone, name_key)| Known {
            id,
            email,
            phone,
            // Folded again here: PostgreSQL's lower() folds no Cyrillic under a C ctype, and
            // the contact's key is folded by Rust.
            name_key: name_key.to_lowercase().replace('ё', "е"),
        })
        .collect();

    let mut out = Vec::with_capacity(contacts.len());
    let mut new: Vec<(Uuid, &Contact)> = Vec::new();
    for contact in contacts {
        let key = name_key(&contact.last_name, &contact.first_name);
        let named = |k: &Known| k.name_key == key || k.name_key.starts_with(&format!("{key} "));
        let narrow = |found: Vec<&Known>| -> Vec<Uuid> {
            let ids: Vec<Uuid> = if found.len() > 1 && found.iter().any(|k| named(k)) {
                found
                    .into_iter()
                    .filter(|k| named(k))
                    .map(|k| k.id)
                    .collect()
            } else {
                found.into_iter().map(|k| k.id).collect()
            };
            ids
        };
        let email = contact.email.as_ref().map(Email::as_str);
        let phone = contact.phone.as_ref().map(Phone::as_str);
        let by_email = narrow(
            known
                .iter()
                .filter(|k| email.is_some() && k.email.as_deref() == email)
                .collect(),
        );
        let by_phone = narrow(
            known
                .iter()
                .filter(|k| phone.is_some() && k.phone.as_deref() == phone)
                .collect(),
        );
        let resolved = match (by_email.as_slice(), by_phone.as_slice()) {
            ([], []) => None,
            ([e], []) | ([], [e]) => Some(Match::Matched { client_id: *e }),
            ([e], [p]) if e == p => Some(Match::Matched { client_id: *e }),
            _ => {
                let mut candidates: Vec<Uuid> = by_email.iter().chain(&by_phone).copied().collect();
                candidates.sort();
                candidates.dedup();
                Some(Match::Conflict { candidates })
            }
        };
        out.push(match resolved {
            Some(m) => m,
            None => {
                let id = Uuid::new_v4();
                known.push(Known {
                    id,
                    email: email.map(str::to_string),
                    phone: phone.map(str::to_string),
                    name_key: key,
                });
                new.push((id, contact));
                Match::Created { client_id: id }
            }
        });
    }
    if !new.is_empty() {
        let mut fields = FieldErrors::new();
        for (i, (id, c)) in new.iter().enumerate() {
            let input = ClientInput {
                last_name: c.last_name.clone(),
                first_name: c.first_name.clone(),
                ..ClientInput::default()
            };
            let mut problems = FieldErrors::new();
            input.check(Some(*id), &mut problems);
            for (field, problem) in problems {
                fields.insert(format!("contacts[{i}].{field}"), problem);
            }
        }
        super::check(fields)?;
        sqlx::query(
            "insert into clients (id, last_name, first_name, phone, email)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])",
        )
        .bind(new.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|(_, c)| c.last_name.trim())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(_, c)| c.first_name.trim())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(_, c)| c.phone.as_ref().map(Phone::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(_, c)| c.email.as_ref().map(Email::as_str))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_e164() {
        for raw in [
            "8 916 123-45-67",
            "+7 (916) 123 45 67",
            "9161234567",
            "79161234567",
        ] {
            assert_eq!(
                Phone::parse(raw).as_ref().map(Phone::as_str),
                Some("+79161234567"),
                "{raw}"
            );
        }
        assert_eq!(
            Phone::parse("+44 20 7946 0958").as_ref().map(Phone::as_str),
            Some("+442079460958")
        );
        for bad in ["12345", "+7 916 123", "call me", "", "+0123456789"] {
            assert_eq!(Phone::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Ivan@Mail.RU ").as_ref().map(Email::as_str),
            Some("ivan@mail.ru")
        );
        for bad in [
            "ivan",
            "@mail.ru",
            "ivan@mail",
            "iv an@mail.ru",
            "a@b@c.ru",
            "a@.ru",
        ] {
            assert_eq!(Email::parse(bad), None, "{bad}");
        }
    }
}
