//! Every error of a job form at once, through the same validation as the API: the API's check
//! stops at the first bad field, so the form is checked again with that field set aside —
//! left out when it is optional, a valid stand-in when it is required — until it passes or
//! nothing more can be set aside.

use std::collections::HashMap;

use cronfleet_common::JobSpec;
use serde_json::{json, Map, Value};

use super::job_policy::FormError;

/// Most fields one form can be wrong in (every field of a job spec, and a margin).
const MAX_ROUNDS: usize = 32;

/// The spec `body` describes, or every error in it (and in `errors`, found while building
/// it), by field: the first error of each field.
pub(super) fn checked(
    mut body: Map<String, Value>,
    mut errors: Vec<FormError>,
) -> Result<JobSpec, HashMap<String, String>> {
    for _ in 0..MAX_ROUNDS {
        let error =
            match JobSpec::from_user_json(Value::Object(body.clone()).to_string().as_bytes()) {
                Ok(spec) if errors.is_empty() => return Ok(spec),
                Ok(_) => break,
                Err(error) => error,
            };
        let top = top_field(&error.field).to_owned();
        errors.push((error.field.clone(), error.to_string()));
        let set_aside = match stand_in(&top) {
            Some(value) => body.insert(top, value.clone()).as_ref() != Some(&value),
            None => body.remove(&top).is_some(),
        };
        if !set_aside {
            break;
        }
    }
    let mut by_field = HashMap::new();
    for (field, message) in errors {
        by_field.entry(field).or_insert(message);
    }
    Err(by_field)
}

/// The body key an error's field path starts with: `retry` for `retry.maxAttempts`,
/// `notify` for `notify[0].channel`.
fn top_field(field: &str) -> &str {
    field.split(['.', '[']).next().unwrap_or(field)
}

/// A valid value for a required field.
fn stand_in(field: &str) -> Option<Value> {
    match field {
        "name" => Some(json!("form-check")),
        "command" => Some(json!("true")),
        "cronExpr" => Some(json!("* * * * *")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_bad_field_is_reported_with_its_own_reason() {
        let errors = checked(
            body(json!({"name": "a/b", "cronExpr": "61 * * * *",
                        "timezone": "Mars/Olympus", "retry": {"maxAttempts": 99}})),
            vec![("env".to_owned(), "env: \"X\" is not NAME=value".to_owned())],
        )
        .unwrap_err();
        for field in [
            "name",
            "command",
            "cronExpr",
            "timezone",
            "retry.maxAttempts",
            "env",
        ] {
            assert!(
                errors.contains_key(field),
                "{field} missing from {errors:?}"
            );
        }
    }

    #[test]
    fn a_good_form_gives_its_spec_and_an_early_error_still_refuses_it() {
        let good = body(json!({"name": "ok", "command": "true", "cronExpr": "* * * * *"}));
        assert_eq!(
            checked(good.clone(), Vec::new()).unwrap().name.as_str(),
            "ok"
        );
        let refused = checked(good, vec![("timeoutSecs".to_owned(), "bad".to_owned())]);
        assert_eq!(refused.unwrap_err().len(), 1);
    }
}
