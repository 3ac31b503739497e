//! The outcomes part of the job form: notification rules, one a line (`ops-hook: failure,
//! recovery`, `ops-mail: failure after 3`), and the jobs run when a tick succeeds or fails
//! (names separated by commas or line breaks; a name with a comma in it, or one starting with
//! a double quote, goes in double quotes as JSON writes strings). Filled from a spec, and
//! turned into the spec's JSON fields for the API's validation, whose errors name the field
//! at fault (`notify[1].on`, `onSuccess[0]`); [`OutcomeErrors`] puts each beside its input.

use std::collections::HashMap;

use cronfleet_common::{JobName, JobSpec, NotifyRule};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::job_policy::FormError;

/// The outcome inputs as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct OutcomesForm {
    /// One rule a line.
    #[serde(default)]
    pub(super) notify: String,
    #[serde(default, rename = "onSuccess")]
    pub(super) on_success: String,
    #[serde(default, rename = "onFailure")]
    pub(super) on_failure: String,
}

impl OutcomesForm {
    pub(super) fn from_spec(spec: &JobSpec) -> Self {
        Self {
            notify: spec
                .notify
                .iter()
                .map(|rule| format!("{}\n", rule_line(rule)))
                .collect(),
            on_success: names_text(&spec.on_success),
            on_failure: names_text(&spec.on_failure),
        }
    }

    /// Adds the outcome fields that were filled in to the spec's JSON `body`.
    pub(super) fn fill(&self, body: &mut Map<String, Value>) -> Result<(), FormError> {
        let rules = notify_json(&self.notify)?;
        if !rules.is_empty() {
            body.insert("notify".into(), Value::Array(rules));
        }
        for (field, text) in [
            ("onSuccess", &self.on_success),
            ("onFailure", &self.on_failure),
        ] {
            let names =
                names(text).map_err(|reason| (field.to_owned(), format!("{field}: {reason}")))?;
            if !names.is_empty() {
                body.insert(field.into(), json!(names));
            }
        }
        Ok(())
    }
}

/// The errors of the outcome inputs, each for the input its field belongs to.
#[derive(Debug, Default)]
pub(super) struct OutcomeErrors {
    pub(super) notify: Option<String>,
    pub(super) on_success: Option<String>,
    pub(super) on_failure: Option<String>,
}

impl OutcomeErrors {
    pub(super) fn new(errors: &HashMap<String, String>) -> Self {
        let under = |input: &str| {
            errors
                .iter()
                .find(|(field, _)| {
                    field.strip_prefix(input).is_some_and(|rest| {
                        rest.is_empty() || rest.starts_with('[') || rest.starts_with('.')
                    })
                })
                .map(|(_, message)| message.clone())
        };
        Self {
            notify: under("notify"),
            on_success: under("onSuccess"),
            on_failure: under("onFailure"),
        }
    }
}

/// A rule as the form and the job page show it: `ops-mail: failure, recovery after 3`.
pub(super) fn rule_line(rule: &NotifyRule) -> String {
    let on: Vec<&str> = rule.on.iter().map(|outcome| outcome.as_str()).collect();
    let mut line = format!("{}: {}", rule.channel, on.join(", "));
    if rule.after_failures != 1 {
        line.push_str(&format!(" after {}", rule.after_failures));
    }
    line
}

