//! The plan and the dispatcher.
//!
//! The plan holds every known job keyed by its next fire time, in a `BTreeSet`, so the loop
//! sleeps until the earliest tick or a change and each fire costs O(log n). A tick that falls
//! due goes into the [`Queue`] with its [`Turn`] in the fleet ([`Peers::rank`]: the first
//! worker tries at once, the others a hand-off apart) and its starting deadline. The dispatcher
//! takes eligible ticks in planned order while a slot is free; a slot is held from the claim
//! to the end of the run, so `--slots` bounds processes, never whether a tick happens. A tick
//! the fleet settles (the guard moved past it) leaves the queue; one still waiting at its
//! deadline is given up and recorded as missed by one worker.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use cronfleet_common::{JobName, JobSpec, MissReason, Mode, Selector};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::claim::Guard;
use crate::holds::Hold;
use crate::missed;
use crate::queue::{Origin, Pending, Queue};
use crate::rendezvous::Peers;
use crate::skew::{ClockCheck, Verdict};
use crate::slot::Slot;
use crate::tick::{self, Context, Source, CLAIM_LEAD};
use crate::turn::{self, last_tick_by, Taker, Turn};
use crate::watcher::Change;
use cronfleet_common::values::Chain;

mod attempts;
mod changes;

struct Entry {
    spec: Arc<JobSpec>,
    next: Option<DateTime<Utc>>,
}

/// How soon a dispatch that held a handed-off tick back looks again.
const HELD_BACK_RECHECK: TimeDelta = TimeDelta::milliseconds(10);

// Who runs a tick, as this worker sees the fleet.
enum Placement {
    /// This worker may, at this rank in the tick's order.
    Mine(i32),
    /// Only other live workers may.
    Elsewhere,
    /// No live worker may: this one gives the tick up at its deadline, at this rank.
    Watch(i32),
}

/// Fires jobs on schedule, dispatches due ticks to slots and reacts to changes from the
/// watcher.
pub struct Scheduler {
    context: Arc<Context>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Woken whenever a slot is given back.
    freed: Arc<Notify>,
    jobs: HashMap<JobName, Entry>,
    plan: BTreeSet<(DateTime<Utc>, JobName)>,
    guards: HashMap<JobName, Guard>,
    /// Each job's `retry/<job>`, as last seen, at its mod revision.
    chains: HashMap<JobName, (Arc<Chain>, i64)>,
    queue: Queue,
    peers: Peers,
    /// The session's lease, as this dispatcher last looked at it.
    lease: watch::Receiver<Option<i64>>,
    /// Why this worker does not claim now, as this dispatcher last looked.
    holds: watch::Receiver<BTreeSet<Hold>>,
    clock_check: ClockCheck,
    /// Whether the last dispatch held back a tick handed off to this worker (see
    /// [`Scheduler::hold_back`]).
    held_back: bool,
    /// Since when this worker has had a free slot and started nothing it comes first for.
    idle_since: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("jobs", &self.jobs.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(context: Arc<Context>, slots: Arc<Semaphore>, tasks: TaskTracker) -> Self {
        Self {
            lease: context.lease.clone(),
            holds: context.holds.subscribe(),
            clock_check: ClockCheck::new(context.max_clock_skew_ms),
            held_back: false,
            idle_since: None,
            context,
            slots,
            tasks,
            freed: Arc::new(Notify::new()),
            jobs: HashMap::new(),
            plan: BTreeSet::new(),
            guards: HashMap::new(),
            chains: HashMap::new(),
            queue: Queue::default(),
            peers: Peers::default(),
        }
    }

    /// Runs until `shutdown` or until the watcher goes away. Spawned ticks stay in `tasks`.
    pub async fn run(mut self, mut changes: mpsc::Receiver<Change>, shutdown: CancellationToken) {
        loop {
            let fire = self.plan.first().map(|(at, _)| *at - CLAIM_LEAD);
            let recheck = self
                .held_back
                .then(|| self.context.clock.now() + HELD_BACK_RECHECK);
            let wake = [fire, self.queue.next_wake(), recheck]
                .into_iter()
                .flatten()
                .min();
            let sleep = wake.map(|at| self.context.clock.until(at));
            let freed = Arc::clone(&self.freed);
            // A clone has seen what `self.lease` has seen, so it wakes only for a newer lease.
            let mut lease = self.lease.clone();
            let mut holds = self.holds.clone();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                change = changes.recv() => match change {
                    // Ticks already due are queued under the spec they fell due with, before
                    // an edit replaces it.
                    Some(change) => {
                        self.fire_due();
                        self.apply(change);
                    }
                    None => return,
                },
                () = freed.notified(), if self.queue.has_ready() => {}
                Ok(()) = lease.changed(), if self.queue.has_ready() => {}
                Ok(()) = holds.changed(), if self.queue.has_ready() => {}
                () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => {}
            }
            self.fire_due();
            self.dispatch();
        }
    }

