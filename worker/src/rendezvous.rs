//! Who tries a tick first: rendezvous (highest random weight) hashing of each (job, tick) over
//! the live workers registered under `workers/`.
//!
//! Every worker computes the same order from the same inputs, so normally only the first
//! worker in a tick's order sends a claim and the others never do; when it is busy, slow or
//! gone, the next one tries after a hand-off delay. Adding or removing a worker moves only
//! the ticks it ranks first for. The order only decides who *tries*: the claim txn stays the
//! only arbiter, so workers that briefly disagree about the live set cost a losing txn, never
//! a second start. A job with a selector is ordered over the workers whose labels match it.

use std::collections::BTreeMap;

use cronfleet_common::{Labels, Selector};

/// The live workers and their labels, as this worker last saw them in etcd.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    ids: BTreeMap<String, Labels>,
}

impl Peers {
    /// Replaces the set (a snapshot).
    pub fn reset(&mut self, workers: impl IntoIterator<Item = (String, Labels)>) {
        self.ids = workers.into_iter().collect();
    }

    pub fn up(&mut self, id: String, labels: Labels) {
        self.ids.insert(id, labels);
    }

    pub fn down(&mut self, id: &str) {
        self.ids.remove(id);
    }

    /// Whether a live worker other than `me` may run a job with `selector`.
    pub fn any_match(&self, me: &str, selector: &Selector) -> bool {
        self.ids
            .iter()
            .any(|(id, labels)| id != me && selector.matches(labels))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// This worker's place (0 = first) in the order of tick `tick` of `job`, among the live
    /// workers `selector` matches. A worker that is not registered yet counts itself among
    /// the live ones, so a fleet always has a first.
    pub fn rank(&self, me: &str, job: &str, tick: i64, selector: &Selector) -> usize {
        let mine = weight(me, job, tick);
        self.ids
            .iter()
            .filter(|(id, labels)| id.as_str() != me && selector.matches(labels))
            .map(|(id, _)| id)
            .filter(|id| {
                let theirs = weight(id, job, tick);
                // Ties (practically never) are broken by id so every worker agrees.
                theirs > mine || (theirs == mine && id.as_str() < me)
            })
            .count()
    }
}

/// A stable 64-bit weight of (worker, job, tick): FNV-1a over the bytes, then a SplitMix64
/// finaliser so that nearby ticks spread evenly. Fixed here, not `std`'s hasher, so workers
/// built by different compilers agree.
fn weight(worker: &str, job: &str, tick: i64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(worker.as_bytes());
    feed(&[0]);
    feed(job.as_bytes());
    feed(&[0]);
    feed(&tick.to_le_bytes());
    let mut z = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Peers {
        let mut peers = Peers::default();
        peers.reset((0..n).map(|i| (format!("worker-{i}"), Labels::new())));
        peers
    }

    fn any() -> Selector {
        Selector::default()
    }

    #[test]
    fn every_tick_has_exactly_one_worker_of_each_rank() {
        let peers = fleet(3);
        for tick in 0..1_000 {
            let mut ranks: Vec<usize> = (0..3)
                .map(|i| peers.rank(&format!("worker-{i}"), "backup", tick, &any()))
                .collect();
            ranks.sort_unstable();
            assert_eq!(ranks, [0, 1, 2], "tick {tick}");
        }
    }

    #[test]
    fn ticks_spread_evenly_over_the_fleet() {
        let peers = fleet(3);
        let mut firsts = [0usize; 3];
        for job in 0..3_000 {
            let job = format!("job-{job}");
            for (i, count) in firsts.iter_mut().enumerate() {
                if peers.rank(&format!("worker-{i}"), &job, 1_764_000_000_000, &any()) == 0 {
                    *count += 1;
                }
            }
        }
        assert_eq!(firsts.iter().sum::<usize>(), 3_000);
        for count in firsts {
            assert!((850..=1_150).contains(&count), "{firsts:?}");
        }
    }

    #[test]
    fn a_leaving_worker_moves_only_its_own_ticks() {
        let mut peers = fleet(4);
        let first = |peers: &Peers, job: &str| {
            (0..4)
                .find(|i| peers.rank(&format!("worker-{i}"), job, 7, &any()) == 0)
                .unwrap()
        };
        let jobs: Vec<String> = (0..500).map(|j| format!("job-{j}")).collect();
        let before: Vec<usize> = jobs.iter().map(|j| first(&peers, j)).collect();
        peers.down("worker-3");
        for (job, was) in jobs.iter().zip(before) {
            let now = first(&peers, job);
            if was != 3 {
                assert_eq!(now, was, "{job}");
            } else {
                assert_ne!(now, 3, "{job}");
            }
        }
    }

    #[test]
    fn an_unregistered_worker_still_ranks() {
        let peers = fleet(2);
        let rank = peers.rank("newcomer", "job", 1, &any());
        assert!(rank <= 2);
        assert_eq!(Peers::default().rank("alone", "job", 1, &any()), 0);
    }

    #[test]
    fn a_selector_orders_only_the_workers_it_matches() {
        let mut peers = fleet(3);
        let eu: Labels = [("zone".to_owned(), "eu".to_owned())].into();
        peers.up("worker-eu".to_owned(), eu.clone());
        let selector = Selector::from_json(serde_json::json!({"zone": "eu"})).unwrap();
        for tick in 0..50 {
            assert_eq!(peers.rank("worker-eu", "job", tick, &selector), 0);
        }
        assert!(peers.any_match("worker-0", &selector));
        assert!(!peers.any_match("worker-eu", &selector));
    }
}
