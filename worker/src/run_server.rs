//! The run server, `cronfleet-run serve <worker-pid> <runs-nice>`: started once by each
//! worker, it forks
//! a [`supervisor`] for every run, so that a run costs one `exec` — the shell's — instead of
//! two. Starting a dynamically linked program (loader, relocations, the C library's CPU
//! probes) is most of what a supervisor used to cost; a fork of this small process is a
//! fraction of it.
//!
//! The server is single-threaded, which is what makes forking it and going on in the child
//! with ordinary Rust code sound: no other thread can hold a lock the child would need. It
//! talks to the worker over its stdin, a `SOCK_SEQPACKET` socket (one message per request or
//! answer; see [`crate::launcher`] for the messages). Each supervisor is the leader of a new
//! process group, with the run's first three pipes as its stdin, stdout and stderr, exactly as
//! if the worker had started it, and the fourth, closed on exec, to report its shell's start
//! on; the server reaps it and reports how it ended.
//!
//! The server runs [`SERVER_BOOST`] nice values above the runs (`<runs-nice>`) where its
//! privileges allow (as root), and gives every supervisor the runs' value: under a burst
//! hundreds of runs are runnable at once, and a server that waited its fair turn behind them
//! all forked each next run late. Only the server: a boosted worker slowed bursts down, its
//! threads preempting runs that held their slots the longer (the worker now runs below its
//! runs; see [`crate::priority`]).
//!
//! It dies with the worker (SIGKILL as its parent-death signal), and every supervisor asks
//! for SIGHUP when the server dies, which ends its run at once — so a run still dies with the
//! worker.
//!
//! [`supervisor`]: crate::supervisor

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, getppid, setpgid, ForkResult, Pid};

use crate::launcher::{Answer, Request, MAX_REQUEST_BYTES};
use crate::priority::{self, SERVER_BOOST};
use crate::supervisor::Invocation;

/// Serves the worker with pid `worker` on stdin until it goes away; runs get nice value
/// `runs_nice`, or the server's own where it has no privilege to go below that.
#[allow(unsafe_code)]
pub fn serve(worker: u32, runs_nice: i32) -> ! {
    close_inherited();
    let child_ended: SigSet = std::iter::once(Signal::SIGCHLD).collect();
    if child_ended.thread_block().is_err() {
        std::process::exit(127);
    }
    let orphaned = i32::try_from(worker).map_or(true, |worker| getppid().as_raw() != worker);
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || orphaned {
        std::process::exit(0);
    }
    let Ok(reaped) =
        SignalFd::with_flags(&child_ended, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    else {
        std::process::exit(127);
    };
    // SAFETY: the worker starts the server with its end of the socket as stdin, and nothing
    // else in this process owns descriptor 0.
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    // Without the privilege to lower it, the server keeps the worker's nice value.
    let _ = priority::set(runs_nice - SERVER_BOOST);
    let runs_nice = runs_nice.max(priority::current());
    let mut server = Server {
        runs_nice,
        socket,
        reaped,
        live: HashSet::new(),
        buffer: vec![0; MAX_REQUEST_BYTES],
    };
    loop {
        server.turn();
    }
}

/// Closes every descriptor above stderr: those the worker inherited and left open on exec
/// would otherwise reach every run's shell.
#[allow(unsafe_code)]
fn close_inherited() {
    // SAFETY: close_range(2) on descriptors this process has not opened and nothing owns.
    if unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } == 0 {
        return;
    }
    // Kernels before 5.9: the same from the list of open descriptors.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        let _ = nix::unistd::close(fd);
    }
}

struct Server {
    /// The nice value every run gets.
    runs_nice: i32,
    socket: OwnedFd,
    reaped: SignalFd,
    /// Supervisors started and not yet reaped: the only pids a kill request may reach.
    live: HashSet<Pid>,
    buffer: Vec<u8>,
}

impl Server {
    /// Waits for a request or an ended supervisor and handles it.
    fn turn(&mut self) {
        let (requests, ended) = {
            let mut fds = [
                PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.reaped.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => (fds[0].any().unwrap_or(true), fds[1].any().unwrap_or(true)),
                Err(Errno::EINTR) => return,
                Err(_) => std::process::exit(127),
            }
        };
        if ended {
            while let Ok(Some(_)) = self.reaped.read_signal() {}
            self.reap();
        }
        if requests {
            self.take_request();
        }
    }

