//! Ticks that are due on this worker but not started yet.
//!
//! A tick enters when it falls due (or a run-now request arrives) and leaves in one of three
//! ways: this worker takes a slot for it and tries to claim it; the fleet settles it (the guard
//! moved to it or past it: someone ran, skipped or missed it); or its starting deadline passes
//! while it still waits here, and it expires to be recorded as missed. In between it waits:
//! first for its turn in the fleet's order ([`crate::rendezvous`]), then, once eligible, for a
//! free slot, oldest planned time first and, among ticks of the same time, those this worker
//! comes earliest in the order for (so busy workers that free up together do not all reach
//! for the same leftover tick). Waiting here reserves nothing in etcd, so any other
//! worker with room can take the tick meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::values::{Chain, Request};
use cronfleet_common::{JobName, JobSpec};

/// What brought a tick in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The job's schedule.
    Schedule,
    /// A run-now request at this mod revision of `trigger/<job>`, as it reads.
    Manual(i64, Option<Arc<Request>>),
    /// The next attempt of a tick, as `retry/<job>` held it at this mod revision.
    Retry(Arc<Chain>, i64),
}

/// The planned-time slot of run-now requests and attempts in a queue key: below every
/// scheduled tick, so ranges over scheduled ticks never meet them.
const MANUAL: i64 = i64::MIN;
const RETRY: i64 = i64::MIN + 1;

/// A tick waiting on this worker.
#[derive(Debug, Clone)]
pub struct Pending {
    pub spec: Arc<JobSpec>,
    pub planned: DateTime<Utc>,
    pub origin: Origin,
    /// This worker's place in the tick's order of workers (0 = first).
    pub rank: u32,
    /// When this worker may first try to claim it.
    pub try_at: DateTime<Utc>,
    /// The latest time it may start; `None` for run-now requests, which wait for a slot as
    /// long as it takes. A scheduled tick this worker only watches (no live worker matches
    /// its job's selector) is never eligible: its `try_at` is the end of time.
    pub deadline: Option<DateTime<Utc>>,
    /// When this worker records it as missed if it is still here (the deadline, staggered
    /// by rank so that one worker normally writes it).
    pub expire_at: Option<DateTime<Utc>>,
    /// It was already past its deadline when it arrived (the worker was stalled).
    pub late: bool,
}

type Key = (JobName, i64, i64);

impl Pending {
    /// A scheduled tick by its planned time; a run-now request or an attempt by its revision
    /// alone, so that a snapshot seeing it again does not queue it twice.
    fn key(&self) -> Key {
        let name = self.spec.name.clone();
        match &self.origin {
            Origin::Schedule => (name, self.planned.timestamp_millis(), 0),
            Origin::Manual(revision, _) => (name, MANUAL, *revision),
            Origin::Retry(_, revision) => (name, RETRY, *revision),
        }
    }
}

/// The waiting ticks, indexed by when each may be tried, by planned time once eligible, and by
/// when each expires.
#[derive(Debug, Default)]
pub struct Queue {
    entries: BTreeMap<Key, Pending>,
    waiting: BTreeSet<(DateTime<Utc>, Key)>,
    ready: BTreeSet<(DateTime<Utc>, u32, Key)>,
    expiring: BTreeSet<(DateTime<Utc>, Key)>,
}

impl Queue {
    /// Adds a tick; a tick already waiting (same job, time and origin) is kept as it was.
    pub fn push(&mut self, pending: Pending) {
        let key = pending.key();
        if self.entries.contains_key(&key) {
            return;
        }
        self.waiting.insert((pending.try_at, key.clone()));
        if let Some(at) = pending.expire_at {
            self.expiring.insert((at, key.clone()));
        }
        self.entries.insert(key, pending);
    }

