//! A go-crontab fleet beside cronfleet: its records in the shared `cron.log` and its worker
//! registrations read back through the API and the pages.

use axum::http::{Method, StatusCode};
use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::Value;

use crate::pages::text;
use crate::support::{job, Master};

/// A record as go-crontab's log sink inserts it: its eight fields and nothing else.
fn go_crontab(id: ObjectId, job: &str, err: &str, start: i64) -> Document {
    doc! {
        "_id": id, "jobName": job, "command": "echo hi", "err": err, "output": "hi\n",
        "planTime": start - 400, "scheduleTime": start - 390, "startTime": start, "endTime": start + 5,
    }
}

/// A record as a cronfleet worker writes it (only the fields this test looks at differ).
fn cronfleet(run_id: &str, job: &str, start: i64) -> Document {
    doc! {
        "runId": run_id, "jobName": job, "command": "echo hi", "err": "", "output": "hi\n",
        "planTime": start, "scheduleTime": start, "startTime": start, "endTime": start + 5,
        "workerId": "w-1", "status": "succeeded", "exitCode": 0, "signal": null,
        "outputBytes": 3_i64, "truncated": false, "fencingToken": 7_i64, "jobVersion": 1_i64,
        "trigger": "schedule",
    }
}

fn run_ids(reply: &crate::support::Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn go_crontab_records_are_runs_beside_cronfleet_records_and_page_through_ties() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("mixed", "echo hi")).await;
    let log = master.env.mongo().await.collection::<Document>("log");
    let ids: Vec<ObjectId> = (0..3).map(|_| ObjectId::new()).collect();
    log.insert_many([
        cronfleet("r-b", "mixed", 3_000),
        go_crontab(ids[0], "mixed", "", 3_000),
        cronfleet("r-a", "mixed", 3_000),
        go_crontab(ids[1], "mixed", "exit status 4", 3_000),
        go_crontab(ids[2], "mixed", "signal: killed", 2_000),
        // Unreadable: no ObjectId to name it by and no run id.
        doc! { "_id": "odd", "jobName": "mixed", "startTime": 2_500_i64 },
    ])
    .await
    .unwrap();

    let legacy = |i: usize| format!("legacy-{}", ids[i].to_hex());
    let mut seen = Vec::new();
    let mut path = "/api/v1/jobs/mixed/executions?limit=2".to_owned();
    loop {
        let reply = master.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        seen.extend(run_ids(&reply));
        match reply.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/jobs/mixed/executions?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "r-b".to_owned(),
            "r-a".to_owned(),
            legacy(1),
            legacy(0),
            legacy(2)
        ],
        "newest first; at one start time cronfleet's by run id, then go-crontab's by _id"
    );

    let all = master.get("/api/v1/jobs/mixed/executions").await;
    let items = all.body["items"].as_array().unwrap();
    let by_id = |id: &str| items.iter().find(|r| r["runId"] == id).unwrap().clone();
    let failed = by_id(&legacy(1));
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exitCode"], 4);
    assert_eq!(failed["legacy"], true);
    assert_eq!(by_id(&legacy(0))["status"], "succeeded");
    assert_eq!(by_id(&legacy(2))["status"], "killed");
    assert_eq!(by_id("r-a").get("legacy"), None::<&Value>);

    let (cookie, _) = master.session("vera").await;
    let run_page = master
        .page(
            Method::GET,
            &format!("/executions/{}", legacy(1)),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(run_page.status, StatusCode::OK);
    assert!(text(&run_page).contains("exit status 4"));
    assert!(text(&run_page).contains("go-crontab worker"));
    let dashboard = master.page(Method::GET, "/", Some(&cookie), None).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    let job_page = master
        .page(Method::GET, "/jobs/mixed", Some(&cookie), None)
        .await;
    assert_eq!(job_page.status, StatusCode::OK);
    assert!(text(&job_page).contains(&format!("/executions/{}", legacy(2))));
    assert!(text(&job_page).contains("s-killed"));
    let missing = master
        .page(
            Method::GET,
            &format!("/executions/legacy-{}", ObjectId::new().to_hex()),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn go_crontab_workers_are_listed_and_the_job_page_warns_about_them() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("shared", "true")).await;
    let mut etcd = master.env.etcd().await;
    etcd.put(master.env.keys.worker("10.0.0.7"), "", None)
        .await
        .unwrap();
    let workers = master.get("/api/v1/workers").await;
    assert_eq!(workers.status, StatusCode::OK);
    assert_eq!(workers.body["items"], serde_json::json!([]));
    assert_eq!(workers.body["legacy"][0]["address"], "10.0.0.7");

    let (cookie, _) = master.session("vera").await;
    let page = master
        .page(Method::GET, "/workers", Some(&cookie), None)
        .await;
    assert!(text(&page).contains("<td>10.0.0.7</td>"));
    let job_page = master
        .page(Method::GET, "/jobs/shared", Some(&cookie), None)
        .await;
    assert!(text(&job_page).contains("go-crontab workers are registered (10.0.0.7)"));
}

