//! The one way an event enters the log, for every stream (`job`, `user`, `token`).
//!
//! An append happens in a transaction opened by [`begin`], which takes one transaction-level
//! advisory lock before the next sequence number is chosen: events commit in sequence order,
//! and a projector reading by sequence never skips one that committed late.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::RequestMeta;

/// The advisory lock every append holds until it commits.
const APPEND_LOCK: i64 = 0x6372_6f6e_6665_6c74; // "cronfelt"

/// A transaction that holds the append lock.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_appends(&mut tx).await?;
    Ok(tx)
}

/// Takes the append lock in `tx` (until it ends), for a transaction that appends only
/// sometimes and so did not start with [`begin`].
pub async fn lock_appends(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An event to append.
#[derive(Debug)]
pub struct NewEvent<'a> {
    /// `job`, `user` or `token`.
    pub stream: &'a str,
    /// The job name, user name or token id.
    pub subject: &'a str,
    /// The subject's version after the event; `None`: one more than its last.
    pub version: Option<i64>,
    pub kind: &'a str,
    pub payload: &'a Value,
}

/// Appends `event` with the next sequence number; returns it and the time recorded.
#[tracing::instrument(skip_all, fields(stream = event.stream, subject = event.subject, kind = event.kind))]
pub async fn append(
    tx: &mut Transaction<'_, Postgres>,
    event: NewEvent<'_>,
    meta: &RequestMeta,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO events (seq, stream, job_name, version, type, payload, actor, request_id, idempotency_key)
         SELECT (SELECT coalesce(max(seq), 0) + 1 FROM events), $1, $2,
                coalesce($3, (SELECT coalesce(max(version), 0) + 1 FROM events
                              WHERE stream = $1 AND job_name = $2)),
                $4, $5, $6, $7, $8
         RETURNING seq, recorded_at",
    )
    .bind(event.stream)
    .bind(event.subject)
    .bind(event.version)
    .bind(event.kind)
    .bind(event.payload)
    .bind(&meta.actor)
    .bind(&meta.request_id)
    .bind(meta.idempotency.as_ref().map(|i| i.key.as_str()))
    .fetch_one(&mut **tx)
    .await?;
    Ok((row.try_get("seq")?, row.try_get("recorded_at")?))
}
