//! Runs one command: `<shell> -c` (the job's, from the worker's allow-list) in its own process group, under the [`supervisor`], output
//! captured under a cap, stopped by timeout or request with SIGTERM to the group (the
//! supervisor passes it on to the run's processes outside the group and SIGKILLs them all after
//! a grace period). When the shell exits, the supervisor ends whatever it left behind, wherever
//! it moved, so no process of a run outlives the run, nor the worker; the worker still sweeps
//! the group in case the supervisor itself was killed.
//!
//! [`supervisor`]: crate::supervisor

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronfleet_common::job::steers_process_start;
use cronfleet_common::{JobSpec, RunStatus};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::launcher::{Launched, Launcher};
use crate::output::{capture, Captured, Output};
use crate::run_limits::RunLimits;
use crate::runs::StopReason;

mod group;

use group::{stop_group, terminate};

/// Variables of the worker's own environment that runs inherit; everything else is dropped.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR",
];

/// What a run is told about itself through its environment.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub planned_at: DateTime<Utc>,
    pub fencing_token: i64,
}

/// Settings shared by every run on this worker.
#[derive(Debug, Clone)]
pub struct Limits {
    pub output_cap: usize,
    pub kill_grace: Duration,
    /// Starts each run's [`crate::supervisor`] through the worker's run server.
    pub launcher: Launcher,
    /// The user runs execute as, from the worker's own configuration; `None` runs them as
    /// the worker's user.
    pub run_as: Option<RunAs>,
    /// Until when the worker's etcd lease holds, as its session last heard; each run's
    /// supervisor is kept told, and ends the run if it stops hearing. `None`: no lease to
    /// watch (a run outside the fleet).
    pub lease_until: Option<watch::Receiver<Option<Instant>>>,
    /// Resource limits of every process of a run.
    pub run_limits: RunLimits,
    /// The shells a job may name; a job that names another fails to start.
    pub shells: Vec<String>,
    /// Where a long run's output goes while it is in progress; `None`: nowhere.
    pub live: Option<crate::live::Feed>,
}

/// A local user that runs execute as.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database.
    pub fn lookup(name: &str) -> Result<Self, String> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(Self {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                home: user.dir,
            }),
            Ok(None) => Err(format!("no local user named {name:?}")),
            Err(e) => Err(format!("looking up user {name:?}: {e}")),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub err: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub output: Captured,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    /// Who sent the kill request that stopped the run, if one did and it says.
    pub killed_by: Option<String>,
}

enum Ending {
    Exited(ExitStatus),
    Stopped(RunStatus, String, ExitStatus),
}

/// A run's supervisor, started and waiting for the word to start the shell. Starting it
/// ahead of the planned time keeps the fork out of the start latency.
#[derive(Debug)]
pub struct Prepared {
    supervisor: Launched,
}

/// Starts the supervisor for a run; the shell starts on [`start`]. Dropping the result
/// without starting it makes the supervisor exit without running anything.
pub async fn prepare(
    job: &JobSpec,
    context: &RunContext,
    limits: &Limits,
) -> std::io::Result<Prepared> {
    if !job.legacy && !limits.shells.iter().any(|shell| shell == job.shell()) {
        return Err(std::io::Error::other(format!(
            "the shell {} is not on this worker's allow-list ({}); start the worker with --shell {} to allow it",
            job.shell(),
            limits.shells.join(", "),
            job.shell()
        )));
    }
    if let Some(dir) = &job.working_dir {
        if !tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
            return Err(std::io::Error::other(format!(
                "the working directory {dir} does not exist on this worker (or is not a directory)"
            )));
        }
    }
    let mut supervisor = limits.launcher.launch(arguments(limits, job)).await?;
    let env = shell_env(limits, job, context);
    let block = crate::supervisor::environment_block(
        env.iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
    );
    supervisor.stdin.write_all(&block).await?;
    Ok(Prepared { supervisor })
}

/// Runs `job`'s command to completion, timeout or stop request.
pub async fn execute(
    job: &JobSpec,
    context: &RunContext,
    limits: &Limits,
    clock: Clock,
    stop: watch::Receiver<Option<StopReason>>,
) -> Outcome {
    start(
        prepare(job, context, limits).await,
        (job, &context.run_id),
        limits,
        clock,
        stop,
    )
    .await
}

