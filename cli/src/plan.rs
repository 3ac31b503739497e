//! Jobs as code: a file of job specs against the live jobs, as a plan — create, update (with
//! the fields that change), delete (with `--prune`), unchanged — applied one job at a time,
//! each update and delete with `If-Match` on the version the plan saw, so a job changed
//! meanwhile is reported and left as it is.
//!
//! Both sides are compared as the master would store them: read through the same validation
//! (`cronfleet-common`'s job spec), so defaults filled in by the master (a retry's delays, the
//! time zone) are no difference. An update keeps a job's pause as it is (as the API's does);
//! a file whose `paused` differs from the job's adds a pause or resume step, and a file that
//! leaves it out leaves the pause alone. `export` writes it, so `export | apply` changes
//! nothing.
//!
//! A plan printed as JSON can be applied later exactly as it was made (`apply --plan`): every
//! job changed since then is reported and left as it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cronfleet_common::job::JOB_SPEC_FIELDS;
use cronfleet_common::JobSpec;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{encode, Client, Failure};

/// One step of a plan; as JSON (`apply --dry-run -o json`), a plan can be kept, reviewed
/// and carried out later as it is (`apply --plan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Step {
    Create {
        name: String,
        body: Value,
    },
    Update {
        name: String,
        body: Value,
        version: i64,
        changes: Vec<String>,
    },
    Delete {
        name: String,
        version: i64,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    Unchanged {
        name: String,
    },
}

/// The job specs in a YAML or JSON document: a list, or an object with a `jobs` list.
pub fn read_specs(text: &str, source: &str) -> Result<Vec<Value>, Failure> {
    let document: Value = serde_yaml::from_str(text)
        .map_err(|e| Failure::Usage(format!("{source}: not YAML or JSON: {e}")))?;
    let list = match document {
        Value::Array(list) => list,
        Value::Object(mut object) => match object.remove("jobs") {
            Some(Value::Array(list)) => list,
            _ => {
                return Err(Failure::Usage(format!(
                    "{source}: expected a list of jobs, or `jobs:` with one"
                )))
            }
        },
        Value::Null => Vec::new(),
        _ => {
            return Err(Failure::Usage(format!(
                "{source}: expected a list of jobs, or `jobs:` with one"
            )))
        }
    };
    for (i, spec) in list.iter().enumerate() {
        if spec["name"].as_str().is_none() {
            return Err(Failure::Usage(format!(
                "{source}: job {} has no name",
                i + 1
            )));
        }
    }
    Ok(list)
}

