//! The CRM's rules and their SQL, called by api routes and job handlers alike. Each function
//! takes an executor (`impl PgExecutor`) or a connection (`&mut PgConnection`, for work that
//! must share the caller's transaction), so a route and a handler run the same rule in their
//! own transaction. Errors are [`DomainError`]: the api maps them to HTTP answers, the worker
//! to job outcomes.
use std::collections::BTreeMap;

pub mod attendance;
pub mod calls;
pub mod clients;
pub mod directory;
pub mod groups;
pub mod lessons;
pub mod notifications;
pub mod page;
pub mod rentals;
pub mod roster;
pub mod scheduling;
pub mod subscriptions;
pub mod timepad;

pub use page::{Page, PageRequest};

/// Who reads the records of clients (many of them children): the office reads every client;
/// a teacher only the current members of the groups they teach (SQL `teacher_clients(user)`),
/// and another client is "not found" to them — not even its existence shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Office,
    /// A teacher, by their user id.
    Teacher(uuid::Uuid),
}

impl Reader {
    /// The teacher's user id (for `$n::uuid is null or … teacher_clients($n)`), `None` for
    /// the office.
    pub fn teacher(self) -> Option<uuid::Uuid> {
        match self {
            Self::Office => None,
            Self::Teacher(user) => Some(user),
        }
    }

    /// Whether this reader may see client `client`.
    pub async fn sees_client(
        self,
        db: impl sqlx::PgExecutor<'_>,
        client: uuid::Uuid,
    ) -> Result<bool, DomainError> {
        let Self::Teacher(user) = self else {
            return Ok(true);
        };
        Ok(
            sqlx::query_scalar("select exists (select 1 from teacher_clients($1) c where c = $2)")
                .bind(user)
                .bind(client)
                .fetch_one(db)
                .await?,
        )
    }

    /// Whether this reader may see the current roster of group `group` (a teacher: a group
    /// they teach that is not archived, their teacher record active — the groups
    /// `teacher_clients` covers).
    pub async fn sees_group(
        self,
        db: impl sqlx::PgExecutor<'_>,
        group: uuid::Uuid,
    ) -> Result<bool, DomainError> {
        let Self::Teacher(user) = self else {
            return Ok(true);
        };
        Ok(sqlx::query_scalar(
            "select exists (select 1 from study_groups g join teachers t on t.id = g.teacher_id
                            where g.id = $1 and t.user_id = $2 and t.active
                              and g.status <> 'archived')",
        )
        .bind(group)
        .bind(user)
        .fetch_one(db)
        .await?)
    }
}

/// Field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

/// Why a rule refused, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that breaks a rule, by field (a 422).
    #[error("invalid: {}", describe(.0))]
    Invalid(FieldErrors),
    #[error("not found")]
    NotFound,
    /// The current state forbids it (a 409): "the invoice is paid".
    #[error("{0}")]
    Conflict(String),
    /// A booking clash (a 409) with the clashing rows.
    #[error("{message}")]
    Clash {
        message: String,
        clashes: serde_json::Value,
    },
    /// The actor may not touch this record (a teacher and another teacher's lesson).
    #[error("forbidden")]
    Forbidden,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn describe(fields: &FieldErrors) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DomainError {
    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        Self::Invalid(BTreeMap::from([(name.to_string(), problem.into())]))
    }

    /// A database error reported on a field when it violates one of the known constraints
    /// (`constraint`, `field`, `problem`); anything else stays a database error.
    pub fn on_constraint(error: sqlx::Error, known: &[(&str, &str, &str)]) -> Self {
        let name = error
            .as_database_error()
            .and_then(|d| d.constraint())
            .map(str::to_owned);
        match name.and_then(|n| known.iter().find(|(c, _, _)| *c == n)) {
            Some((_, field, problem)) => Self::field(field, *problem),
            None => error.into(),
        }
    }
}

/// `Ok(())` when no field failed, else [`DomainError::Invalid`].
pub fn check(fields: FieldErrors) -> Result<(), DomainError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Invalid(fields))
    }
}

/// Trimmed non-empty text of at most `max` characters, else the problem under `field`.
pub fn check_text(fields: &mut FieldErrors, field: &str, value: &str, max: usize) {
    // The length as sent (spaces included): what the OpenAPI schema's maxLength states.
    if value.trim().is_empty() {
        fields.insert(field.into(), "required".into());
    } else if value.chars().count() > max {
        fields.insert(field.into(), format!("at most {max} characters"));
    }
}

/// Declares a `text`-backed enum column: the variants, their database spelling, `FromStr`
/// (the error lists the allowed values), `Display`, serde as the spelling, and sqlx encode /
/// decode as `text`.
#[macro_export]
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        $vis enum $name { $($(#[$vmeta])* #[cfg_attr(feature = "openapi", schema(rename = $text))] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            /// "one of a, b, c": the validation message.
            pub fn expected() -> String {
                let all: &[&str] = &[$($text),+];
                format!("one of {}", all.join(", "))
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(Self::expected()) }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo { <&str as sqlx::Type<sqlx::Postgres>>::type_info() }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool { <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty) }
        }
        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut sqlx::postgres::PgArgumentBuffer)
                -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(s.parse()?)
            }
        }
        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo { <&str as sqlx::postgres::PgHasArrayType>::array_type_info() }
        }
    };
}

/// For PATCH bodies: distinguishes an absent key (`None`) from an explicit `null`
/// (`Some(None)`, clear the field). Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}
