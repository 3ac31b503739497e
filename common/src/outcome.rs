//! What a job's outcome sets off beside its record: notifications to channels an admin
//! defined (a job names them, never an address) and chains to other jobs. Pure data and
//! validation; the master's notifier acts on them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::job::{optional, reject_unknown_fields, FieldError};
use crate::{JobName, RunStatus};

/// Most notification rules one job may carry.
pub const MAX_RULES: usize = 8;
/// Most jobs one chain list may name.
pub const MAX_CHAIN_TARGETS: usize = 16;
/// Most consecutive failures a rule may wait for.
pub const MAX_AFTER_FAILURES: u32 = 1000;

/// The name of a notification channel: 1-64 of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// Checks a channel name; `field` names it in the error.
    pub fn parse(name: &str, field: &str) -> Result<Self, FieldError> {
        let well_formed = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if well_formed {
            Ok(Self(name.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!("channel name {name:?} must be 1-64 of [A-Za-z0-9._-]"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChannelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which tick outcomes a rule reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// The tick ended failed, timed out, failed to start or abandoned.
    Failure,
    /// The tick did not start (`missed`).
    Missed,
    /// The first success after a failure.
    Recovery,
    /// Every success.
    Success,
}

impl NotifyOn {
    const ALL: [NotifyOn; 4] = [
        NotifyOn::Failure,
        NotifyOn::Missed,
        NotifyOn::Recovery,
        NotifyOn::Success,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Missed => "missed",
            NotifyOn::Recovery => "recovery",
            NotifyOn::Success => "success",
        }
    }

    /// The outcome a final status is, if any rule can report it (`killed` and `skipped`
    /// are someone's decision, not news).
    pub fn of(status: RunStatus) -> Option<NotifyOn> {
        match status {
            RunStatus::Failed
            | RunStatus::TimedOut
            | RunStatus::FailedToStart
            | RunStatus::Abandoned => Some(NotifyOn::Failure),
            RunStatus::Missed => Some(NotifyOn::Missed),
            RunStatus::Succeeded => Some(NotifyOn::Success),
            _ => None,
        }
    }
}

/// One notification rule: report these outcomes to this channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyRule {
    pub channel: ChannelName,
    pub on: Vec<NotifyOn>,
    /// Report a failure only once this many ticks in a row have failed (1: every failure).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub after_failures: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

const RULE_FIELDS: &[&str] = &["channel", "on", "afterFailures"];

impl NotifyRule {
    /// Parses `notify`, a list of rules, naming the failing field (`notify[1].on`).
    pub fn list_from_json(value: Value) -> Result<Vec<Self>, FieldError> {
        let Value::Array(items) = value else {
            return Err(FieldError::new("notify", "must be a list of rules"));
        };
        if items.len() > MAX_RULES {
            return Err(FieldError::new(
                "notify",
                format!("has {} rules; at most {MAX_RULES} are allowed", items.len()),
            ));
        }
        let mut rules: Vec<NotifyRule> = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let rule = Self::from_json(item, &format!("notify[{i}]"))?;
            if rules.iter().any(|r| r.channel == rule.channel) {
                return Err(FieldError::new(
                    format!("notify[{i}].channel"),
                    format!("channel {} has a rule already; merge the two", rule.channel),
                ));
            }
            rules.push(rule);
        }
        Ok(rules)
    }

    fn from_json(value: Value, at: &str) -> Result<Self, FieldError> {
        let Value::Object(mut object) = value else {
            return Err(FieldError::new(at, "must be an object"));
        };
        reject_unknown_fields(&object, RULE_FIELDS)
            .map_err(|e| FieldError::new(format!("{at}.{}", e.field), e.reason))?;
        let field = |name: &str| format!("{at}.{name}");
        let channel: String = take(&mut object, "channel", at)?
            .ok_or_else(|| FieldError::new(field("channel"), "is required"))?;
        let channel = ChannelName::parse(&channel, &field("channel"))?;
        let on: Vec<String> = take(&mut object, "on", at)?
            .ok_or_else(|| FieldError::new(field("on"), "is required"))?;
        if on.is_empty() {
            return Err(FieldError::new(
                field("on"),
                "must name at least one of failure, missed, recovery, success",
            ));
        }
        let mut outcomes = Vec::new();
        for name in on {
            let outcome = NotifyOn::ALL
                .into_iter()
                .find(|o| o.as_str() == name)
                .ok_or_else(|| {
                    FieldError::new(
                        field("on"),
                        format!("{name:?} is not one of failure, missed, recovery, success"),
                    )
                })?;
            if !outcomes.contains(&outcome) {
                outcomes.push(outcome);
            }
        }
        outcomes.sort();
        let after_failures: u32 = take(&mut object, "afterFailures", at)?.unwrap_or(1);
        if !(1..=MAX_AFTER_FAILURES).contains(&after_failures) {
            return Err(FieldError::new(
                field("afterFailures"),
                format!("{after_failures} is not between 1 and {MAX_AFTER_FAILURES}"),
            ));
        }
        Ok(Self {
            channel,
            on: outcomes,
            after_failures,
        })
    }
}

fn take<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<T>, FieldError> {
    optional(object, name).map_err(|e| FieldError::new(format!("{at}.{}", e.field), e.reason))
}

/// Parses a chain list (`onSuccess`, `onFailure`): distinct job names.
pub fn chain_from_json(value: Value, field: &str) -> Result<Vec<JobName>, FieldError> {
    let names: Vec<String> = serde_json::from_value(value)
        .map_err(|_| FieldError::new(field, "must be a list of job names"))?;
    if names.len() > MAX_CHAIN_TARGETS {
        return Err(FieldError::new(
            field,
            format!(
                "names {} jobs; at most {MAX_CHAIN_TARGETS} are allowed",
                names.len()
            ),
        ));
    }
    let mut targets: Vec<JobName> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let target = JobName::parse(name).map_err(|e| FieldError::new(&at, e.reason))?;
        if targets.contains(&target) {
            return Err(FieldError::new(at, format!("names {target} twice")));
        }
        targets.push(target);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_parse_with_defaults_and_name_the_failing_field() {
        let rules =
            NotifyRule::list_from_json(json!([{"channel": "ops", "on": ["success", "failure"]}]))
                .unwrap();
        assert_eq!(rules[0].on, vec![NotifyOn::Failure, NotifyOn::Success]);
        assert_eq!(rules[0].after_failures, 1);
        for (value, field) in [
            (json!({"channel": "ops"}), "notify"),
            (json!([{"on": ["failure"]}]), "notify[0].channel"),
            (
                json!([{"channel": "a b", "on": ["failure"]}]),
                "notify[0].channel",
            ),
            (json!([{"channel": "ops", "on": []}]), "notify[0].on"),
            (json!([{"channel": "ops", "on": ["fire"]}]), "notify[0].on"),
            (
                json!([{"channel": "ops", "on": ["failure"], "afterFailures": 0}]),
                "notify[0].afterFailures",
            ),
            (
                json!([{"channel": "ops", "on": ["failure"], "url": "http://x"}]),
                "notify[0].url",
            ),
            (
                json!([{"channel": "ops", "on": ["failure"]}, {"channel": "ops", "on": ["missed"]}]),
                "notify[1].channel",
            ),
        ] {
            let error = NotifyRule::list_from_json(value).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn chains_are_distinct_job_names() {
        let targets = chain_from_json(json!(["b", "c"]), "onSuccess").unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(
            chain_from_json(json!(["b", "b"]), "onSuccess")
                .unwrap_err()
                .field,
            "onSuccess[1]"
        );
        assert_eq!(
            chain_from_json(json!(["", "b"]), "onFailure")
                .unwrap_err()
                .field,
            "onFailure[0]"
        );
        assert_eq!(
            chain_from_json(json!("b"), "onFailure").unwrap_err().field,
            "onFailure"
        );
    }

    #[test]
    fn only_news_is_reported() {
        assert_eq!(NotifyOn::of(RunStatus::TimedOut), Some(NotifyOn::Failure));
        assert_eq!(NotifyOn::of(RunStatus::Killed), None);
        assert_eq!(NotifyOn::of(RunStatus::Skipped), None);
    }
}
