-- Identity: users with argon2 password hashes and roles, and API tokens stored as hashes.
-- User and token changes are events in the same audit log as job changes, so `events` gains a
-- stream: `job` (subject is a job name), `user` (a user name) or `token` (a token id).

ALTER TABLE events ADD COLUMN stream TEXT NOT NULL DEFAULT 'job'
    CHECK (stream IN ('job', 'user', 'token'));
ALTER TABLE events DROP CONSTRAINT events_job_name_check;
ALTER TABLE events ADD CONSTRAINT events_subject_check
    CHECK (stream <> 'job' OR job_name ~ '^[A-Za-z0-9._-]{1,128}$');
ALTER TABLE events DROP CONSTRAINT events_job_name_version_key;
ALTER TABLE events ADD CONSTRAINT events_stream_subject_version_key UNIQUE (stream, job_name, version);

CREATE TABLE users (
    name          TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled      BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by    TEXT NOT NULL
);

CREATE TABLE api_tokens (
    -- The public part of a token, `cft_<id>_<secret>`: how a presented token is found.
    id           TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    user_name    TEXT NOT NULL REFERENCES users (name),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    -- SHA-256 of the secret part; the secret itself is shown once and never stored.
    secret_hash  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by   TEXT NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_name);
