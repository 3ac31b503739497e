//! Per-run resource limits, from the worker's configuration: open files, processes (of the
//! run's user, so meaningful with `--run-as`), address space, and core dumps (off unless
//! allowed). Every process of the run inherits them: the supervisor sets them on the shell
//! after the switch to the run's user (`--run-as`), or, when the run keeps the worker's user,
//! on itself just before it starts the shell.

use std::fmt;

use nix::sys::resource::{setrlimit, Resource};

/// Limits a run's processes get; `None` keeps the worker's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunLimits {
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub address_space: Option<u64>,
    pub core_dumps: bool,
}

impl RunLimits {
    /// The supervisor's argument: `nofile=N,nproc=N,as=N,core=0|1`, unset limits left out.
    pub fn to_argument(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("nofile", self.open_files),
            ("nproc", self.processes),
            ("as", self.address_space),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name}={value}"));
            }
        }
        parts.push(format!("core={}", u8::from(self.core_dumps)));
        parts.join(",")
    }

    /// Reads [`RunLimits::to_argument`]'s form back.
    pub fn from_argument(raw: &str) -> Option<Self> {
        let mut limits = Self::default();
        for part in raw.split(',').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match name {
                "nofile" => limits.open_files = Some(value),
                "nproc" => limits.processes = Some(value),
                "as" => limits.address_space = Some(value),
                "core" => limits.core_dumps = value == 1,
                _ => return None,
            }
        }
        Some(limits)
    }

    /// Sets the limits on the calling process (soft and hard alike, so the run cannot raise
    /// them). Only calls setrlimit(2), so it may run between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        let set =
            |resource, value: u64| setrlimit(resource, value, value).map_err(std::io::Error::from);
        if let Some(value) = self.open_files {
            set(Resource::RLIMIT_NOFILE, value)?;
        }
        if let Some(value) = self.processes {
            set(Resource::RLIMIT_NPROC, value)?;
        }
        if let Some(value) = self.address_space {
            set(Resource::RLIMIT_AS, value)?;
        }
        if !self.core_dumps {
            set(Resource::RLIMIT_CORE, 0)?;
        }
        Ok(())
    }

    /// Whether any limit beyond the default (no core dumps) is set.
    pub fn any(&self) -> bool {
        self.open_files.is_some() || self.processes.is_some() || self.address_space.is_some()
    }
}

/// The limits, as a failed run's record mentions them.
impl fmt::Display for RunLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.open_files {
            parts.push(format!("{n} open files"));
        }
        if let Some(n) = self.processes {
            parts.push(format!("{n} processes"));
        }
        if let Some(n) = self.address_space {
            parts.push(format!("{n} bytes of address space"));
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_travel_as_one_argument() {
        let limits = RunLimits {
            open_files: Some(64),
            processes: None,
            address_space: Some(1 << 30),
            core_dumps: false,
        };
        assert_eq!(limits.to_argument(), "nofile=64,as=1073741824,core=0");
        assert_eq!(
            RunLimits::from_argument(&limits.to_argument()),
            Some(limits)
        );
        assert_eq!(
            RunLimits::from_argument("core=1"),
            Some(RunLimits {
                core_dumps: true,
                ..RunLimits::default()
            })
        );
        assert_eq!(RunLimits::from_argument("nofile=x"), None);
        assert_eq!(
            limits.to_string(),
            "64 open files, 1073741824 bytes of address space"
        );
    }
}
