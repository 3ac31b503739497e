//! The run-policy part of the job form (working directory, worker selector, mode, retries):
//! filled from a spec, and turned into the spec's JSON fields for the API's validation.

use cronfleet_common::{JobSpec, RetryPolicy, RunStatus, Selector};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A field the form could not turn into JSON: the spec field it stands for, and why.
pub(super) type FormError = (String, String);

/// The run-policy inputs as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct PolicyForm {
    #[serde(default, rename = "workingDir")]
    pub(super) working_dir: String,
    /// One `key=value` or `key=value1|value2` per line.
    #[serde(default)]
    pub(super) selector: String,
    #[serde(default)]
    pub(super) mode: String,
    /// Empty: no retries (the other retry inputs are then ignored).
    #[serde(default, rename = "retryMaxAttempts")]
    pub(super) max_attempts: String,
    #[serde(default, rename = "retryInitialDelaySecs")]
    pub(super) initial_delay_secs: String,
    #[serde(default, rename = "retryMaxDelaySecs")]
    pub(super) max_delay_secs: String,
    #[serde(default, rename = "retryMultiplier")]
    pub(super) multiplier: String,
    /// A checkbox: non-empty when ticked.
    #[serde(default, rename = "retryAbandoned")]
    pub(super) also_abandoned: String,
    #[serde(default, rename = "retryFailedToStart")]
    pub(super) also_failed_to_start: String,
}

impl PolicyForm {
    pub(super) fn from_spec(spec: &JobSpec) -> Self {
        let retry = spec.retry.as_ref();
        let text = |pick: fn(&RetryPolicy) -> String| retry.map(pick).unwrap_or_default();
        let ticked = |status: RunStatus| {
            let on = retry.is_some_and(|r| r.also_on.contains(&status));
            if on { "on" } else { "" }.to_owned()
        };
        Self {
            working_dir: spec.working_dir.clone().unwrap_or_default(),
            selector: selector_lines(&spec.selector),
            mode: spec.mode.as_str().to_owned(),
            max_attempts: text(|r| r.max_attempts.to_string()),
            initial_delay_secs: text(|r| r.initial_delay_secs.to_string()),
            max_delay_secs: text(|r| r.max_delay_secs.to_string()),
            multiplier: text(|r| r.multiplier.to_string()),
            also_abandoned: ticked(RunStatus::Abandoned),
            also_failed_to_start: ticked(RunStatus::FailedToStart),
        }
    }

    /// Adds the policy fields that were filled in to the spec's JSON `body`.
    pub(super) fn fill(&self, body: &mut Map<String, Value>) -> Result<(), FormError> {
        let working_dir = self.working_dir.trim();
        if !working_dir.is_empty() {
            body.insert("workingDir".into(), json!(working_dir));
        }
        let selector = selector_json(&self.selector)?;
        if !selector.is_empty() {
            body.insert("selector".into(), Value::Object(selector));
        }
        if !self.mode.is_empty() {
            body.insert("mode".into(), json!(self.mode));
        }
        if let Some(retry) = self.retry_json()? {
            body.insert("retry".into(), Value::Object(retry));
        }
        Ok(())
    }

    fn retry_json(&self) -> Result<Option<Map<String, Value>>, FormError> {
        if self.max_attempts.trim().is_empty() {
            return Ok(None);
        }
        let mut retry = Map::new();
        for (field, text) in [
            ("maxAttempts", &self.max_attempts),
            ("initialDelaySecs", &self.initial_delay_secs),
            ("maxDelaySecs", &self.max_delay_secs),
        ] {
            if let Some(number) = parsed::<u64>(field, text, "a whole number")? {
                retry.insert(field.into(), json!(number));
            }
        }
        if let Some(multiplier) = parsed::<f64>("multiplier", &self.multiplier, "a number")? {
            if !multiplier.is_finite() {
                return Err(retry_error("multiplier", "must be a number"));
            }
            retry.insert("multiplier".into(), json!(multiplier));
        }
        let also_on: Vec<&str> = [
            (&self.also_abandoned, RunStatus::Abandoned),
            (&self.also_failed_to_start, RunStatus::FailedToStart),
        ]
        .into_iter()
        .filter(|(ticked, _)| !ticked.is_empty())
        .map(|(_, status)| status.as_str())
        .collect();
        if !also_on.is_empty() {
            retry.insert("alsoOn".into(), json!(also_on));
        }
        Ok(Some(retry))
    }
}

/// A retry input as a number, or `None` when it is empty.
fn parsed<T: std::str::FromStr>(
    field: &str,
    text: &str,
    what: &str,
) -> Result<Option<T>, FormError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| retry_error(field, &format!("must be {what}")))
}

