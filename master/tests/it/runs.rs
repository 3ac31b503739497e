//! Runs across jobs: `GET /api/v1/executions` and `/runs` filtered by status (failures as one
//! choice, go-crontab's records by their `err`), job, worker, trigger, time range, request id
//! and words in the output; cursor paging that visits every record once; bad parameters named;
//! the job page paging through all its runs; the job list's `failing` filter.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use cronfleet_common::{ExecutionRecord, RunStatus, Trigger};
use mongodb::bson::{doc, oid::ObjectId};

use crate::outcomes::{record, write};
use crate::pages::text;
use crate::support::{job, Master};

/// Base of the records' start times: 2030-03-17 17:46:40 UTC.
const T0: i64 = 1_900_000_000_000;

fn at(job: &str, status: RunStatus, minute: i64, output: &str) -> ExecutionRecord {
    let mut r = record(job, status);
    r.start_time = T0 + minute * 60_000;
    r.plan_time = r.start_time;
    r.end_time = r.start_time + 1_000;
    r.output = output.to_owned();
    r
}

async fn ids(master: &Master, query: &str) -> Vec<String> {
    let reply = master.get(&format!("/api/v1/executions?{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
    reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_across_jobs_filter_page_and_name_bad_parameters() {
    let master = Master::new().await;
    let ok = at("alpha", RunStatus::Succeeded, 0, "all good\n");
    let failed = at(
        "alpha",
        RunStatus::Failed,
        1,
        "starting\nERROR: Disk full on /var\n",
    );
    let mut timed_out = at("beta", RunStatus::TimedOut, 2, "step 1\n");
    timed_out.worker_id = "w2".to_owned();
    let mut manual = at("beta", RunStatus::Succeeded, 3, "a.b\n");
    manual.trigger = Trigger::Manual;
    manual.request_id = Some("req-42".to_owned());
    manual.requested_by = Some("alice".to_owned());
    let missed = at("beta", RunStatus::Missed, 4, "");
    for r in [&ok, &failed, &timed_out, &manual, &missed] {
        write(&master, r).await;
    }
    // A go-crontab worker's failure: no status, no run id, its outcome only in `err`.
    let legacy_id = ObjectId::new();
    master
        .env
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("log")
        .insert_one(doc! {
            "_id": legacy_id, "jobName": "alpha", "command": "false", "err": "exit status 1",
            "output": "", "planTime": T0 + 300_000, "scheduleTime": T0 + 300_000,
            "startTime": T0 + 300_000, "endTime": T0 + 300_500,
        })
        .await
        .unwrap();
    let legacy = format!("legacy-{}", legacy_id.to_hex());

    let everything = ids(&master, "").await;
    assert_eq!(everything.len(), 6, "newest first: {everything:?}");
    assert_eq!(everything[0], legacy);
    assert_eq!(everything[5], ok.run_id);
    assert_eq!(
        ids(&master, "status=failures").await,
        [
            legacy.clone(),
            missed.run_id.clone(),
            timed_out.run_id.clone(),
            failed.run_id.clone()
        ]
    );
    assert_eq!(
        ids(&master, "status=succeeded").await,
        [manual.run_id.clone(), ok.run_id.clone()],
        "the go-crontab failure is not a success"
    );
    assert_eq!(
        ids(&master, "status=timed_out,missed&job=beta").await,
        [missed.run_id.clone(), timed_out.run_id.clone()]
    );
    assert_eq!(ids(&master, "worker=w2").await, [timed_out.run_id.clone()]);
    assert_eq!(
        ids(&master, "trigger=manual").await,
        [manual.run_id.clone()]
    );
    assert_eq!(
        ids(&master, "requestId=req-42").await,
        [manual.run_id.clone()]
    );
    let range = format!(
        "since={}&until={}",
        "2030-03-17T17:47:40Z", "2030-03-17T17:49:40Z"
    );
    assert_eq!(
        ids(&master, &range).await,
        [timed_out.run_id.clone(), failed.run_id.clone()]
    );
    // Output words: case ignored, read literally, within a bounded range.
    let search = "q=disk%20FULL&since=2030-03-17&until=2030-03-18";
    assert_eq!(ids(&master, search).await, [failed.run_id.as_str()]);
    assert_eq!(
        ids(&master, "q=a.b&since=2030-03-17&until=2030-03-18").await,
        [manual.run_id.clone()],
        "a dot is a dot"
    );
    assert!(
        ids(&master, "q=disk&until=2030-03-19").await.is_empty(),
        "a search without a start reads the 24 hours before its end"
    );

    // Paging two at a time visits every record once, in order.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/executions?limit=2{cursor}");
        let page = master.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["runId"].as_str().unwrap().to_owned());
            assert!(item["startedAt"]
                .as_str()
                .unwrap()
                .starts_with("2030-03-17T"));
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, everything);

    for (query, field) in [
        ("status=broken", "status"),
        ("trigger=cron", "trigger"),
        ("since=yesterday", "since"),
        ("since=2030-03-18&until=2030-03-17", "until"),
        ("q=x&since=2030-01-01&until=2030-03-01", "q"),
        ("cursor=nonsense", "cursor"),
        ("job=a%2Fb", "job"),
        ("limit=0", "limit"),
    ] {
        let reply = master.get(&format!("/api/v1/executions?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            reply.body["error"]["field"], field,
            "{query}: {:?}",
            reply.body
        );
    }

    let (cookie, _) = master.session("vera").await;
    let page = master
        .page(
            Method::GET,
            "/runs?status=failures&job=alpha",
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let body = text(&page);
    assert!(body.contains(&failed.run_id) && body.contains(&legacy));
    assert!(!body.contains(&ok.run_id), "only failures");
    assert!(
        body.contains("ERROR: Disk full on /var"),
        "the excerpt is the end of the output"
    );
    let manual_row = master
        .page(Method::GET, "/runs?trigger=manual", Some(&cookie), None)
        .await;
    assert!(text(&manual_row).contains("run now by alice (request req-42)"));
    let bad = master
        .page(Method::GET, "/runs?since=yesterday", Some(&cookie), None)
        .await;
    assert!(text(&bad).contains("role=\"alert\">since: "));
    assert!(text(&bad).contains("yesterday") && text(&bad).contains("is not a time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_page_pages_through_all_its_runs_and_the_list_finds_failing_jobs() {
    let master = Master::new().await;
    for name in ["many", "fine"] {
        let reply = master.post("/api/v1/jobs", job(name, "true")).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let runs: Vec<ExecutionRecord> = (0..45)
        .map(|i| at("many", RunStatus::Succeeded, i, &format!("run {i}\n")))
        .collect();
    for r in &runs {
        write(&master, r).await;
    }
    let (cookie, _) = master.session("vera").await;
    let mut path = "/jobs/many".to_owned();
    let mut seen = HashSet::new();
    for _ in 0..3 {
        let page = master.page(Method::GET, &path, Some(&cookie), None).await;
        assert_eq!(page.status, StatusCode::OK);
        let body = text(&page);
        for r in &runs {
            if body.contains(&format!("/executions/{}", r.run_id)) {
                assert!(seen.insert(r.run_id.clone()), "shown twice: {}", r.run_id);
            }
        }
        match body.split("href=\"").find_map(|rest| {
            let link = rest.split('"').next()?;
            link.contains("?runs=").then(|| link.replace("&amp;", "&"))
        }) {
            Some(next) => path = next.split('#').next().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), runs.len(), "every run on one page or another");

    sqlx::query(
        "INSERT INTO last_runs (job_name, run_id, status, start_time, end_time)
         VALUES ('many', 'r1', 'timed_out', 1, 2), ('fine', 'r2', 'succeeded', 1, 2)",
    )
    .execute(&master.services.store.pool)
    .await
    .unwrap();
    let failing = master.get("/api/v1/jobs?status=failing").await;
    assert_eq!(failing.status, StatusCode::OK);
    let names: Vec<&str> = failing.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["many"]);
    let bad = master.get("/api/v1/jobs?status=failed").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["field"], "status");
    let page = master
        .page(Method::GET, "/?status=failing", Some(&cookie), None)
        .await;
    assert!(text(&page).contains("href=\"/jobs/many\""));
    assert!(!text(&page).contains("href=\"/jobs/fine\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_a_jobs_times_in_its_zone_with_utc_beside() {
    let master = Master::new().await;
    let mut berlin = job("berlin", "true");
    berlin["timezone"] = "Europe/Berlin".into();
    assert_eq!(
        master.post("/api/v1/jobs", berlin).await.status,
        StatusCode::CREATED
    );
    // 2030-03-17 17:46:40 UTC is 18:46:40 in Berlin (CET).
    let run = at("berlin", RunStatus::Succeeded, 0, "ok\n");
    write(&master, &run).await;
    let (cookie, _) = master.session("vera").await;
    for path in [
        "/jobs/berlin".to_owned(),
        "/runs?job=berlin".to_owned(),
        format!("/executions/{}", run.run_id),
    ] {
        let page = master.page(Method::GET, &path, Some(&cookie), None).await;
        let body = text(&page);
        assert!(
            body.contains(r#"<time datetime="2030-03-17T17:46:40.000Z" title="2030-03-17 17:46:40 UTC">2030-03-17 18:46:40 CET</time>"#),
            "{path}: {body}"
        );
    }
}