    /// Ticks waiting, eligible or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a tick is eligible and only waits for a slot.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The next time something changes without outside help: a tick becomes eligible or
    /// expires.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let eligible = self.waiting.first().map(|(at, _)| *at);
        let expiry = self.expiring.first().map(|(at, _)| *at);
        match (eligible, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes every tick whose turn has come eligible.
    pub fn promote(&mut self, now: DateTime<Utc>) {
        while let Some((at, key)) = self.waiting.first().cloned() {
            if at > now {
                break;
            }
            self.waiting.pop_first();
            if let Some(pending) = self.entries.get(&key) {
                self.ready.insert((pending.planned, pending.rank, key));
            }
        }
    }

    /// The tick [`Queue::pop_ready`] would take at `now`.
    pub fn peek_ready(&self, now: DateTime<Utc>) -> Option<&Pending> {
        self.ready
            .iter()
            .filter_map(|(_, _, key)| self.entries.get(key))
            .find(|pending| pending.deadline.is_none_or(|deadline| deadline > now))
    }

    /// Takes the eligible tick with the oldest planned time that may still start at `now`.
    /// Ticks past their deadline stay only until they expire.
    pub fn pop_ready(&mut self, now: DateTime<Utc>) -> Option<Pending> {
        while let Some((_, _, key)) = self.ready.pop_first() {
            let Some(pending) = self.entries.get(&key) else {
                continue;
            };
            if pending.deadline.is_some_and(|deadline| deadline <= now) {
                continue;
            }
            return self.take(&key);
        }
        None
    }

    /// Takes a tick whose time to be recorded as missed has come.
    pub fn pop_expired(&mut self, now: DateTime<Utc>) -> Option<Pending> {
        let (at, key) = self.expiring.first().cloned()?;
        if at > now {
            return None;
        }
        self.take(&key)
    }

    /// The fleet settled every scheduled tick of `job` up to `planned_ms`: forget them.
    pub fn settled(&mut self, job: &JobName, planned_ms: i64) {
        let keys: Vec<Key> = self
            .entries
            .range((job.clone(), i64::MIN, 0)..=(job.clone(), planned_ms, 0))
            .filter(|(key, _)| key.2 == 0)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.take(&key);
        }
    }

    /// The run-now requests of `job` written before revision `before` were consumed: forget
    /// them.
    pub fn consumed(&mut self, job: &JobName, before: i64) {
        self.take_before(job, MANUAL, before);
    }

    /// `retry/<job>` changed at revision `before`: the attempts queued from its earlier
    /// values are claimed, given up or superseded.
    pub fn chain_moved(&mut self, job: &JobName, before: i64) {
        self.take_before(job, RETRY, before);
    }

