//! Waiting for the run's start time on the supervisor's own timer, so that the shell starts
//! on time whether or not the worker gets a CPU then.

use std::io::Stdin;
use std::os::fd::AsFd as _;
use std::time::{Duration, Instant};

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::invocation::monotonic_now;
use super::lease_watch::LeaseWatch;

/// Waits until `start_at` on the monotonic clock, reading the worker's lease confirmations
/// meanwhile; the reason the run is called off instead, if it is.
pub(super) fn wait_to_start(
    start_at: Duration,
    incoming: &SignalFd,
    input: &mut LeaseWatch<Stdin>,
) -> Result<(), &'static str> {
    loop {
        let left = start_at.saturating_sub(monotonic_now());
        if left.is_zero() {
            return Ok(());
        }
        if input.stop_at().is_some_and(|at| at <= Instant::now()) {
            return Err("the worker stopped confirming its etcd lease");
        }
        let lease_left = input
            .stop_at()
            .map(|at| at.saturating_duration_since(Instant::now()));
        let timeout = lease_left.map_or(left, |lease| lease.min(left));
        let (signalled, readable) = {
            let mut fds = vec![PollFd::new(incoming.as_fd(), PollFlags::POLLIN)];
            let Some(stdin) = input.readable() else {
                return Err("the worker went away or called it off");
            };
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            match ppoll(&mut fds, Some(timeout.into()), None) {
                Ok(_) => (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false)),
                Err(_) => (false, false),
            }
        };
        if readable {
            input.read();
        }
        if signalled {
            if let Ok(Some(info)) = incoming.read_signal() {
                if info.ssi_signo != Signal::SIGCHLD as u32 {
                    return Err("the run was stopped");
                }
            }
        }
    }
}
