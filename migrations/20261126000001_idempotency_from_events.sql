-- A retried write is answered from the events its first attempt appended (each carries the
-- request's idempotency key), so the idempotency table keeps only the key and the request's
-- hash.
CREATE INDEX events_idempotency_key ON events (idempotency_key) WHERE idempotency_key IS NOT NULL;
ALTER TABLE idempotency DROP COLUMN status, DROP COLUMN response;
