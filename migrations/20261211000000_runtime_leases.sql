-- Runtime ready for external effects (issue 11).
--
-- Every claim gets a random lease token, written to the engine row and the ledger row in the
-- claim's statement. Outcomes are recorded only where the token still matches (a re-queued
-- job claimed again — even by the same process, with the same attempt number after a lost
-- outcome — has a new token), and a running job's own writes (progress, artifact, the fence
-- a handler takes before an external call) check it too: a run that lost its lease writes
-- nothing.
alter table apalis.jobs add column lease uuid;
alter table job_runs add column lease uuid;

-- A job that waits for a rate limit or a provider's Retry-After goes back to the queue without
-- using an attempt ("snoozed"); counted for the ops view.
alter table job_runs add column snoozes integer not null default 0;