    /// Moves every tick due within [`CLAIM_LEAD`] from the plan to the queue.
    fn fire_due(&mut self) {
        let now = self.context.clock.now();
        while let Some((at, name)) = self.plan.first().cloned() {
            if at - CLAIM_LEAD > now {
                break;
            }
            self.plan.pop_first();
            let Some(entry) = self.jobs.get_mut(&name) else {
                continue;
            };
            let spec = Arc::clone(&entry.spec);
            // A worker that fell behind queues the tick it missed (recorded `deadline_passed`
            // if its deadline has gone) and the latest due one, which may still start; the
            // ones in between are recorded by whoever moves the guard past them.
            let latest = last_tick_by(&spec, at, now);
            entry.next = spec.schedule().next_after(latest);
            if let Some(next) = entry.next {
                self.plan.insert((next, name.clone()));
            }
            if !spec.paused {
                self.enqueue(Arc::clone(&spec), at, now);
                if latest > at {
                    self.enqueue(spec, latest, now);
                }
            }
        }
    }

    /// Queues the scheduled tick `planned` of `spec` with its turn and deadline — unless this
    /// worker's clock is in doubt: then its idea of what is due is too, and the fleet runs it.
    /// A tick of a job this worker may not run is left to those that may; when no live
    /// worker may, it is queued only to be given up at its deadline.
    fn enqueue(&mut self, spec: Arc<JobSpec>, planned: DateTime<Utc>, now: DateTime<Utc>) {
        if self.context.holds.has(Hold::ClockSkew) {
            return;
        }
        let planned_ms = planned.timestamp_millis();
        let settled = self
            .guards
            .get(&spec.name)
            .is_some_and(|guard| guard.planned_ms >= planned_ms);
        if settled {
            return;
        }
        let (rank, eligible) = match self.place(&spec, planned_ms) {
            Placement::Mine(rank) => (rank, true),
            Placement::Elsewhere => return,
            Placement::Watch(rank) => (rank, false),
        };
        let turn = Turn::of(&spec, planned, rank, self.handoff());
        self.queue.push(Pending {
            spec,
            planned,
            origin: Origin::Schedule,
            rank: rank.unsigned_abs(),
            try_at: if eligible {
                turn.try_at
            } else {
                DateTime::<Utc>::MAX_UTC
            },
            deadline: Some(turn.deadline),
            expire_at: Some(turn.expire_at),
            late: now >= turn.deadline,
        });
    }

    /// Who runs `spec`'s tick `tick`: this worker (at its rank in the tick's order; every
    /// matching worker at once for a job run on all), another worker, or nobody alive — then
    /// this worker watches it, at its rank among all live workers.
    fn place(&self, spec: &JobSpec, tick: i64) -> Placement {
        let me = &self.context.worker_id;
        if spec.selector.matches(&self.context.labels) {
            let rank = match spec.mode {
                Mode::All => 0,
                Mode::One => self.rank(&spec.name, tick, &spec.selector),
            };
            Placement::Mine(rank)
        } else if self.peers.any_match(me, &spec.selector) {
            Placement::Elsewhere
        } else {
            Placement::Watch(self.rank(&spec.name, tick, &Selector::default()))
        }
    }

    fn handoff(&self) -> TimeDelta {
        turn::handoff(self.context.metrics.claim_latency())
    }

    fn rank(&self, job: &JobName, tick: i64, selector: &Selector) -> i32 {
        let rank = self
            .peers
            .rank(&self.context.worker_id, job.as_str(), tick, selector);
        i32::try_from(rank).unwrap_or(i32::MAX)
    }