/// A job's spec fields as they are (no validation), the version and empty fields left out.
pub fn spec_fields(job: &Value) -> Value {
    Value::Object(
        job.as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| {
                JOB_SPEC_FIELDS.contains(&k.as_str()) && *k != "version" && !v.is_null()
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// A spec as the master keeps it, for comparing: only a spec's own fields, validated, the
/// version and the default shell left out. `paused`, when the spec leaves it out, is
/// `keep_paused`.
pub fn canonical(spec: &Value, keep_paused: Option<bool>) -> Result<Value, Failure> {
    let name = spec["name"].as_str().unwrap_or("?").to_owned();
    let Value::Object(mut object) = spec_fields(spec) else {
        return Err(Failure::Usage(format!("job {name}: not an object")));
    };
    if let Some(paused) = keep_paused {
        object.entry("paused").or_insert(Value::Bool(paused));
    }
    let bytes = serde_json::to_vec(&object).map_err(|e| Failure::Usage(e.to_string()))?;
    let parsed = JobSpec::from_user_json(&bytes)
        .map_err(|e| Failure::Usage(format!("job {name}: {}: {}", e.field, e.reason)))?;
    let mut value = serde_json::to_value(&parsed).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Value::Object(object) = &mut value {
        object.remove("version");
        object.remove("legacy");
        if object.get("shell").and_then(Value::as_str) == Some("/bin/sh") {
            object.remove("shell");
        }
    }
    Ok(value)
}

/// The plan that makes the live jobs (`GET /jobs` items) what `desired` says.
pub fn plan(desired: &[Value], live: &[Value], prune: bool) -> Result<Vec<Step>, Failure> {
    let live: BTreeMap<&str, &Value> = live
        .iter()
        .filter_map(|job| Some((job["name"].as_str()?, job)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut steps = Vec::new();
    for spec in desired {
        let name = spec["name"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(name.clone()) {
            return Err(Failure::Usage(format!("job {name} is in the file twice")));
        }
        let Some(current) = live.get(name.as_str()) else {
            canonical(spec, None)?;
            let mut body = spec.clone();
            if let Value::Object(object) = &mut body {
                object.remove("version");
            }
            steps.push(Step::Create { name, body });
            continue;
        };
        // An update keeps the job's pause as it is: pausing and resuming are steps of their own.
        let paused = current["paused"].as_bool();
        let wanted_paused = spec["paused"].as_bool().or(paused);
        let mut kept = spec.clone();
        if let (Value::Object(object), Some(paused)) = (&mut kept, paused) {
            object.insert("paused".into(), Value::Bool(paused));
        }
        let wanted = canonical(&kept, None)?;
        let now = canonical(current, None).unwrap_or(Value::Null);
        if wanted != now {
            let mut changes = Vec::new();
            diff("", &now, &wanted, &mut changes);
            if let Value::Object(object) = &mut kept {
                object.remove("version");
            }
            steps.push(Step::Update {
                name: name.clone(),
                body: kept,
                version: current["version"].as_i64().unwrap_or_default(),
                changes,
            });
        }
        match (paused, wanted_paused) {
            (Some(false), Some(true)) => steps.push(Step::Pause { name }),
            (Some(true), Some(false)) => steps.push(Step::Resume { name }),
            _ if wanted == now => steps.push(Step::Unchanged { name }),
            _ => {}
        }
    }
    if prune {
        for (name, job) in &live {
            if !seen.contains(*name) {
                steps.push(Step::Delete {
                    name: (*name).to_owned(),
                    version: job["version"].as_i64().unwrap_or_default(),
                });
            }
        }
    }
    Ok(steps)
}

/// `field: old → new` for each field that differs, nested fields by their path.
fn diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    let empty = Map::new();
    if let (Some(a), Some(b)) = (old.as_object(), new.as_object()) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let (x, y) = (
                a.get(key).unwrap_or(&Value::Null),
                b.get(key).unwrap_or(&Value::Null),
            );
            if x != y {
                let path = format!("{prefix}{key}");
                if x.is_object() && y.is_object()
                    || x.is_object() && y.is_null()
                    || x.is_null() && y.is_object()
                {
                    let x = if x.is_null() {
                        &Value::Object(empty.clone())
                    } else {
                        x
                    };
                    let y = if y.is_null() {
                        &Value::Object(empty.clone())
                    } else {
                        y
                    };
                    diff(&format!("{path}."), x, y, out);
                } else {
                    out.push(format!("{path}: {} → {}", shown(x), shown(y)));
                }
            }
        }
    } else if old != new {
        out.push(format!(
            "{}: {} → {}",
            prefix.trim_end_matches('.'),
            shown(old),
            shown(new)
        ));
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "∅".to_owned(),
        other => other.to_string(),
    }
}

/// The plan as people read it, and a count of each kind.
pub fn describe(steps: &[Step]) -> String {
    let mut out = String::new();
    let (mut create, mut update, mut delete, mut same, mut toggle) = (0, 0, 0, 0, 0);
    for step in steps {
        match step {
            Step::Create { name, .. } => {
                create += 1;
                let _ = writeln!(out, "+ create  {name}");
            }
            Step::Update { name, changes, .. } => {
                update += 1;
                let _ = writeln!(out, "~ update  {name}");
                for change in changes {
                    let _ = writeln!(out, "      {change}");
                }
            }
            Step::Delete { name, .. } => {
                delete += 1;
                let _ = writeln!(out, "- delete  {name}");
            }
            Step::Pause { name } | Step::Resume { name } => {
                toggle += 1;
                let verb = if matches!(step, Step::Pause { .. }) {
                    "pause"
                } else {
                    "resume"
                };
                let _ = writeln!(out, "~ {verb:<7} {name}");
            }
            Step::Unchanged { .. } => same += 1,
        }
    }
    let _ = write!(
        out,
        "plan: {create} to create, {update} to update, {delete} to delete, {same} unchanged"
    );
    if toggle > 0 {
        let _ = write!(out, ", {toggle} to pause or resume");
    }
    out
}

/// Applies each step in turn; a step the master refuses is reported and the others still
/// run. Returns what was done, line by line, and the first failure, if any.
pub async fn apply(client: &Client, steps: &[Step]) -> (String, Option<Failure>) {
    let mut report = String::new();
    let mut first_failure: Option<Failure> = None;
    for step in steps {
        let (what, name, result) = match step {
            Step::Create { name, body } => (
                "created",
                name,
                client.call(Method::POST, "/jobs", Some(body), None).await,
            ),
            Step::Update {
                name,
                body,
                version,
                ..
            } => (
                "updated",
                name,
                client
                    .call(
                        Method::PUT,
                        &format!("/jobs/{}", encode(name)),
                        Some(body),
                        Some(*version),
                    )
                    .await,
            ),
            Step::Delete { name, version } => (
                "deleted",
                name,
                client
                    .call(
                        Method::DELETE,
                        &format!("/jobs/{}", encode(name)),
                        None,
                        Some(*version),
                    )
                    .await,
            ),
            Step::Pause { name } | Step::Resume { name } => {
                let (what, action) = match step {
                    Step::Pause { .. } => ("paused", "pause"),
                    _ => ("resumed", "resume"),
                };
                let path = format!("/jobs/{}/{action}", encode(name));
                (
                    what,
                    name,
                    client.call(Method::POST, &path, None, None).await,
                )
            }
            Step::Unchanged { .. } => continue,
        };
        match result {
            Ok(_) => {
                let _ = writeln!(report, "{what} {name}");
            }
            Err(Failure::Conflict(message)) => {
                let _ = writeln!(
                    report,
                    "NOT {what} {name}: it changed since the plan was made ({message}); plan again"
                );
                first_failure.get_or_insert(Failure::Conflict(format!("{name}: {message}")));
            }
            Err(failure) => {
                let _ = writeln!(report, "NOT {what} {name}: {failure}");
                first_failure.get_or_insert(failure);
            }
        }
    }
    (report, first_failure)
}