fn retry_error(field: &str, reason: &str) -> FormError {
    let field = format!("retry.{field}");
    let message = format!("{field}: {reason}");
    (field, message)
}

/// The selector as the form shows it: `key=value` or `key=value1|value2`, one a line.
fn selector_lines(selector: &Selector) -> String {
    let Ok(Value::Object(entries)) = serde_json::to_value(selector) else {
        return String::new();
    };
    entries
        .iter()
        .map(|(key, accepts)| {
            let values = match accepts {
                Value::Array(set) => set
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("|"),
                one => one.as_str().unwrap_or_default().to_owned(),
            };
            format!("{key}={values}\n")
        })
        .collect()
}

/// The selector's JSON from its lines; a line that is not `key=...` or a key given twice is
/// refused here, everything else by the API's validation.
fn selector_json(text: &str) -> Result<Map<String, Value>, FormError> {
    let mut selector = Map::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((key, values)) = line.split_once('=') else {
            return Err((
                "selector".into(),
                format!("selector: {line:?} is not key=value or key=value1|value2"),
            ));
        };
        let key = key.trim();
        let values: Vec<&str> = values.split('|').map(str::trim).collect();
        let accepts = match values.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        if selector.insert(key.to_owned(), accepts).is_some() {
            let field = format!("selector.{key}");
            let message = format!("{field}: is given on two lines; list its values as {key}=a|b");
            return Err((field, message));
        }
    }
    Ok(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(form: &PolicyForm) -> Result<JobSpec, String> {
        let mut body = Map::new();
        body.insert("name".into(), json!("j"));
        body.insert("command".into(), json!("true"));
        body.insert("cronExpr".into(), json!("@daily"));
        form.fill(&mut body).map_err(|(field, _)| field)?;
        JobSpec::from_user_json(Value::Object(body).to_string().as_bytes()).map_err(|e| e.field)
    }

    #[test]
    fn a_filled_form_round_trips_through_the_spec() {
        let form = PolicyForm {
            working_dir: " /srv/app ".into(),
            selector: "zone = eu\r\ndisk=ssd|nvme\n\n".into(),
            mode: "one".into(),
            max_attempts: "4".into(),
            initial_delay_secs: "5".into(),
            multiplier: "1.5".into(),
            also_failed_to_start: "on".into(),
            ..PolicyForm::default()
        };
        let spec = spec_of(&form).unwrap();
        assert_eq!(spec.selector.describe(), "disk in (ssd, nvme), zone=eu");
        let again = PolicyForm::from_spec(&spec);
        assert_eq!(again.working_dir, "/srv/app");
        assert_eq!(again.selector, "disk=ssd|nvme\nzone=eu\n");
        assert_eq!(
            (again.max_attempts.as_str(), again.max_delay_secs.as_str()),
            ("4", "3600")
        );
        assert_eq!(again.multiplier, "1.5");
        assert_eq!(
            (
                again.also_abandoned.as_str(),
                again.also_failed_to_start.as_str()
            ),
            ("", "on")
        );
        assert_eq!(spec_of(&again).unwrap(), spec);
    }

    #[test]
    fn empty_max_attempts_means_no_retries() {
        let form = PolicyForm {
            initial_delay_secs: "30".into(),
            ..PolicyForm::default()
        };
        assert_eq!(spec_of(&form).unwrap().retry, None);
    }

    #[test]
    fn errors_name_the_field_beside_its_input() {
        for (form, field) in [
            (
                PolicyForm {
                    selector: "zone".into(),
                    ..PolicyForm::default()
                },
                "selector",
            ),
            (
                PolicyForm {
                    selector: "zone=eu\nzone=us".into(),
                    ..PolicyForm::default()
                },
                "selector.zone",
            ),
            (
                PolicyForm {
                    selector: "zone=e u".into(),
                    ..PolicyForm::default()
                },
                "selector.zone",
            ),
            (
                PolicyForm {
                    max_attempts: "three".into(),
                    ..PolicyForm::default()
                },
                "retry.maxAttempts",
            ),
            (
                PolicyForm {
                    max_attempts: "3".into(),
                    multiplier: "NaN".into(),
                    ..PolicyForm::default()
                },
                "retry.multiplier",
            ),
            (
                PolicyForm {
                    max_attempts: "3".into(),
                    mode: "all".into(),
                    ..PolicyForm::default()
                },
                "retry",
            ),
        ] {
            assert_eq!(spec_of(&form).unwrap_err(), field);
        }
    }
}
