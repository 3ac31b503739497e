//! The dashboard's last runs from the notifier's `last_runs` table: history from before the
//! notifier is filled in from MongoDB, new records move a job's row forward and never back,
//! and the rows of deleted jobs go.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use cronfleet_common::RunStatus;

use crate::outcomes::{notifier, record, wait_for, write};
use crate::pages::text;
use crate::support::{job, Master};

/// The dashboard row of `job`.
async fn dashboard_row(master: &Master, cookie: &str, job: &str) -> String {
    let page = master.page(Method::GET, "/", Some(cookie), None).await;
    assert_eq!(page.status, StatusCode::OK);
    text(&page)
        .split("<tr>")
        .find(|row| row.contains(&format!("href=\"/jobs/{job}\"")))
        .unwrap_or_else(|| panic!("no dashboard row for {job}"))
        .to_owned()
}

/// `job`'s row in `last_runs`: its run id, if it has a row.
async fn stored(master: &Master, job: &str) -> Option<Option<String>> {
    sqlx::query_scalar("SELECT run_id FROM last_runs WHERE job_name = $1")
        .bind(job)
        .fetch_optional(&master.services.store.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_last_runs_the_notifier_keeps_and_they_only_move_forward() {
    let master = Master::new().await;
    for name in ["old", "fresh", "gone"] {
        let reply = master.post("/api/v1/jobs", job(name, "true")).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let (cookie, _) = master.session("alice").await;
    // History from before the notifier: only the fill can bring it in.
    let mut history = record("old", RunStatus::Failed);
    history.start_time = 1_900_000_000_000;
    write(&master, &history).await;
    assert!(dashboard_row(&master, &cookie, "old")
        .await
        .contains("s-failed"));

    let (_stop, _task) = notifier(&master).await;
    wait_for(Duration::from_secs(20), "every job filled", async || {
        let old = stored(&master, "old").await?;
        let fresh = stored(&master, "fresh").await?;
        (old.as_deref() == Some(history.run_id.as_str()) && fresh.is_none()).then_some(())
    })
    .await;
    assert!(dashboard_row(&master, &cookie, "fresh")
        .await
        .contains("never"));

    let mut newer = record("old", RunStatus::Succeeded);
    newer.start_time = 1_900_000_100_000;
    newer.end_time = 1_900_000_160_000;
    let mut late = record("old", RunStatus::TimedOut);
    late.start_time = 1_900_000_050_000;
    let mut first = record("fresh", RunStatus::Succeeded);
    first.start_time = 1_900_000_000_000;
    for written in [&newer, &late, &first] {
        write(&master, written).await;
    }
    let pool = master.services.store.pool.clone();
    wait_for(
        Duration::from_secs(20),
        "the three records read",
        async || {
            let read: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outcomes WHERE run_id = ANY($1)")
                    .bind([&newer.run_id, &late.run_id, &first.run_id])
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (read == 3).then_some(())
        },
    )
    .await;
    assert_eq!(
        stored(&master, "old").await,
        Some(Some(newer.run_id.clone()))
    );
    assert_eq!(
        stored(&master, "fresh").await,
        Some(Some(first.run_id.clone()))
    );

    // The page comes from the table now: with the records gone from MongoDB it still shows
    // them.
    let log = master
        .env
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("log");
    log.delete_many(mongodb::bson::doc! {}).await.unwrap();
    let old_row = dashboard_row(&master, &cookie, "old").await;
    assert!(old_row.contains("s-succeeded"), "{old_row}");
    assert!(old_row.contains("1 min 0 s"), "{old_row}");
    assert!(dashboard_row(&master, &cookie, "fresh")
        .await
        .contains("s-succeeded"));

    let reply = master
        .send(
            Method::DELETE,
            "/api/v1/jobs/gone",
            Some("alice"),
            &[],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    cronfleet_master::read::last_runs::fill(&pool, &master.services.log)
        .await
        .unwrap();
    assert_eq!(stored(&master, "gone").await, None);
    assert!(stored(&master, "old").await.is_some());
}
