//! Job names and job specs: the value stored at `jobs/<name>` and accepted from users.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::outcome::{self, NotifyRule};
use crate::policy::{validate_working_dir, Mode, RetryPolicy, Selector};
use crate::retention::Retention;
use crate::schedule::Schedule;

/// Longest accepted job name, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Longest accepted command, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest accepted cron expression, in bytes.
pub const MAX_CRON_EXPR_BYTES: usize = 256;
/// Longest accepted shell path, in bytes.
pub const MAX_SHELL_BYTES: usize = 256;
/// The shell a cronfleet job runs under unless it names another.
pub const DEFAULT_SHELL: &str = "/bin/sh";
/// The shell go-crontab runs every command with, and so every job value it wrote.
pub const LEGACY_SHELL: &str = "/bin/bash";
/// The fields of a job value go-crontab writes; a value with no other field is go-crontab's.
pub const GO_CRONTAB_FIELDS: &[&str] = &["name", "command", "cronExpr"];
/// Longest accepted description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4 * 1024;
/// Most environment variables a job may set.
pub const MAX_ENV_VARS: usize = 64;
/// Longest accepted environment variable name, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 128;
/// Longest accepted environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 4 * 1024;
/// Longest accepted timeout: seven days, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
/// Longest accepted starting deadline: one day, in seconds.
pub const MAX_STARTING_DEADLINE_SECS: u64 = 24 * 3600;
/// The starting deadline of a job that sets none, unless its next tick comes sooner.
pub const DEFAULT_STARTING_DEADLINE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A job spec field, or a request field, that failed validation and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The JSON name of the offending field (`cronExpr`, `env.PATH`, ...).
    pub field: String,
    /// What is wrong with it, in words a user can act on.
    pub reason: String,
}

