-- Jobs carry small typed arguments instead of a copy of their event (the delivery's body
-- is the stored event), under kind names such as `prepare-environment`. Rows of the old
-- kinds that have not run cannot be read by the new handlers: they end as failed.
ALTER TABLE jobs RENAME COLUMN payload TO args;
UPDATE jobs SET state = 'failed', last_error = 'stored by an older version of nbforge',
    finished_at = updated_at, lease_owner = NULL, lease_until = NULL
    WHERE state IN ('pending', 'running');
CREATE INDEX jobs_finished ON jobs (finished_at);

-- Recurring jobs: each period, the process whose update moves `next_run_at` on enqueues
-- the period's job. Times are Unix epoch milliseconds.
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    period_ms BIGINT NOT NULL,
    next_run_at BIGINT NOT NULL,
    last_job_id BIGINT,
    updated_at BIGINT NOT NULL
);
