-- A tamper-evident audit log: every event stores the SHA-256 of its content and of the event
-- before it (`prev_hash`), so changing, removing or inserting an event anywhere breaks the
-- chain from there on; `cronfleet-master audit verify` walks it.
--
-- The digest covers every column but the hashes, each as its length and its text (so no
-- field can borrow from the next; a NULL as `-`, which no length starts with): seq, stream, subject, version, type, payload (jsonb's own
-- normalised text), actor, request id, idempotency key, and the time recorded in
-- microseconds since the epoch (independent of the session's time zone).

ALTER TABLE events ADD COLUMN prev_hash BYTEA, ADD COLUMN hash BYTEA;

CREATE FUNCTION event_digest(prev BYTEA, e events) RETURNS BYTEA
LANGUAGE sql STABLE AS $$
    SELECT sha256(coalesce(prev, ''::bytea) || convert_to(
        (SELECT string_agg(coalesce(length(field)::text || ':' || field, '-'), '' ORDER BY n)
         FROM unnest(ARRAY[
             e.seq::text, e.stream, e.job_name, e.version::text, e.type, e.payload::text,
             e.actor, e.request_id, e.idempotency_key,
             (extract(epoch FROM e.recorded_at) * 1000000)::bigint::text
         ]) WITH ORDINALITY AS f(field, n)),
        'UTF8'))
$$;

-- The events already logged join the chain in sequence order.
ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;
DO $$
DECLARE
    e events;
    prev BYTEA := NULL;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY seq LOOP
        UPDATE events SET prev_hash = prev, hash = event_digest(prev, e) WHERE seq = e.seq
        RETURNING hash INTO prev;
    END LOOP;
END;
$$;
ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

-- Every insert, by any path, links to the newest event. Appends hold the append lock, so the
-- newest event cannot change under an insert.
CREATE FUNCTION events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.prev_hash := (SELECT hash FROM events ORDER BY seq DESC LIMIT 1);
    NEW.hash := event_digest(NEW.prev_hash, NEW);
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain();
