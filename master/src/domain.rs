//! The event-sourced core: commands are decided against a job's current state, producing
//! events; events are applied to produce the next state. Pure and synchronous, no IO.

use cronfleet_common::{JobName, JobSpec};
use serde::{Deserialize, Serialize};

mod links;

pub use links::{check_links, needs_links, Links};

/// What someone asks to happen to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateJob(JobSpec),
    UpdateJob(JobSpec),
    DeleteJob,
    PauseJob,
    ResumeJob,
    RunJobNow {
        request_id: String,
        /// The run whose outcome chained to this one, if one did.
        source_run_id: Option<String>,
    },
    KillJob {
        request_id: String,
    },
    /// Record a write to `jobs/<name>` the projector did not make: `seen` is the value found
    /// (null when the key was deleted), `spec` what workers make of it (`None`: they do not
    /// run it).
    RecordOutsideChange {
        seen: serde_json::Value,
        spec: Option<JobSpec>,
    },
}

impl Command {
    /// The command's name in errors and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateJob(_) => "CreateJob",
            Command::UpdateJob(_) => "UpdateJob",
            Command::DeleteJob => "DeleteJob",
            Command::PauseJob => "PauseJob",
            Command::ResumeJob => "ResumeJob",
            Command::RunJobNow { .. } => "RunJobNow",
            Command::KillJob { .. } => "KillJob",
            Command::RecordOutsideChange { .. } => "RecordOutsideChange",
        }
    }
}

/// What happened to a job. Stored as JSON in the `events` table, `type` naming the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    JobCreated {
        after: JobSpec,
    },
    JobUpdated {
        before: JobSpec,
        after: JobSpec,
    },
    JobDeleted {
        before: JobSpec,
    },
    JobPaused {
        before: JobSpec,
        after: JobSpec,
    },
    JobResumed {
        before: JobSpec,
        after: JobSpec,
    },
    RunRequested {
        request_id: String,
        /// The run whose outcome chained to this one, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_run_id: Option<String>,
    },
    KillRequested {
        request_id: String,
    },
    /// `jobs/<name>` was written or deleted by someone other than the projector (a go-crontab
    /// master, `etcdctl`): the log and read model follow what workers run. Not projected: etcd
    /// already holds it.
    JobChangedOutsideMaster {
        before: Option<JobSpec>,
        after: Option<JobSpec>,
        seen: serde_json::Value,
    },
}

impl Event {
    /// The event type as stored in `events.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::JobCreated { .. } => "JobCreated",
            Event::JobUpdated { .. } => "JobUpdated",
            Event::JobDeleted { .. } => "JobDeleted",
            Event::JobPaused { .. } => "JobPaused",
            Event::JobResumed { .. } => "JobResumed",
            Event::RunRequested { .. } => "RunRequested",
            Event::KillRequested { .. } => "KillRequested",
            Event::JobChangedOutsideMaster { .. } => "JobChangedOutsideMaster",
        }
    }

    /// The spec this event left the job with: `Some(None)` when it left no job (deleted);
    /// `None` when it did not touch the spec (run now, kill).
    pub fn spec_after(&self) -> Option<Option<&JobSpec>> {
        match self {
            Event::JobCreated { after }
            | Event::JobUpdated { after, .. }
            | Event::JobPaused { after, .. }
            | Event::JobResumed { after, .. } => Some(Some(after)),
            Event::JobDeleted { .. } => Some(None),
            Event::JobChangedOutsideMaster { after, .. } => Some(after.as_ref()),
            Event::RunRequested { .. } | Event::KillRequested { .. } => None,
        }
    }

    /// The types of the events that set a job's spec (see [`Event::spec_after`]).
    pub const SPEC_KINDS: &'static [&'static str] = &[
        "JobCreated",
        "JobUpdated",
        "JobDeleted",
        "JobPaused",
        "JobResumed",
        "JobChangedOutsideMaster",
    ];

    /// Every event type, for validating filters.
    pub const KINDS: &'static [&'static str] = &[
        "JobCreated",
        "JobUpdated",
        "JobDeleted",
        "JobPaused",
        "JobResumed",
        "RunRequested",
        "KillRequested",
        "JobChangedOutsideMaster",
    ];
}

/// A job's state as of its last event. `version` counts the job's events (0: none yet): the
/// position appends go by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobState {
    pub version: u64,
    /// The live spec; `None` before creation and after deletion.
    pub spec: Option<JobSpec>,
}

impl JobState {
    /// The version clients see and send back (ETag, `If-Match`, the form's hidden field): that
    /// of the event that last changed the spec. Run-now and kill requests are events of the
    /// job too, but change nothing an editor holds, so they leave it as it was.
    pub fn spec_version(&self) -> u64 {
        self.spec.as_ref().map_or(self.version, |spec| spec.version)
    }
}

