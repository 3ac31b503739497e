//! The delivery log as the API and the pages read it: a job's or a channel's newest
//! deliveries, each with its newest tries from `delivery_attempts`. Read-only; the notifier
//! writes both tables. A delivery outlives its channel and its job (the log is history), so
//! a deleted channel's or job's deliveries are still found by name.
//!
//! A delivery retried for a day is tried thousands of times, so a read carries at most
//! [`TRIES_SHOWN`] tries per delivery, the newest; `attempts` counts all of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cronfleet_common::{ChannelName, JobName};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::Row;
use utoipa::ToSchema;

use crate::store::{Store, StoreError};

/// Most tries of one delivery a read carries.
pub const TRIES_SHOWN: i64 = 10;

/// Whose deliveries to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFilter {
    Job(JobName),
    Channel(ChannelName),
}

/// One delivery: a run's outcome told to one channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: i64,
    pub run_id: String,
    pub job: String,
    pub channel: String,
    /// `failure`, `missed`, `recovery` or `success`.
    pub outcome: String,
    /// `pending` (not delivered yet), `sent`, or `failed` (given up).
    pub state: String,
    /// Tries so far.
    pub attempts: i32,
    /// When a pending delivery is tried next.
    pub next_at: Option<DateTime<Utc>>,
    /// What the last failed try got, while the delivery is not sent.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The newest tries (at most 10), newest first.
    pub tries: Vec<DeliveryTry>,
}

/// One try of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryTry {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The receiver's answer, or why the try failed.
    pub detail: String,
}

const COLUMNS: &str = "SELECT id, run_id, job_name, channel, outcome, state, attempts, next_at,
    last_error, created_at, sent_at FROM deliveries";

impl Store {
    /// The newest `limit` deliveries of a job or a channel, newest first, with their tries.
    #[tracing::instrument(skip_all)]
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: i64,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        // One query per filter, so each uses its own index (by job or by channel, id DESC).
        let (condition, name) = match filter {
            DeliveryFilter::Job(job) => ("job_name", job.as_str()),
            DeliveryFilter::Channel(channel) => ("channel", channel.as_str()),
        };
        let rows = sqlx::query(&format!(
            "{COLUMNS} WHERE {condition} = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = rows.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let mut tries = self.tries(&ids).await?;
        for delivery in &mut deliveries {
            delivery.tries = tries.remove(&delivery.id).unwrap_or_default();
        }
        Ok(deliveries)
    }

    /// The newest tries of each delivery in `ids`, newest first.
    async fn tries(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<DeliveryTry>>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.delivery_id, t.attempt, t.at, t.ok, t.detail
             FROM unnest($1::bigint[]) AS d(id)
             CROSS JOIN LATERAL (
                 SELECT * FROM delivery_attempts a WHERE a.delivery_id = d.id
                 ORDER BY a.attempt DESC LIMIT $2
             ) t
             ORDER BY t.delivery_id, t.attempt DESC",
        )
        .bind(ids)
        .bind(TRIES_SHOWN)
        .fetch_all(&self.pool)
        .await?;
        let mut tries: HashMap<i64, Vec<DeliveryTry>> = HashMap::new();
        for row in &rows {
            tries
                .entry(row.try_get("delivery_id")?)
                .or_default()
                .push(DeliveryTry {
                    attempt: row.try_get("attempt")?,
                    at: row.try_get("at")?,
                    ok: row.try_get("ok")?,
                    detail: row.try_get("detail")?,
                });
        }
        Ok(tries)
    }
}

fn delivery(row: &PgRow) -> Result<DeliveryView, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let pending = state == "pending";
    Ok(DeliveryView {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        job: row.try_get("job_name")?,
        channel: row.try_get("channel")?,
        outcome: row.try_get("outcome")?,
        attempts: row.try_get("attempts")?,
        next_at: if pending {
            Some(row.try_get("next_at")?)
        } else {
            None
        },
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
        tries: Vec::new(),
        state,
    })
}
