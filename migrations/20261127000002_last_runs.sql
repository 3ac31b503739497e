-- Each job's newest execution record, for the dashboard: one indexed PostgreSQL read for a
-- page of jobs instead of one MongoDB lookup per job. Kept by the notifier, which reads every
-- record once; a row with no run says the job has no record at all.

CREATE TABLE last_runs (
    job_name   TEXT PRIMARY KEY,
    run_id     TEXT,
    status     TEXT,
    start_time BIGINT,
    end_time   BIGINT,
    CHECK ((run_id IS NULL) = (start_time IS NULL))
);
