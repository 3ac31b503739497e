//! Sending what the reader queued in `deliveries`, at least once: a due delivery is leased
//! (its next try pushed [`LEASE`] ahead) before it is sent, so a notifier that dies mid-send
//! leaves it to be sent again; every try is logged in `delivery_attempts`; a failed one is
//! tried again after an exponential backoff (1 s doubling, at most [`MAX_BACKOFF`], ±20 %)
//! until [`GIVE_UP_AFTER`] has passed since it was queued. Up to [`IN_FLIGHT`] tries run at
//! once and each is settled the moment it ends, so a receiver that hangs until the timeout
//! holds up its own deliveries only. The tries wait on the network alone: the channels of a
//! leased batch are read before its tries start, and tries are settled one at a time, so the
//! sender holds at most one database connection however many tries are out.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use sqlx::Row;

use super::channel::Target;
use super::channel_store::Channel;
use super::email::Mailer;
use super::payload;
use super::webhook::{Delivery, Webhooks};
use super::NotifyError;
use crate::metrics::Metrics;
use crate::store::Store;

/// Tries in flight at once.
const IN_FLIGHT: usize = 32;
/// How long a leased delivery is left alone: longer than a try can take (a webhook gives up
/// after 10 s, mail after 15 s), so only a notifier that died mid-try leaves one to the lease.
const LEASE: Duration = Duration::from_secs(30);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After this long, a delivery that never went through is marked failed.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Sender {
    pub store: Store,
    pub webhooks: Webhooks,
    pub mailer: Mailer,
    pub metrics: std::sync::Arc<Metrics>,
}

struct Due {
    id: i64,
    run_id: String,
    channel: String,
    outcome: String,
    payload: Value,
    attempts: i32,
    expired: bool,
}

