//! Run statistics: the notifier counts each record once as it reads it (a second notifier
//! reading the same records counts nothing again); a job's stats over 24 hours and 7 days
//! (runs by status, success rate, duration percentiles), its days, its recent durations, and
//! the fleet overview on the dashboard — through the API and as pages with SVG charts.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use cronfleet_common::{ExecutionRecord, RunStatus};

use crate::outcomes::{notifier, record, wait_for, write};
use crate::pages::text;
use crate::support::{job, Master};

fn run(job: &str, status: RunStatus, started_ago_ms: i64, duration_ms: i64) -> ExecutionRecord {
    let now = chrono::Utc::now().timestamp_millis();
    let mut r = record(job, status);
    r.start_time = now - started_ago_ms;
    r.plan_time = r.start_time;
    r.schedule_time = r.start_time;
    r.end_time = r.start_time + duration_ms;
    r
}

async fn counted(master: &Master) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(runs), 0)::bigint FROM run_stats WHERE job_name = 'etl'",
    )
    .fetch_one(&master.services.store.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_counts_each_record_once_and_stats_read_back() {
    let master = Master::new().await;
    let reply = master.post("/api/v1/jobs", job("etl", "true")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let hour = 3_600_000;
    let mut written = Vec::new();
    // In the last 24 hours: 8 succeeded runs of 1-8 s, one failure, one skip, one missed.
    for i in 1..=8 {
        written.push(run("etl", RunStatus::Succeeded, i * 60_000, i * 1000));
    }
    written.push(run("etl", RunStatus::Failed, 2 * hour, 500));
    written.push(run("etl", RunStatus::Skipped, 3 * hour, 0));
    written.push(run("etl", RunStatus::Missed, 4 * hour, 0));
    // Three days ago: two failures of 60 s.
    for _ in 0..2 {
        written.push(run("etl", RunStatus::TimedOut, 72 * hour, 60_000));
    }
    for r in &written {
        write(&master, r).await;
    }
    let (stop, task) = notifier(&master).await;
    wait_for(
        Duration::from_secs(20),
        "every record counted",
        async || (counted(&master).await == 13).then_some(()),
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    // Another notifier reads the same records again: its checkpoint moved back 10 minutes.
    sqlx::query("UPDATE notifier_checkpoint SET oid_secs = oid_secs - 600")
        .execute(&master.services.store.pool)
        .await
        .unwrap();
    let (stop, task) = notifier(&master).await;
    let extra = run("etl", RunStatus::Succeeded, 1_000, 2_000);
    write(&master, &extra).await;
    wait_for(
        Duration::from_secs(20),
        "the new record counted",
        async || (counted(&master).await >= 14).then_some(()),
    )
    .await;
    assert_eq!(counted(&master).await, 14, "nothing counted twice");
    stop.cancel();
    task.await.unwrap();

    let stats = master.get("/api/v1/jobs/etl/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{:?}", stats.body);
    let day = &stats.body["last24h"];
    assert_eq!(day["runs"], 12);
    assert_eq!(day["byStatus"]["succeeded"], 9);
    assert_eq!(day["byStatus"]["missed"], 1);
    // 9 succeeded of 11 that succeeded or failed (the skip does not count).
    let rate = day["successRate"].as_f64().unwrap();
    assert!((rate - 9.0 / 11.0).abs() < 1e-9, "{rate}");
    // Durations of the 10 runs that started a process: 0.5, 1-8 and 2 s; median about 3.5 s.
    let p50 = day["durationP50Ms"].as_i64().unwrap();
    assert!((2_500..=4_500).contains(&p50), "{p50}");
    let week = &stats.body["last7d"];
    assert_eq!(week["runs"], 14);
    assert_eq!(week["byStatus"]["timed_out"], 2);
    let p95 = week["durationP95Ms"].as_i64().unwrap();
    assert!((45_000..=65_000).contains(&p95), "{p95}");
    let daily = stats.body["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 14);
    let total: i64 = daily
        .iter()
        .map(|d| {
            d["succeeded"].as_i64().unwrap()
                + d["failed"].as_i64().unwrap()
                + d["skipped"].as_i64().unwrap()
        })
        .sum();
    assert_eq!(total, 14);
    assert_eq!(
        stats.body["recentDurationsMs"].as_array().unwrap().len(),
        12,
        "the runs that started a process"
    );
    assert_eq!(
        master.get("/api/v1/jobs/nope/stats").await.status,
        StatusCode::NOT_FOUND
    );

    let (cookie, _) = master.session("vera").await;
    let page = master
        .page(Method::GET, "/jobs/etl/stats", Some(&cookie), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let body = text(&page);
    assert!(body.contains("81.8 %"), "the success rate");
    assert_eq!(
        body.matches("<svg").count(),
        2,
        "the daily bars and the durations"
    );
    assert!(body.contains("class=\"bad\""), "failed days have red bars");
    let dashboard = master.page(Method::GET, "/", Some(&cookie), None).await;
    let overview = text(&dashboard);
    assert!(
        overview.contains("<strong>9</strong> runs in the last hour"),
        "{overview}"
    );
    assert!(
        overview.contains("<strong>1</strong> failures"),
        "the failure of 3 days ago is not counted"
    );
    assert!(overview.contains("<strong>1</strong> missed ticks"));
}