impl FieldError {
    /// Builds the error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A job name: 1–128 characters, as go-crontab allows them (letters of any script, digits,
/// spaces and punctuation), except what is unsafe in a key or misleading on a page: no `/`, no
/// control characters, no whitespace but the plain space and none at either end, no
/// invisible formatting characters (zero-width, bidirectional overrides), and not `.` or
/// `..`. Every key, URL, header and page that carries one encodes or escapes it.
/// Clones share one allocation (a worker keeps several copies of each of 100,000 names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(Arc<str>);

impl JobName {
    /// Checks `raw` and wraps it. The error names the `name` field.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        let length = raw.chars().count();
        if length > MAX_NAME_LEN {
            return Err(FieldError::new(
                "name",
                format!("is {length} characters long; at most {MAX_NAME_LEN} are allowed"),
            ));
        }
        if let Some(bad) = raw.chars().find(|c| unsafe_in_name(*c)) {
            return Err(FieldError::new(
                "name",
                format!(
                    "contains {bad:?}; '/', control characters, whitespace other than a space \
                     and invisible formatting characters are not allowed"
                ),
            ));
        }
        if raw.starts_with(' ') || raw.ends_with(' ') {
            return Err(FieldError::new(
                "name",
                "must not begin or end with a space",
            ));
        }
        if raw == "." || raw == ".." {
            return Err(FieldError::new("name", "must not be \".\" or \"..\""));
        }
        Ok(Self(Arc::from(raw)))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters a job name may not hold: the key separator, controls, whitespace other than the
/// space, and characters that change how text around them shows without showing themselves.
fn unsafe_in_name(c: char) -> bool {
    c == '/'
        || c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{E0000}'..='\u{E0FFF}')
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for JobName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        JobName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a worker does when a tick comes while an earlier run of the same job still holds its lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Skip the tick (recorded as `skipped`) while a run is in progress.
    #[default]
    Forbid,
    /// Start another run beside the one in progress.
    Allow,
    /// Kill the run in progress, then start the new one.
    Replace,
}

impl Concurrency {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// A validated job: what the master projects to `jobs/<name>` and what workers schedule.
///
/// The JSON field names of go-crontab (`name`, `command`, `cronExpr`) are kept, so a go-crontab
/// fleet's keys parse as they are; cronfleet's fields are additions with defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub name: JobName,
    pub command: String,
    pub cron_expr: String,
    /// IANA time zone the cron expression is read in.
    #[serde(serialize_with = "serialize_timezone")]
    pub timezone: Tz,
    /// Seconds a run may take before it is killed; `None` means no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Seconds after its planned time by which a tick must have started; a tick not started
    /// by then is recorded as `missed`. `None`: the smaller of 60 s and the time to the next
    /// tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting_deadline_secs: Option<u64>,
    pub concurrency: Concurrency,
    pub paused: bool,
    /// Free text for people reading the job list.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Environment variables set for every run, on top of the worker's allow-list.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The shell the command runs under (`<shell> -c <command>`); `None` is `/bin/sh`. A
    /// worker runs only shells on its own allow-list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// The directory the command starts in; `None`: the worker's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Which workers may run the job, by their labels; empty: any.
    #[serde(skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// One matching worker runs each tick, or every live one does.
    #[serde(skip_serializing_if = "Mode::is_one")]
    pub mode: Mode,
    /// Whether, when and how often a failed tick is attempted again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Channels told of the job's tick outcomes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyRule>,
    /// Jobs run once each when a tick of this one ends succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<JobName>,
    /// Jobs run once each when a tick of this one ends failed (the `failure` outcomes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<JobName>,
    /// How long its records are kept, over the fleet's default.
    #[serde(skip_serializing_if = "Retention::is_default")]
    pub retention: Retention,
    /// Per-job version from the master's event log; 0 for keys written by go-crontab.
    pub version: u64,
    /// The value had go-crontab's fields only: it is read as go-crontab reads it, in the
    /// worker's local time zone and under `/bin/bash`, and written back to etcd in that shape.
    /// Kept in the master's events and read model (an adopted go-crontab job), never in etcd.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
    #[serde(skip)]
    schedule: Schedule,
}

/// Every field a job spec may carry, as spelled in JSON.
pub const JOB_SPEC_FIELDS: &[&str] = &[
    "name",
    "command",
    "cronExpr",
    "timezone",
    "timeoutSecs",
    "startingDeadlineSecs",
    "concurrency",
    "paused",
    "description",
    "env",
    "shell",
    "workingDir",
    "selector",
    "mode",
    "retry",
    "notify",
    "onSuccess",
    "onFailure",
    "retention",
    "version",
];

struct RawSpec {
    name: String,
    command: String,
    cron_expr: String,
    timezone: Option<String>,
    timeout_secs: Option<u64>,
    starting_deadline_secs: Option<u64>,
    concurrency: Option<String>,
    paused: bool,
    description: String,
    env: BTreeMap<String, String>,
    shell: Option<String>,
    working_dir: Option<String>,
    selector: Option<Value>,
    mode: Option<String>,
    retry: Option<Value>,
    notify: Option<Value>,
    on_success: Option<Value>,
    on_failure: Option<Value>,
    retention: Option<Value>,
    version: u64,
    legacy: bool,
}

impl RawSpec {
    fn from_object(mut object: Map<String, Value>) -> Result<Self, FieldError> {
        Ok(Self {
            name: required(&mut object, "name")?,
            command: required(&mut object, "command")?,
            cron_expr: required(&mut object, "cronExpr")?,
            timezone: optional(&mut object, "timezone")?,
            timeout_secs: optional(&mut object, "timeoutSecs")?,
            starting_deadline_secs: optional(&mut object, "startingDeadlineSecs")?,
            concurrency: optional(&mut object, "concurrency")?,
            paused: optional(&mut object, "paused")?.unwrap_or_default(),
            description: optional(&mut object, "description")?.unwrap_or_default(),
            env: optional(&mut object, "env")?.unwrap_or_default(),
            shell: optional(&mut object, "shell")?,
            working_dir: optional(&mut object, "workingDir")?,
            selector: optional(&mut object, "selector")?,
            mode: optional(&mut object, "mode")?,
            retry: optional(&mut object, "retry")?,
            notify: optional(&mut object, "notify")?,
            on_success: optional(&mut object, "onSuccess")?,
            on_failure: optional(&mut object, "onFailure")?,
            retention: optional(&mut object, "retention")?,
            version: optional(&mut object, "version")?.unwrap_or_default(),
            legacy: optional(&mut object, "legacy")?.unwrap_or_default(),
        })
    }
}

/// Takes `field` out of `object`; absent and `null` are both `None`. A wrong type names the field.
pub fn optional<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<Option<T>, FieldError> {
    match object.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| FieldError::new(field, format!("has the wrong type: {e}"))),
    }
}

