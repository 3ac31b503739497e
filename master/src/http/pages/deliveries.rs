//! The delivery log as the job and channel pages show it (`deliveries.html`): one row per
//! delivery, newest first, with its newest tries folded under it.

use crate::http::views;
use crate::notify::delivery_log::DeliveryView;

/// Deliveries a page shows.
pub(super) const RECENT_DELIVERIES: i64 = 20;

pub(super) struct DeliveryRow {
    pub(super) created: String,
    pub(super) run_id: String,
    pub(super) job: String,
    pub(super) channel: String,
    pub(super) outcome: String,
    /// `pending`, `sent` or `failed`.
    pub(super) state: String,
    /// The tries so far, and for a pending delivery when the next one is.
    pub(super) attempts: String,
    pub(super) last_error: String,
    pub(super) tries: Vec<String>,
}

impl DeliveryRow {
    pub(super) fn new(delivery: DeliveryView) -> Self {
        let attempts = match delivery.next_at {
            Some(next) => format!("{} (next {})", delivery.attempts, views::when(next)),
            None => delivery.attempts.to_string(),
        };
        let tries = delivery
            .tries
            .iter()
            .map(|t| {
                let ok = if t.ok { "ok" } else { "failed" };
                let at = views::when(t.at);
                format!("#{} at {at}: {ok} — {}", t.attempt, t.detail)
            })
            .collect();
        Self {
            created: views::when(delivery.created_at),
            run_id: delivery.run_id,
            job: delivery.job,
            channel: delivery.channel,
            outcome: delivery.outcome,
            state: delivery.state,
            attempts,
            last_error: delivery.last_error.unwrap_or_else(|| "-".to_owned()),
            tries,
        }
    }
}
