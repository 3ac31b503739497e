//! Runs one command: `<shell> -c` (the job's, from the worker's allow-list) in its own process group, under the [`supervisor`], output
//! captured under a cap, stopped by timeout or request with SIGTERM to the group (the
//! supervisor passes it on to the run's processes outside the group and SIGKILLs them all after
//! a grace period). When the shell exits, the supervisor ends whatever it left behind, wherever
//! it moved, so no process of a run outlives the run, nor the worker; the worker still sweeps
//! the group in case the supervisor itself was killed.
//!
//! [`supervisor`]: crate::supervisor

use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronfleet_common::{JobSpec, RunStatus};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::clock::Clock;
use crate::launcher::{Exit, Launched, Launcher};
use crate::output::{capture, Captured, Output};
use crate::run_limits::RunLimits;
use crate::runs::StopReason;

mod group;
mod handover;

use group::{stop_group, terminate};
use handover::{arguments, hold_input, reported, shell_env};

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

/// A run's supervisor, started and waiting for its start time, when it starts the shell by
/// itself. Starting it ahead of the planned time keeps the fork out of the start latency, and
/// its own timer keeps the worker out of it: under a burst the worker need not get a CPU at
/// the planned time for every run to start then.
#[derive(Debug)]
pub struct Prepared {
    pid: nix::unistd::Pid,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    report: pipe::Receiver,
    exit: Exit,
    /// Holds the supervisor's stdin open, confirming the worker's lease on it where the run
    /// is watched; its end of file before the start time calls the run off.
    _input: AbortOnDropHandle<()>,
}

/// Starts the supervisor for a run, which starts the shell `start_in` from now; [`start`]
/// follows the run from there. Dropping the result before then makes the supervisor exit
/// without running anything.
pub async fn prepare(
    job: &JobSpec,
    context: &RunContext,
    limits: &Limits,
    start_in: Duration,
) -> std::io::Result<Prepared> {
    let start_at = crate::supervisor::monotonic_now() + start_in;
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
    let Launched {
        pid,
        mut stdin,
        stdout,
        stderr,
        report,
        exit,
    } = limits
        .launcher
        .launch(arguments(limits, job, start_at))
        .await?;
    let env = shell_env(limits, job, context);
    let block = crate::supervisor::environment_block(
        env.iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes())),
    );
    stdin.write_all(&block).await?;
    let input = tokio::spawn(hold_input(stdin, limits.lease_until.clone()));
    Ok(Prepared {
        pid,
        stdout,
        stderr,
        report,
        exit,
        _input: AbortOnDropHandle::new(input),
    })
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
        prepare(job, context, limits, Duration::ZERO).await,
        (job, &context.run_id),
        limits,
        clock,
        stop,
    )
    .await
}

/// Follows run `run_id` of `job`, whose prepared supervisor starts the shell at its start
/// time, to its end.
pub async fn start(
    prepared: std::io::Result<Prepared>,
    (job, run_id): (&JobSpec, &str),
    limits: &Limits,
    clock: Clock,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> Outcome {
    // When the shell started if its supervisor does not say.
    let reached = clock.now();
    let Prepared {
        pid: group,
        stdout,
        stderr,
        report,
        mut exit,
        _input: input,
    } = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            return Outcome {
                status: RunStatus::FailedToStart,
                err: format!("could not start the run: {e}"),
                exit_code: None,
                signal: None,
                output: Output::new(0).finish(),
                started_at: reached,
                ended_at: clock.now(),
                killed_by: None,
            };
        }
    };
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
    drop(input);
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
    // The supervisor's exit may come after the run's end, when the CPU is busy with starts.
    let [started_at, reported_end] = reported(&report, clock);
    let ended_at = reported_end.unwrap_or_else(|| clock.now());
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
                started_at: started_at.unwrap_or(reached),
                ended_at,
                killed_by,
            }
        }
    };
    let Some(started_at) = started_at else {
        // The supervisor ended without starting the shell: it could not, or the run was
        // called off first.
        let (status, err) = match status {
            RunStatus::Killed | RunStatus::TimedOut => (status, err),
            _ => (
                RunStatus::FailedToStart,
                "the shell did not start (its output says why)".to_owned(),
            ),
        };
        return Outcome {
            status,
            err,
            exit_code: None,
            signal: None,
            output,
            started_at: reached,
            ended_at,
            killed_by,
        };
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
