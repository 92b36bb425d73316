-- Jobs that find a rate limit busy snooze; `line` is the waiting line's end, so each of them
-- comes back at its own turn (one interval after the one before) instead of all at the next
-- free slot, where one would win and the rest snooze again (N² claims for N waiters).
alter table rate_limits add column line timestamptz;
