//! Admin page render times with 10,000 jobs and 100,000 execution records: the dashboard's
//! first page before and after the notifier has filled the last-run table (and made its
//! indexes), a job's page, an execution's page, lists of runs and statistics, each requested
//! 200 times through the router; then one retention pass that halves every job's records.
//! Prints a report; run it with `compose/bench pages`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser as _;
use cronfleet_common::testkit::TestEnv;
use cronfleet_common::{ExecutionRecord, JobName, JobSpec, Retention, RunStatus, Trigger};
use cronfleet_master::config::Cli;
use cronfleet_master::domain::Command;
use cronfleet_master::identity::Role;
use cronfleet_master::prune::Pruner;
use cronfleet_master::store::RequestMeta;
use cronfleet_master::Services;
use mongodb::bson::doc;
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const JOBS: usize = 10_000;
const RECORDS: usize = 100_000;
const REQUESTS: usize = 200;

#[tokio::main]
async fn main() {
    let env = TestEnv::new().await;
    let cli = Cli::try_parse_from(env.master_args()).unwrap();
    let services = Services::connect(&cli.config).await.unwrap();
    let meta = RequestMeta {
        actor: "bench".into(),
        request_id: "bench".into(),
        idempotency: None,
    };
    let started = Instant::now();
    for i in 0..JOBS {
        let name = format!("job-{i:05}");
        let body = format!(
            r#"{{"name":"{name}","command":"echo {i}","cronExpr":"{} {} * * *"}}"#,
            i % 60,
            (i / 60) % 24
        );
        let spec = JobSpec::from_user_json(body.as_bytes()).unwrap();
        let job = JobName::parse(&name).unwrap();
        services
            .store
            .execute(&job, Command::CreateJob(spec), None, &meta)
            .await
            .unwrap();
    }
    println!("cronfleet admin pages benchmark");
    println!(
        "  {JOBS} jobs created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let log = env.mongo().await.collection::<ExecutionRecord>("log");
    log.create_indexes([
        IndexModel::builder()
            .keys(doc! { "runId": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build(),
        IndexModel::builder()
            .keys(doc! { "jobName": 1, "startTime": -1 })
            .build(),
    ])
    .await
    .unwrap();
    let started = Instant::now();
    // One record a second, the newest a second ago.
    let first = chrono::Utc::now().timestamp_millis() - RECORDS as i64 * 1000;
    let records: Vec<ExecutionRecord> = (0..RECORDS)
        .map(|i| {
            let at = first + (i as i64) * 1000;
            ExecutionRecord {
                run_id: format!("run-{i:06}"),
                job_name: format!("job-{:05}", i % JOBS),
                command: format!("echo {i}"),
                err: String::new(),
                output: format!("line {i}\n"),
                plan_time: at,
                schedule_time: at,
                start_time: at + 2,
                end_time: at + 40,
                worker_id: "bench-worker".into(),
                status: if i % 17 == 0 {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                },
                exit_code: Some(i32::from(i % 17 == 0)),
                signal: None,
                output_bytes: 10,
                truncated: false,
                fencing_token: i as i64 + 1,
                job_version: 1,
                trigger: Trigger::Schedule,
                reason: None,
                tick_id: None,
                attempt: None,
                source_run_id: None,
                will_retry: None,
                request_id: None,
                requested_by: None,
                killed_by: None,
            }
        })
        .collect();
    for batch in records.chunks(1000) {
        log.insert_many(batch).await.unwrap();
    }
    println!(
        "  {RECORDS} execution records inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    services
        .store
        .create_user("bench", Role::Admin, "a long bench password", &meta)
        .await
        .unwrap();
    let principal = services
        .store
        .check_password("bench", "a long bench password")
        .await
        .unwrap()
        .unwrap();
    let session = services.store.open_session(&principal).await.unwrap();
    let router = cronfleet_master::http::router(services.app_state());
    let cookie = format!("cronfleet_session={session}");
    println!("  before the notifier has filled the last-run table (every last run from MongoDB):");
    measure(&router, &cookie, &[("dashboard, first page", "/")]).await;

    let shutdown = CancellationToken::new();
    let notifier = tokio::spawn(services.notifier().unwrap().run(shutdown.clone()));
    let started = Instant::now();
    loop {
        let filled: i64 = sqlx::query_scalar("SELECT count(*) FROM last_runs")
            .fetch_one(&services.store.pool)
            .await
            .unwrap();
        if filled as usize >= JOBS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the notifier filled {filled} of {JOBS} last runs in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  the notifier filled the last runs of {JOBS} jobs in {:.1} s; then:",
        started.elapsed().as_secs_f64()
    );
    let hour_ago = chrono::DateTime::from_timestamp_millis(first + (RECORDS as i64 - 3600) * 1000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let search = format!("/runs?q=line%20{}&since={hour_ago}", RECORDS - 1);
    measure(
        &router,
        &cookie,
        &[
            ("dashboard, first page", "/"),
            ("job page", "/jobs/job-05000"),
            ("execution page", "/executions/run-050000"),
            ("dashboard, name filter", "/?name=job-09&status=active"),
            ("dashboard, failing jobs", "/?status=failing"),
            ("runs, newest", "/runs"),
            ("runs, failures", "/runs?status=failures"),
            ("runs, one worker", "/runs?worker=bench-worker"),
            (
                "runs, output search over the last hour of 3,600 records",
                &search,
            ),
            ("job statistics", "/jobs/job-05000/stats"),
        ],
    )
    .await;
    shutdown.cancel();
    notifier.await.unwrap();

    let pruner = Pruner {
        store: services.store.clone(),
        log: services.log.clone(),
        default: Retention {
            days: Some(90),
            max_records: Some(5),
        },
        every: Duration::from_secs(300),
        settle_ms: 0,
    };
    let started = Instant::now();
    let pruned = pruner
        .prune(chrono::Utc::now().timestamp_millis())
        .await
        .unwrap();
    println!(
        "  a retention pass keeping the newest 5 of each of the {JOBS} jobs' 10 records: {} deleted in {:.1} s",
        pruned.by_count,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(pruned.by_count as usize, RECORDS / 2);
}

/// Requests each page [`REQUESTS`] times and prints its render times.
async fn measure(router: &axum::Router, cookie: &str, pages: &[(&str, &str)]) {
    for (label, path) in pages {
        let mut times = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let request = Request::get(*path)
                .header("cookie", cookie)
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {label} ({path}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {REQUESTS})",
            ms(times[REQUESTS / 2]),
            ms(times[REQUESTS * 99 / 100]),
            ms(times[REQUESTS - 1])
        );
    }
}
