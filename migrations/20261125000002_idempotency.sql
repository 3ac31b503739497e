-- Idempotency keys: a retried write with the same key and body gets the first answer and
-- appends nothing. Stored in the same transaction as the events it answered for.
CREATE TABLE idempotency (
    key          TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash TEXT NOT NULL,
    status       SMALLINT NOT NULL,
    response     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