impl Sender {
    /// Sends due deliveries until dropped, looking for more every `poll` while there is room.
    pub async fn run(&self, poll: Duration) {
        let mut in_flight = FuturesUnordered::new();
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((due, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(e) = self.settle(&due, result).await {
                        tracing::warn!(delivery = due.id, error = %e, "could not record a delivery try; it is tried again when its lease ends");
                    }
                }
                _ = ticks.tick() => {
                    let room = IN_FLIGHT - in_flight.len();
                    if room == 0 {
                        continue;
                    }
                    match self.lease_due(room).await {
                        Ok(due) => {
                            let channels = self.channels_of(&due).await;
                            in_flight.extend(due.into_iter().map(|due| {
                                let channel = channels.get(&due.channel).cloned();
                                self.try_one(due, channel)
                            }));
                        }
                        Err(e) => tracing::warn!(error = %e, "notifier could not read due deliveries; reading again"),
                    }
                }
            }
        }
    }

    /// Up to `room` due deliveries, each leased for one try.
    async fn lease_due(&self, room: usize) -> Result<Vec<Due>, NotifyError> {
        let rows = sqlx::query(
            "UPDATE deliveries SET next_at = now() + make_interval(secs => $2), attempts = attempts + 1
             WHERE id IN (SELECT id FROM deliveries WHERE state = 'pending' AND next_at <= now()
                          ORDER BY next_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, run_id, channel, outcome, payload, attempts,
                       created_at < now() - make_interval(secs => $3) AS expired",
        )
        .bind(i64::try_from(room).unwrap_or(i64::MAX))
        .bind(LEASE.as_secs_f64())
        .bind(GIVE_UP_AFTER.as_secs_f64())
        .fetch_all(&self.store.pool)
        .await?;
        let due = rows
            .iter()
            .map(|row| {
                Ok(Due {
                    id: row.try_get("id")?,
                    run_id: row.try_get("run_id")?,
                    channel: row.try_get("channel")?,
                    outcome: row.try_get("outcome")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                    expired: row.try_get("expired")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(due)
    }

    /// The channels `due` goes to, read one after another: each as stored (`None` when it no
    /// longer exists), or why it could not be read.
    async fn channels_of(&self, due: &[Due]) -> HashMap<String, Result<Option<Channel>, String>> {
        let mut channels = HashMap::new();
        for delivery in due {
            if !channels.contains_key(&delivery.channel) {
                let read = self.store.channel(&delivery.channel).await;
                channels.insert(
                    delivery.channel.clone(),
                    read.map_err(|e| format!("reading channel {}: {e}", delivery.channel)),
                );
            }
        }
        channels
    }

    /// One try of `due` to `channel` (as [`Sender::channels_of`] read it): `due` back with the
    /// answer, or the error and whether trying again is pointless.
    async fn try_one(
        &self,
        due: Due,
        channel: Option<Result<Option<Channel>, String>>,
    ) -> (Due, Result<String, (String, bool)>) {
        let result = match channel {
            Some(Ok(Some(channel))) => self.send(&due, channel).await.map_err(|e| (e, false)),
            Some(Ok(None)) => Err((format!("channel {} no longer exists", due.channel), true)),
            Some(Err(error)) => Err((error, false)),
            None => Err((format!("channel {} was not read", due.channel), false)),
        };
        (due, result)
    }

    async fn send(&self, due: &Due, channel: Channel) -> Result<String, String> {
        match &channel.target {
            Target::Webhook { url, headers } => {
                let body = serde_json::to_vec(&due.payload).unwrap_or_default();
                let secret = channel.secret.unwrap_or_default();
                self.webhooks
                    .send(&Delivery {
                        url,
                        headers,
                        secret: &secret,
                        body: &body,
                        run_id: &due.run_id,
                        delivery_id: due.id,
                        outcome: &due.outcome,
                    })
                    .await
            }
            Target::Email { recipients } => {
                let (subject, text) = payload::email(&due.payload);
                let message_id = format!("{}.{}", due.run_id, due.channel);
                self.mailer
                    .send(recipients, &subject, &text, &message_id)
                    .await
            }
        }
    }

    /// Records a try and moves the delivery on: sent, retried later, or given up — only if no
    /// later lease took it meanwhile (a notifier that stalled past its lease settles nothing).
    async fn settle(
        &self,
        due: &Due,
        result: Result<String, (String, bool)>,
    ) -> Result<(), NotifyError> {
        let ok = result.is_ok();
        let (detail, permanent) = match result {
            Ok(answer) => (answer, false),
            Err(error) => error,
        };
        let mut tx = self.store.pool.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, ok, detail) VALUES ($1, $2, $3, $4)
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(due.id)
        .bind(due.attempts)
        .bind(ok)
        .bind(&detail)
        .execute(&mut *tx)
        .await?;
        if ok {
            sqlx::query(
                "UPDATE deliveries SET state = 'sent', sent_at = now(), last_error = NULL
                 WHERE id = $1 AND state = 'pending' AND attempts = $2",
            )
            .bind(due.id)
            .bind(due.attempts)
            .execute(&mut *tx)
            .await?;
        } else if due.expired || permanent {
            sqlx::query(
                "UPDATE deliveries SET state = 'failed', last_error = $2
                 WHERE id = $1 AND state = 'pending' AND attempts = $3",
            )
            .bind(due.id)
            .bind(&detail)
            .bind(due.attempts)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE deliveries SET next_at = now() + make_interval(secs => $2), last_error = $3
                 WHERE id = $1 AND state = 'pending' AND attempts = $4",
            )
            .bind(due.id)
            .bind(backoff(due.attempts, rand_unit()).as_secs_f64())
            .bind(&detail)
            .bind(due.attempts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if ok {
            self.metrics.notification_sent();
        } else {
            tracing::warn!(delivery = due.id, channel = %due.channel, run.id = %due.run_id, error = %detail, "delivery failed");
            self.metrics.notification_failed();
        }
        Ok(())
    }
}

/// The wait after try `attempts` failed: 1 s doubling per try, at most [`MAX_BACKOFF`], spread
/// by `jitter` (0..1) over ±20 %.
pub fn backoff(attempts: i32, jitter: f64) -> Duration {
    let exponent = attempts.clamp(1, 30) - 1;
    let base = (2f64.powi(exponent)).min(MAX_BACKOFF.as_secs_f64());
    Duration::from_secs_f64(base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

fn rand_unit() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_within_the_jitter() {
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(12, 0.5), MAX_BACKOFF);
        assert!(backoff(3, 0.0) >= Duration::from_secs_f64(3.2));
        assert!(backoff(3, 1.0) <= Duration::from_secs_f64(4.8));
    }
}
