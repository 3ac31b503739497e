//! Starts each run's [`supervisor`] through the worker's [`run_server`] and follows it to its
//! end.
//!
//! The server is started on first use by a thread of its own, which lives as long as the
//! server: the kernel sends the parent-death signal when the *thread* that started a process
//! ends, so a server (or a supervisor, as runs were started before) started from a pooled
//! thread would be killed, runs and all, when the pool retires that thread. The same thread
//! then reads the server's answers: the pid of each supervisor started, in the order asked,
//! and how each one ended. If the server dies, the runs it started die with it, and the next
//! run starts a new one.
//!
//! Messages, one per `SOCK_SEQPACKET` datagram (integers little-endian `i32`):
//! * worker → server: `R` and the supervisor's arguments, each ended by a NUL byte, with the
//!   run's stdin, stdout, stderr and start report pipe attached (`SCM_RIGHTS`): start a
//!   supervisor; `K` and a
//!   pid: SIGKILL that supervisor if it has not been reaped yet.
//! * server → worker: `S` and a pid: the oldest start request was served; `F` and an errno:
//!   it could not be; `X`, a pid and its wait status: that supervisor ended.
//!
//! [`supervisor`]: crate::supervisor
//! [`run_server`]: crate::run_server

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    recv, sendmsg, shutdown, socketpair, AddressFamily, ControlMessage, MsgFlags, Shutdown,
    SockFlag, SockType,
};
use nix::unistd::{pipe2, Pid};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// The largest start request the server reads; a job's command is at most 64 KiB.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// What the worker asks of the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Start(Vec<OsString>),
    Kill(i32),
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Start(args) => {
                let mut bytes = vec![b'R'];
                for arg in args {
                    bytes.extend_from_slice(arg.as_bytes());
                    bytes.push(0);
                }
                bytes
            }
            Request::Kill(pid) => [&[b'K'][..], &pid.to_le_bytes()].concat(),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes.split_first()? {
            (b'R', rest) if rest.last().is_none_or(|last| *last == 0) => {
                let mut args: Vec<OsString> = rest
                    .split(|b| *b == 0)
                    .map(|arg| OsString::from_vec(arg.to_vec()))
                    .collect();
                args.pop();
                Some(Request::Start(args))
            }
            (b'K', rest) => Some(Request::Kill(i32::from_le_bytes(rest.try_into().ok()?))),
            _ => None,
        }
    }
}

/// What the server tells the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Started(i32),
    Refused(i32),
    Ended(i32, i32),
}

impl Answer {
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Answer::Started(pid) => [&[b'S'][..], &pid.to_le_bytes()].concat(),
            Answer::Refused(errno) => [&[b'F'][..], &errno.to_le_bytes()].concat(),
            Answer::Ended(pid, status) => {
                [&[b'X'][..], &pid.to_le_bytes(), &status.to_le_bytes()].concat()
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let int = |at: usize| Some(i32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        match (bytes.first()?, bytes.len()) {
            (b'S', 5) => Some(Answer::Started(int(1)?)),
            (b'F', 5) => Some(Answer::Refused(int(1)?)),
            (b'X', 9) => Some(Answer::Ended(int(1)?, int(5)?)),
            _ => None,
        }
    }
}

/// Starts supervisors through one run server, started on first use. Clones share it.
#[derive(Clone)]
pub struct Launcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("binary", &self.shared.binary)
            .finish_non_exhaustive()
    }
}

struct Shared {
    binary: PathBuf,
    server: Mutex<Option<Arc<Server>>>,
}

/// The worker's end of a running server.
struct Server {
    socket: OwnedFd,
    /// Held while a request is sent, so start requests reach the server in the order their
    /// answers are expected.
    sending: Mutex<()>,
    routes: Mutex<Routes>,
}

/// A supervisor's pid and the wait status it ends with, once started.
type Start = std::io::Result<(Pid, oneshot::Receiver<i32>)>;

/// Who waits for which answer.
#[derive(Default)]
struct Routes {
    starts: VecDeque<oneshot::Sender<Start>>,
    ends: HashMap<i32, oneshot::Sender<i32>>,
    closed: bool,
}

/// A supervisor started for a run: its pid (also its process group), the write end of its
/// stdin, the read ends of its stdout, stderr and start report, and its end.
#[derive(Debug)]
pub struct Launched {
    pub pid: Pid,
    pub stdin: pipe::Sender,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub report: pipe::Receiver,
    pub exit: Exit,
}

/// How a supervisor ends. Dropped before it ended, it has the server SIGKILL the supervisor.
pub struct Exit {
    pid: Pid,
    ended: oneshot::Receiver<i32>,
    status: Option<ExitStatus>,
    server: Arc<Server>,
}

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exit")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Exit {
    /// Waits for the supervisor to end; an error if the server went away first.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let raw = (&mut self.ended).await.map_err(|_| gone())?;
        let status = ExitStatus::from_raw(raw);
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Exit {
    fn drop(&mut self) {
        if self.status.is_none() && self.ended.try_recv().is_err() {
            let _ = self.server.send(&Request::Kill(self.pid.as_raw()), &[]);
        }
    }
}

