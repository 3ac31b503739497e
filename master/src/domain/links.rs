//! The links between jobs and to channels, checked when a job is written or deleted: every
//! channel a job notifies exists, every job it chains to exists, no chain leads back to where
//! it started (a run that sets off itself, directly or through others, would never stop), and
//! a job others chain to is not deleted from under them. Pure: the store loads [`Links`].

use std::collections::{BTreeMap, BTreeSet};

use cronfleet_common::{ChannelName, JobName, JobSpec};

use super::{Command, DomainError};

/// What a write is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The chain targets (`onSuccess` and `onFailure` together) of every live job that has any.
    pub chains: BTreeMap<JobName, Vec<JobName>>,
    /// Every live job's name, for chain targets.
    pub jobs: BTreeSet<JobName>,
    /// Every channel.
    pub channels: BTreeSet<ChannelName>,
}

impl Links {
    /// The live jobs that chain to `job`.
    pub fn upstream(&self, job: &JobName) -> Vec<JobName> {
        self.chains
            .iter()
            .filter(|(from, targets)| *from != job && targets.contains(job))
            .map(|(from, _)| from.clone())
            .collect()
    }
}

/// Whether `command` needs [`Links`] to be decided.
pub fn needs_links(command: &Command) -> bool {
    matches!(
        command,
        Command::CreateJob(_) | Command::UpdateJob(_) | Command::DeleteJob
    )
}

/// Checks `command` on job `name` against `links`.
pub fn check_links(name: &JobName, command: &Command, links: &Links) -> Result<(), DomainError> {
    match command {
        Command::CreateJob(spec) | Command::UpdateJob(spec) => check_spec(name, spec, links),
        Command::DeleteJob => {
            let upstream = links.upstream(name);
            if upstream.is_empty() {
                Ok(())
            } else {
                Err(DomainError::ChainedFrom {
                    job: name.clone(),
                    upstream,
                })
            }
        }
        _ => Ok(()),
    }
}

fn check_spec(name: &JobName, spec: &JobSpec, links: &Links) -> Result<(), DomainError> {
    for (i, rule) in spec.notify.iter().enumerate() {
        if !links.channels.contains(&rule.channel) {
            return Err(DomainError::Link {
                field: format!("notify[{i}].channel"),
                reason: format!("no channel is named {}", rule.channel),
            });
        }
    }
    for (field, targets) in [
        ("onSuccess", &spec.on_success),
        ("onFailure", &spec.on_failure),
    ] {
        for (i, target) in targets.iter().enumerate() {
            if target != name && !links.jobs.contains(target) {
                return Err(DomainError::Link {
                    field: format!("{field}[{i}]"),
                    reason: format!("no job is named {target}"),
                });
            }
            if let Some(path) = path_back(name, target, spec, links) {
                let shown: Vec<&str> = path.iter().map(JobName::as_str).collect();
                return Err(DomainError::Link {
                    field: format!("{field}[{i}]"),
                    reason: format!(
                        "would form a cycle: {name} → {}; a chain must not lead back to a job in it",
                        shown.join(" → ")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The path from `start` back to `name` over the chains as they would be with `spec` written,
/// if there is one (`start` first, `name` last).
fn path_back(
    name: &JobName,
    start: &JobName,
    spec: &JobSpec,
    links: &Links,
) -> Option<Vec<JobName>> {
    let targets_of = |job: &JobName| -> Vec<JobName> {
        if job == name {
            spec.on_success
                .iter()
                .chain(&spec.on_failure)
                .cloned()
                .collect()
        } else {
            links.chains.get(job).cloned().unwrap_or_default()
        }
    };
    // Depth-first, remembering each job's parent to give the path back.
    let mut parent: BTreeMap<JobName, Option<JobName>> = BTreeMap::new();
    parent.insert(start.clone(), None);
    let mut stack = vec![start.clone()];
    while let Some(job) = stack.pop() {
        if &job == name {
            let mut path = vec![job.clone()];
            let mut at = job;
            while let Some(Some(up)) = parent.get(&at) {
                path.push(up.clone());
                at = up.clone();
            }
            path.reverse();
            return Some(path);
        }
        for next in targets_of(&job) {
            if !parent.contains_key(&next) {
                parent.insert(next.clone(), Some(job.clone()));
                stack.push(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> JobName {
        JobName::parse(name).unwrap()
    }

    fn spec(name: &str, on_success: &[&str], on_failure: &[&str]) -> JobSpec {
        let mut spec = JobSpec::from_user_json(
            format!(r#"{{"name":"{name}","command":"true","cronExpr":"@every 1h"}}"#).as_bytes(),
        )
        .unwrap();
        spec.on_success = on_success.iter().map(|n| job(n)).collect();
        spec.on_failure = on_failure.iter().map(|n| job(n)).collect();
        spec
    }

    fn links(edges: &[(&str, &[&str])], jobs: &[&str]) -> Links {
        Links {
            chains: edges
                .iter()
                .map(|(from, to)| (job(from), to.iter().map(|n| job(n)).collect()))
                .collect(),
            jobs: jobs.iter().map(|n| job(n)).collect(),
            channels: BTreeSet::new(),
        }
    }

    fn field_of(result: Result<(), DomainError>) -> String {
        match result {
            Err(DomainError::Link { field, .. }) => field,
            other => panic!("expected a link error, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_back_to_itself_is_refused_naming_the_field_and_the_path() {
        let world = links(&[("b", &["c"]), ("c", &["a"])], &["a", "b", "c"]);
        let command = Command::UpdateJob(spec("a", &[], &["b"]));
        let error = check_links(&job("a"), &command, &world).unwrap_err();
        let DomainError::Link { field, reason } = error else {
            panic!("{error:?}")
        };
        assert_eq!(field, "onFailure[0]");
        assert!(reason.contains("a → b → c → a"), "{reason}");
        let myself = Command::CreateJob(spec("a", &["a"], &[]));
        assert_eq!(
            field_of(check_links(&job("a"), &myself, &world)),
            "onSuccess[0]"
        );
    }

    #[test]
    fn a_chain_to_a_job_that_merely_shares_targets_is_no_cycle() {
        let world = links(&[("b", &["d"]), ("c", &["d"])], &["b", "c", "d"]);
        let command = Command::CreateJob(spec("a", &["b", "c"], &["d"]));
        assert_eq!(check_links(&job("a"), &command, &world), Ok(()));
    }

    #[test]
    fn unknown_targets_and_channels_are_refused() {
        let world = links(&[], &["b"]);
        let command = Command::CreateJob(spec("a", &["b", "nope"], &[]));
        assert_eq!(
            field_of(check_links(&job("a"), &command, &world)),
            "onSuccess[1]"
        );
        let mut notifying = spec("a", &[], &[]);
        notifying.notify = cronfleet_common::NotifyRule::list_from_json(
            serde_json::json!([{"channel": "ops", "on": ["failure"]}]),
        )
        .unwrap();
        let command = Command::CreateJob(notifying);
        assert_eq!(
            field_of(check_links(&job("a"), &command, &world)),
            "notify[0].channel"
        );
    }

    #[test]
    fn a_job_others_chain_to_is_not_deleted() {
        let world = links(&[("b", &["a"]), ("c", &["a"])], &["a", "b", "c"]);
        assert_eq!(
            check_links(&job("a"), &Command::DeleteJob, &world),
            Err(DomainError::ChainedFrom {
                job: job("a"),
                upstream: vec![job("b"), job("c")],
            })
        );
        assert_eq!(check_links(&job("b"), &Command::DeleteJob, &world), Ok(()));
    }
}
