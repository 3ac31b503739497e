-- A retried write is answered from the events its first attempt appended (each carries the
-- request's idempotency key) and the job's state at the version it left the job at, so the
-- idempotency table keeps the key, the request's hash and that version; no stored answer.
CREATE INDEX events_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
ALTER TABLE idempotency DROP COLUMN status, DROP COLUMN response;
ALTER TABLE idempotency ADD COLUMN job_version BIGINT;