/// Like [`optional`], but absence is an error.
pub fn required<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<T, FieldError> {
    optional(object, field)?.ok_or_else(|| FieldError::new(field, "is required"))
}

impl JobSpec {
    /// Parses a job from user input: unknown fields are refused, every field is validated.
    pub fn from_user_json(body: &[u8]) -> Result<Self, FieldError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| FieldError::new("body", format!("is not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(FieldError::new("body", "must be a JSON object"));
        };
        reject_unknown_fields(&object, JOB_SPEC_FIELDS)?;
        let spec = Self::from_object(object)?;
        if spec.schedule().next_after(chrono::Utc::now()).is_none() {
            return Err(FieldError::new(
                "cronExpr",
                "never fires after now (every time it names has passed)",
            ));
        }
        if let Some(name) = spec.env.keys().find(|name| steers_process_start(name)) {
            return Err(FieldError::new(
                format!("env.{name}"),
                "steers the dynamic loader or the shell before the command runs; jobs may not set it",
            ));
        }
        Ok(spec)
    }

    /// Parses the value stored at `jobs/<name>`: unknown fields are ignored so that keys written
    /// by go-crontab or a newer cronfleet still load; the known fields are validated all the same.
    pub fn from_etcd_value(value: &[u8]) -> Result<Self, FieldError> {
        Self::from_etcd_value_in(value, Tz::UTC)
    }