fn gone() -> std::io::Error {
    std::io::Error::other("the run server went away")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain inserts and
    // removals), so a poisoned lock is used as it is.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Launcher {
    /// A launcher for the `cronfleet-run` binary at `binary`; nothing starts until a run does.
    pub fn new(binary: PathBuf) -> Self {
        Self {
            shared: Arc::new(Shared {
                binary,
                server: Mutex::new(None),
            }),
        }
    }

    /// Starts a supervisor with `args` (see [`crate::supervisor::arguments`]).
    pub async fn launch(&self, args: Vec<OsString>) -> std::io::Result<Launched> {
        let server = self.server()?;
        let pipe = || pipe2(OFlag::O_CLOEXEC);
        let (stdin_read, stdin) = pipe()?;
        let (stdout, stdout_write) = pipe()?;
        let (stderr, stderr_write) = pipe()?;
        let (report, report_write) = pipe()?;
        let started = server.start(
            &Request::Start(args),
            [stdin_read, stdout_write, stderr_write, report_write],
        )?;
        let (pid, ended) = started.await.map_err(|_| gone())??;
        Ok(Launched {
            pid,
            stdin: pipe::Sender::from_owned_fd(stdin)?,
            stdout: pipe::Receiver::from_owned_fd(stdout)?,
            stderr: pipe::Receiver::from_owned_fd(stderr)?,
            report: pipe::Receiver::from_owned_fd(report)?,
            exit: Exit {
                pid,
                ended,
                status: None,
                server,
            },
        })
    }

    /// The running server, started now if there is none or it died.
    fn server(&self) -> std::io::Result<Arc<Server>> {
        let mut slot = lock(&self.shared.server);
        if let Some(server) = slot.as_ref().filter(|s| !lock(&s.routes).closed) {
            return Ok(Arc::clone(server));
        }
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let server = Arc::new(Server {
            socket: ours,
            sending: Mutex::new(()),
            routes: Mutex::new(Routes::default()),
        });
        let mut command = Command::new(&self.shared.binary);
        command
            .arg("serve")
            .arg(std::process::id().to_string())
            .arg(crate::priority::runs().to_string())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .env_clear();
        let (ready, started) = std::sync::mpsc::channel();
        let follower = Arc::clone(&server);
        std::thread::Builder::new()
            .name("run-server".into())
            .spawn(move || {
                let spawned = command.spawn();
                // The command holds the server's end of the socket; without this the server's
                // death would never read as the end of it.
                drop(command);
                match spawned {
                    Ok(process) => {
                        let _ = ready.send(Ok(()));
                        follower.follow(process);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })?;
        started.recv().map_err(|_| gone())??;
        *slot = Some(Arc::clone(&server));
        Ok(server)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The follower thread and the server see the end of the socket and stop.
        if let Some(server) = lock(&self.server).take() {
            let _ = shutdown(server.socket.as_raw_fd(), Shutdown::Both);
        }
    }
}

impl Server {
    /// Sends a start request with the run's pipes; the answer comes on the result.
    fn start(
        &self,
        request: &Request,
        fds: [OwnedFd; 4],
    ) -> std::io::Result<oneshot::Receiver<Start>> {
        let _order = lock(&self.sending);
        let (answer, started) = oneshot::channel();
        {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(gone());
            }
            routes.starts.push_back(answer);
        }
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        if let Err(e) = self.send(request, &raw) {
            lock(&self.routes).starts.pop_back();
            return Err(e);
        }
        Ok(started)
    }

    fn send(&self, request: &Request, fds: &[RawFd]) -> std::io::Result<()> {
        let bytes = request.encode();
        let rights = [ControlMessage::ScmRights(fds)];
        let control: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            match sendmsg::<()>(
                self.socket.as_raw_fd(),
                &[IoSlice::new(&bytes)],
                control,
                MsgFlags::empty(),
                None,
            ) {
                Err(Errno::EINTR) => {}
                sent => return sent.map(drop).map_err(std::io::Error::from),
            }
        }
    }

    /// Reads the server's answers until it goes away, then fails everything still waiting.
    fn follow(&self, mut process: std::process::Child) {
        let mut buffer = [0u8; 16];
        loop {
            let length = match recv(self.socket.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
                Ok(0) => break,
                Ok(length) => length,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            let mut routes = lock(&self.routes);
            match Answer::decode(&buffer[..length]) {
                Some(Answer::Started(pid)) => {
                    let (ended, end) = oneshot::channel();
                    routes.ends.insert(pid, ended);
                    if let Some(start) = routes.starts.pop_front() {
                        let _ = start.send(Ok((Pid::from_raw(pid), end)));
                    }
                }
                Some(Answer::Refused(errno)) => {
                    if let Some(start) = routes.starts.pop_front() {
                        let _ = start.send(Err(std::io::Error::from_raw_os_error(errno)));
                    }
                }
                Some(Answer::Ended(pid, status)) => {
                    if let Some(ended) = routes.ends.remove(&pid) {
                        let _ = ended.send(status);
                    }
                }
                None => tracing::warn!(length, "unreadable answer from the run server"),
            }
        }
        let mut routes = lock(&self.routes);
        routes.closed = true;
        routes.starts.clear();
        routes.ends.clear();
        drop(routes);
        let _ = process.kill();
        let _ = process.wait();
    }
}
