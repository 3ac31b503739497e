//! The etcd key layout. Every key cronfleet reads or writes is built here and nowhere else.
//!
//! ```text
//! <prefix>jobs/<job>             job spec JSON                 master's projector
//! <prefix>killer/<job>           kill request JSON             projector, on a short lease
//! <prefix>trigger/<job>          run-now request JSON          projector, on a short lease
//! <prefix>lock/<job>             holder of the running start   worker, on its session lease
//! <prefix>tick/<job>             last claimed planned tick     worker, in the lock's txn
//! <prefix>tick/<job>/<worker>    last tick this worker claimed worker, for jobs run on every
//!                                of a job run on every worker  worker (`mode: all`)
//! <prefix>retry/<job>            attempts of the tick retried  worker, no lease
//! <prefix>runs/<job>/<run>       one running run               worker, on its session lease
//! <prefix>workers/<worker>       worker registration JSON      worker, on its session lease
//! <prefix>master/leader          projector election            master, on a lease
//! <prefix>master/checkpoint      last projected event sequence projector, with the job keys
//! ```

use crate::job::{FieldError, JobName};

/// The prefix every key lives under unless configured otherwise (go-crontab's).
pub const DEFAULT_PREFIX: &str = "/cron/";

/// Builds keys under one root prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Keys {
    /// Uses `prefix` as the root; a missing trailing `/` is added. The prefix must start with `/`
    /// and must not contain whitespace.
    pub fn new(prefix: &str) -> Result<Self, FieldError> {
        if !prefix.starts_with('/') {
            return Err(FieldError::new("etcdPrefix", "must start with '/'"));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(FieldError::new("etcdPrefix", "must not contain whitespace"));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self { prefix })
    }

    /// The root prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `jobs/`: the prefix of every job key.
    pub fn jobs(&self) -> String {
        self.dir("jobs")
    }

    /// `jobs/<job>`.
    pub fn job(&self, job: &JobName) -> String {
        self.jobs() + job.as_str()
    }

    /// `killer/`.
    pub fn killers(&self) -> String {
        self.dir("killer")
    }

    /// `killer/<job>`.
    pub fn killer(&self, job: &JobName) -> String {
        self.killers() + job.as_str()
    }

    /// `trigger/`.
    pub fn triggers(&self) -> String {
        self.dir("trigger")
    }

    /// `trigger/<job>`.
    pub fn trigger(&self, job: &JobName) -> String {
        self.triggers() + job.as_str()
    }

    /// `lock/`.
    pub fn locks(&self) -> String {
        self.dir("lock")
    }

    /// `lock/<job>`: go-crontab's per-job lock.
    pub fn lock(&self, job: &JobName) -> String {
        self.locks() + job.as_str()
    }

    /// `tick/<job>`: the per-tick claim guard.
    pub fn tick(&self, job: &JobName) -> String {
        self.dir("tick") + job.as_str()
    }

    /// `tick/<job>/<worker>`: the guard of one worker's runs of a job run on every worker.
    /// Job names hold no `/`, so it never reads as a job's own guard.
    pub fn worker_tick(&self, job: &JobName, worker_id: &str) -> String {
        format!("{}/{worker_id}", self.tick(job))
    }

    /// `retry/`.
    pub fn retries(&self) -> String {
        self.dir("retry")
    }

    /// `retry/<job>`: the attempts of the tick being retried.
    pub fn retry(&self, job: &JobName) -> String {
        self.retries() + job.as_str()
    }

    /// `runs/`.
    pub fn runs(&self) -> String {
        self.dir("runs")
    }

    /// `runs/<job>/`: the running runs of one job.
    pub fn job_runs(&self, job: &JobName) -> String {
        format!("{}{}/", self.runs(), job.as_str())
    }

    /// `runs/<job>/<run>`.
    pub fn run(&self, job: &JobName, run_id: &str) -> String {
        self.job_runs(job) + run_id
    }

    /// `workers/`.
    pub fn workers(&self) -> String {
        self.dir("workers")
    }

    /// `workers/<worker>`.
    pub fn worker(&self, worker_id: &str) -> String {
        self.workers() + worker_id
    }

    /// `master/leader`: the projector election.
    pub fn projector_election(&self) -> String {
        self.dir("master") + "leader"
    }

    /// `master/checkpoint`: the sequence of the last event applied to etcd.
    pub fn projector_checkpoint(&self) -> String {
        self.dir("master") + "checkpoint"
    }

    /// The job name at the end of a `jobs/`, `killer/`, `trigger/` or `lock/` key, if `key` is
    /// one and the name is valid.
    pub fn job_of(&self, key: &[u8]) -> Option<JobName> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.prefix)?;
        let (_, name) = rest.split_once('/')?;
        JobName::parse(name).ok()
    }

    /// The `(job, run)` of a `runs/<job>/<run>` key.
    pub fn run_of(&self, key: &[u8]) -> Option<(JobName, String)> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&self.runs())?;
        let (job, run) = rest.split_once('/')?;
        Some((JobName::parse(job).ok()?, run.to_owned()))
    }

    /// What a key under the prefix is, by its directory.
    pub fn kind(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return KeyKind::Other;
        };
        match rest.split(|b| *b == b'/').next().unwrap_or_default() {
            b"jobs" => KeyKind::Job,
            b"killer" => KeyKind::Killer,
            b"trigger" => KeyKind::Trigger,
            b"lock" => KeyKind::Lock,
            b"tick" => KeyKind::Tick,
            b"retry" => KeyKind::Retry,
            b"runs" => KeyKind::Run,
            b"workers" => KeyKind::Worker,
            _ => KeyKind::Other,
        }
    }

    fn dir(&self, name: &str) -> String {
        format!("{}{name}/", self.prefix)
    }
}

