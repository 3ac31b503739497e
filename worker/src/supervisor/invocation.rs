//! What the worker hands a supervisor: its arguments ([`arguments`], read back by
//! [`Invocation::parse`]) and, on stdin, the shell's environment ([`environment_block`]).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::time::Duration;

use crate::run_limits::RunLimits;

/// Most bytes of environment the supervisor accepts for the shell.
const MAX_ENV_BYTES: usize = 1024 * 1024;

/// What to supervise: the worker that started it, the command, the user and group to run it
/// as (`-` for the worker's), how long descendants get between SIGTERM and SIGKILL, whether
/// the worker confirms its lease on stdin, and when to start the shell.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub worker: u32,
    /// The shell that runs `command` (`<shell> -c <command>`).
    pub shell: OsString,
    pub command: OsString,
    /// The directory the shell starts in; the supervisor's own when `None`.
    pub working_dir: Option<OsString>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub grace: Duration,
    pub watch: bool,
    pub limits: RunLimits,
    /// When to start the shell, on the system's monotonic clock ([`monotonic_now`]), which
    /// every process of the machine shares; at once if it has passed.
    pub start_at: Duration,
}

/// The time on the system's monotonic clock (`CLOCK_MONOTONIC`, which also underlies
/// `std::time::Instant`): the same in the worker and in every supervisor.
pub fn monotonic_now() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(Duration::from)
        .unwrap_or_default()
}

/// The arguments that start a supervisor for `command` under worker process `worker`, run as
/// `run_as` (uid, gid) if given, with `grace` between SIGTERM and SIGKILL, its shell started
/// at `start_at` ([`monotonic_now`]).
pub fn arguments(
    (shell, command, working_dir): (&str, &str, Option<&str>),
    worker: u32,
    run_as: Option<(u32, u32)>,
    (grace, watch): (Duration, bool),
    limits: &RunLimits,
    start_at: Duration,
) -> Vec<OsString> {
    let (uid, gid) = run_as.map_or_else(
        || ("-".to_owned(), "-".to_owned()),
        |(u, g)| (u.to_string(), g.to_string()),
    );
    vec![
        worker.to_string().into(),
        uid.into(),
        gid.into(),
        grace.as_millis().to_string().into(),
        if watch { "1" } else { "0" }.into(),
        limits.to_argument().into(),
        shell.into(),
        command.into(),
        working_dir.unwrap_or("-").into(),
        start_at.as_nanos().to_string().into(),
    ]
}

/// The environment block the supervisor reads first on its stdin.
pub fn environment_block<'a>(vars: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in vars {
        block.extend_from_slice(name);
        block.push(b'=');
        block.extend_from_slice(value);
        block.push(0);
    }
    block.push(0);
    block
}

impl Invocation {
    /// The invocation that [`arguments`] describe, if they are one.
    pub fn parse(args: &[OsString]) -> Option<Self> {
        let [worker, uid, gid, grace, watch, limits, shell, command, working_dir, start_at] = args
        else {
            return None;
        };
        let number = |raw: &OsString| raw.to_str().and_then(|s| s.parse::<u64>().ok());
        let id = |raw: &OsString| number(raw).and_then(|n| u32::try_from(n).ok());
        Some(Invocation {
            worker: id(worker)?,
            shell: shell.clone(),
            command: command.clone(),
            // Working directories are absolute paths, so `-` is none.
            working_dir: (working_dir != "-").then(|| working_dir.clone()),
            uid: id(uid),
            gid: id(gid),
            grace: Duration::from_millis(number(grace)?),
            watch: number(watch)? == 1,
            limits: RunLimits::from_argument(limits.to_str()?)?,
            start_at: Duration::from_nanos(number(start_at)?),
        })
    }
}

/// Reads `NAME=value\0` entries up to an empty one.
pub(super) fn read_environment(
    stdin: &mut impl std::io::BufRead,
) -> Option<Vec<(OsString, OsString)>> {
    let mut env = Vec::new();
    let mut total = 0;
    loop {
        let mut entry = Vec::new();
        if stdin.read_until(0, &mut entry).ok()? == 0 || entry.pop() != Some(0) {
            return None;
        }
        if entry.is_empty() {
            return Some(env);
        }
        total += entry.len();
        if total > MAX_ENV_BYTES {
            return None;
        }
        let split = entry.iter().position(|b| *b == b'=')?;
        let value = entry.split_off(split + 1);
        entry.pop();
        env.push((OsString::from_vec(entry), OsString::from_vec(value)));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn the_environment_block_reads_back_and_refuses_what_is_not_one() {
        let block = environment_block([
            (b"PATH".as_slice(), b"/usr/bin:/bin".as_slice()),
            (b"EQ", b"a=b"),
            (b"EMPTY", b""),
        ]);
        let mut reader = std::io::Cursor::new([block.as_slice(), b"60000\n"].concat());
        let env = read_environment(&mut reader).unwrap();
        assert_eq!(
            env,
            [
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("EQ".into(), "a=b".into()),
                ("EMPTY".into(), "".into()),
            ]
        );
        // The lease confirmations follow the block.
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "60000\n");
        // Cut short (the worker went away) or malformed: nothing runs.
        assert!(read_environment(&mut std::io::Cursor::new(b"PATH=/bin".to_vec())).is_none());
        assert!(read_environment(&mut std::io::Cursor::new(b"NOEQUALS\0\0".to_vec())).is_none());
    }

    #[test]
    fn arguments_read_back_as_the_invocation_they_describe() {
        let args = arguments(
            ("/bin/bash", "echo hi", Some("/srv/app")),
            42,
            Some((65534, 65534)),
            (Duration::from_secs(5), true),
            &RunLimits::default(),
            Duration::from_millis(1_500),
        );
        assert_eq!(args.len(), 10);
        assert_eq!(args[3], "5000");
        assert_eq!(args[4], "1");
        assert_eq!(args[5], "core=0");
        assert_eq!(args[6], "/bin/bash");
        assert_eq!(args[7], "echo hi");
        let invocation = Invocation::parse(&args).unwrap();
        assert_eq!(invocation.shell, "/bin/bash");
        assert_eq!(invocation.command, "echo hi");
        assert_eq!(invocation.working_dir.as_deref(), Some("/srv/app".as_ref()));
        assert_eq!(invocation.start_at, Duration::from_millis(1_500));
        let mut plain = args.clone();
        plain[8] = "-".into();
        assert_eq!(Invocation::parse(&plain).unwrap().working_dir, None);
    }
}