    /// Starts eligible ticks while slots are free, and gives up those past their deadline.
    fn dispatch(&mut self) {
        self.check_clock();
        let now = self.context.clock.now();
        self.queue.promote(now);
        // Without a session nothing can be claimed, and under a hold nothing is: ticks wait
        // until it is back (or expire), and meanwhile other workers may take them.
        let session = self.lease.borrow_and_update().is_some();
        let holds = self.holds.borrow_and_update().clone();
        let blocked = holds.contains(&Hold::RecordsBlocked);
        let clock_held = holds.contains(&Hold::ClockSkew);
        let held = blocked || clock_held;
        if session && !blocked {
            self.start_ready(now, clock_held);
        }
        while let Some(expired) = self.queue.pop_expired(now) {
            // A deadline by a clock in doubt is no deadline: the fleet decides.
            if clock_held {
                continue;
            }
            let reason = if !expired.spec.selector.matches(&self.context.labels) {
                MissReason::NoMatchingWorker
            } else if expired.late {
                MissReason::DeadlinePassed
            } else if session && !held {
                MissReason::NoFreeSlot
            } else {
                // This worker could not claim at all; it counts as no worker.
                MissReason::NoWorker
            };
            self.miss(expired, reason);
        }
        self.context.metrics.set_queue_depth(self.queue.len());
    }

    /// Starts eligible ticks while slots are free, oldest planned time first, holding back
    /// one handed off to this worker while [`Scheduler::hold_back`] says so.
    fn start_ready(&mut self, now: DateTime<Utc>, clock_held: bool) {
        self.held_back = false;
        while self.queue.has_ready() {
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                break;
            };
            let next = self.queue.peek_ready(now);
            if next.is_some_and(|pending| self.hold_back(pending, now)) {
                self.held_back = true;
                break;
            }
            let Some(pending) = self.queue.pop_ready(now) else {
                break;
            };
            if pending.rank == 0 {
                self.idle_since = None;
            }
            // Queued before the clock came into doubt: the fleet runs it.
            if clock_held && pending.origin == Origin::Schedule {
                continue;
            }
            let source = match pending.origin {
                Origin::Schedule => Source::Schedule(
                    self.guards
                        .get(&pending.spec.name)
                        .copied()
                        .unwrap_or_default(),
                ),
                Origin::Manual(revision, source) => Source::Manual(revision, source),
                Origin::Retry(chain, revision) => Source::Retry(chain, revision),
            };
            let context = Arc::clone(&self.context);
            let slot = Slot::new(permit, Arc::clone(&self.freed));
            self.tasks.spawn(tick::run(
                context,
                pending.spec,
                pending.planned,
                source,
                slot,
            ));
        }
        if self.slots.available_permits() == 0 {
            self.idle_since = None;
        } else {
            self.idle_since.get_or_insert(now);
        }
    }

    /// Whether to leave `pending` to the workers ahead of this one a while longer.
    fn hold_back(&self, pending: &Pending, now: DateTime<Utc>) -> bool {
        let taker = Taker {
            own_txns_out: self.context.metrics.txns_in_flight() > 0,
            idle_since: self.idle_since,
        };
        taker.holds_back(pending.rank, pending.try_at, pending.deadline, now)
    }

    /// Holds scheduled claims while this worker's clock is off the fleet's (or not checked
    /// yet), and lifts the hold when it is back within the bound.
    fn check_clock(&mut self) {
        let verdict = self.clock_check.verdict();
        let offset = match verdict {
            Verdict::Outlier(offset) => offset,
            Verdict::InLine | Verdict::Unverified => 0,
        };
        self.context.metrics.set_clock_offset(offset);
        self.context.holds.follow_clock(verdict);
    }

    /// Records a queued tick or attempt as missed, unless the fleet settled it first.
    fn miss(&self, pending: Pending, reason: MissReason) {
        let guard = self
            .guards
            .get(&pending.spec.name)
            .copied()
            .unwrap_or_default();
        missed::spawn(
            &self.tasks,
            Arc::clone(&self.context),
            pending,
            guard,
            reason,
        );
    }
}
