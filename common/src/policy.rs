//! Run policies a job may carry beside its schedule: where it runs (worker labels and a
//! selector over them, one worker or all of them), how often a failed tick is tried again,
//! and the directory its command starts in. Pure data and validation; the worker acts on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::job::{optional, reject_unknown_fields, FieldError};
use crate::RunStatus;

/// Most entries a selector, or a worker's label set, may have.
pub const MAX_LABELS: usize = 16;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 63;
/// Most values one selector entry may list.
pub const MAX_SELECTOR_VALUES: usize = 16;
/// Most attempts of one tick, the first included.
pub const MAX_ATTEMPTS: u32 = 20;
/// Longest delay before a retry: one day, in seconds.
pub const MAX_RETRY_DELAY_SECS: u64 = 24 * 3600;
/// Longest accepted working directory, in bytes.
pub const MAX_WORKING_DIR_BYTES: usize = 4096;

/// A worker's labels: `key=value` pairs it publishes in its registration.
pub type Labels = BTreeMap<String, String>;

/// Checks one label key (`field` names it in errors): 1-63 bytes of `[A-Za-z0-9._/-]`,
/// starting with a letter or digit.
pub fn validate_label_key(key: &str, field: &str) -> Result<(), FieldError> {
    let well_formed = !key.is_empty()
        && key.len() <= MAX_LABEL_BYTES
        && key.starts_with(|c: char| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if well_formed {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "label key {key:?} must be 1-{MAX_LABEL_BYTES} of [A-Za-z0-9._/-], starting with a letter or digit"
            ),
        ))
    }
}

/// Checks one label value: at most 63 bytes of `[A-Za-z0-9._-]` (empty allowed).
pub fn validate_label_value(value: &str, field: &str) -> Result<(), FieldError> {
    let well_formed = value.len() <= MAX_LABEL_BYTES
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if well_formed {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("label value {value:?} must be at most {MAX_LABEL_BYTES} of [A-Za-z0-9._-]"),
        ))
    }
}

/// Parses a worker's `key=value` label argument.
pub fn parse_label(raw: &str) -> Result<(String, String), FieldError> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(FieldError::new(
            "label",
            format!("{raw:?} is not key=value"),
        ));
    };
    validate_label_key(key, "label")?;
    validate_label_value(value, "label")?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The values one selector entry accepts: one value, or any of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Accepts {
    One(String),
    AnyOf(Vec<String>),
}

impl Accepts {
    fn contains(&self, value: &str) -> bool {
        match self {
            Accepts::One(one) => one == value,
            Accepts::AnyOf(set) => set.iter().any(|v| v == value),
        }
    }
}

/// Which workers may run a job: every key must be among a worker's labels, with one of the
/// accepted values. Empty: every worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Selector(BTreeMap<String, Accepts>);

impl Selector {
    /// Validates a selector from JSON; errors name `selector.<key>`.
    pub fn from_json(value: Value) -> Result<Self, FieldError> {
        let Value::Object(object) = value else {
            return Err(FieldError::new(
                "selector",
                "must be an object of label keys to a value or a list of values",
            ));
        };
        if object.len() > MAX_LABELS {
            return Err(FieldError::new(
                "selector",
                format!(
                    "has {} keys; at most {MAX_LABELS} are allowed",
                    object.len()
                ),
            ));
        }
        let mut entries = BTreeMap::new();
        for (key, accepts) in object {
            let field = format!("selector.{key}");
            validate_label_key(&key, &field)?;
            let accepts: Accepts = serde_json::from_value(accepts)
                .map_err(|_| FieldError::new(&field, "must be a string or a list of strings"))?;
            let values = match &accepts {
                Accepts::One(one) => std::slice::from_ref(one),
                Accepts::AnyOf(set) => set.as_slice(),
            };
            if values.is_empty() || values.len() > MAX_SELECTOR_VALUES {
                return Err(FieldError::new(
                    field,
                    format!("must list 1-{MAX_SELECTOR_VALUES} values"),
                ));
            }
            for value in values {
                validate_label_value(value, &field)?;
            }
            entries.insert(key, accepts);
        }
        Ok(Self(entries))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a worker with `labels` may run the job.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0
            .iter()
            .all(|(key, accepts)| labels.get(key).is_some_and(|value| accepts.contains(value)))
    }

    /// `key=value` or `key in (a, b)` for each entry, for pages and logs.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(key, accepts)| match accepts {
                Accepts::One(one) => format!("{key}={one}"),
                Accepts::AnyOf(set) => format!("{key} in ({})", set.join(", ")),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How many workers run each tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One worker of those that match runs each tick.
    #[default]
    One,
    /// Every live matching worker runs each tick once.
    All,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::One => "one",
            Mode::All => "all",
        }
    }

    pub fn is_one(&self) -> bool {
        *self == Mode::One
    }

    /// Parses the `mode` field.
    pub fn parse(raw: Option<&str>) -> Result<Self, FieldError> {
        match raw {
            None | Some("") | Some("one") => Ok(Mode::One),
            Some("all") => Ok(Mode::All),
            Some(other) => Err(FieldError::new(
                "mode",
                format!("{other:?} is not one of one, all"),
            )),
        }
    }
}