    /// Like [`JobSpec::from_etcd_value`], but a value with go-crontab's fields only is read as
    /// go-crontab reads it: in `local` (the worker's time zone) and under `/bin/bash`.
    pub fn from_etcd_value_in(value: &[u8], local: Tz) -> Result<Self, FieldError> {
        let value: Value = serde_json::from_slice(value)
            .map_err(|e| FieldError::new("value", format!("is not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(FieldError::new("value", "must be a JSON object"));
        };
        let legacy = object
            .keys()
            .all(|key| GO_CRONTAB_FIELDS.contains(&key.as_str()));
        let mut raw = RawSpec::from_object(object)?;
        if legacy {
            raw.timezone = Some(local.name().to_owned());
        }
        let mut spec = Self::validate(raw)?;
        spec.legacy |= legacy;
        Ok(spec)
    }

    fn from_object(object: Map<String, Value>) -> Result<Self, FieldError> {
        Self::validate(RawSpec::from_object(object)?)
    }

    fn validate(raw: RawSpec) -> Result<Self, FieldError> {
        let name = JobName::parse(&raw.name)?;
        validate_command(&raw.command)?;
        let timezone = match raw.timezone.as_deref() {
            None | Some("") => Tz::UTC,
            Some(tz) => tz.parse::<Tz>().map_err(|_| {
                FieldError::new("timezone", format!("{tz:?} is not an IANA time zone name"))
            })?,
        };
        if raw.cron_expr.len() > MAX_CRON_EXPR_BYTES {
            return Err(FieldError::new(
                "cronExpr",
                format!("is longer than {MAX_CRON_EXPR_BYTES} bytes"),
            ));
        }
        let schedule = Schedule::parse(&raw.cron_expr, timezone)
            .map_err(|e| FieldError::new("cronExpr", e.to_string()))?;
        let timeout_secs = match raw.timeout_secs {
            None | Some(0) => None,
            Some(secs) if secs > MAX_TIMEOUT_SECS => {
                return Err(FieldError::new(
                    "timeoutSecs",
                    format!("{secs} is more than the maximum of {MAX_TIMEOUT_SECS} (7 days)"),
                ))
            }
            Some(secs) => Some(secs),
        };
        let starting_deadline_secs = match raw.starting_deadline_secs {
            Some(secs) if !(1..=MAX_STARTING_DEADLINE_SECS).contains(&secs) => {
                return Err(FieldError::new(
                    "startingDeadlineSecs",
                    format!("{secs} is not between 1 and {MAX_STARTING_DEADLINE_SECS} (one day)"),
                ))
            }
            other => other,
        };
        let concurrency = match raw.concurrency.as_deref() {
            None | Some("") | Some("forbid") => Concurrency::Forbid,
            Some("allow") => Concurrency::Allow,
            Some("replace") => Concurrency::Replace,
            Some(other) => {
                return Err(FieldError::new(
                    "concurrency",
                    format!("{other:?} is not one of forbid, allow, replace"),
                ))
            }
        };
        if raw.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(FieldError::new(
                "description",
                format!("is longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        if raw.description.contains('\0') {
            return Err(FieldError::new(
                "description",
                "must not contain a NUL byte",
            ));
        }
        validate_env(&raw.env)?;
        if let Some(shell) = &raw.shell {
            validate_shell(shell)?;
        }
        let working_dir = raw.working_dir.filter(|dir| !dir.is_empty());
        if let Some(dir) = &working_dir {
            validate_working_dir(dir)?;
        }
        let selector = raw
            .selector
            .map(Selector::from_json)
            .transpose()?
            .unwrap_or_default();
        let mode = Mode::parse(raw.mode.as_deref())?;
        let retry = raw.retry.map(RetryPolicy::from_json).transpose()?;
        if retry.is_some() && mode == Mode::All {
            return Err(FieldError::new(
                "retry",
                "is not available with mode \"all\": each worker's run of a tick stands alone",
            ));
        }
        let notify = raw
            .notify
            .map(NotifyRule::list_from_json)
            .transpose()?
            .unwrap_or_default();
        let on_success = raw
            .on_success
            .map(|list| outcome::chain_from_json(list, "onSuccess"))
            .transpose()?
            .unwrap_or_default();
        let on_failure = raw
            .on_failure
            .map(|list| outcome::chain_from_json(list, "onFailure"))
            .transpose()?
            .unwrap_or_default();
        let retention = raw
            .retention
            .map(Retention::from_json)
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            name,
            command: raw.command,
            cron_expr: raw.cron_expr,
            timezone,
            timeout_secs,
            starting_deadline_secs,
            concurrency,
            paused: raw.paused,
            description: raw.description,
            env: raw.env,
            shell: raw.shell.filter(|shell| !shell.is_empty()),
            working_dir,
            selector,
            mode,
            retry,
            notify,
            on_success,
            on_failure,
            retention,
            version: raw.version,
            legacy: raw.legacy,
            schedule,
        })
    }

    /// The shell the command runs under: go-crontab's for its own values, else the job's
    /// choice or `/bin/sh`.
    pub fn shell(&self) -> &str {
        if self.legacy {
            LEGACY_SHELL
        } else {
            self.shell.as_deref().unwrap_or(DEFAULT_SHELL)
        }
    }

    /// The parsed schedule, in the job's time zone.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The latest time a tick planned for `planned` may start: `startingDeadlineSecs` after
    /// it, or by default the smaller of 60 s and the time to the next tick.
    pub fn start_deadline(&self, planned: DateTime<Utc>) -> DateTime<Utc> {
        match self.starting_deadline_secs {
            Some(secs) => {
                planned + chrono::TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
            }
            None => {
                let default = planned + DEFAULT_STARTING_DEADLINE;
                self.schedule
                    .next_after(planned)
                    .map_or(default, |next| next.min(default))
            }
        }
    }

    /// The JSON stored at `jobs/<name>`: go-crontab's three fields for a go-crontab job (so
    /// it stays one, for both fleets), else every field.
    pub fn to_etcd_value(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers, bools and a string map cannot fail.
        if self.legacy {
            let value = serde_json::json!({
                "name": self.name, "command": self.command, "cronExpr": self.cron_expr,
            });
            return serde_json::to_vec(&value).unwrap_or_default();
        }
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Reads a spec the way [`JobSpec::from_etcd_value`] does: unknown fields ignored, every known
/// field validated. For specs cronfleet itself stored (events, the read model).
impl<'de> Deserialize<'de> for JobSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(object) => Self::from_object(object).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom("a job spec must be a JSON object")),
        }
    }
}

