-- The master's event store: an append-only log of every job command that was accepted,
-- and the `jobs` read model updated in the same transaction as each append.

CREATE TABLE events (
    -- Global sequence. Appends take a transaction-level advisory lock before choosing
    -- max(seq) + 1, so sequence order is commit order and a projector reading by sequence
    -- never skips an event that committed late.
    seq             BIGINT PRIMARY KEY CHECK (seq > 0),
    job_name        TEXT NOT NULL CHECK (job_name ~ '^[A-Za-z0-9._-]{1,128}$'),
    version         BIGINT NOT NULL CHECK (version > 0),
    type            TEXT NOT NULL,
    payload         JSONB NOT NULL,
    actor           TEXT NOT NULL CHECK (actor <> ''),
    request_id      TEXT NOT NULL,
    idempotency_key TEXT,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (job_name, version)
);

CREATE INDEX events_by_job ON events (job_name, seq);
CREATE INDEX events_by_actor ON events (actor, seq);
CREATE INDEX events_by_type ON events (type, seq);
CREATE INDEX events_by_time ON events (recorded_at, seq);

-- The log is append-only: the database itself refuses to change or remove an event.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- Read model: the current state of every job, as of the last event applied to it.
CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    spec        JSONB NOT NULL,
    version     BIGINT NOT NULL,
    paused      BOOLEAN NOT NULL,
    deleted     BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    updated_by  TEXT NOT NULL,
    last_seq    BIGINT NOT NULL REFERENCES events (seq)
);

CREATE INDEX jobs_live_by_name ON jobs (name) WHERE NOT deleted;