/// Why a command was refused. Nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("job {0} does not exist")]
    NotFound(JobName),
    #[error("job {0} already exists")]
    AlreadyExists(JobName),
    #[error("job {name} is at version {current}, not {expected}")]
    VersionConflict {
        name: JobName,
        expected: u64,
        current: u64,
    },
    #[error("job {0} is already paused")]
    AlreadyPaused(JobName),
    #[error("job {0} is not paused")]
    NotPaused(JobName),
    #[error("the spec names job {spec}, but the command is for job {target}")]
    NameMismatch { target: JobName, spec: JobName },
    /// A channel or chain target the spec names is wrong ([`links`]).
    #[error("{field}: {reason}")]
    Link { field: String, reason: String },
    #[error("job {job} is chained to from {}; remove it from their onSuccess/onFailure first", .upstream.iter().map(JobName::as_str).collect::<Vec<_>>().join(", "))]
    ChainedFrom {
        job: JobName,
        upstream: Vec<JobName>,
    },
}

/// Decides `command` for job `name` in `state`. `expected` is the version the caller last saw
/// ([`JobState::spec_version`]), if it sent one. An empty result means the command changes nothing (an update to the same
/// spec).
pub fn decide(
    name: &JobName,
    state: &JobState,
    command: Command,
    expected: Option<u64>,
) -> Result<Vec<Event>, DomainError> {
    if let Some(expected) = expected {
        let current = state.spec_version();
        if expected != current {
            return Err(DomainError::VersionConflict {
                name: name.clone(),
                expected,
                current,
            });
        }
    }
    let live = || {
        state
            .spec
            .clone()
            .ok_or_else(|| DomainError::NotFound(name.clone()))
    };
    // A spec written by an event carries that event's version.
    let next = state.version + 1;
    let event = match command {
        Command::CreateJob(spec) => create(name, state, spec, next)?,
        Command::UpdateJob(spec) => match update(name, live()?, spec, next)? {
            Some(event) => event,
            None => return Ok(Vec::new()),
        },
        Command::DeleteJob => Event::JobDeleted { before: live()? },
        Command::PauseJob => set_paused(name, live()?, true, next)?,
        Command::ResumeJob => set_paused(name, live()?, false, next)?,
        Command::RunJobNow {
            request_id,
            source_run_id,
        } => {
            live()?;
            Event::RunRequested {
                request_id,
                source_run_id,
            }
        }
        Command::KillJob { request_id } => {
            live()?;
            Event::KillRequested { request_id }
        }
        Command::RecordOutsideChange { seen, spec } => {
            match outside_change(state, spec, seen, next) {
                Some(event) => event,
                None => return Ok(Vec::new()),
            }
        }
    };
    Ok(vec![event])
}

/// A write to etcd made outside the master, or `None` when it left the job as it was.
fn outside_change(
    state: &JobState,
    spec: Option<JobSpec>,
    seen: serde_json::Value,
    next: u64,
) -> Option<Event> {
    let after = spec.map(|mut spec| {
        spec.version = next;
        spec
    });
    let unchanged = match (&state.spec, &after) {
        (None, None) => true,
        (Some(before), Some(after)) => {
            let mut same = after.clone();
            same.version = before.version;
            &same == before
        }
        _ => false,
    };
    (!unchanged).then(|| Event::JobChangedOutsideMaster {
        before: state.spec.clone(),
        after,
        seen,
    })
}

fn create(
    name: &JobName,
    state: &JobState,
    mut spec: JobSpec,
    next: u64,
) -> Result<Event, DomainError> {
    check_name(name, &spec)?;
    if state.spec.is_some() {
        return Err(DomainError::AlreadyExists(name.clone()));
    }
    spec.version = next;
    Ok(Event::JobCreated { after: spec })
}

/// The update, or `None` when it changes nothing (pausing is its own command).
fn update(
    name: &JobName,
    before: JobSpec,
    mut spec: JobSpec,
    next: u64,
) -> Result<Option<Event>, DomainError> {
    check_name(name, &spec)?;
    spec.paused = before.paused;
    spec.version = before.version;
    if spec == before {
        return Ok(None);
    }
    spec.version = next;
    Ok(Some(Event::JobUpdated {
        before,
        after: spec,
    }))
}

fn set_paused(
    name: &JobName,
    before: JobSpec,
    paused: bool,
    next: u64,
) -> Result<Event, DomainError> {
    if before.paused == paused {
        return Err(if paused {
            DomainError::AlreadyPaused(name.clone())
        } else {
            DomainError::NotPaused(name.clone())
        });
    }
    let mut after = before.clone();
    after.paused = paused;
    after.version = next;
    Ok(if paused {
        Event::JobPaused { before, after }
    } else {
        Event::JobResumed { before, after }
    })
}

fn check_name(target: &JobName, spec: &JobSpec) -> Result<(), DomainError> {
    if &spec.name != target {
        return Err(DomainError::NameMismatch {
            target: target.clone(),
            spec: spec.name.clone(),
        });
    }
    Ok(())
}

/// The state after `event`.
pub fn apply(mut state: JobState, event: &Event) -> JobState {
    state.version += 1;
    match event {
        Event::JobCreated { after }
        | Event::JobUpdated { after, .. }
        | Event::JobPaused { after, .. }
        | Event::JobResumed { after, .. } => state.spec = Some(after.clone()),
        Event::JobDeleted { .. } => state.spec = None,
        Event::JobChangedOutsideMaster { after, .. } => state.spec = after.clone(),
        Event::RunRequested { .. } | Event::KillRequested { .. } => {}
    }
    state
}

#[cfg(test)]
mod tests;