/// Waits until the audit log of `job` holds an event of `kind`; returns the events, newest
/// first.
async fn wait_for_event(master: &Master, job: &str, kind: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let reply = master.get(&format!("/api/v1/events?job={job}")).await;
        let events = reply.body["items"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| e["type"] == kind) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} event for {job}: {}",
            reply.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_jobs_outside_the_master_are_recorded_not_undone_and_adopted() {
    let master = Master::new().await;
    let mut etcd = master.env.etcd().await;
    let key = |name: &str| {
        master
            .env
            .keys
            .job(&cronfleet_common::JobName::parse(name).unwrap())
    };
    // Only in etcd, before any master leads: adopted on first sight.
    let orphan = r#"{"name":"orphan","command":"echo old","cronExpr":"*/5 * * * *"}"#;
    etcd.put(key("orphan"), orphan, None).await.unwrap();
    master
        .post("/api/v1/jobs", job("shared", "echo ours"))
        .await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let projector = tokio::spawn(master.projector("p").run(shutdown.clone()));

    let adopted = wait_for_event(&master, "orphan", "JobChangedOutsideMaster").await;
    assert_eq!(adopted[0]["actor"], "etcd");
    let orphan_job = master.get("/api/v1/jobs/orphan").await;
    assert_eq!(orphan_job.status, StatusCode::OK, "{}", orphan_job.body);
    assert_eq!(orphan_job.body["legacy"], true);
    assert_eq!(orphan_job.body["shell"], "/bin/bash");

    // The projector's own write of `shared` is not mistaken for an outside one.
    while !master.etcd_jobs().await.contains_key("shared") {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let go_crontab_save = r#"{"name":"shared","command":"echo theirs","cronExpr":"* * * * *"}"#;
    etcd.put(key("shared"), go_crontab_save, None)
        .await
        .unwrap();
    let events = wait_for_event(&master, "shared", "JobChangedOutsideMaster").await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["JobChangedOutsideMaster", "JobCreated"]);
    assert_eq!(events[0]["before"]["command"], "echo ours");
    assert_eq!(events[0]["after"]["command"], "echo theirs");
    let shared = master.get("/api/v1/jobs/shared").await;
    assert_eq!(shared.body["command"], "echo theirs");
    assert_eq!(shared.body["version"], 2);
    let (cookie, _) = master.session("vera").await;
    let page = master
        .page(Method::GET, "/jobs/shared", Some(&cookie), None)
        .await;
    assert!(text(&page).contains("last changed in etcd, outside the master"));
    let value = etcd.get(key("shared"), None).await.unwrap();
    assert_eq!(
        value.kvs()[0].value_str().unwrap(),
        go_crontab_save,
        "the value workers run is left as it was written"
    );

    // A delete outside the master takes the job out of the read model.
    etcd.delete(key("shared"), None).await.unwrap();
    wait_for_event(&master, "shared", "JobChangedOutsideMaster").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while master.get("/api/v1/jobs/shared").await.status != StatusCode::NOT_FOUND {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted job is still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    projector.await.unwrap();
}
