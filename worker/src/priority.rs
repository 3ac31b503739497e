//! The worker's priority over its runs.
//!
//! Under a burst hundreds of runs are runnable at once, and the scheduler gives every one of
//! them the same share as each of the worker's threads: a worker that waited its fair turn
//! behind them claimed and started each next run hundreds of milliseconds late. So the worker
//! (and the run server it starts, which inherits it) lowers its nice value by [`BOOST`] when
//! its privileges allow, before it starts any thread (Linux keeps the value per thread, and
//! threads inherit their creator's), and every run gets the nice value the worker was started
//! with.

use std::sync::OnceLock;

/// How much higher the worker's priority is than its runs', where it may raise it.
pub const BOOST: i32 = 10;

static RUNS_NICE: OnceLock<i32> = OnceLock::new();

/// Raises the calling thread's priority (threads it starts inherit it) if permitted; call it
/// first thing in `main`. Runs keep the nice value the process was started with.
pub fn boost() {
    let started = nice();
    // Without the privilege to lower it, the worker keeps its nice value, like its runs.
    let _ = set_nice(started - BOOST);
    let _ = RUNS_NICE.set(started);
}

/// The nice value runs get: the worker's as started.
pub fn runs_nice() -> i32 {
    *RUNS_NICE.get_or_init(nice)
}

/// The calling thread's nice value.
#[allow(unsafe_code)]
pub fn nice() -> i32 {
    // SAFETY: getpriority(2) on the calling thread reads a number and touches no memory.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Sets the calling thread's nice value; false if not permitted.
#[allow(unsafe_code)]
pub fn set_nice(value: i32) -> bool {
    // SAFETY: setpriority(2) on the calling thread sets a number and touches no memory.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, value) == 0 }
}
