//! The run supervisor: the process that sits between the worker and the job's shell, so that
//! nothing a run starts outlives it, nor the worker.
//!
//! The worker's [`crate::run_server`] forks one per run from `<parent-pid> <uid> <gid>
//! <grace-ms> <watch> <limits> <command> <working-dir> <start-at>` ([`arguments`]), as the
//! leader of a new process group, ahead of the planned time, with an empty environment. The
//! supervisor asks the kernel to send it SIGHUP when its parent dies (the server, which dies
//! with the worker), and gives up at once if the parent is already gone, and makes itself a
//! child subreaper, so every process the run starts — `setsid`, double-forked and `nohup`ed
//! ones included — stays its descendant. It then reads the shell's environment from stdin
//! (`NAME=value` entries, each ended by a NUL byte, the list by an empty entry: the job's
//! variables never reach the supervisor's own environment, where the dynamic loader of a
//! privileged process would honour them), and waits on its own timer for `<start-at>`, an
//! instant of the machine's monotonic clock: the run's shell starts at the planned time
//! whether or not the worker gets a CPU then. End of file on stdin, a stop signal or a lease
//! about to run out before that calls the run off. It then starts `<shell> -c <command>` (the
//! job's shell, `/bin/sh` unless it names another) as the run's user, stdin from `/dev/null`,
//! and writes the wall-clock time it did so (nanoseconds since the epoch, little-endian `i64`)
//! to the report pipe the server handed it: the run's `startTime`. It then yields the CPU to
//! other runs' starts (see [`crate::priority`]). When the run is over — the shell and every
//! process it left gone — it writes that time to the pipe too, the run's `endTime`, and exits
//! at the lowest priority: its own teardown can wait for idle CPU.
//!
//! * When the shell exits, every descendant still running gets SIGTERM, and SIGKILL after the
//!   grace period; the supervisor then exits as the shell did (the same exit code, or death by
//!   the same signal).
//! * On SIGTERM or SIGINT (the worker stops the run by signalling the group, which reaches the
//!   shell and its group directly), the supervisor passes the signal on to the descendants
//!   outside the group, and SIGKILLs every descendant when the grace period is over.
//! * On SIGHUP (the worker died) it SIGKILLs every descendant at once and exits.
//! * With `<watch>` 1, the worker keeps telling it, one line on stdin per renewal of its etcd
//!   lease, how many milliseconds the lease is good for. If no renewal comes in time (the worker
//!   is frozen, swapped out or cut off from etcd), the supervisor ends the run on its own —
//!   SIGTERM to every descendant when only the grace period and a margin are left, SIGKILL at
//!   the margin — so the run is over before the lease can expire and another worker can take
//!   the job's lock, whatever happened to the worker.
//!
//! It runs in a fork of the small `cronfleet-run` server, not of the worker: starting a
//! process per run is most of what a run costs, and forking a small single-threaded process
//! costs a fraction of starting a program.

mod descendants;
mod invocation;
mod lease_watch;
mod spawn;
mod waiting;

use std::io::{BufReader, Stdin, Write as _};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, raise, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getppid, Pid};

use self::descendants::descendants;
use self::invocation::read_environment;
pub use self::invocation::{arguments, environment_block, monotonic_now, Invocation};
use self::lease_watch::LeaseWatch;
use self::spawn::ShellSpawn;
use self::waiting::wait_to_start;
use crate::run_limits::RunLimits;

/// The supervisor binary's file name; it is installed next to `cronfleet-worker`.
pub const BINARY: &str = "cronfleet-run";

/// How long before the worker's lease runs out every process of the run is dead.
const LEASE_MARGIN: Duration = Duration::from_millis(250);

