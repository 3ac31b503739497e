//! Run policies on the admin pages: the job form (inputs, errors beside them, an edit
//! prefilled), the job page (the policies, the warning while no worker matches, attempts
//! grouped under their tick), the execution page and the workers' labels.

use crate::pages::text;
use crate::policies::with_policies;
use crate::support::Master;
use axum::http::{Method, StatusCode};
use cronfleet_common::{ExecutionRecord, RunStatus, Trigger};
use serde_json::{json, Value};

/// Registers a cronfleet worker with `labels` under the test's prefix.
async fn register(master: &Master, id: &str, labels: Value) {
    let registration = json!({
        "id": id, "hostname": "h", "pid": 1, "version": "0", "startedAt": "2026-01-01T00:00:00Z",
        "slots": 4, "running": [], "heartbeatAt": "2026-01-01T00:00:05Z", "holds": [],
        "labels": labels,
    });
    let mut etcd = master.env.etcd().await;
    etcd.put(master.env.keys.worker(id), registration.to_string(), None)
        .await
        .unwrap();
}

/// Form fields, as typed.
type Fields<'a> = &'a [(&'a str, &'a str)];

fn form<'a>(csrf: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("csrf", csrf),
        ("name", "formed"),
        ("command", "make"),
        ("cronExpr", "@daily"),
        ("intent", "save"),
    ];
    fields.extend_from_slice(extra);
    fields
}

#[tokio::test]
async fn the_form_round_trips_policies_and_prefills_them_for_an_edit() {
    let master = Master::new().await;
    let (cookie, csrf) = master.session("alice").await;
    let policies = [
        ("workingDir", "/srv/app"),
        ("selector", "zone=eu\r\ndisk=ssd|nvme"),
        ("mode", "one"),
        ("retryMaxAttempts", "4"),
        ("retryInitialDelaySecs", "5"),
        ("retryMultiplier", "1.5"),
        ("retryFailedToStart", "on"),
    ];
    let fields = form(&csrf, &policies);
    let saved = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&fields))
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", text(&saved));
    let job = master.get("/api/v1/jobs/formed").await.body;
    assert_eq!(
        job["selector"],
        json!({"disk": ["ssd", "nvme"], "zone": "eu"})
    );
    assert_eq!(
        job["retry"],
        json!({"maxAttempts": 4, "initialDelaySecs": 5, "maxDelaySecs": 3600,
               "multiplier": 1.5, "alsoOn": ["failed_to_start"]})
    );
    let edit = master
        .page(Method::GET, "/jobs/formed/edit", Some(&cookie), None)
        .await;
    for prefilled in [
        r#"name="workingDir" value="/srv/app""#,
        ">disk=ssd|nvme\nzone=eu\n</textarea>",
        r#"name="retryMaxAttempts" value="4""#,
        r#"name="retryMaxDelaySecs" value="3600""#,
        r#"name="retryMultiplier" value="1.5""#,
        r#"name="retryFailedToStart" value="on" checked"#,
        r#"<option value="one" selected>"#,
    ] {
        assert!(
            text(&edit).contains(prefilled),
            "edit form lacks {prefilled}"
        );
    }
    assert!(!text(&edit).contains(r#"name="retryAbandoned" value="on" checked"#));
}

#[tokio::test]
async fn the_form_shows_policy_errors_beside_their_inputs_and_saves_nothing() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", with_policies("formed")).await;
    let (cookie, csrf) = master.session("alice").await;
    let cases: [(Fields, &str, &str); 4] = [
        (
            &[("selector", "zone=e u")],
            "selector-error",
            "selector.zone:",
        ),
        (
            &[("retryMaxAttempts", "1")],
            "maxAttempts-error",
            "retry.maxAttempts:",
        ),
        (
            &[("retryMaxAttempts", "2"), ("mode", "all")],
            "retry-error",
            "retry: is not available",
        ),
        (&[("workingDir", "srv")], "workingDir-error", "workingDir:"),
    ];
    for (extra, error_id, message) in cases {
        let fields = form(&csrf, extra);
        let refused = master
            .page(
                Method::POST,
                "/jobs/formed/edit",
                Some(&cookie),
                Some(&fields),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{extra:?}"
        );
        let beside = format!(r#"<p class="field-error" id="{error_id}">{message}"#);
        assert!(text(&refused).contains(&beside), "{extra:?}: no {beside}");
    }
    assert_eq!(master.get("/api/v1/jobs/formed").await.body["version"], 1);
}

#[tokio::test]
async fn the_job_page_warns_while_no_live_worker_matches_its_selector() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", with_policies("picky")).await;
    register(&master, "w-us", json!({"zone": "us", "disk": "ssd"})).await;
    register(&master, "w-eu-hdd", json!({"zone": "eu", "disk": "hdd"})).await;
    let (cookie, _) = master.session("vera").await;
    let warning = "No live worker matches this job's selector (disk in (ssd, nvme), zone=eu); \
                   its ticks are recorded as missed with reason no_matching_worker";
    let page = master
        .page(Method::GET, "/jobs/picky", Some(&cookie), None)
        .await;
    assert!(text(&page).contains(warning), "{}", text(&page));
    for shown in [
        "<dt>Working directory</dt><dd>/srv/app</dd>",
        "<dt>Runs per tick</dt><dd>one: one matching worker runs each tick</dd>",
        "up to 3 attempts of a tick whose run ended failed, timed_out, abandoned: 10 s before",
    ] {
        assert!(text(&page).contains(shown), "job page lacks {shown}");
    }
    register(&master, "w-eu-nvme", json!({"zone": "eu", "disk": "nvme"})).await;
    let matched = master
        .page(Method::GET, "/jobs/picky", Some(&cookie), None)
        .await;
    assert!(!text(&matched).contains("No live worker matches"));
    let workers = master
        .page(Method::GET, "/workers", Some(&cookie), None)
        .await;
    assert!(text(&workers).contains("<code>disk=nvme</code> <code>zone=eu</code>"));
    let api = master.get("/api/v1/workers").await.body;
    let labels: Vec<&Value> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["labels"])
        .collect();
    assert!(labels.contains(&&json!({"zone": "us", "disk": "ssd"})));
}