    /// Reaps every supervisor that ended and tells the worker how.
    fn reap(&mut self) {
        loop {
            let (pid, raw) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
                Ok(WaitStatus::Signaled(pid, signal, core)) => {
                    (pid, signal as i32 | if core { 0x80 } else { 0 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            self.live.remove(&pid);
            self.answer(&Answer::Ended(pid.as_raw(), raw));
        }
    }

    #[allow(unsafe_code)]
    fn take_request(&mut self) {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut self.buffer)];
        let message = match recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(message) => message,
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => std::process::exit(0),
        };
        let (length, truncated) = (message.bytes, message.flags.contains(MsgFlags::MSG_TRUNC));
        // SAFETY: the kernel just installed these descriptors in this process for this
        // message; nothing else owns them.
        let fds: Vec<OwnedFd> = message
            .cmsgs()
            .into_iter()
            .flatten()
            .filter_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        // End of file: the worker closed its end.
        if length == 0 && fds.is_empty() {
            std::process::exit(0);
        }
        match Request::decode(&self.buffer[..length]) {
            _ if truncated => self.answer(&Answer::Refused(Errno::EMSGSIZE as i32)),
            Some(Request::Start(args)) => self.start(&args, fds),
            Some(Request::Kill(pid)) => {
                let pid = Pid::from_raw(pid);
                if self.live.contains(&pid) {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                }
            }
            None => self.answer(&Answer::Refused(Errno::EINVAL as i32)),
        }
    }

    /// Forks a supervisor for `args` with `fds` (stdin, stdout, stderr, the start report) and
    /// answers its pid.
    #[allow(unsafe_code)]
    fn start(&mut self, args: &[OsString], fds: Vec<OwnedFd>) {
        let (Some(mut invocation), Ok([stdin, stdout, stderr, report])) =
            (Invocation::parse(args), <[OwnedFd; 4]>::try_from(fds))
        else {
            return self.answer(&Answer::Refused(Errno::EINVAL as i32));
        };
        // The supervisor's parent, whose death it watches, is this server.
        invocation.worker = std::process::id();
        // SAFETY: this process has a single thread, so the child inherits no lock held by
        // another thread and may run any code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => become_supervisor(
                &invocation,
                [stdin, stdout, stderr, report],
                self.reaped.as_raw_fd(),
                self.runs_nice,
            ),
            Ok(ForkResult::Parent { child }) => {
                // Also set here, so the group exists before the worker hears of the pid.
                let _ = setpgid(child, child);
                self.live.insert(child);
                self.answer(&Answer::Started(child.as_raw()));
            }
            Err(e) => self.answer(&Answer::Refused(e as i32)),
        }
    }

    fn answer(&self, answer: &Answer) {
        let bytes = answer.encode();
        if sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[] as &[ControlMessage],
            MsgFlags::empty(),
            None,
        )
        .is_err()
        {
            std::process::exit(0);
        }
    }
}

/// In the forked child: the run's pipes become stdin, stdout and stderr (the report pipe stays
/// as it came, closed on exec), the server's own descriptors and signal mask are left behind,
/// and the supervisor takes over.
fn become_supervisor(
    invocation: &Invocation,
    pipes: [OwnedFd; 4],
    reaped: RawFd,
    runs_nice: i32,
) -> ! {
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if !priority::set(runs_nice) {
        std::process::exit(127);
    }
    let [stdin, stdout, stderr, report] = pipes;
    let moved = dup2_stdin(&stdin).and_then(|()| dup2_stdout(&stdout));
    if moved.and_then(|()| dup2_stderr(&stderr)).is_err() {
        std::process::exit(127);
    }
    drop((stdin, stdout, stderr));
    let _ = nix::unistd::close(reaped);
    if SigSet::empty().thread_set_mask().is_err() {
        std::process::exit(127);
    }
    crate::supervisor::run(invocation, report)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt as _;

    use super::*;

    #[test]
    fn requests_and_answers_read_back() {
        let args: Vec<OsString> = vec!["1".into(), "-".into(), "echo hi".into()];
        let Some(Request::Start(back)) = Request::decode(&Request::Start(args.clone()).encode())
        else {
            panic!("a start request reads back");
        };
        assert_eq!(back, args);
        assert!(matches!(
            Request::decode(&Request::Kill(42).encode()),
            Some(Request::Kill(42))
        ));
        assert!(Request::decode(b"").is_none());
        assert!(Request::decode(b"K12").is_none());
        for answer in [
            Answer::Started(7),
            Answer::Refused(22),
            Answer::Ended(7, 0x0900),
        ] {
            assert_eq!(Answer::decode(&answer.encode()), Some(answer));
        }
        assert_eq!(Answer::decode(b"S1"), None);
    }

    #[test]
    fn argument_bytes_survive_a_round_trip() {
        let odd = OsString::from_vec(vec![0xff, b'x']);
        let Some(Request::Start(back)) =
            Request::decode(&Request::Start(vec![odd.clone()]).encode())
        else {
            panic!("a start request reads back");
        };
        assert_eq!(back, [odd]);
    }
}
