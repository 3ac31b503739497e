//! The master's integration tests, one binary: each module tests one part against the real
//! etcd, PostgreSQL and MongoDB-wire servers that `compose/test` starts ([`support`] builds a
//! master on a private slice of them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod api;
mod chain;
mod channel_pages;
mod channels;
mod etcd_failover;
mod fail_fast;
mod input;
mod last_runs;
mod legacy;
mod names;
mod outcomes;
mod pages;
mod policies;
mod policy_pages;
mod projector;
mod retention;
mod running;
mod runs;
mod services;
mod stats;
mod support;
mod time_travel;
mod users;
mod versions;
