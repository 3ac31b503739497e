//! What the claim keys hold: [`Holder`] under `lock/<job>` and `runs/<job>/<run>`, and the
//! per-tick [`Guard`] under `tick/<job>`.
//!
//! Every guard value names the claim or miss that wrote it, so a worker that sends a txn again
//! after losing the first answer knows whether the first one was applied — by it — or whether
//! another worker moved the guard.

use cronfleet_common::Trigger;
use serde::{Deserialize, Serialize};

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
