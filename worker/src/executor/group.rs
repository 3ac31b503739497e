//! Ending a run's process group: through its supervisor first, by the worker itself if the
//! supervisor does not exit in time, and a last sweep of whatever is left in the group.

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::launcher::Exit;

/// How long past the grace period the supervisor may take to end a run's processes and exit.
const SUPERVISOR_MARGIN: Duration = Duration::from_secs(2);

/// SIGTERM to the group; the supervisor passes it on to the run's processes outside the group
/// and SIGKILLs every one of them after the grace period, then exits. SIGKILL to the group
/// only if the supervisor has not exited a moment after that. Returns the shell's status.
pub(super) async fn terminate(
    exit: &mut Exit,
    group: Pid,
    grace: Duration,
) -> std::io::Result<ExitStatus> {
    let _ = killpg(group, Signal::SIGTERM);
    match tokio::time::timeout(grace + SUPERVISOR_MARGIN, exit.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            exit.wait().await
        }
    }
}

/// Stops whatever is left of a process group: SIGTERM, then SIGKILL after the grace period.
pub(super) async fn stop_group(group: Pid, grace: Duration) {
    if !group_alive(group) {
        return;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if !group_alive(group) {
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    // SIGKILL is delivered asynchronously; give the kernel a moment to take them down.
    for _ in 0..100 {
        if !group_alive(group) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a process of `group` is still running. Zombies do not count: they wait for init to
/// reap them, which can take a while, and `kill(-pgid, 0)` would still find them.
fn group_alive(group: Pid) -> bool {
    // The usual end of a run: nothing at all is left in the group, zombies included.
    if killpg(group, None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(group, None).is_ok();
    };
    entries.filter_map(Result::ok).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // The command name in parentheses may contain spaces; the fields after it do not.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(group.as_raw()) && state != Some("Z") && state != Some("X")
    })
}