fn attempt(run_id: &str, attempt: u32, status: RunStatus, start: i64) -> ExecutionRecord {
    ExecutionRecord {
        run_id: run_id.into(),
        job_name: "retried".into(),
        command: "make".into(),
        err: String::new(),
        output: format!("attempt {attempt}\n"),
        plan_time: 1_764_072_000_000,
        schedule_time: 1_764_072_000_000,
        start_time: start,
        end_time: start + 500,
        worker_id: format!("w-{attempt}"),
        status,
        exit_code: Some(i32::from(status != RunStatus::Succeeded)),
        signal: None,
        output_bytes: 10,
        truncated: false,
        fencing_token: 7,
        job_version: 1,
        trigger: Trigger::Schedule,
        reason: None,
        tick_id: Some("schedule-1764072000000".into()),
        attempt: Some(attempt),
        source_run_id: None,
        will_retry: None,
        request_id: None,
        requested_by: None,
        killed_by: None,
    }
}

#[tokio::test]
async fn attempts_show_under_their_tick_on_the_job_and_execution_pages() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", with_policies("retried")).await;
    let first = attempt("run-a1", 1, RunStatus::Failed, 1_764_072_000_010);
    let second = attempt("run-a2", 2, RunStatus::Succeeded, 1_764_072_011_000);
    let log = master
        .env
        .mongo()
        .await
        .collection::<ExecutionRecord>("log");
    log.insert_many([&first, &second]).await.unwrap();
    let api = master.get("/api/v1/jobs/retried/executions").await.body;
    assert_eq!(
        (&api["items"][0]["tickId"], &api["items"][0]["attempt"]),
        (&json!("schedule-1764072000000"), &json!(2))
    );
    let (cookie, _) = master.session("vera").await;
    let job = master
        .page(Method::GET, "/jobs/retried", Some(&cookie), None)
        .await;
    let heading = "tick schedule-1764072000000, planned 2025-11-25 12:00:00 UTC: 2 attempts";
    let page = text(&job);
    let (at_heading, at_first, at_second) = (
        page.find(heading).expect("tick heading"),
        page.find("/executions/run-a1").unwrap(),
        page.find("/executions/run-a2").unwrap(),
    );
    assert!(
        at_heading < at_first && at_first < at_second,
        "attempts in order under their tick"
    );
    assert_eq!(page.matches(r#"<tr class="attempt">"#).count(), 2);
    let execution = master
        .page(Method::GET, "/executions/run-a2", Some(&cookie), None)
        .await;
    for shown in [
        "<dt>Tick</dt><dd><code>schedule-1764072000000</code></dd>",
        "<dt>Attempt</dt><dd>2</dd>",
        "Records of this tick",
        r#"<a href="/executions/run-a1">1</a>"#,
        "2 (this run)",
    ] {
        assert!(
            text(&execution).contains(shown),
            "execution page lacks {shown}"
        );
    }
}
