//! The raw floor: one loop that spawns n shells at one instant, each running the command every
//! benchmark job runs, so that both sides are timed alike — by when each spawn returned (the
//! shell was exec'd) and by when each shell ran its command, by its own clock.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::Utc;

use super::Spread;

/// What every benchmark job and every floor shell runs: the shell prints the box's uptime as
/// it reads it, so its output says when it was running by its own clock (in the 10 ms steps
/// of `/proc/uptime`); builtins only, so no process beyond the shell.
pub const SHELL_CLOCK: &str = "read up rest < /proc/uptime; echo $up";

/// When the box's uptime began, in Unix milliseconds (to 10 ms).
pub fn boot_ms() -> f64 {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    Utc::now().timestamp_millis() as f64 - secs * 1000.0
}

/// The floor for `n` shells at once, each measured from the loop's start.
pub struct Floor {
    /// Until each spawn had returned.
    pub spawned: Spread,
    /// Until each shell ran its command, by its own clock.
    pub shells: Spread,
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spawned {}; shells running (own clock) {}",
            self.spawned, self.shells
        )
    }
}

impl Floor {
    /// The median of three runs, by the spawns' p99.
    pub fn measure(n: usize) -> Self {
        let mut runs: Vec<Floor> = (0..3).map(|_| Self::once(n)).collect();
        runs.sort_by(|a, b| a.spawned.p99.total_cmp(&b.spawned.p99));
        runs.swap_remove(1)
    }

    fn once(n: usize) -> Self {
        let started_ms = Utc::now().timestamp_millis() as f64;
        let started = Instant::now();
        let mut children = Vec::with_capacity(n);
        let mut spawned = Vec::with_capacity(n);
        for _ in 0..n {
            let child = Command::new("/bin/sh")
                .args(["-c", SHELL_CLOCK])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            spawned.push(started.elapsed().as_secs_f64() * 1000.0);
            children.push(child);
        }
        let boot = boot_ms();
        let mut shells = Vec::with_capacity(n);
        for mut child in children {
            let mut output = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                stdout.read_to_string(&mut output).unwrap();
            }
            child.wait().unwrap();
            if let Ok(up) = output.trim().parse::<f64>() {
                shells.push(boot + up * 1000.0 - started_ms);
            }
        }
        Self {
            spawned: Spread::of(spawned).unwrap(),
            shells: Spread::of(shells).unwrap(),
        }
    }
}
