//! The run supervisor: the small `cronfleet-run` binary that sits between the worker and the
//! job's shell, so that a run cannot outlive a worker that dies.
//!
//! The worker starts `cronfleet-run <worker-pid> <uid> <gid> <command>` as the leader of a new
//! process group, ahead of the planned time. The supervisor asks the kernel to send it SIGHUP
//! when the worker dies (and gives up at once if the worker is already gone), waits for one
//! byte on stdin (the word to go; end of file means the run was called off), then starts
//! `/bin/sh -c <command>` in that group, stdin from `/dev/null`, and waits for it. It is a
//! binary of its own, not the worker's: starting a process per run is most of what a run
//! costs, and a small binary starts in a third of the time. On SIGHUP it SIGKILLs the whole
//! group,
//! itself, the shell and anything the shell started included. SIGTERM and SIGINT sent to the
//! group reach the shell and its children directly; the supervisor outlives them to report the
//! shell's status as its own (the same exit code, or death by the same signal).

use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, ExitStatus, Stdio};

use nix::sys::signal::{killpg, raise, SigSet, SigmaskHow, Signal};
use nix::unistd::{getpgrp, getppid};

/// The supervisor binary's file name; it is installed next to `cronfleet-worker`.
pub const BINARY: &str = "cronfleet-run";

/// What to supervise: the worker that started it, the command, and the user and group to
/// run it as (`-` for the worker's).
#[derive(Debug, Clone)]
pub struct Invocation {
    pub worker: u32,
    pub command: OsString,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The arguments that start a supervisor for `command` under worker process `worker`, run as
/// `run_as` (uid, gid) if given.
pub fn arguments(command: &str, worker: u32, run_as: Option<(u32, u32)>) -> Vec<OsString> {
    let (uid, gid) = run_as.map_or_else(
        || ("-".to_owned(), "-".to_owned()),
        |(u, g)| (u.to_string(), g.to_string()),
    );
    vec![
        worker.to_string().into(),
        uid.into(),
        gid.into(),
        command.into(),
    ]
}

/// The invocation in this process's arguments, if they are one.
pub fn invocation() -> Option<Invocation> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [worker, uid, gid, command] = args.as_slice() else {
        return None;
    };
    let id = |raw: &OsString| raw.to_str().and_then(|s| s.parse::<u32>().ok());
    Some(Invocation {
        worker: id(worker)?,
        command: command.clone(),
        uid: id(uid),
        gid: id(gid),
    })
}

/// Supervises `/bin/sh -c command` and exits as it did.
pub fn run(invocation: &Invocation) -> ! {
    let command = &invocation.command;
    let signals: SigSet = [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT]
        .into_iter()
        .collect();
    if signals.thread_block().is_err() {
        std::process::exit(127);
    }
    // Die with the worker. Asked for here, after the worker let go of us, so that the worker
    // can start us without a fork of its own; if it died before we asked, nothing runs.
    let orphaned =
        i32::try_from(invocation.worker).map_or(true, |worker| getppid().as_raw() != worker);
    if nix::sys::prctl::set_pdeathsig(Signal::SIGHUP).is_err() || orphaned {
        std::process::exit(0);
    }
    let mut go = [0u8; 1];
    if !matches!(std::io::stdin().read(&mut go), Ok(1)) {
        std::process::exit(0);
    }
    let mut shell = Command::new("/bin/sh");
    shell.arg("-c").arg(command).stdin(Stdio::null());
    if let (Some(uid), Some(gid)) = (invocation.uid, invocation.gid) {
        shell.uid(uid).gid(gid);
    }
    unblock_in_child(&mut shell);
    let mut shell = match shell.spawn() {
        Ok(shell) => shell,
        Err(e) => {
            eprintln!("cronfleet: could not start /bin/sh: {e}");
            std::process::exit(127);
        }
    };
    std::thread::spawn(move || loop {
        if let Ok(Signal::SIGHUP) = signals.wait() {
            let _ = killpg(getpgrp(), Signal::SIGKILL);
        }
    });
    match shell.wait() {
        Ok(status) => exit_like(status),
        Err(_) => std::process::exit(127),
    }
}

/// The signal mask survives exec, and the shell must see SIGTERM and SIGINT as usual.
#[allow(unsafe_code)]
fn unblock_in_child(command: &mut Command) {
    // SAFETY: runs in the child between fork and exec and only calls sigprocmask(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            SigSet::empty()
                .thread_set_mask()
                .map_err(std::io::Error::from)
        });
    }
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
