//! Who gets the CPU first on a worker's machine: its runs before the worker's own work.
//!
//! Under load the box's cores are the bottleneck. Measured at 10,000 jobs a minute on three
//! workers on 2 cores (a wave of 166 shells every second), with the workers and their runs at
//! one nice value, the last shells of each wave ran 1.36× later than the same shells forked by
//! a plain loop: the work for the runs that had already ended (the workers releasing locks and
//! writing records, the supervisors exiting — a quarter of the supervisors' CPU during a wave)
//! took the CPU the later starts needed. That work can wait a few milliseconds; a start cannot.
//!
//! * The worker runs [`WORKER_YIELD`] nice values below its runs ([`yield_to_runs`], called
//!   by `cronfleet-worker` before it starts any thread); its runs keep the nice value the
//!   worker was started with ([`runs`]). Only where the worker may give them that back (as
//!   root with `CAP_SYS_NICE`, or under a high enough `RLIMIT_NICE`): otherwise it does not
//!   yield, and runs keep the worker's value as before.
//! * The run server runs [`SERVER_BOOST`] above the runs where it may (see
//!   [`crate::run_server`]); each supervisor it forks gets the runs' value, starts its shell
//!   at it, then steps [`WORKER_YIELD`] below for the rest of the run, and to the lowest
//!   priority (19) once nothing of the run is left and only its own exit remains.
//!
//! Linux keeps the nice value per thread; threads started later inherit it.

use std::sync::OnceLock;

/// How many nice values the worker's own threads run below its runs.
pub const WORKER_YIELD: i32 = 5;

/// How many nice values the run server runs above the runs, where allowed.
pub const SERVER_BOOST: i32 = 10;

/// The runs' nice value, once the worker has yielded to them.
static RUNS: OnceLock<i32> = OnceLock::new();

/// Lowers this thread's priority below the runs', if the runs can be given theirs back; call
/// before any other thread starts, so all of the worker's threads inherit it.
pub fn yield_to_runs() {
    let runs = current();
    // Tried on a thread of its own, whose nice value dies with it.
    let may_restore = std::thread::spawn(move || set(runs + WORKER_YIELD) && set(runs))
        .join()
        .unwrap_or(false);
    if may_restore && set(runs + WORKER_YIELD) {
        let _ = RUNS.set(runs);
    }
}

/// The nice value runs get: the worker's own before it yielded to them.
pub fn runs() -> i32 {
    RUNS.get().copied().unwrap_or_else(current)
}

/// The calling thread's nice value.
#[allow(unsafe_code)]
pub fn current() -> i32 {
    // SAFETY: getpriority(2) on the calling thread reads a number and touches no memory.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

/// Sets the calling thread's nice value; false if not permitted.
#[allow(unsafe_code)]
pub fn set(value: i32) -> bool {
    // SAFETY: setpriority(2) on the calling thread sets a number and touches no memory.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, value) == 0 }
}
