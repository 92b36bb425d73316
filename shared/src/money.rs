//! Money: a whole number of kopecks, never a float. It travels as a decimal string of roubles
//! (`"4500.00"`), is parsed digit by digit, and reaches PostgreSQL's `numeric(12,2)` as kopecks
//! (`$n::bigint / 100.0` in the SQL) or leaves it as `amount::text`.
//!
//! An amount written with more than two decimals (`"10.005"`) is refused, not rounded: a till
//! never takes a third of a kopeck, and rounding would silently change what the operator
//! typed. What the api takes is exactly [`PATTERN`] (no sign, no leading zeros, at most two
//! decimals): the schema and the parser say the same.
use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in kopecks (hundredths of a rouble).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// The most the CRM records in one amount: ten million roubles (fits `numeric(12,2)` well).
pub const MAX: Money = Money(1_000_000_000);

/// Why a text is not an amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("a decimal string of roubles such as \"4500.00\"")]
    Syntax,
    #[error("amounts are counted in whole kopecks (at most two decimals)")]
    BelowKopeck,
    #[error("at most 10000000.00")]
    TooLarge,
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_kopecks(kopecks: i64) -> Self {
        Self(kopecks)
    }

    pub const fn kopecks(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// An amount as an outside service wrote it in JSON (Timepad: `"amount": 500.0`), read
    /// from the raw text of the value (a number or a string), never through a float. A part
    /// below the kopeck is rounded half away from zero on the decimal digits: it is the
    /// service's arithmetic, and an import does not refuse an order for it. `None` for `null`,
    /// an exponent, or anything else that is not a plain decimal.
    pub fn from_service_text(raw: &str) -> Option<Money> {
        let raw = raw.trim();
        let text = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        Self::parse(text, true).ok()
    }

    /// Parses `[-]digits[.digits]` (a provider's text): leading zeros and a sign are taken, and
    /// with `round` a part below the kopeck is rounded half away from zero (else an error).
    fn parse(text: &str, round: bool) -> Result<Money, MoneyError> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !all_digits(whole)
            || !all_digits(fraction)
            || (digits.contains('.') && fraction.is_empty())
        {
            return Err(MoneyError::Syntax);
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 8 {
            return Err(MoneyError::TooLarge);
        }
        let rubles: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::Syntax)?
        };
        let fraction = fraction.as_bytes();
        let digit = |i: usize| fraction.get(i).map_or(0, |b| i64::from(b - b'0'));
        let mut kopecks = rubles * 100 + digit(0) * 10 + digit(1);
        let rest = fraction.get(2..).unwrap_or_default();
        if rest.iter().any(|&b| b != b'0') {
            if !round {
                return Err(MoneyError::BelowKopeck);
            }
            if rest[0] >= b'5' {
                kopecks += 1;
            }
        }
        let money = Money(if negative { -kopecks } else { kopecks });
        if money.0.abs() > MAX.0 {
            return Err(MoneyError::TooLarge);
        }
        Ok(money)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// What the api takes, exactly [`PATTERN`]: `"4500"`, `"4500.5"`, `"4500.50"`, `"0"`;
    /// `"4500.505"` is [`MoneyError::BelowKopeck`]; a sign, leading zeros (`"007"`), a bare
    /// point, an exponent or spaces are [`MoneyError::Syntax`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let plain_whole = digits(whole) && (whole == "0" || !whole.starts_with('0'));
        if !plain_whole || (text.contains('.') && !digits(fraction)) {
            return Err(MoneyError::Syntax);
        }
        if fraction.len() > 2 {
            return Err(MoneyError::BelowKopeck);
        }
        Self::parse(text, false)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Only a string: a JSON number is a float to most clients, which is what this type refuses.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string of roubles such as \"4500.00\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Money, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The OpenAPI schema: a string of roubles with at most two decimals.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .pattern(Some(PATTERN))
            .max_length(Some(11))
            .description(Some(
                "Roubles as a decimal string with at most two decimals (kopecks), e.g. \"4500.00\"",
            ))
            .examples(["4500.00"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Money {}

/// What a money string looks like: 0 to 10000000.00 roubles in whole kopecks, without leading
/// zeros (the parser also takes `"007.500"`; the schema states the plain form).
pub const PATTERN: &str = r"^((0|[1-9][0-9]{0,6})(\.[0-9]{1,2})?|10000000(\.00?)?)$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_and_refuses_what_is_not_a_whole_kopeck() {
        let ok = |s: &str| s.parse::<Money>().map(Money::kopecks);
        assert_eq!(ok("4500"), Ok(450_000));
        assert_eq!(ok("4500.5"), Ok(450_050));
        assert_eq!(ok("4500.05"), Ok(450_005));
        assert_eq!(ok("0.01"), Ok(1));
        assert_eq!(ok("0"), Ok(0));
        assert_eq!(ok("10000000.00"), Ok(1_000_000_000));
        assert_eq!(ok("0.001"), Err(MoneyError::BelowKopeck));
        assert_eq!(ok("4500.505"), Err(MoneyError::BelowKopeck));
        assert_eq!(ok("1.000"), Err(MoneyError::BelowKopeck));
        assert_eq!(ok("10000000.01"), Err(MoneyError::TooLarge));
        assert_eq!(ok("999999999999999999999"), Err(MoneyError::TooLarge));
        for bad in [
            "", ".5", "5.", "1e3", "+5", " 5", "5 ", "1,50", "--1", "0x10", "NaN", "-2.50", "-0",
            "00", "007.5", "٣",
        ] {
            assert_eq!(ok(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn prints_roubles_and_two_decimals() {
        assert_eq!(Money::from_kopecks(450_000).to_string(), "4500.00");
        assert_eq!(Money::from_kopecks(5).to_string(), "0.05");
        assert_eq!(Money::from_kopecks(-250).to_string(), "-2.50");
        assert_eq!(
            serde_json::to_value(Money::from_kopecks(249_950)).ok(),
            Some(serde_json::json!("2499.50"))
        );
    }

    #[test]
    fn json_takes_strings_only() {
        let read = |v: serde_json::Value| serde_json::from_value::<Money>(v).map(Money::kopecks);
        assert_eq!(read(serde_json::json!("1500.50")).ok(), Some(150_050));
        assert!(read(serde_json::json!(1500.5)).is_err());
        assert!(read(serde_json::json!("1500.505")).is_err());
    }

    #[test]
    fn service_amounts_are_read_from_their_text() {
        let read = |v: &str| Money::from_service_text(v).map(Money::kopecks);
        assert_eq!(read("500.0"), Some(50_000));
        assert_eq!(read("500"), Some(50_000));
        assert_eq!(read("\"1234.56\""), Some(123_456));
        assert_eq!(read("99.995"), Some(10_000));
        assert_eq!(read("0.30000000000000004"), Some(30));
        assert_eq!(read("-2.505"), Some(-251));
        assert_eq!(read("007.50"), Some(750));
        assert_eq!(read("null"), None);
        assert_eq!(read("5e2"), None);
        assert_eq!(read("1e300"), None);
    }
}