/// Every field a retry policy may carry.
const RETRY_FIELDS: &[&str] = &[
    "maxAttempts",
    "initialDelaySecs",
    "maxDelaySecs",
    "multiplier",
    "alsoOn",
];

/// When and how often a tick whose run failed is attempted again.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Attempts of one tick, the first included (2-20).
    pub max_attempts: u32,
    /// Delay before the second attempt, in seconds.
    pub initial_delay_secs: u64,
    /// Longest delay between two attempts, in seconds.
    pub max_delay_secs: u64,
    /// Each next delay is the previous one times this (1-10).
    pub multiplier: f64,
    /// Statuses retried besides `failed` and `timed_out`: `abandoned`, `failed_to_start`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_on: Vec<RunStatus>,
}

// `multiplier` is validated finite, so equality is an equivalence.
impl Eq for RetryPolicy {}

impl RetryPolicy {
    /// Validates a retry policy from JSON; errors name `retry.<field>`.
    pub fn from_json(value: Value) -> Result<Self, FieldError> {
        let Value::Object(mut object) = value else {
            return Err(FieldError::new("retry", "must be an object"));
        };
        reject_unknown_fields(&object, RETRY_FIELDS)
            .map_err(|e| FieldError::new(format!("retry.{}", e.field), e.reason))?;
        let field = |name: &str| format!("retry.{name}");
        let max_attempts: u32 = take(&mut object, "maxAttempts")?
            .ok_or_else(|| FieldError::new(field("maxAttempts"), "is required"))?;
        if !(2..=MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(FieldError::new(
                field("maxAttempts"),
                format!("{max_attempts} is not between 2 and {MAX_ATTEMPTS} (the first attempt included)"),
            ));
        }
        let initial_delay_secs: u64 = take(&mut object, "initialDelaySecs")?.unwrap_or(10);
        let max_delay_secs: u64 = take(&mut object, "maxDelaySecs")?.unwrap_or(3600);
        for (name, secs) in [
            ("initialDelaySecs", initial_delay_secs),
            ("maxDelaySecs", max_delay_secs),
        ] {
            if !(1..=MAX_RETRY_DELAY_SECS).contains(&secs) {
                return Err(FieldError::new(
                    field(name),
                    format!("{secs} is not between 1 and {MAX_RETRY_DELAY_SECS} (one day)"),
                ));
            }
        }
        if max_delay_secs < initial_delay_secs {
            return Err(FieldError::new(
                field("maxDelaySecs"),
                format!("{max_delay_secs} is less than initialDelaySecs ({initial_delay_secs})"),
            ));
        }
        let multiplier: f64 = take(&mut object, "multiplier")?.unwrap_or(2.0);
        if !(1.0..=10.0).contains(&multiplier) {
            return Err(FieldError::new(
                field("multiplier"),
                format!("{multiplier} is not between 1 and 10"),
            ));
        }
        let also_on: Vec<RunStatus> = take(&mut object, "alsoOn")?.unwrap_or_default();
        if let Some(other) = also_on
            .iter()
            .find(|s| !matches!(s, RunStatus::Abandoned | RunStatus::FailedToStart))
        {
            return Err(FieldError::new(
                field("alsoOn"),
                format!(
                    "{} is not one of abandoned, failed_to_start (failed and timed_out are always retried)",
                    other.as_str()
                ),
            ));
        }
        Ok(Self {
            max_attempts,
            initial_delay_secs,
            max_delay_secs,
            multiplier,
            also_on,
        })
    }

    /// Whether a run that ended with `status` is tried again (attempts left permitting).
    pub fn retries(&self, status: RunStatus) -> bool {
        matches!(status, RunStatus::Failed | RunStatus::TimedOut) || self.also_on.contains(&status)
    }

    /// The delay before attempt `next` (2 for the first retry), in milliseconds:
    /// `initialDelaySecs × multiplier^(next-2)`, at most `maxDelaySecs`, then spread by
    /// `jitter` (0..1) over ±20 % and kept within the bounds, so that retries of many jobs
    /// that failed together do not all come back in the same instant.
    pub fn delay_ms(&self, next: u32, jitter: f64) -> i64 {
        let exponent = i32::try_from(next.saturating_sub(2)).unwrap_or(i32::MAX);
        let base = (self.initial_delay_secs as f64 * self.multiplier.powi(exponent))
            .min(self.max_delay_secs as f64);
        let spread = base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
        let ms = spread.clamp(1.0, self.max_delay_secs as f64) * 1000.0;
        ms.round() as i64
    }
}

