//! When a worker may try a scheduled tick, and when it gives it up.
//!
//! The first worker in a tick's order ([`crate::rendezvous`]) tries it [`CLAIM_LEAD`] before
//! its planned time; each next one a hand-off later. However long the order, every worker gets
//! its turn before the tick's starting deadline and before the job's next tick can be claimed
//! (a claim of the next tick moves the guard past this one). A tick still waiting at its
//! deadline is given up, each next worker a little later, so that normally one worker writes
//! the `missed` record. A worker whose turn has come may still hold a tick back a while
//! ([`Taker`]), when what it knows of itself says the first worker is most likely about to
//! start it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use cronfleet_common::job::DEFAULT_STARTING_DEADLINE;
use cronfleet_common::JobSpec;

use crate::tick::CLAIM_LEAD;

/// The shortest hand-off between one worker's turn and the next one's.
pub const HANDOFF: TimeDelta = TimeDelta::milliseconds(250);
/// The longest hand-off, however slow etcd is.
const MAX_HANDOFF: TimeDelta = TimeDelta::seconds(5);
/// How long a worker has had a free slot and nothing of its own to start before it takes a
/// tick handed off to it: long enough for workers that started a burst together to free their
/// slots too, short enough not to leave a worker with a backlog alone for long.
const IDLE_BEFORE_TAKING: TimeDelta = TimeDelta::milliseconds(100);
/// How much later each next worker gives a tick up as missed.
pub const MISS_STAGGER: TimeDelta = TimeDelta::milliseconds(100);

/// The hand-off: [`HANDOFF`], or twice etcd's recent answer time to a claim when that is
/// longer (a claim still in flight is not raced), at most [`MAX_HANDOFF`].
pub fn handoff(claim_latency: Duration) -> TimeDelta {
    TimeDelta::from_std(claim_latency * 2)
        .unwrap_or(MAX_HANDOFF)
        .clamp(HANDOFF, MAX_HANDOFF)
}

/// A scheduled tick's times on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// When this worker may first try to claim it.
    pub try_at: DateTime<Utc>,
    /// The latest it may start.
    pub deadline: DateTime<Utc>,
    /// When this worker records it as missed if it is still waiting.
    pub expire_at: DateTime<Utc>,
}

impl Turn {
    /// The times of tick `planned` of `spec` for the worker `rank`th in its order.
    pub fn of(spec: &JobSpec, planned: DateTime<Utc>, rank: i32, handoff: TimeDelta) -> Self {
        let deadline = spec.start_deadline(planned);
        let mut latest = planned + (deadline - planned) / 2;
        if let Some(next) = spec.schedule().next_after(planned) {
            latest = latest.min(next - CLAIM_LEAD - TimeDelta::milliseconds(1));
        }
        let turn = planned - CLAIM_LEAD + handoff * rank;
        Self {
            try_at: turn.min(latest).max(planned - CLAIM_LEAD),
            deadline,
            expire_at: deadline + MISS_STAGGER * rank,
        }
    }
}

/// What a worker knows of itself when a tick it is not first in the order for becomes
/// eligible.
#[derive(Debug, Clone, Copy)]
pub struct Taker {
    /// etcd has not answered txns this worker sent.
    pub own_txns_out: bool,
    /// Since when this worker has had a free slot and started nothing it is first for.
    pub idle_since: Option<DateTime<Utc>>,
}

impl Taker {
    /// Whether to leave a tick ranked `rank`, eligible since `try_at`, to the workers ahead a
    /// while longer — at most [`MAX_HANDOFF`] past its turn, and never past half the time from
    /// its turn to its starting `deadline`:
    /// * while etcd has not answered this worker's own txns: under a burst every worker's
    ///   claims queue up in etcd together, so the first worker's are most likely still on
    ///   their way too, and a hand-off timed by calmer answers would only send a losing txn,
    ///   or win a tick the first worker had set up to start at once;
    /// * until this worker has had a free slot and nothing of its own to start for
    ///   [`IDLE_BEFORE_TAKING`]: under a burst every worker's slots free up at about the same time, and the
    ///   first to free up would otherwise take the second waves of all the others, which then
    ///   find nothing left to start (the slow bursts measured had one worker running nearly
    ///   half of them).
    pub fn holds_back(
        &self,
        rank: u32,
        try_at: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        let mut until = try_at + MAX_HANDOFF;
        if let Some(deadline) = deadline {
            until = until.min(try_at + (deadline - try_at) / 2);
        }
        if rank == 0 || now >= until {
            return false;
        }
        self.own_txns_out || now < self.idle_since.unwrap_or(now) + IDLE_BEFORE_TAKING
    }
}

