//! What passes between the worker and a run's supervisor: the supervisor's arguments, the
//! shell's environment, the supervisor's stdin for as long as the run lasts, and what the
//! supervisor reports back on its report pipe.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronfleet_common::job::steers_process_start;
use cronfleet_common::JobSpec;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Limits, RunContext};
use crate::clock::Clock;

/// Variables of the worker's own environment that runs inherit; everything else is dropped.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR",
];

/// When the supervisor says it started the shell and saw the run over, as far as it says.
pub(super) fn reported(report: &pipe::Receiver, clock: Clock) -> [Option<DateTime<Utc>>; 2] {
    let mut bytes = [0u8; 16];
    let mut read = 0;
    // The supervisor wrote them, if at all, before it ended.
    while read < bytes.len() {
        match report.try_read(&mut bytes[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let at = |offset: usize| {
        let raw = bytes
            .get(offset..offset + 8)
            .filter(|_| read >= offset + 8)?;
        let nanos = i64::from_le_bytes(raw.try_into().ok()?);
        Some(clock.of_system(DateTime::from_timestamp_nanos(nanos)))
    };
    [at(0), at(8)]
}

/// The supervisor's arguments. Its own environment is empty: the shell's comes through its
/// stdin. The run server fills in its own pid as the process whose death ends the run.
pub(super) fn arguments(limits: &Limits, job: &JobSpec, start_at: Duration) -> Vec<OsString> {
    let run_as = limits.run_as.as_ref().map(|user| (user.uid, user.gid));
    crate::supervisor::arguments(
        (job.shell(), &job.command, job.working_dir.as_deref()),
        std::process::id(),
        run_as,
        (limits.kill_grace, limits.lease_until.is_some()),
        &limits.run_limits,
        start_at,
    )
}

/// The shell's environment: a few of the worker's own variables, the run-as user's identity,
/// the job's variables — without those that steer the loader or the shell — and the run's.
pub(super) fn shell_env(
    limits: &Limits,
    job: &JobSpec,
    context: &RunContext,
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = INHERITED_ENV
        .iter()
        .filter_map(|name| Some((OsString::from(name), std::env::var_os(name)?)))
        .collect();
    if let Some(user) = &limits.run_as {
        env.insert("USER".into(), user.name.clone().into());
        env.insert("LOGNAME".into(), user.name.clone().into());
        env.insert("HOME".into(), user.home.clone().into_os_string());
    }
    for (name, value) in &job.env {
        if steers_process_start(name) {
            tracing::warn!(job.name = %job.name, variable = %name, "dropping a job variable that steers the loader or the shell");
            continue;
        }
        env.insert(name.into(), value.into());
    }
    for (name, value) in [
        ("CRON_JOB_NAME", job.name.to_string()),
        ("CRON_RUN_ID", context.run_id.clone()),
        ("CRON_PLANNED_AT", context.planned_at.to_rfc3339()),
        ("CRON_FENCING_TOKEN", context.fencing_token.to_string()),
    ] {
        env.insert(name.into(), value.into());
    }
    env.into_iter().collect()
}

/// Holds the supervisor's stdin open until the run is over, telling it at every renewal of
/// the worker's lease, if it watches one, how long the lease holds; a lease that is gone holds
/// for 0 ms. When the worker's session ends, so does the stdin.
pub(super) async fn hold_input(
    mut stdin: pipe::Sender,
    until: Option<watch::Receiver<Option<Instant>>>,
) {
    let Some(mut until) = until else {
        return std::future::pending().await;
    };
    loop {
        let valid = until.borrow_and_update().map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let line = format!("{}\n", valid.as_millis());
        if stdin.write_all(line.as_bytes()).await.is_err() || until.changed().await.is_err() {
            return;
        }
    }
}
