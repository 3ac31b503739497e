//! What the fleet writes under its etcd keys, typed once for the worker that writes them and
//! the master that reads them ([`crate::keys`] says where):
//!
//! * [`Holder`]: who holds a run, under `lock/<job>` and `runs/<job>/<run>`;
//! * [`Guard`]: the per-tick claim guard under `tick/<job>`. Every guard value names the claim
//!   or miss that wrote it, so a worker that sends a txn again after losing the first answer
//!   knows whether the first one was applied — by it — or whether another worker moved it;
//! * [`Registration`]: a worker's `workers/<id>`, with its [`RunSummary`]s and [`Hold`]s;
//! * [`Request`]: a run-now (`trigger/<job>`) or kill (`killer/<job>`) request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Trigger;

/// Who holds a run: the value of `lock/<job>` and `runs/<job>/<run>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub worker_id: String,
    pub run_id: String,
    pub job_name: String,
    /// Planned tick, Unix ms.
    pub planned_at: i64,
    /// When the worker claimed it, Unix ms.
    pub claimed_at: i64,
    pub trigger: Trigger,
    pub job_version: i64,
    /// The tick the run belongs to (see the record's `tickId`); empty from older workers.
    #[serde(default)]
    pub tick_id: String,
    /// Which attempt of its tick the run is; 0 from older workers, meaning the first.
    #[serde(default)]
    pub attempt: u32,
    /// The run whose outcome chained to this one, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// The request id of the run-now that started the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who sent that run-now request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// The per-tick guard: the last planned tick claimed for a job, and the job version it was
/// claimed under (missed ticks are only counted within one version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guard {
    pub planned_ms: i64,
    pub version: u64,
    /// Mod revision of `tick/<job>`; 0 when the key does not exist.
    pub mod_revision: i64,
}

impl Guard {
    /// The value that moves the guard to `planned_ms` under job `version`, written by the
    /// claim or miss named `writer`.
    pub fn encode(planned_ms: i64, version: u64, writer: &str) -> String {
        format!("{planned_ms:020}:{version}:{writer}")
    }

    /// Reads the guard from a key's value and mod revision; unreadable values count as absent.
    pub fn decode(value: &[u8], mod_revision: i64) -> Self {
        let parsed = std::str::from_utf8(value).ok().and_then(|text| {
            let mut fields = text.splitn(3, ':');
            let planned = fields.next()?.parse().ok()?;
            let version = fields.next()?.parse().ok()?;
            Some((planned, version))
        });
        let (planned_ms, version) = parsed.unwrap_or((i64::MIN, 0));
        Self {
            planned_ms,
            version,
            mod_revision,
        }
    }
}

/// A run in progress, as a worker's registration lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub job_name: String,
    /// Planned tick, Unix ms.
    pub planned_at: i64,
    /// When its process started, Unix ms.
    pub started_at: i64,
}

/// One reason not to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Records wait in memory: neither the spool's disk nor MongoDB took them.
    RecordsBlocked,
    /// This worker's clock is off the fleet's by more than the allowed skew (or not checked
    /// yet): it claims no scheduled tick, only run-now requests.
    ClockSkew,
}

impl Hold {
    pub const ALL: [Hold; 2] = [Hold::RecordsBlocked, Hold::ClockSkew];

    pub fn as_str(self) -> &'static str {
        match self {
            Hold::RecordsBlocked => "records_blocked",
            Hold::ClockSkew => "clock_skew",
        }
    }
}

/// The value of `workers/<id>`, on the worker's lease. Every field but the id may be absent
/// (a worker of another version), and reads as empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Registration {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub slots: usize,
    pub running: Vec<RunSummary>,
    pub heartbeat_at: DateTime<Utc>,
    /// Why the worker claims nothing now; empty while it claims.
    pub holds: Vec<Hold>,
    /// The worker's `--label`s, which job selectors match.
    pub labels: crate::Labels,
}

/// The attempts of one tick of a job with a retry policy: the value of `retry/<job>`, kept
/// without a lease so that it outlives the worker that wrote it. While an attempt runs it
/// names that run; between attempts it says when the next may start. Each change is a txn
/// on its mod revision, so every attempt is claimed, and every next attempt scheduled, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    pub tick_id: String,
    /// The tick's planned time, Unix ms.
    pub planned_at: i64,
    pub trigger: Trigger,
    pub job_version: i64,
    /// The attempt running, or the next one when `pending`.
    pub attempt: u32,
    /// The run of the attempt running, or of the last one when `pending`.
    pub run_id: String,
    /// Waiting for the next attempt rather than running one.
    pub pending: bool,
    /// When a pending attempt may start, Unix ms.
    pub not_before: i64,
    /// The run whose outcome chained to this tick, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// The run-now request that started the tick, and who sent it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// A run-now or kill request: the request id the API answered, the audit log sequence of its
/// event, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub request_id: String,
    #[serde(default)]
    pub seq: i64,
    /// The run whose outcome asked for this run-now (a chain), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run_id: Option<String>,
    /// The user or token that sent it (`system` for a chain); absent from older masters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_reads_back_what_was_written_with_or_without_its_writer() {
        let value = Guard::encode(1_700_000_000_000, 7, "0192-run");
        let guard = Guard::decode(value.as_bytes(), 42);
        assert_eq!(
            (guard.planned_ms, guard.version, guard.mod_revision),
            (1_700_000_000_000, 7, 42)
        );
        // Guards written before the writer was named still read.
        let old = Guard::decode(b"00000001700000000000:7", 3);
        assert_eq!((old.planned_ms, old.version), (1_700_000_000_000, 7));
        assert_eq!(Guard::decode(b"garbage", 5).planned_ms, i64::MIN);
    }
}
