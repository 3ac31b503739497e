-- Outcomes: notification channels (an event stream of their own), the notifier's progress
-- over execution records, each job's run of failures, and the delivery log.

ALTER TABLE events DROP CONSTRAINT events_stream_check;
ALTER TABLE events ADD CONSTRAINT events_stream_check
    CHECK (stream IN ('job', 'user', 'token', 'channel'));

CREATE TABLE channels (
    name       TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    kind       TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),
    -- Webhook: url, headers. E-mail: recipients. Never the secret.
    config     JSONB NOT NULL,
    -- The HMAC key of a webhook; shown to no one after it is set.
    secret     TEXT,
    version    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by TEXT NOT NULL
);

-- One row per execution record the notifier has acted on: a record is acted on once, however
-- often it is read (restarts, overlapping reads, two notifiers for a moment).
CREATE TABLE outcomes (
    run_id      TEXT PRIMARY KEY,
    job_name    TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- failure, missed, recovery, success; NULL when the record reports nothing (a killed
    -- run, an attempt that is retried).
    outcome     TEXT,
    -- The second of the record's `_id`: rows older than any read can reach are pruned.
    oid_secs    BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outcomes_by_oid ON outcomes (oid_secs);

-- Each job's current run of failed ticks, for `afterFailures` and `recovery`.
CREATE TABLE failure_streaks (
    job_name TEXT PRIMARY KEY,
    failures INT NOT NULL
);

-- How far the notifier has read: the ObjectId time (seconds) of the newest record acted on.
CREATE TABLE notifier_checkpoint (
    id         BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    oid_secs   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    id            BIGSERIAL PRIMARY KEY,
    run_id        TEXT NOT NULL,
    job_name      TEXT NOT NULL,
    channel       TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    payload       JSONB NOT NULL,
    -- pending (not yet delivered), sent, failed (gave up).
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts      INT NOT NULL DEFAULT 0,
    next_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at       TIMESTAMPTZ,
    UNIQUE (run_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_job ON deliveries (job_name, id DESC);
CREATE INDEX deliveries_by_channel ON deliveries (channel, id DESC);

-- Every try of a delivery: when, and what came back.
CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    ok          BOOLEAN NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
