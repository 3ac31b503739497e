//! Starting the shell as the supervisor's own user: `posix_spawn`, which shares the
//! supervisor's memory until the exec instead of copying it, with the shell's signal mask
//! cleared and every signal at its default. The standard library's spawn, from this process
//! that blocks signals for its signalfd, was measured to hand the shell a mask with SIGTERM
//! blocked; forking instead to clear it made a wave of starts a fifth slower.

use std::ffi::{CString, OsStr, OsString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt as _;

use nix::sys::signal::SigSet;
use nix::unistd::Pid;

/// A shell ready to spawn: its program, arguments, environment and directory as C strings,
/// made before the start time so that only the spawn is left then.
pub(super) struct ShellSpawn {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    dir: Option<CString>,
}

fn c_string(bytes: &OsStr) -> std::io::Result<CString> {
    CString::new(bytes.as_bytes())
        .map_err(|_| std::io::Error::other("a NUL byte in the shell's arguments"))
}

/// A `posix_spawn*` result: 0, or the error number.
fn check(code: libc::c_int) -> std::io::Result<()> {
    match code {
        0 => Ok(()),
        code => Err(std::io::Error::from_raw_os_error(code)),
    }
}

/// Null-terminated pointers to `strings`, which must outlive them.
fn pointers(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

impl ShellSpawn {
    pub(super) fn new(
        (shell, command): (&OsStr, &OsStr),
        env: &[(OsString, OsString)],
        dir: Option<&OsStr>,
    ) -> std::io::Result<Self> {
        let program = c_string(shell)?;
        let argv = vec![
            program.clone(),
            c_string(OsStr::new("-c"))?,
            c_string(command)?,
        ];
        let envp = env
            .iter()
            .map(|(name, value)| c_string(&[name.as_os_str(), value].join(OsStr::new("="))))
            .collect::<std::io::Result<_>>()?;
        let dir = dir.map(c_string).transpose()?;
        Ok(Self {
            program,
            argv,
            envp,
            dir,
        })
    }

    /// Starts `<shell> -c <command>`, stdin from `/dev/null`, in the supervisor's process group.
    #[allow(unsafe_code)]
    pub(super) fn spawn(&self) -> std::io::Result<Pid> {
        let argv = pointers(&self.argv);
        let envp = pointers(&self.envp);
        let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut pid: libc::pid_t = 0;
        // SAFETY: the attribute and file action objects are initialised before use and
        // destroyed after; every pointer handed over points into strings and sets that live
        // until posix_spawnp returns, and the argument and environment arrays end in null.
        unsafe {
            check(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr())).inspect_err(|_| {
                libc::posix_spawnattr_destroy(attr);
            })?;
            let actions = actions.as_mut_ptr();
            let set_up = (|| {
                check(libc::posix_spawnattr_setsigmask(
                    attr,
                    SigSet::empty().as_ref(),
                ))?;
                check(libc::posix_spawnattr_setsigdefault(
                    attr,
                    SigSet::all().as_ref(),
                ))?;
                let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
                check(libc::posix_spawnattr_setflags(attr, flags as libc::c_short))?;
                check(libc::posix_spawn_file_actions_addopen(
                    actions,
                    0,
                    c"/dev/null".as_ptr(),
                    libc::O_RDONLY,
                    0,
                ))?;
                if let Some(dir) = &self.dir {
                    check(libc::posix_spawn_file_actions_addchdir_np(
                        actions,
                        dir.as_ptr(),
                    ))?;
                }
                check(libc::posix_spawnp(
                    &mut pid,
                    self.program.as_ptr(),
                    actions,
                    attr,
                    argv.as_ptr(),
                    envp.as_ptr(),
                ))
            })();
            libc::posix_spawn_file_actions_destroy(actions);
            libc::posix_spawnattr_destroy(attr);
            set_up?;
        }
        Ok(Pid::from_raw(pid))
    }
}