    /// Takes the pending attempts of `job` out.
    pub fn take_attempts(&mut self, job: &JobName) -> Vec<Pending> {
        let keys: Vec<Key> = self
            .entries
            .range((job.clone(), RETRY, i64::MIN)..=(job.clone(), RETRY, i64::MAX))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|key| self.take(key)).collect()
    }

    fn take_before(&mut self, job: &JobName, slot: i64, before: i64) {
        let keys: Vec<Key> = self
            .entries
            .range((job.clone(), slot, 1)..(job.clone(), slot, before))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.take(&key);
        }
    }

    /// Takes every tick of `job` out (the job changed or went away).
    pub fn take_job(&mut self, job: &JobName) -> Vec<Pending> {
        let keys: Vec<Key> = self
            .entries
            .range((job.clone(), i64::MIN, i64::MIN)..=(job.clone(), i64::MAX, i64::MAX))
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|key| self.take(key)).collect()
    }

    fn take(&mut self, key: &Key) -> Option<Pending> {
        let pending = self.entries.remove(key)?;
        self.waiting.remove(&(pending.try_at, key.clone()));
        self.ready
            .remove(&(pending.planned, pending.rank, key.clone()));
        if let Some(at) = pending.expire_at {
            self.expiring.remove(&(at, key.clone()));
        }
        Some(pending)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn spec(name: &str) -> Arc<JobSpec> {
        let json = format!(r#"{{"name":"{name}","command":"true","cronExpr":"* * * * * *"}}"#);
        Arc::new(JobSpec::from_etcd_value(json.as_bytes()).unwrap())
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap()
    }

    fn tick(name: &str, planned: i64, try_at: i64) -> Pending {
        Pending {
            spec: spec(name),
            planned: at(planned),
            origin: Origin::Schedule,
            rank: 0,
            try_at: at(try_at),
            deadline: Some(at(planned + 10)),
            expire_at: Some(at(planned + 11)),
            late: false,
        }
    }

    #[test]
    fn eligible_ticks_come_out_oldest_planned_first() {
        let mut queue = Queue::default();
        queue.push(tick("c", 3, 3));
        queue.push(tick("a", 1, 5));
        queue.push(tick("b", 2, 2));
        queue.promote(at(4));
        let names: Vec<String> = std::iter::from_fn(|| queue.pop_ready(at(4)))
            .map(|p| p.spec.name.to_string())
            .collect();
        assert_eq!(names, ["b", "c"]);
        assert_eq!(queue.next_wake(), Some(at(5)));
        queue.promote(at(5));
        assert_eq!(queue.pop_ready(at(5)).unwrap().spec.name.as_str(), "a");
        assert!(queue.is_empty());
    }

    #[test]
    fn among_ticks_of_one_time_this_workers_own_come_first() {
        let mut queue = Queue::default();
        for (name, rank) in [("a", 2), ("b", 0), ("c", 1)] {
            let mut pending = tick(name, 1, 1);
            pending.rank = rank;
            queue.push(pending);
        }
        queue.push(tick("d", 0, 1));
        queue.promote(at(1));
        let names: Vec<String> = std::iter::from_fn(|| queue.pop_ready(at(1)))
            .map(|p| p.spec.name.to_string())
            .collect();
        assert_eq!(names, ["d", "b", "c", "a"]);
    }

    #[test]
    fn the_next_tick_to_start_can_be_looked_at_and_stays_first() {
        let mut queue = Queue::default();
        queue.push(tick("a", 0, 0));
        queue.push(tick("b", 5, 0));
        queue.promote(at(0));
        // "a" is past its deadline at 10: "b" is the one a slot would go to.
        assert_eq!(queue.peek_ready(at(10)).unwrap().spec.name.as_str(), "b");
        assert_eq!(queue.peek_ready(at(0)).unwrap().spec.name.as_str(), "a");
        assert_eq!(queue.pop_ready(at(0)).unwrap().spec.name.as_str(), "a");
        assert_eq!(queue.peek_ready(at(0)).unwrap().spec.name.as_str(), "b");
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_tick_past_its_deadline_never_starts_and_expires_once() {
        let mut queue = Queue::default();
        queue.push(tick("a", 0, 0));
        queue.promote(at(0));
        assert!(queue.has_ready());
        assert!(queue.pop_ready(at(10)).is_none());
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.next_wake(), Some(at(11)));
        assert!(queue.pop_expired(at(10)).is_none());
        assert_eq!(queue.pop_expired(at(11)).unwrap().planned, at(0));
        assert!(queue.pop_expired(at(11)).is_none());
        assert!(queue.is_empty());
    }

    #[test]
    fn settling_a_job_forgets_its_older_scheduled_ticks_only() {
        let mut queue = Queue::default();
        queue.push(tick("a", 1, 1));
        queue.push(tick("a", 2, 2));
        queue.push(tick("a", 3, 3));
        queue.push(tick("ab", 1, 1));
        let mut manual = tick("a", 1, 1);
        manual.origin = Origin::Manual(42, None);
        manual.deadline = None;
        manual.expire_at = None;
        queue.push(manual);
        queue.settled(&JobName::parse("a").unwrap(), at(2).timestamp_millis());
        assert_eq!(queue.len(), 3);
        let mut again = tick("a", 5, 5);
        again.origin = Origin::Manual(42, None);
        queue.push(again);
        assert_eq!(queue.len(), 3, "a run-now request is queued once");
        queue.promote(at(9));
        let left: Vec<(String, DateTime<Utc>, Origin)> =
            std::iter::from_fn(|| queue.pop_ready(at(9)))
                .map(|p| (p.spec.name.to_string(), p.planned, p.origin))
                .collect();
        assert_eq!(left.len(), 3);
        assert!(left.contains(&("a".to_owned(), at(3), Origin::Schedule)));
        assert!(left.contains(&("ab".to_owned(), at(1), Origin::Schedule)));
        assert!(left.contains(&("a".to_owned(), at(1), Origin::Manual(42, None))));
    }

    #[test]
    fn a_consumed_run_now_request_leaves_the_queue() {
        let mut queue = Queue::default();
        let mut manual = tick("a", 1, 1);
        manual.origin = Origin::Manual(7, None);
        queue.push(manual);
        queue.consumed(&JobName::parse("a").unwrap(), 7);
        assert_eq!(queue.len(), 1);
        queue.consumed(&JobName::parse("a").unwrap(), 8);
        assert!(queue.is_empty());
        assert_eq!(queue.next_wake(), None);
    }

    #[test]
    fn a_tick_is_queued_once_and_taken_with_its_job() {
        let mut queue = Queue::default();
        queue.push(tick("a", 1, 1));
        queue.push(tick("a", 1, 0));
        queue.push(tick("b", 1, 1));
        assert_eq!(queue.len(), 2);
        let taken = queue.take_job(&JobName::parse("a").unwrap());
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].try_at, at(1));
        assert_eq!(queue.len(), 1);
        queue.promote(at(1) + TimeDelta::milliseconds(1));
        assert_eq!(queue.pop_ready(at(2)).unwrap().spec.name.as_str(), "b");
    }
}