/// The kinds of key under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `jobs/<job>`
    Job,
    /// `killer/<job>`
    Killer,
    /// `trigger/<job>`
    Trigger,
    /// `lock/<job>`
    Lock,
    /// `tick/<job>` (and `tick/<job>/<worker>`, which names no job)
    Tick,
    /// `retry/<job>`
    Retry,
    /// `runs/<job>/<run>`
    Run,
    /// `workers/<worker>`
    Worker,
    /// Anything else (the master's keys, or outside the prefix).
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    #[test]
    fn default_layout_is_go_crontab_compatible() {
        let keys = Keys::default();
        assert_eq!(keys.job(&job("backup")), "/cron/jobs/backup");
        assert_eq!(keys.killer(&job("backup")), "/cron/killer/backup");
        assert_eq!(keys.lock(&job("backup")), "/cron/lock/backup");
    }

    #[test]
    fn every_key_is_under_the_prefix() {
        let keys = Keys::new("/team-a/cron").unwrap();
        let name = job("nightly.report");
        let all = [
            keys.job(&name),
            keys.killer(&name),
            keys.trigger(&name),
            keys.lock(&name),
            keys.tick(&name),
            keys.worker_tick(&name, "w1"),
            keys.retry(&name),
            keys.run(&name, "r1"),
            keys.worker("w1"),
            keys.projector_election(),
            keys.projector_checkpoint(),
        ];
        for key in &all {
            assert!(key.starts_with("/team-a/cron/"), "{key}");
        }
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn names_come_back_out_of_keys() {
        let keys = Keys::new("/p/").unwrap();
        let name = job("a-b_c.d");
        assert_eq!(keys.job_of(keys.job(&name).as_bytes()), Some(name.clone()));
        assert_eq!(
            keys.job_of(keys.killer(&name).as_bytes()),
            Some(name.clone())
        );
        assert_eq!(keys.job_of(b"/other/jobs/x"), None);
        assert_eq!(
            keys.job_of(keys.worker_tick(&name, "w1").as_bytes()),
            None,
            "a worker's guard is no job's guard"
        );
        assert_eq!(keys.job_of(b"/p/jobs/bad\tname"), None);
        assert_eq!(
            keys.job_of("/p/jobs/nightly backup — café".as_bytes()),
            Some(job("nightly backup — café"))
        );
        assert_eq!(
            keys.run_of(keys.run(&name, "run-7").as_bytes()),
            Some((name, "run-7".to_owned()))
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert_eq!(Keys::new("cron/").unwrap_err().field, "etcdPrefix");
        assert!(Keys::new("/a b/").is_err());
    }

    #[test]
    fn every_key_reads_back_as_its_kind() {
        let keys = Keys::new("/cron/").unwrap();
        let name = JobName::parse("backup").unwrap();
        for (key, kind) in [
            (keys.job(&name), KeyKind::Job),
            (keys.killer(&name), KeyKind::Killer),
            (keys.trigger(&name), KeyKind::Trigger),
            (keys.lock(&name), KeyKind::Lock),
            (keys.tick(&name), KeyKind::Tick),
            (keys.retry(&name), KeyKind::Retry),
            (keys.run(&name, "r1"), KeyKind::Run),
            (keys.worker("w1"), KeyKind::Worker),
            (keys.projector_election(), KeyKind::Other),
            ("/other/jobs/backup".to_owned(), KeyKind::Other),
        ] {
            assert_eq!(keys.kind(key.as_bytes()), kind, "{key}");
        }
    }
}