/// The last tick of `spec` after `from` and at or before `now`, or `from` when there is none.
/// Looks back no further than the job's starting deadline allows a tick to start.
pub fn last_tick_by(spec: &JobSpec, from: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let window = spec
        .starting_deadline_secs
        .and_then(|secs| i64::try_from(secs).ok())
        .map_or(DEFAULT_STARTING_DEADLINE, TimeDelta::seconds);
    let mut latest = from;
    let mut cursor = from.max(now - window);
    while let Some(tick) = spec.schedule().next_after(cursor).filter(|t| *t <= now) {
        latest = tick;
        cursor = tick;
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expr: &str, deadline: Option<u64>) -> JobSpec {
        let json = serde_json::json!({"name": "j", "command": "true", "cronExpr": expr, "startingDeadlineSecs": deadline});
        JobSpec::from_user_json(json.to_string().as_bytes()).unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_764_000_000_000 + ms).unwrap()
    }

    #[test]
    fn workers_take_turns_a_handoff_apart() {
        let minutely = spec("* * * * *", None);
        let times: Vec<i64> = (0..3)
            .map(|rank| {
                let turn = Turn::of(&minutely, at(0), rank, HANDOFF);
                (turn.try_at - at(0)).num_milliseconds()
            })
            .collect();
        assert_eq!(times, [-200, 50, 300]);
        let turn = Turn::of(&minutely, at(0), 2, HANDOFF);
        assert_eq!(turn.deadline, at(60_000));
        assert_eq!(turn.expire_at, at(60_200));
    }

    #[test]
    fn every_turn_comes_before_the_deadline_and_the_next_tick() {
        let every_second = spec("* * * * * *", None);
        let last = Turn::of(&every_second, at(0), 40, HANDOFF);
        assert_eq!(last.try_at, at(500), "half way to a 1 s deadline");
        let long_deadline = spec("* * * * * *", Some(60));
        let last = Turn::of(&long_deadline, at(0), 40, HANDOFF);
        assert_eq!(last.try_at, at(799), "before the next tick is claimed");
    }

    #[test]
    fn a_handed_off_tick_waits_for_the_takers_own_txns_and_a_handoff_of_idleness() {
        let taker = |own_txns_out, idle_since| Taker {
            own_txns_out,
            idle_since,
        };
        let (turn, deadline) = (at(0), Some(at(60_000)));
        // First in the order: never held.
        assert!(!taker(true, None).holds_back(0, turn, deadline, at(10)));
        // Own txns out: held, up to the longest hand-off.
        assert!(taker(true, Some(at(-9_000))).holds_back(1, turn, deadline, at(10)));
        assert!(!taker(true, None).holds_back(1, turn, deadline, at(5_000)));
        // Idle for less than a hand-off, or not idle at all yet: held.
        assert!(taker(false, Some(at(-80))).holds_back(1, turn, deadline, at(10)));
        assert!(taker(false, None).holds_back(1, turn, deadline, at(10)));
        assert!(!taker(false, Some(at(-90))).holds_back(2, turn, deadline, at(10)));
        // Never past half the way to the starting deadline.
        assert!(!taker(true, None).holds_back(1, turn, Some(at(1_000)), at(500)));
        assert!(taker(true, None).holds_back(1, turn, Some(at(1_000)), at(499)));
    }

    #[test]
    fn the_handoff_follows_a_slow_etcd_within_bounds() {
        assert_eq!(handoff(Duration::from_millis(3)), HANDOFF);
        assert_eq!(
            handoff(Duration::from_millis(400)),
            TimeDelta::milliseconds(800)
        );
        assert_eq!(handoff(Duration::from_secs(60)), MAX_HANDOFF);
    }

    #[test]
    fn the_last_tick_is_found_within_the_deadline_window() {
        let every_ten = spec("*/10 * * * * *", None);
        assert_eq!(last_tick_by(&every_ten, at(0), at(35_000)), at(30_000));
        assert_eq!(last_tick_by(&every_ten, at(0), at(9_000)), at(0));
        let daily = spec("0 0 * * *", None);
        assert_eq!(
            last_tick_by(&daily, at(0), at(3_600_000)),
            at(0),
            "nothing after from within the window"
        );
    }
}
