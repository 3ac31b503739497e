//! Sharing etcd with go-crontab workers, for a fleet that moves over node by node.
//!
//! A go-crontab worker registers `workers/<IPv4>` with an empty value. For every tick it
//! sleeps a random 0–999 ms after the planned time, then tries `lock/<job>` (a txn on
//! `create_revision == 0`), runs the command and deletes the lock at once; it never moves
//! `tick/<job>` and writes no record when it loses. So, while one is registered:
//!
//! * a run keeps its lock until [`LOCK_HOLD`] after its planned time, however short it was,
//!   so that go-crontab's attempt for the same tick finds it held — but never past the moment
//!   this fleet claims the job's next tick ([`lock_held_until`]);
//! * a tick nobody here started is not recorded as `missed`: a go-crontab worker may have run
//!   it, and its own record says so. The tick is counted in
//!   `cronfleet_worker_ticks_unrecorded_total` instead.
//!
//! And a job value go-crontab wrote (its three fields only) is read as go-crontab reads it:
//! in this machine's time zone ([`local_timezone`]) and under `/bin/bash`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use cronfleet_common::{Concurrency, JobSpec};

use crate::tick::CLAIM_LEAD;

/// How long after its planned time a tick's lock is held while go-crontab workers are
/// registered: past their latest attempt (a second of random sleep, plus their scheduler's
/// own delay and a margin for clocks).
pub const LOCK_HOLD: TimeDelta = TimeDelta::milliseconds(2_000);

/// How long before this fleet claims a job's next tick a held lock is let go.
const BEFORE_NEXT_CLAIM: TimeDelta = TimeDelta::milliseconds(100);

/// The go-crontab workers registered now, by address.
#[derive(Debug, Default)]
pub struct LegacyWorkers(Mutex<BTreeSet<String>>);

impl LegacyWorkers {
    /// Whether a registration value is go-crontab's (empty).
    pub fn is_legacy(value: &[u8]) -> bool {
        value.iter().all(u8::is_ascii_whitespace)
    }

    pub fn reset(&self, addresses: impl IntoIterator<Item = String>) {
        let mut known = self.lock();
        known.clear();
        known.extend(addresses);
    }

    pub fn up(&self, address: String) {
        if self.lock().insert(address.clone()) {
            tracing::info!(%address, "a go-crontab worker registered; locks are held past each tick's planned time and missed ticks go unrecorded");
        }
    }

    pub fn down(&self, address: &str) {
        if self.lock().remove(address) {
            tracing::info!(%address, "a go-crontab worker went away");
        }
    }

    /// Whether any go-crontab worker is registered.
    pub fn present(&self) -> bool {
        !self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Until when a scheduled run of `job` planned for `planned` keeps `lock/<job>` when
/// go-crontab workers are registered; `None` when it takes no lock (`allow`).
pub fn lock_held_until(job: &JobSpec, planned: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if job.concurrency == Concurrency::Allow {
        return None;
    }
    let wanted = planned + LOCK_HOLD;
    Some(match job.schedule().next_after(planned) {
        Some(next) => wanted.min(next - CLAIM_LEAD - BEFORE_NEXT_CLAIM),
        None => wanted,
    })
}

/// The zone go-crontab reads expressions in on this machine — Go's local time: `TZ` when set
/// (empty is UTC), else the zone `/etc/localtime` links to, else `/etc/timezone`. UTC when
/// none names a zone.
pub fn local_timezone() -> Tz {
    let named = match std::env::var("TZ") {
        Ok(tz) => Some(tz),
        Err(_) => std::fs::read_link("/etc/localtime")
            .ok()
            .map(|target| target.to_string_lossy().into_owned())
            .or_else(|| std::fs::read_to_string("/etc/timezone").ok()),
    };
    named.map_or(Tz::UTC, |name| zone_named(&name))
}

/// The zone a `TZ` value or a zoneinfo path names.
fn zone_named(name: &str) -> Tz {
    let name = name.trim().trim_start_matches(':');
    let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, zone)| zone);
    if name.is_empty() || Path::new(name).is_absolute() {
        return Tz::UTC;
    }
    name.parse().unwrap_or_else(|_| {
        tracing::warn!(
            zone = name,
            "the local time zone is not an IANA name; go-crontab's jobs are read in UTC"
        );
        Tz::UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cron: &str, concurrency: &str) -> JobSpec {
        let value = serde_json::json!({
            "name": "j", "command": "true", "cronExpr": cron, "concurrency": concurrency, "version": 1,
        });
        JobSpec::from_etcd_value(value.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_lock_is_held_two_seconds_past_the_tick_unless_the_next_claim_comes_sooner() {
        let planned = DateTime::from_timestamp(1_764_072_000, 0).unwrap();
        assert_eq!(
            lock_held_until(&job("* * * * *", "forbid"), planned),
            Some(planned + LOCK_HOLD)
        );
        assert_eq!(
            lock_held_until(&job("* * * * * *", "replace"), planned),
            Some(planned + TimeDelta::milliseconds(700)),
            "a job due every second lets go before its next claim"
        );
        assert_eq!(lock_held_until(&job("* * * * *", "allow"), planned), None);
    }

    #[test]
    fn the_local_zone_comes_from_tz_or_a_zoneinfo_path() {
        assert_eq!(zone_named("Asia/Tokyo"), chrono_tz::Asia::Tokyo);
        assert_eq!(zone_named(":Europe/Paris\n"), chrono_tz::Europe::Paris);
        assert_eq!(
            zone_named("/usr/share/zoneinfo/America/New_York"),
            chrono_tz::America::New_York
        );
        assert_eq!(zone_named(""), Tz::UTC);
        assert_eq!(zone_named("Not/A_Zone"), Tz::UTC);
    }

    #[test]
    fn only_an_empty_registration_is_go_crontab_s() {
        assert!(LegacyWorkers::is_legacy(b""));
        assert!(!LegacyWorkers::is_legacy(br#"{"id":"w"}"#));
        let workers = LegacyWorkers::default();
        workers.up("10.0.0.7".to_owned());
        assert!(workers.present());
        workers.down("10.0.0.7");
        assert!(!workers.present());
    }
}