fn take<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, FieldError> {
    optional(object, name).map_err(|e| FieldError::new(format!("retry.{name}"), e.reason))
}

/// A working directory is an absolute path with no control character.
pub fn validate_working_dir(dir: &str) -> Result<(), FieldError> {
    if dir.len() > MAX_WORKING_DIR_BYTES {
        return Err(FieldError::new(
            "workingDir",
            format!("is longer than {MAX_WORKING_DIR_BYTES} bytes"),
        ));
    }
    if !dir.starts_with('/') || dir.chars().any(char::is_control) {
        return Err(FieldError::new(
            "workingDir",
            format!("{dir:?} is not an absolute path (such as /srv/backup)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_selector_needs_every_key_with_an_accepted_value() {
        let selector = Selector::from_json(json!({"zone": "eu", "disk": ["ssd", "nvme"]})).unwrap();
        assert!(selector.matches(&labels(&[("zone", "eu"), ("disk", "nvme"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("zone", "eu"), ("disk", "hdd")])));
        assert!(!selector.matches(&labels(&[("disk", "ssd")])));
        assert!(Selector::default().matches(&Labels::new()));
        assert_eq!(selector.describe(), "disk in (ssd, nvme), zone=eu");
    }

    #[test]
    fn bad_selectors_name_the_entry() {
        for (value, field) in [
            (json!(["zone"]), "selector"),
            (json!({"bad key": "x"}), "selector.bad key"),
            (json!({"zone": "e u"}), "selector.zone"),
            (json!({"zone": []}), "selector.zone"),
            (json!({"zone": 3}), "selector.zone"),
        ] {
            assert_eq!(Selector::from_json(value).unwrap_err().field, field);
        }
    }

    #[test]
    fn worker_labels_parse_as_key_value() {
        assert_eq!(
            parse_label("zone=eu-1").unwrap(),
            ("zone".to_owned(), "eu-1".to_owned())
        );
        assert!(parse_label("zone").is_err());
        assert!(parse_label("=eu").is_err());
        assert!(parse_label("zone=a b").is_err());
    }

    #[test]
    fn retry_policies_are_validated_field_by_field() {
        let policy = RetryPolicy::from_json(json!({"maxAttempts": 3})).unwrap();
        assert_eq!(
            (policy.initial_delay_secs, policy.max_delay_secs),
            (10, 3600)
        );
        for (value, field) in [
            (json!({}), "retry.maxAttempts"),
            (json!({"maxAttempts": 1}), "retry.maxAttempts"),
            (
                json!({"maxAttempts": 3, "initialDelaySecs": 0}),
                "retry.initialDelaySecs",
            ),
            (
                json!({"maxAttempts": 3, "initialDelaySecs": 60, "maxDelaySecs": 5}),
                "retry.maxDelaySecs",
            ),
            (
                json!({"maxAttempts": 3, "multiplier": 0.5}),
                "retry.multiplier",
            ),
            (
                json!({"maxAttempts": 3, "alsoOn": ["killed"]}),
                "retry.alsoOn",
            ),
            (
                json!({"maxAttempts": 3, "alsoOn": ["nope"]}),
                "retry.alsoOn",
            ),
            (json!({"maxAttempts": 3, "extra": 1}), "retry.extra"),
            (json!("3"), "retry"),
        ] {
            assert_eq!(RetryPolicy::from_json(value).unwrap_err().field, field);
        }
    }

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_cap_with_bounded_jitter() {
        let policy = RetryPolicy::from_json(
            json!({"maxAttempts": 6, "initialDelaySecs": 2, "maxDelaySecs": 10, "multiplier": 3}),
        )
        .unwrap();
        let middle: Vec<i64> = (2..=5).map(|n| policy.delay_ms(n, 0.5)).collect();
        assert_eq!(middle, [2_000, 6_000, 10_000, 10_000]);
        assert_eq!(policy.delay_ms(2, 0.0), 1_600);
        assert_eq!(policy.delay_ms(2, 1.0), 2_400);
        assert_eq!(policy.delay_ms(4, 1.0), 10_000, "never past the cap");
        assert!(policy.retries(RunStatus::TimedOut));
        assert!(!policy.retries(RunStatus::Abandoned));
        assert!(!policy.retries(RunStatus::Killed));
    }

    #[test]
    fn working_directories_are_absolute() {
        assert!(validate_working_dir("/srv/backup dir").is_ok());
        assert_eq!(validate_working_dir("srv").unwrap_err().field, "workingDir");
        assert!(validate_working_dir("/a\nb").is_err());
    }
}
