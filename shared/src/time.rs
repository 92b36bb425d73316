//! The centre's calendar: Moscow time, "today", calendar months. Timestamps are stored in UTC;
//! schedules, exports and notices use Moscow wall-clock time. Moscow has been UTC+3 all year
//! since 2014 (no DST), so a fixed offset is exact for every date this system handles and needs
//! no time-zone database. SQL has the same "today" as `current_date_msk()` (a migration).
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};

pub const MOSCOW: FixedOffset = match FixedOffset::east_opt(3 * 3600) {
    Some(z) => z,
    None => panic!("UTC+3 is a valid offset"),
};

/// Today's date in Moscow.
pub fn today() -> NaiveDate {
    moscow_date(Utc::now())
}

/// The Moscow calendar date of an instant.
pub fn moscow_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&MOSCOW).date_naive()
}

/// Moscow midnight at the start of `day`, in UTC.
pub fn moscow_midnight(day: NaiveDate) -> DateTime<Utc> {
    MOSCOW
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

const MONTHS: [&str; 12] = [
    "Январь",
    "Февраль",
    "Март",
    "Апрель",
    "Май",
    "Июнь",
    "Июль",
    "Август",
    "Сентябрь",
    "Октябрь",
    "Ноябрь",
    "Декабрь",
];

/// A calendar month (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| Self { year, month })
    }

    pub fn of(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The current Moscow month.
    pub fn current() -> Self {
        Self::of(today())
    }

    /// Months since year 0: for "at most N months back" checks.
    pub fn index(self) -> i32 {
        self.year * 12 + self.month as i32 - 1
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn days(self) -> u32 {
        (self.next().first_day() - self.first_day()).num_days() as u32
    }

    pub fn date(self, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, day).unwrap_or_default()
    }

    /// «Октябрь 2026».
    pub fn title(self) -> String {
        format!("{} {}", MONTHS[self.month as usize - 1], self.year)
    }

    /// `2026-10`.
    pub fn key(self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }

    /// `[start, end)` in UTC of the month's Moscow days.
    pub fn utc_range(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            moscow_midnight(self.first_day()),
            moscow_midnight(self.next().first_day()),
        )
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| "a month as YYYY-MM".to_string())
    }
}

impl serde::Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

impl<'de> serde::Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("expected a month as YYYY-MM"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_strictly_and_know_their_days_and_range() {
        let m = Month::parse("2026-02").unwrap_or_else(|| panic!("a month"));
        assert_eq!(m.days(), 28);
        assert_eq!(m.key(), "2026-02");
        assert_eq!(m.title(), "Февраль 2026");
        assert_eq!(Month::parse("2026-13"), None);
        assert_eq!(Month::parse("26-01"), None);
        assert_eq!(Month::parse("2026-+1"), None);
        let (from, to) = Month::parse("2026-10")
            .unwrap_or_else(|| panic!("a month"))
            .utc_range();
        assert_eq!(from.to_rfc3339(), "2026-09-30T21:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-10-31T21:00:00+00:00");
        // 23:30 UTC on the 31st is already November 1st in Moscow.
        let late = Utc.with_ymd_and_hms(2026, 10, 31, 23, 30, 0).unwrap();
        assert_eq!(moscow_date(late).to_string(), "2026-11-01");
    }
}
