//! Time zone of the centre. Timestamps are stored in UTC; schedules, exports and notices use
//! Moscow wall-clock time. Moscow has been UTC+3 all year since 2014 (no DST), so a fixed offset
//! is exact for every date this system handles and needs no time-zone database.
use chrono::FixedOffset;

pub const MOSCOW: FixedOffset = match FixedOffset::east_opt(3 * 3600) {
    Some(z) => z,
    None => panic!("UTC+3 is a valid offset"),
};