fn serialize_timezone<S: serde::Serializer>(tz: &Tz, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(tz.name())
}

/// Refuses any key of `object` that is not in `known`, naming it.
pub fn reject_unknown_fields(
    object: &Map<String, Value>,
    known: &[&str],
) -> Result<(), FieldError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(FieldError::new(
            unknown.clone(),
            format!("is not a known field; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A shell is an absolute path to a program, with no `..`, space or control character.
pub fn validate_shell(shell: &str) -> Result<(), FieldError> {
    if shell.is_empty() {
        return Ok(());
    }
    if shell.len() > MAX_SHELL_BYTES {
        return Err(FieldError::new(
            "shell",
            format!("is longer than {MAX_SHELL_BYTES} bytes"),
        ));
    }
    if !shell.starts_with('/')
        || shell.split('/').any(|part| part == "..")
        || shell.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(FieldError::new(
            "shell",
            format!(
                "{shell:?} is not an absolute path without spaces or \"..\" (such as /bin/bash)"
            ),
        ));
    }
    Ok(())
}

fn validate_command(command: &str) -> Result<(), FieldError> {
    if command.trim().is_empty() {
        return Err(FieldError::new("command", "must not be empty"));
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(FieldError::new(
            "command",
            format!(
                "is {} bytes; at most {MAX_COMMAND_BYTES} are allowed",
                command.len()
            ),
        ));
    }
    if command.contains('\0') {
        return Err(FieldError::new("command", "must not contain a NUL byte"));
    }
    Ok(())
}

/// Whether an environment variable changes what runs before a job's command does: the dynamic
/// loader's (`LD_*`, `GLIBC_TUNABLES`, and glibc's module and locale paths), or the shell's
/// start-up (`BASH_ENV`, `ENV`, `IFS`, `SHELLOPTS`, `BASHOPTS`, `PS4`, exported functions).
/// The API refuses jobs that set one; a worker drops them from a job that reaches it anyway.
pub fn steers_process_start(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "GLIBC_TUNABLES",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "MALLOC_TRACE",
        "BASH_ENV",
        "ENV",
        "IFS",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
    ];
    name.starts_with("LD_") || name.starts_with("BASH_FUNC_") || NAMES.contains(&name)
}

fn validate_env(env: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if env.len() > MAX_ENV_VARS {
        return Err(FieldError::new(
            "env",
            format!(
                "has {} variables; at most {MAX_ENV_VARS} are allowed",
                env.len()
            ),
        ));
    }
    for (name, value) in env {
        let field = format!("env.{name}");
        let well_formed = !name.is_empty()
            && name.len() <= MAX_ENV_NAME_BYTES
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !well_formed {
            return Err(FieldError::new(
                field,
                format!("name must be 1-{MAX_ENV_NAME_BYTES} of [A-Za-z0-9_], not starting with a digit"),
            ));
        }
        if name.starts_with("CRON_") {
            return Err(FieldError::new(
                field,
                "names starting with CRON_ are set by the worker",
            ));
        }
        if value.len() > MAX_ENV_VALUE_BYTES || value.contains('\0') {
            return Err(FieldError::new(
                field,
                format!("value must be at most {MAX_ENV_VALUE_BYTES} bytes with no NUL byte"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