/// The rules' JSON from their lines: `channel: outcome, ... [after n]`. Anything else is the
/// API's to check (which channels exist, which outcomes there are, the range of `n`).
fn notify_json(text: &str) -> Result<Vec<Value>, FormError> {
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut rules = Vec::new();
    for (i, line) in lines.enumerate() {
        let error = |reason: String| {
            let field = format!("notify[{i}]");
            let message = format!("{field}: {reason} (rule {})", i + 1);
            (field, message)
        };
        let Some((channel, outcomes)) = line.split_once(':') else {
            return Err(error(format!(
                "{line:?} is not channel: outcome, outcome [after n]"
            )));
        };
        let mut on = Vec::new();
        let mut after = None;
        let mut words = outcomes
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|word| !word.is_empty());
        while let Some(word) = words.next() {
            if word != "after" {
                on.push(word);
                continue;
            }
            let count = words.next().and_then(|n| n.parse::<u64>().ok());
            let Some(count) = count.filter(|_| after.is_none()) else {
                return Err(error(
                    "\"after\" takes one number: the failures in a row to wait for".into(),
                ));
            };
            after = Some(count);
        }
        let mut rule = json!({"channel": channel.trim(), "on": on});
        if let Some(count) = after {
            rule["afterFailures"] = json!(count);
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Job names as the form shows them: comma-separated, quoted where a comma or a leading
/// quote would be misread.
fn names_text(names: &[JobName]) -> String {
    let shown: Vec<String> = names
        .iter()
        .map(|name| {
            let name = name.as_str();
            if name.contains(',') || name.starts_with('"') {
                Value::from(name).to_string()
            } else {
                name.to_owned()
            }
        })
        .collect();
    shown.join(", ")
}

/// Job names separated by commas or line breaks, each bare or in double quotes.
fn names(text: &str) -> Result<Vec<String>, String> {
    let separator = |c: char| c == ',' || c.is_whitespace();
    let mut names = Vec::new();
    let mut rest = text.trim_start_matches(separator);
    while !rest.is_empty() {
        let (name, after) = if rest.starts_with('"') {
            quoted(rest)?
        } else {
            let end = rest.find([',', '\n']).unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        };
        names.push(name);
        rest = after.trim_start_matches(separator);
    }
    Ok(names)
}

/// The quoted name `text` starts with, and what follows it (which must be a separator).
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    let end = text
        .char_indices()
        .skip(1)
        .find(|&(_, c)| {
            let closes = c == '"' && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        })
        .map(|(at, _)| at)
        .ok_or_else(|| format!("{text:?} has no closing double quote"))?;
    let literal = &text[..=end];
    let name: String = serde_json::from_str(literal)
        .map_err(|_| format!("{literal} is not a name in double quotes"))?;
    let after = &text[end + 1..];
    let next = after.trim_start_matches([' ', '\t', '\r']);
    if !(next.is_empty() || next.starts_with([',', '\n'])) {
        return Err(format!(
            "{literal} must be followed by a comma or a line break"
        ));
    }
    Ok((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(form: &OutcomesForm) -> Result<JobSpec, String> {
        let mut body = Map::new();
        body.insert("name".into(), json!("j"));
        body.insert("command".into(), json!("true"));
        body.insert("cronExpr".into(), json!("@daily"));
        form.fill(&mut body).map_err(|(field, _)| field)?;
        JobSpec::from_user_json(Value::Object(body).to_string().as_bytes()).map_err(|e| e.field)
    }

    #[test]
    fn a_filled_form_round_trips_through_the_spec() {
        let form = OutcomesForm {
            notify: "ops-hook: failure, recovery\r\n\n ops-mail:failure after 3\n".into(),
            on_success: "report,\n\"tidy, then report\"  , cleanup".into(),
            on_failure: "page \"someone\"".into(),
        };
        let spec = spec_of(&form).unwrap();
        assert_eq!(spec.notify[1].after_failures, 3);
        let targets: Vec<&str> = spec.on_success.iter().map(JobName::as_str).collect();
        assert_eq!(targets, ["report", "tidy, then report", "cleanup"]);
        assert_eq!(spec.on_failure[0].as_str(), "page \"someone\"");
        let again = OutcomesForm::from_spec(&spec);
        assert_eq!(
            again.notify,
            "ops-hook: failure, recovery\nops-mail: failure after 3\n"
        );
        assert_eq!(again.on_success, r#"report, "tidy, then report", cleanup"#);
        assert_eq!(spec_of(&again).unwrap(), spec);
    }

    #[test]
    fn an_empty_form_sets_nothing() {
        let spec = spec_of(&OutcomesForm::default()).unwrap();
        assert!(spec.notify.is_empty() && spec.on_success.is_empty());
    }

    #[test]
    fn errors_name_the_field_beside_its_input() {
        let notify = |text: &str| OutcomesForm {
            notify: text.into(),
            ..OutcomesForm::default()
        };
        let on_success = |text: &str| OutcomesForm {
            on_success: text.into(),
            ..OutcomesForm::default()
        };
        for (form, field) in [
            (notify("ops failure"), "notify[0]"),
            (notify("ops: failure\nmail: failure after"), "notify[1]"),
            (notify("ops: failure after 2 after 3"), "notify[0]"),
            (notify("ops: fire"), "notify[0].on"),
            (notify("ops:"), "notify[0].on"),
            (notify(": failure"), "notify[0].channel"),
            (notify("ops: failure after 0"), "notify[0].afterFailures"),
            (on_success("a, a"), "onSuccess[1]"),
            (on_success("\"a"), "onSuccess"),
            (on_success("\"a\" b"), "onSuccess"),
        ] {
            assert_eq!(spec_of(&form).unwrap_err(), field, "{form:?}");
        }
        let errors = HashMap::from([
            ("notify[0].channel".to_owned(), "n".to_owned()),
            ("onFailure[2]".to_owned(), "f".to_owned()),
        ]);
        let beside = OutcomeErrors::new(&errors);
        assert_eq!(
            (beside.notify, beside.on_success, beside.on_failure),
            (Some("n".into()), None, Some("f".into()))
        );
    }
}
