//! Given events, when a command, then events or a refusal.

use cronfleet_common::{JobName, JobSpec};

use super::{apply, decide, Command, DomainError, Event, JobState};

fn name() -> JobName {
    JobName::parse("backup").unwrap()
}

fn spec(command: &str) -> JobSpec {
    let body = format!(r#"{{"name":"backup","command":"{command}","cronExpr":"@daily"}}"#);
    JobSpec::from_user_json(body.as_bytes()).unwrap()
}

fn given(commands: Vec<Command>) -> JobState {
    commands
        .into_iter()
        .fold(JobState::default(), |state, command| {
            let events = decide(&name(), &state, command, None).unwrap();
            events.iter().fold(state, apply)
        })
}

fn when(state: &JobState, command: Command) -> Result<Vec<Event>, DomainError> {
    decide(&name(), state, command, None)
}

fn created() -> JobState {
    given(vec![Command::CreateJob(spec("pg_dump"))])
}

#[test]
fn create_a_new_job() {
    let events = when(&JobState::default(), Command::CreateJob(spec("pg_dump"))).unwrap();
    let mut expected = spec("pg_dump");
    expected.version = 1;
    assert_eq!(events, [Event::JobCreated { after: expected }]);
    let state = events.iter().fold(JobState::default(), apply);
    assert_eq!(state.version, 1);
    assert_eq!(state.spec.unwrap().version, 1);
}

#[test]
fn create_an_existing_job_is_refused() {
    assert_eq!(
        when(&created(), Command::CreateJob(spec("x"))),
        Err(DomainError::AlreadyExists(name()))
    );
}

#[test]
fn create_after_delete_continues_the_stream() {
    let state = given(vec![Command::CreateJob(spec("a")), Command::DeleteJob]);
    let events = when(&state, Command::CreateJob(spec("b"))).unwrap();
    assert!(matches!(&events[..], [Event::JobCreated { after }] if after.version == 3));
}

#[test]
fn create_with_another_name_is_refused() {
    let other =
        JobSpec::from_user_json(br#"{"name":"other","command":"x","cronExpr":"@daily"}"#).unwrap();
    assert!(matches!(
        when(&JobState::default(), Command::CreateJob(other)),
        Err(DomainError::NameMismatch { .. })
    ));
}

#[test]
fn update_records_before_and_after_and_keeps_paused() {
    let state = given(vec![Command::CreateJob(spec("a")), Command::PauseJob]);
    let events = when(&state, Command::UpdateJob(spec("b"))).unwrap();
    let [Event::JobUpdated { before, after }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (before.command.as_str(), after.command.as_str()),
        ("a", "b")
    );
    assert!(after.paused, "an update does not resume a paused job");
    assert_eq!(after.version, 3);
}

#[test]
fn update_to_the_same_spec_changes_nothing() {
    assert_eq!(
        when(&created(), Command::UpdateJob(spec("pg_dump"))),
        Ok(vec![])
    );
}

#[test]
fn update_kill_run_pause_resume_delete_of_a_missing_job_are_refused() {
    let deleted = given(vec![Command::CreateJob(spec("a")), Command::DeleteJob]);
    for state in [JobState::default(), deleted] {
        for command in [
            Command::UpdateJob(spec("b")),
            Command::DeleteJob,
            Command::PauseJob,
            Command::ResumeJob,
            Command::RunJobNow {
                request_id: "r".into(),
                source_run_id: None,
            },
            Command::KillJob {
                request_id: "k".into(),
            },
        ] {
            let label = command.name();
            assert_eq!(
                when(&state, command),
                Err(DomainError::NotFound(name())),
                "{label}"
            );
        }
    }
}

#[test]
fn pause_a_paused_job_and_resume_a_running_one_are_refused() {
    let paused = given(vec![Command::CreateJob(spec("a")), Command::PauseJob]);
    assert_eq!(
        when(&paused, Command::PauseJob),
        Err(DomainError::AlreadyPaused(name()))
    );
    assert_eq!(
        when(&created(), Command::ResumeJob),
        Err(DomainError::NotPaused(name()))
    );
}

#[test]
fn pause_then_resume() {
    let paused = given(vec![Command::CreateJob(spec("a")), Command::PauseJob]);
    assert!(paused.spec.as_ref().unwrap().paused);
    let events = when(&paused, Command::ResumeJob).unwrap();
    let resumed = events.iter().fold(paused, apply);
    assert!(!resumed.spec.unwrap().paused);
    assert_eq!(resumed.version, 3);
}

#[test]
fn delete_records_what_was_deleted() {
    let events = when(&created(), Command::DeleteJob).unwrap();
    assert!(matches!(&events[..], [Event::JobDeleted { before }] if before.command == "pg_dump"));
    assert_eq!(events.iter().fold(created(), apply).spec, None);
}

#[test]
fn run_now_and_kill_move_the_stream_but_not_the_version_editors_hold() {
    let state = given(vec![
        Command::CreateJob(spec("a")),
        Command::RunJobNow {
            request_id: "r1".into(),
            source_run_id: None,
        },
        Command::KillJob {
            request_id: "k1".into(),
        },
    ]);
    assert_eq!(state.version, 3);
    assert_eq!(state.spec_version(), 1);
    assert_eq!(state.spec.as_ref().unwrap().version, 1);
    // An editor who loaded version 1 before the run-now and the kill still saves.
    let events = decide(&name(), &state, Command::UpdateJob(spec("b")), Some(1)).unwrap();
    assert!(matches!(&events[..], [Event::JobUpdated { after, .. }] if after.version == 4));
    let after = events.iter().fold(state, apply);
    assert_eq!(after.spec_version(), 4);
    assert_eq!(
        decide(&name(), &after, Command::PauseJob, Some(3)),
        Err(DomainError::VersionConflict {
            name: name(),
            expected: 3,
            current: 4
        })
    );
}

#[test]
fn a_stale_expected_version_is_a_conflict() {
    let state = given(vec![Command::CreateJob(spec("a")), Command::PauseJob]);
    assert_eq!(
        decide(&name(), &state, Command::ResumeJob, Some(1)),
        Err(DomainError::VersionConflict {
            name: name(),
            expected: 1,
            current: 2
        })
    );
    assert!(decide(&name(), &state, Command::ResumeJob, Some(2)).is_ok());
}

#[test]
fn events_round_trip_through_json_with_their_type() {
    let events = when(&created(), Command::UpdateJob(spec("b"))).unwrap();
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["type"], "JobUpdated");
    assert_eq!(json["after"]["cronExpr"], "@daily");
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, events[0]);
}

#[test]
fn an_outside_change_is_recorded_once_and_a_delete_ends_the_job() {
    let state = created();
    let theirs = spec("echo theirs");
    let outside = |spec: Option<JobSpec>| Command::RecordOutsideChange {
        seen: serde_json::json!({"command": "echo theirs"}),
        spec,
    };
    let events = when(&state, outside(Some(theirs.clone()))).unwrap();
    let Event::JobChangedOutsideMaster { before, after, .. } = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(
        before.as_ref().unwrap().command,
        state.spec.as_ref().unwrap().command
    );
    assert_eq!(after.as_ref().unwrap().version, 2);
    let changed = apply(state, &events[0]);
    assert_eq!(changed.spec.as_ref().unwrap().command, "echo theirs");
    assert!(
        when(&changed, outside(Some(theirs))).unwrap().is_empty(),
        "the same value seen again is no change"
    );
    let deleted = apply(changed.clone(), &when(&changed, outside(None)).unwrap()[0]);
    assert_eq!(deleted.spec, None);
    assert!(when(&deleted, outside(None)).unwrap().is_empty());
}