/// Tells a prepared supervisor to start the shell, then supervises run `run_id` of `job` to
/// its end.
pub async fn start(
    prepared: std::io::Result<Prepared>,
    (job, run_id): (&JobSpec, &str),
    limits: &Limits,
    clock: Clock,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> Outcome {
    let started = match prepared {
        Ok(Prepared { mut supervisor }) => {
            supervisor.stdin.write_all(b"g").await.map(|()| supervisor)
        }
        Err(e) => Err(e),
    };
    // The supervisor is a running process that execs the shell as soon as it reads the word.
    let started_at = clock.now();
    // Runs due at the same instant wake together: each gives the word before any sets up
    // the rest of its run.
    tokio::task::yield_now().await;
    let Launched {
        pid: group,
        stdin: go,
        stdout,
        stderr,
        mut exit,
    } = match started {
        Ok(started) => started,
        Err(e) => {
            return Outcome {
                status: RunStatus::FailedToStart,
                err: format!("could not start the run: {e}"),
                exit_code: None,
                signal: None,
                output: Output::new(0).finish(),
                started_at,
                ended_at: clock.now(),
                killed_by: None,
            };
        }
    };
    let confirming = limits
        .lease_until
        .clone()
        .map(|until| tokio::spawn(confirm_lease(go, until)));
    let (finish, finished) = oneshot::channel();
    let live = limits
        .live
        .as_ref()
        .map(|feed| feed.publisher(run_id, job.name.as_str()));
    let mut reader = tokio::spawn(capture(
        (Some(stdout), Some(stderr)),
        limits.output_cap,
        live,
        finished,
    ));
    let deadline = job
        .timeout_secs
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut killed_by = None;
    let ending = tokio::select! {
        status = exit.wait() => status.map(Ending::Exited),
        () = sleep_until_opt(deadline) => {
            let reason = format!("timed out after {}s", job.timeout_secs.unwrap_or_default());
            terminate(&mut exit, group, limits.kill_grace).await
                .map(|status| Ending::Stopped(RunStatus::TimedOut, reason, status))
        }
        reason = stopped(&mut stop) => {
            if let StopReason::KillRequested(by) = &reason {
                killed_by = by.as_deref().map(str::to_owned);
            }
            terminate(&mut exit, group, limits.kill_grace).await
                .map(|status| Ending::Stopped(RunStatus::Killed, reason.describe().to_owned(), status))
        }
    };
    if let Some(confirming) = confirming {
        confirming.abort();
    }
    stop_group(group, limits.kill_grace).await;
    // The run's processes are gone, and the pipes with them; one a process outside the run's
    // reach still holds is read for no longer than the grace period.
    let output = match tokio::time::timeout(limits.kill_grace, &mut reader).await {
        Ok(output) => output,
        Err(_) => {
            let _ = finish.send(());
            reader.await
        }
    }
    .unwrap_or_else(|_| Output::new(0).finish());
    let ended_at = clock.now();
    let (status, err, exit) = match ending {
        Ok(Ending::Exited(exit)) => match exit.code() {
            Some(0) => (RunStatus::Succeeded, String::new(), exit),
            Some(code) => (RunStatus::Failed, format!("exit code {code}"), exit),
            None => (
                RunStatus::Failed,
                format!("killed by signal {}", signal_of(exit).unwrap_or(0)),
                exit,
            ),
        },
        Ok(Ending::Stopped(status, err, exit)) => (status, err, exit),
        Err(e) => {
            return Outcome {
                status: RunStatus::Failed,
                err: format!("lost track of the shell: {e}"),
                exit_code: None,
                signal: None,
                output,
                started_at,
                ended_at,
                killed_by,
            }
        }
    };
    // A run that fails under limits says which, since hitting one shows only as the
    // command's own error.
    let err = if status == RunStatus::Failed && limits.run_limits.any() {
        format!("{err} (run limits: {})", limits.run_limits)
    } else {
        err
    };
    Outcome {
        status,
        err,
        exit_code: exit.code(),
        signal: signal_of(exit),
        output,
        started_at,
        ended_at,
        killed_by,
    }
}

fn signal_of(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

/// The supervisor's arguments. Its own environment is empty: the shell's comes through its
/// stdin. The run server fills in its own pid as the process whose death ends the run.
fn arguments(limits: &Limits, job: &JobSpec) -> Vec<OsString> {
    let run_as = limits.run_as.as_ref().map(|user| (user.uid, user.gid));
    crate::supervisor::arguments(
        (job.shell(), &job.command, job.working_dir.as_deref()),
        std::process::id(),
        run_as,
        limits.kill_grace,
        limits.lease_until.is_some(),
        &limits.run_limits,
    )
}

/// The shell's environment: a few of the worker's own variables, the run-as user's identity,
/// the job's variables — without those that steer the loader or the shell — and the run's.
fn shell_env(limits: &Limits, job: &JobSpec, context: &RunContext) -> Vec<(OsString, OsString)> {
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

/// Tells the run's supervisor, at every renewal of the worker's lease, how long it holds; a
/// lease that is gone holds for 0 ms.
async fn confirm_lease(mut go: pipe::Sender, mut until: watch::Receiver<Option<Instant>>) {
    loop {
        let valid = until.borrow_and_update().map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let line = format!("{}\n", valid.as_millis());
        if go.write_all(line.as_bytes()).await.is_err() || until.changed().await.is_err() {
            return;
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn stopped(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    let reason = stop
        .wait_for(Option::is_some)
        .await
        .map(|reason| reason.clone());
    match reason {
        Ok(reason) => reason.unwrap_or(StopReason::Shutdown),
        // The sender lives in the run table until the run ends; if it is gone, never stop.
        Err(_) => std::future::pending().await,
    }
}
