//! The worker's integration tests, one binary: each module tests one part against the real
//! etcd, PostgreSQL and MongoDB-wire servers that `compose/test` starts ([`support`] runs
//! worker processes on a private slice of them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batch;
mod capacity;
mod clock_skew;
mod containment;
mod end_to_end;
mod etcd_failover;
mod etcd_restart;
mod etcd_secure;
mod executor;
mod fleet;
mod job_env;
mod kill_window;
mod legacy_fleet;
mod legacy_log;
mod live_output;
mod mongo_outage;
mod policies;
mod policy_faults;
mod priority;
mod record_path;
mod run_now;
mod support;
mod watcher;
