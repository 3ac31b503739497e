//! Runs in progress, read from the workers' keys as workers write them: the API, the Running
//! page, the job page's list, and a running run's own page and API answer — with the end of
//! its output as its worker sends it to `live` — until the record arrives; then the record.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use cronfleet_common::values::Holder;
use cronfleet_common::{JobName, RunStatus, Trigger};

use crate::outcomes::{record, write};
use crate::pages::text;
use crate::support::{job, Master};

fn holder(job: &str, run_id: &str, worker: &str, claimed_ago: Duration) -> Holder {
    let now = chrono::Utc::now().timestamp_millis();
    let claimed_at = now - i64::try_from(claimed_ago.as_millis()).unwrap();
    Holder {
        worker_id: worker.to_owned(),
        run_id: run_id.to_owned(),
        job_name: job.to_owned(),
        planned_at: claimed_at,
        claimed_at,
        trigger: Trigger::Manual,
        job_version: 1,
        tick_id: format!("manual-{run_id}"),
        attempt: 1,
        source_run_id: Some("run-before".to_owned()),
        request_id: Some(format!("req-{run_id}")),
        requested_by: Some("alice".to_owned()),
    }
}

/// The first "M min S s" on a page, in seconds: the page is rendered some time after the test
/// wrote the claim, so the figure is read, not matched.
fn elapsed_secs(page: &str) -> u64 {
    let at = page.find(" min ").expect("an elapsed time in minutes");
    let minutes: String = page[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let seconds: String = page[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    minutes.parse::<u64>().unwrap() * 60 + seconds.parse::<u64>().unwrap()
}

#[tokio::test]
async fn runs_in_progress_are_listed_everywhere_and_have_their_page_until_they_end() {
    let master = Master::new().await;
    for name in ["long", "overlap"] {
        let reply = master.post("/api/v1/jobs", job(name, "sleep 60")).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let keys = &master.env.keys;
    let long = JobName::parse("long").unwrap();
    let overlap = JobName::parse("overlap").unwrap();
    let old = holder("long", "run-long", "w-1", Duration::from_secs(125));
    let a = holder("overlap", "run-a", "w-2", Duration::from_secs(5));
    let mut etcd = master.env.etcd().await;
    // A forbid run holds the lock; runs that may overlap have a key each; go-crontab locks
    // with a value of its own.
    etcd.put(keys.lock(&long), serde_json::to_vec(&old).unwrap(), None)
        .await
        .unwrap();
    etcd.put(
        keys.run(&overlap, "run-a"),
        serde_json::to_vec(&a).unwrap(),
        None,
    )
    .await
    .unwrap();
    let legacy = JobName::parse("legacy").unwrap();
    etcd.put(keys.lock(&legacy), "10.0.0.9", None)
        .await
        .unwrap();

    let listed = master.get("/api/v1/running").await;
    assert_eq!(listed.status, StatusCode::OK);
    let items = listed.body["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i["runId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(&ids[..2], ["run-long", "run-a"], "oldest claim first");
    assert_eq!(items[0]["workerId"], "w-1");
    assert_eq!(items[0]["trigger"], "manual");
    assert_eq!(items[0]["sourceRunId"], "run-before");
    assert_eq!(items[0]["requestId"], "req-run-long");
    assert_eq!(items[0]["requestedBy"], "alice");
    assert!(items[0]["elapsedMs"].as_i64().unwrap() >= 125_000);
    assert!(items[0]["claimedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[2]["jobName"], "legacy");
    assert_eq!(items[2]["workerId"], serde_json::Value::Null);
    let only = master.get("/api/v1/running?job=overlap").await;
    assert_eq!(only.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        master.get_as("vera", "/api/v1/running").await.status,
        StatusCode::OK,
        "viewers see what runs"
    );

    let (cookie, _) = master.session("otto").await;
    let page = master
        .page(Method::GET, "/running", Some(&cookie), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        "run-long",
        "run-a",
        "a go-crontab worker",
        "manual by alice",
        "Kill…",
    ] {
        assert!(
            text(&page).contains(needle),
            "the Running page lacks {needle}"
        );
    }
    let elapsed = elapsed_secs(text(&page));
    assert!(
        (125..=185).contains(&elapsed),
        "the run claimed 125 s before the page was asked for shows {elapsed} s"
    );
    let job_page = master
        .page(Method::GET, "/jobs/long", Some(&cookie), None)
        .await;
    assert!(text(&job_page).contains("Running now"));
    assert!(text(&job_page).contains("/executions/run-long"));
    let other = master
        .page(Method::GET, "/jobs/overlap", Some(&cookie), None)
        .await;
    assert!(
        !text(&other).contains("run-long"),
        "each job lists its own runs"
    );

    let run_page = master
        .page(Method::GET, "/executions/run-long", Some(&cookie), None)
        .await;
    assert_eq!(run_page.status, StatusCode::OK);
    assert!(text(&run_page).contains(
        r#"<meta http-equiv="refresh" content="3; url=/executions/run-long?from=running">"#
    ));
    assert!(text(&run_page).contains("w-1"));
    assert!(text(&run_page).contains("Nothing yet"));
    let in_progress = master.get("/api/v1/executions/run-long").await;
    assert_eq!(in_progress.status, StatusCode::OK);
    assert_eq!(in_progress.body["status"], "running");
    assert_eq!(in_progress.body["workerId"], "w-1");
    assert_eq!(in_progress.body["output"], "");
    // Its worker sends the end of its output as it goes (as `live` holds it).
    let live = master
        .env
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("live");
    live.insert_one(mongodb::bson::doc! {
        "_id": "run-long", "jobName": "long", "workerId": "w-1", "tail": "step 1\n<b>step 2</b>\n",
        "updatedAt": mongodb::bson::DateTime::now(), "expireAt": mongodb::bson::DateTime::now(),
    })
    .await
    .unwrap();
    let following = master
        .page(Method::GET, "/executions/run-long", Some(&cookie), None)
        .await;
    assert!(
        text(&following).contains("step 1\n&#60;b&#62;step 2&#60;/b&#62;"),
        "{}",
        text(&following)
    );
    let in_progress = master.get("/api/v1/executions/run-long").await;
    assert_eq!(in_progress.body["output"], "step 1\n<b>step 2</b>\n");
    assert!(in_progress.body["outputAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // The run ends: its keys go, and its record arrives a moment later. A page that was
    // following it waits for the record; a page that was not knows no such run yet.
    etcd.delete(keys.lock(&long), None).await.unwrap();
    let between = master
        .page(
            Method::GET,
            "/executions/run-long?from=running",
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(between.status, StatusCode::OK);
    assert!(text(&between).contains("its record is on its way"));
    assert!(text(&between).contains("http-equiv"));
    assert!(text(&between).contains("step 1"), "the output so far stays");
    assert_eq!(
        master
            .page(Method::GET, "/executions/run-long", Some(&cookie), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A link to a worker's run drawn while it ran, opened in that moment: its id was made
    // seconds ago, so the page waits for the record too.
    let just_ended = format!("/executions/{}", uuid::Uuid::now_v7());
    let opened = master
        .page(Method::GET, &just_ended, Some(&cookie), None)
        .await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(text(&opened).contains("its record is on its way"));
    assert!(text(&opened).contains("?from=running"));
    let unknown = format!("/executions/{}", uuid::Uuid::new_v4());
    assert_eq!(
        master
            .page(Method::GET, &unknown, Some(&cookie), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mut ended = record("long", RunStatus::Succeeded);
    ended.run_id = "run-long".to_owned();
    write(&master, &ended).await;
    let done = master
        .page(
            Method::GET,
            "/executions/run-long?from=running",
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(!text(&done).contains("http-equiv"));
    assert!(text(&done).contains("s-succeeded"));
    let record = master.get("/api/v1/executions/run-long").await;
    assert_eq!(
        (
            record.body["status"].as_str(),
            record.body["runId"].as_str()
        ),
        (Some("succeeded"), Some("run-long"))
    );
    assert_eq!(
        master.get("/api/v1/executions/run-nobody").await.status,
        StatusCode::NOT_FOUND
    );
    let gone = master
        .page(Method::GET, "/executions/run-nobody", Some(&cookie), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
