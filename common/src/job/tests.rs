use super::*;

fn spec_json(extra: &str) -> String {
    format!(r#"{{"name":"backup","command":"pg_dump app","cronExpr":"0 3 * * *"{extra}}}"#)
}

#[test]
fn plain_go_crontab_job_is_accepted_from_etcd() {
    let spec = JobSpec::from_etcd_value(
        br#"{"name":"job1","command":"echo hello","cronExpr":"*/5 * * * * * *"}"#,
    )
    .unwrap();
    assert_eq!(spec.name.as_str(), "job1");
    assert_eq!(spec.timezone, Tz::UTC);
    assert_eq!(spec.concurrency, Concurrency::Forbid);
    assert_eq!(
        (spec.paused, spec.version, spec.timeout_secs),
        (false, 0, None)
    );
}

#[test]
fn etcd_values_tolerate_unknown_fields_but_users_do_not() {
    let body = spec_json(r#","uid":0"#);
    assert!(JobSpec::from_etcd_value(body.as_bytes()).is_ok());
    let err = JobSpec::from_user_json(body.as_bytes()).unwrap_err();
    assert_eq!(err.field, "uid");
}

#[test]
fn all_fields_round_trip_through_etcd() {
    let body = spec_json(
        r#","timezone":"Europe/Berlin","timeoutSecs":30,"concurrency":"replace","paused":true,
           "description":"nightly dump","env":{"PGHOST":"db"},"version":7"#,
    );
    let spec = JobSpec::from_user_json(body.as_bytes()).unwrap();
    assert_eq!(spec.timezone.name(), "Europe/Berlin");
    assert_eq!(spec.timeout_secs, Some(30));
    assert_eq!(spec.concurrency, Concurrency::Replace);
    let again = JobSpec::from_user_json(&spec.to_etcd_value()).unwrap();
    assert_eq!(again, spec);
    let value: Value = serde_json::from_slice(&spec.to_etcd_value()).unwrap();
    assert_eq!(value["cronExpr"], "0 3 * * *");
    assert_eq!(value["timeoutSecs"], 30);
}

#[test]
fn starting_deadline_defaults_to_the_next_tick_or_a_minute() {
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let every_second =
        JobSpec::from_user_json(br#"{"name":"a","command":"x","cronExpr":"* * * * * *"}"#).unwrap();
    let planned = at("2026-11-26T10:00:05Z");
    assert_eq!(
        every_second.start_deadline(planned),
        at("2026-11-26T10:00:06Z")
    );
    let nightly = JobSpec::from_user_json(spec_json("").as_bytes()).unwrap();
    let planned = at("2026-11-26T03:00:00Z");
    assert_eq!(nightly.start_deadline(planned), at("2026-11-26T03:01:00Z"));
    let set =
        JobSpec::from_user_json(spec_json(r#","startingDeadlineSecs":600"#).as_bytes()).unwrap();
    assert_eq!(set.start_deadline(planned), at("2026-11-26T03:10:00Z"));
    let value: Value = serde_json::from_slice(&set.to_etcd_value()).unwrap();
    assert_eq!(value["startingDeadlineSecs"], 600);
}

#[test]
fn schedule_is_read_in_the_job_time_zone() {
    let spec =
        JobSpec::from_user_json(spec_json(r#","timezone":"Asia/Tokyo""#).as_bytes()).unwrap();
    assert_eq!(spec.schedule().timezone().name(), "Asia/Tokyo");
}

#[test]
fn names_are_checked() {
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        "a/b",
        "../etc",
        "..",
        ".",
        " lead",
        "trail ",
        "tab\there",
        "non\u{a0}breaking",
        "a\nb",
        "bell\u{7}",
        "c1\u{85}",
        "zero\u{200b}width",
        "evil\u{202e}txt.exe",
        "isolate\u{2066}x",
        "bom\u{feff}",
        long.as_str(),
    ] {
        assert_eq!(JobName::parse(bad).unwrap_err().field, "name", "{bad:?}");
    }
    let longest_in_letters = "é".repeat(MAX_NAME_LEN);
    for good in [
        "a",
        "Job-1.daily_report",
        "job name",
        "jöb",
        "夜间备份",
        "Nightly backup — café (v2) #1 100% <ok> & \"quoted\"?",
        "a..b",
        "...",
        &"x".repeat(MAX_NAME_LEN),
        &longest_in_letters,
    ] {
        assert!(JobName::parse(good).is_ok(), "{good:?}");
    }
}

#[test]
fn bad_fields_are_named() {
    let huge = format!(
        r#"{{"name":"a","command":"{}","cronExpr":"@daily"}}"#,
        "x".repeat(MAX_COMMAND_BYTES + 1)
    );
    let cases: Vec<(String, &str)> = vec![
        (huge, "command"),
        (
            r#"{"name":"a","command":"  ","cronExpr":"@daily"}"#.to_owned(),
            "command",
        ),
        (r#"{"command":"x","cronExpr":"@daily"}"#.to_owned(), "name"),
        (r#"{"name":"a","cronExpr":"@daily"}"#.to_owned(), "command"),
        (r#"{"name":"a","command":"x"}"#.to_owned(), "cronExpr"),
        (
            r#"{"name":" a b","command":"x","cronExpr":"@daily"}"#.to_owned(),
            "name",
        ),
        (
            r#"{"name":7,"command":"x","cronExpr":"@daily"}"#.to_owned(),
            "name",
        ),
        (spec_json(r#","timezone":"Mars/Olympus""#), "timezone"),
        (
            r#"{"name":"a","command":"x","cronExpr":"99 * * * *"}"#.to_owned(),
            "cronExpr",
        ),
        (spec_json(r#","timeoutSecs":"soon""#), "timeoutSecs"),
        (spec_json(r#","timeoutSecs":-1"#), "timeoutSecs"),
        (spec_json(r#","timeoutSecs":999999999"#), "timeoutSecs"),
        (
            spec_json(r#","startingDeadlineSecs":0"#),
            "startingDeadlineSecs",
        ),
        (
            spec_json(r#","startingDeadlineSecs":86401"#),
            "startingDeadlineSecs",
        ),
        (
            spec_json(r#","startingDeadlineSecs":"1m""#),
            "startingDeadlineSecs",
        ),
        (spec_json(r#","concurrency":"sometimes""#), "concurrency"),
        (spec_json(r#","paused":"yes""#), "paused"),
        (
            spec_json(&format!(
                r#","description":"{}""#,
                "d".repeat(MAX_DESCRIPTION_BYTES + 1)
            )),
            "description",
        ),
        (
            spec_json(r#","env":{"CRON_RUN_ID":"x"}"#),
            "env.CRON_RUN_ID",
        ),
        (spec_json(r#","env":{"1BAD":"x"}"#), "env.1BAD"),
        (spec_json(r#","description":"a\u0000b""#), "description"),
        (
            spec_json(r#","env":{"LD_PRELOAD":"/tmp/x.so"}"#),
            "env.LD_PRELOAD",
        ),
        (
            spec_json(r#","env":{"BASH_ENV":"/tmp/rc"}"#),
            "env.BASH_ENV",
        ),
        (
            spec_json(r#","env":{"GLIBC_TUNABLES":"x"}"#),
            "env.GLIBC_TUNABLES",
        ),
        (spec_json(r#","env":{"A-B":"x"}"#), "env.A-B"),
        ("[1,2]".to_owned(), "body"),
        ("{".to_owned(), "body"),
    ];
    for (body, field) in cases {
        let err = JobSpec::from_user_json(body.as_bytes()).unwrap_err();
        assert_eq!(err.field, field, "{}: {err}", &body[..body.len().min(80)]);
    }
}

#[test]
fn cron_errors_keep_the_cron_field_in_the_reason() {
    let err = JobSpec::from_user_json(br#"{"name":"a","command":"x","cronExpr":"* 25 * * *"}"#)
        .unwrap_err();
    assert_eq!(err.field, "cronExpr");
    assert!(
        err.reason.starts_with("hour: 25 is out of range 0-23"),
        "{}",
        err.reason
    );
}

#[test]
fn loader_and_shell_variables_are_refused_from_users_but_read_from_etcd() {
    let body = br#"{"name":"a","command":"x","cronExpr":"@daily","env":{"LD_PRELOAD":"/tmp/x.so","PGHOST":"db"}}"#;
    let err = JobSpec::from_user_json(body).unwrap_err();
    assert!(err.reason.contains("dynamic loader"), "{}", err.reason);
    // A worker still loads the job (and drops the variable when it runs it).
    let spec = JobSpec::from_etcd_value(body).unwrap();
    assert_eq!(spec.env.len(), 2);
    for name in [
        "LD_LIBRARY_PATH",
        "ENV",
        "IFS",
        "SHELLOPTS",
        "BASH_FUNC_ls%%",
        "PS4",
    ] {
        assert!(steers_process_start(name), "{name}");
    }
    for name in ["PATH", "HOME", "PGHOST", "ENVIRONMENT", "LDAP_URI"] {
        assert!(!steers_process_start(name), "{name}");
    }
}

#[test]
fn a_go_crontab_value_is_read_in_the_local_zone_under_bash() {
    let value = br#"{"name":"job1","command":"[[ 1 -eq 1 ]]","cronExpr":"0 3 * * *"}"#;
    let spec = JobSpec::from_etcd_value_in(value, chrono_tz::Asia::Tokyo).unwrap();
    assert!(spec.legacy);
    assert_eq!(spec.timezone, chrono_tz::Asia::Tokyo);
    assert_eq!(spec.shell(), LEGACY_SHELL);
    let after = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(
        spec.schedule().next_after(after).unwrap().to_rfc3339(),
        "2026-01-01T18:00:00+00:00",
        "03:00 in Tokyo"
    );
    let ours = JobSpec::from_etcd_value_in(
        spec_json(r#","version":2"#).as_bytes(),
        chrono_tz::Asia::Tokyo,
    )
    .unwrap();
    assert!(!ours.legacy);
    assert_eq!(ours.timezone, Tz::UTC);
    assert_eq!(ours.shell(), DEFAULT_SHELL);
}

#[test]
fn a_job_may_name_its_shell_as_an_absolute_path() {
    let spec = JobSpec::from_user_json(spec_json(r#","shell":"/bin/bash""#).as_bytes()).unwrap();
    assert_eq!(spec.shell(), "/bin/bash");
    let back = JobSpec::from_etcd_value(&spec.to_etcd_value()).unwrap();
    assert_eq!(back.shell.as_deref(), Some("/bin/bash"));
    for bad in [r#""bash""#, r#""/bin/../tmp/x""#, r#""/bin/sh -e""#, "5"] {
        let err = JobSpec::from_user_json(spec_json(&format!(r#","shell":{bad}"#)).as_bytes())
            .unwrap_err();
        assert_eq!(err.field, "shell", "{bad}");
    }
}

#[test]
fn a_go_crontab_job_keeps_its_shape_through_the_master_and_back_to_etcd() {
    let value = br#"{"name":"old job","command":"echo hi","cronExpr":"*/5 * * * *"}"#;
    let spec = JobSpec::from_etcd_value(value).unwrap();
    let stored = serde_json::to_value(&spec).unwrap();
    assert_eq!(stored["legacy"], true, "events and the read model keep it");
    let back: JobSpec = serde_json::from_value(stored).unwrap();
    assert!(back.legacy);
    assert_eq!(
        serde_json::from_slice::<Value>(&back.to_etcd_value()).unwrap(),
        serde_json::from_slice::<Value>(value).unwrap(),
        "etcd gets go-crontab's three fields back"
    );
    let users = JobSpec::from_user_json(spec_json(r#","legacy":true"#).as_bytes()).unwrap_err();
    assert_eq!(
        users.field, "legacy",
        "users cannot make a job go-crontab's"
    );
    let ours = JobSpec::from_etcd_value(spec_json(r#","version":3"#).as_bytes()).unwrap();
    assert!(serde_json::to_value(&ours).unwrap().get("legacy").is_none());
}

#[test]
fn run_policies_round_trip_and_are_checked_together() {
    let spec = JobSpec::from_user_json(
        spec_json(
            r#","workingDir":"/srv","selector":{"zone":"eu","disk":["ssd","nvme"]},"mode":"one","retry":{"maxAttempts":3,"alsoOn":["abandoned"]}"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let back = JobSpec::from_etcd_value(&spec.to_etcd_value()).unwrap();
    assert_eq!(back, spec);
    assert_eq!(back.retry.as_ref().map(|r| r.max_attempts), Some(3));
    let plain = JobSpec::from_user_json(spec_json("").as_bytes()).unwrap();
    let value: Value = serde_json::from_slice(&plain.to_etcd_value()).unwrap();
    for absent in ["workingDir", "selector", "mode", "retry"] {
        assert!(
            value.get(absent).is_none(),
            "{absent} is left out when unset"
        );
    }
    for (extra, field) in [
        (r#","mode":"every""#, "mode"),
        (r#","mode":"all","retry":{"maxAttempts":2}"#, "retry"),
        (r#","workingDir":"tmp""#, "workingDir"),
        (r#","selector":{"zone":"a b"}"#, "selector.zone"),
        (r#","retry":{"maxAttempts":30}"#, "retry.maxAttempts"),
    ] {
        let err = JobSpec::from_user_json(spec_json(extra).as_bytes());
        assert_eq!(err.map(drop).unwrap_err().field, field, "{extra}");
    }
}