/// Supervises `<shell> -c command` and exits as it did; reports its start and end on `report`.
pub fn run(invocation: &Invocation, report: OwnedFd) -> ! {
    let signals: SigSet = [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
    ]
    .into_iter()
    .collect();
    if signals.thread_block().is_err() {
        std::process::exit(127);
    }
    // Die with the server, which dies with the worker; if it died before we asked, nothing
    // runs.
    let orphaned =
        i32::try_from(invocation.worker).map_or(true, |worker| getppid().as_raw() != worker);
    if nix::sys::prctl::set_pdeathsig(Signal::SIGHUP).is_err() || orphaned {
        std::process::exit(0);
    }
    if nix::sys::prctl::set_child_subreaper(true).is_err() {
        eprintln!(
            "cronfleet: cannot become a child subreaper; processes a run detaches may outlive it"
        );
    }
    let mut stdin = BufReader::new(std::io::stdin());
    let Some(env) = read_environment(&mut stdin) else {
        std::process::exit(0);
    };
    let Ok(incoming) = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC) else {
        std::process::exit(127);
    };
    // As another user the shell is forked, switched and set up before exec: its signal mask
    // cleared, the run's limits set after the switch. As the supervisor's own user the limits
    // go on the supervisor itself, which the shell inherits, and the shell starts with
    // posix_spawn ([`spawn`]).
    let mut starter = if let (Some(uid), Some(gid)) = (invocation.uid, invocation.gid) {
        let mut shell = Command::new(&invocation.shell);
        shell
            .arg("-c")
            .arg(&invocation.command)
            .stdin(Stdio::null())
            .env_clear()
            .envs(env)
            .uid(uid)
            .gid(gid);
        // Entered after the switch to the run's user, so it must be that user's to enter.
        if let Some(dir) = &invocation.working_dir {
            shell.current_dir(dir);
        }
        set_up_shell(&mut shell, invocation.limits);
        Starter::Forked(shell)
    } else {
        if let Err(e) = invocation.limits.apply() {
            eprintln!("cronfleet: could not set the run's limits: {e}");
            std::process::exit(127);
        }
        let shell = (invocation.shell.as_os_str(), invocation.command.as_os_str());
        match ShellSpawn::new(shell, &env, invocation.working_dir.as_deref()) {
            Ok(spawn) => Starter::Spawned(spawn),
            Err(e) => {
                eprintln!("cronfleet: could not start the shell: {e}");
                std::process::exit(127);
            }
        }
    };
    // At the start time only the spawn is left to do.
    let mut input = LeaseWatch::new(stdin, invocation.grace + LEASE_MARGIN);
    if let Err(reason) = wait_to_start(invocation.start_at, &incoming, &mut input) {
        eprintln!("cronfleet: the run was called off before its shell started: {reason}");
        std::process::exit(0);
    }
    let lease = invocation.watch.then_some(input);
    let spawned = match &mut starter {
        Starter::Forked(shell) => shell
            .spawn()
            .map(|shell| Pid::from_raw(i32::try_from(shell.id()).unwrap_or(i32::MAX))),
        Starter::Spawned(spawn) => spawn.spawn(),
    };
    let shell = match spawned {
        Ok(shell) => shell,
        Err(e) => {
            eprintln!(
                "cronfleet: could not start {}: {e}",
                invocation.shell.to_string_lossy()
            );
            std::process::exit(127);
        }
    };
    let mut report = std::fs::File::from(report);
    let _ = report.write_all(&wall_clock_now().to_le_bytes());
    // What is left (following the run, ending what it leaves, exiting) can wait for the
    // starts of other runs, as the worker's own work does.
    let _ = crate::priority::set(crate::priority::current() + crate::priority::WORKER_YIELD);
    Supervisor {
        shell,
        status: None,
        grace: invocation.grace,
        stop_by: None,
        report,
    }
    .supervise(&incoming, lease)
}

/// The shell, how it ended once it has, the grace between SIGTERM and SIGKILL, and when the
/// grace of a stop under way is over.
struct Supervisor {
    shell: Pid,
    status: Option<ExitStatus>,
    grace: Duration,
    stop_by: Option<Instant>,
    /// Where the run's start was reported, and its end will be.
    report: std::fs::File,
}

