//! A long run's output can be followed while it runs: its worker keeps the end of it in the
//! `live` collection, growing, and removes it when the run ends.

use std::time::{Duration, Instant};

use cronfleet_common::{JobName, RunStatus};
use mongodb::bson::{doc, Document};
use serde_json::json;

use crate::support::Fleet;

/// The live document of `job`'s run, polled until `ready` holds of it.
async fn live_until(
    live: &mongodb::Collection<Document>,
    job: &str,
    what: &str,
    ready: impl Fn(&Document) -> bool,
) -> Document {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = live.find_one(doc! { "jobName": job }).await.unwrap() {
            if ready(&found) {
                return found;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_runs_output_grows_in_the_live_collection_and_goes_when_it_ends() {
    let mut fleet = Fleet::new().await;
    let _worker = fleet.worker("follower", &[]);
    fleet.registered(&["follower"]).await;
    fleet
        .put_job(json!({"name": "quick", "command": "echo quick", "cronExpr": "@every 1h"}))
        .await;
    fleet
        .put_job(json!({"name": "counting", "cronExpr": "@every 1h",
            "command": "for i in 1 2 3 4 5 6; do echo line-$i; sleep 1; done"}))
        .await;
    for job in ["quick", "counting"] {
        let name = JobName::parse(job).unwrap();
        fleet
            .put(
                fleet.env.keys.trigger(&name),
                &format!("{{\"requestId\":\"r-{job}\"}}"),
            )
            .await;
    }
    let live = fleet.env.mongo().await.collection::<Document>("live");
    let tail = |doc: &Document| doc.get_str("tail").unwrap_or_default().to_owned();
    let early = live_until(&live, "counting", "the first live output", |_| true).await;
    assert_eq!(early.get_str("workerId").unwrap(), "follower");
    assert!(tail(&early).contains("line-1"), "{}", tail(&early));
    let later = live_until(&live, "counting", "the output to grow", |doc| {
        tail(doc).contains("line-4")
    })
    .await;
    assert_eq!(
        later.get_str("_id"),
        early.get_str("_id"),
        "one document per run"
    );
    assert!(tail(&later).starts_with("line-1\n"), "{}", tail(&later));

    let records = fleet
        .wait_for_records(
            "counting",
            Duration::from_secs(20),
            "the counting run's record",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(records[0].run_id, early.get_str("_id").unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.count_documents(doc! {}).await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the ended run's live output was not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fleet.records("quick").await.len(), 1);
    let indexes = live.list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|name| name.starts_with("expireAt")),
        "{indexes:?}"
    );
}