impl Supervisor {
    /// Waits for signals, lease confirmations and deadlines, one thread, until the run is over.
    fn supervise(mut self, incoming: &SignalFd, mut lease: Option<LeaseWatch<Stdin>>) -> ! {
        loop {
            let lease_runs_out = lease
                .as_ref()
                .and_then(LeaseWatch::stop_at)
                .filter(|_| self.stop_by.is_none());
            let wake_at = [lease_runs_out, self.stop_by].into_iter().flatten().min();
            let timeout = wake_at.map_or(PollTimeout::NONE, |at| {
                let left = at.saturating_duration_since(Instant::now());
                // Rounded up, so the wake comes at or after the deadline.
                PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            });
            let (signalled, confirmed) = {
                let mut fds = vec![PollFd::new(incoming.as_fd(), PollFlags::POLLIN)];
                fds.extend(
                    lease
                        .as_ref()
                        .and_then(LeaseWatch::readable)
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) => (
                        fds[0].any().unwrap_or(false),
                        fds.get(1).and_then(PollFd::any).unwrap_or(false),
                    ),
                    Err(_) => (false, false),
                }
            };
            if confirmed {
                if let Some(lease) = lease.as_mut() {
                    lease.read();
                }
            }
            if signalled {
                if let Ok(Some(info)) = incoming.read_signal() {
                    if let Ok(signal) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0))
                    {
                        self.on_signal(signal);
                    }
                }
            }
            let now = Instant::now();
            if lease_runs_out.is_some_and(|at| at <= now) && self.stop_by.is_none() {
                // The worker's lease is about to run out unconfirmed: end the run while it holds.
                eprintln!(
                    "cronfleet: the worker stopped confirming its etcd lease; ending the run \
                     before the lease can run out"
                );
                for pid in descendants() {
                    let _ = kill(pid, Signal::SIGTERM);
                    let _ = kill(pid, Signal::SIGCONT);
                }
                self.stop_by = Some(now + self.grace);
            }
            if self.stop_by.is_some_and(|at| at <= now) {
                // The grace after a stop is over.
                self.kill_descendants();
                let status = self
                    .status
                    .unwrap_or_else(|| ExitStatus::from_raw(Signal::SIGKILL as i32));
                self.finish(status);
            }
        }
    }

    /// Nothing of the run is left: reports its end, and exits as `status` at the lowest
    /// priority, so tearing this process down waits behind other runs' starts.
    fn finish(&mut self, status: ExitStatus) -> ! {
        let _ = self.report.write_all(&wall_clock_now().to_le_bytes());
        let _ = crate::priority::set(19);
        exit_like(status)
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD => {
                self.reap();
                if let Some(status) = self.status {
                    // After a stop, what is left has what remains of its grace.
                    let deadline = self.stop_by.unwrap_or_else(|| Instant::now() + self.grace);
                    self.end_descendants(deadline);
                    self.finish(status);
                }
            }
            // The worker stops the run by signalling the group, which reaches the shell and
            // its group directly; the rest of the run hears it from here.
            Signal::SIGTERM | Signal::SIGINT => {
                let group = getpgrp();
                for pid in descendants() {
                    if nix::unistd::getpgid(Some(pid)).ok() != Some(group) {
                        let _ = kill(pid, Signal::SIGTERM);
                        let _ = kill(pid, Signal::SIGCONT);
                    }
                }
                if self.stop_by.is_none() {
                    self.stop_by = Some(Instant::now() + self.grace);
                }
            }
            Signal::SIGHUP => {
                self.kill_descendants();
                std::process::exit(128 + Signal::SIGHUP as i32);
            }
            _ => {}
        }
    }

    /// Reaps every child that ended, keeping the shell's status when it is one of them.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.shell => {
                    self.status = Some(ExitStatus::from_raw((code & 0xff) << 8));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == self.shell => {
                    self.status = Some(ExitStatus::from_raw(signal as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// After the shell: SIGTERM to every descendant left, SIGKILL to those still there at
    /// `deadline`.
    fn end_descendants(&mut self, deadline: Instant) {
        let left = descendants();
        if left.is_empty() {
            return;
        }
        for pid in left {
            let _ = kill(pid, Signal::SIGTERM);
            let _ = kill(pid, Signal::SIGCONT);
        }
        while Instant::now() < deadline {
            self.reap();
            if descendants().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_descendants();
    }

    /// SIGKILLs every descendant, stopping them first so none forks past us, until none is
    /// left.
    fn kill_descendants(&mut self) {
        loop {
            self.reap();
            let left = descendants();
            if left.is_empty() {
                return;
            }
            for pid in &left {
                let _ = kill(*pid, Signal::SIGSTOP);
            }
            for pid in &left {
                let _ = kill(*pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// How the shell will start: forked, to switch to the run's user, or spawned as this one.
enum Starter {
    Forked(Command),
    Spawned(ShellSpawn),
}

/// Clears the shell's signal mask and sets `limits` on it, between fork and exec, after the
/// switch to the run's user.
#[allow(unsafe_code)]
fn set_up_shell(command: &mut Command, limits: RunLimits) {
    // SAFETY: runs in the child between fork and exec and only calls sigprocmask(2) and
    // setrlimit(2), which are async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            limits.apply()
        });
    }
}

/// Nanoseconds since the epoch.
fn wall_clock_now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn exit_like(status: ExitStatus) -> ! {
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    let number = status.signal().unwrap_or(0);
    if let Ok(signal) = Signal::try_from(number) {
        let one: SigSet = std::iter::once(signal).collect();
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&one), None);
        let _ = raise(signal);
    }
    // Only reached for a signal whose default action is not to terminate (or is ignored here).
    std::process::exit(128 + number);
}
