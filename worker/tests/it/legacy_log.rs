//! One `cron.log` for go-crontab and cronfleet: go-crontab's records have no `runId`, so the
//! unique `runId` index covers only records that have one.

use cronfleet_common::testkit::TestEnv;
use cronfleet_common::ExecutionRecord;
use cronfleet_worker::upload::ensure_indexes;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

/// A record as go-crontab's worker writes it.
fn go_crontab_record(job: &str, at: i64) -> Document {
    doc! {
        "jobName": job, "command": "echo hi", "err": "", "output": "hi\n",
        "planTime": at, "scheduleTime": at + 3, "startTime": at + 5, "endTime": at + 9,
    }
}

async fn collections(env: &TestEnv) -> (Collection<Document>, Collection<ExecutionRecord>) {
    let raw = env.mongo().await.collection::<Document>("log");
    let typed = raw.clone_with_type::<ExecutionRecord>();
    (raw, typed)
}

async fn assert_both_fit(raw: &Collection<Document>) {
    for at in [1_000, 2_000] {
        raw.insert_one(go_crontab_record("legacy", at))
            .await
            .unwrap();
    }
    raw.insert_one(doc! { "runId": "r-1", "jobName": "ours" })
        .await
        .unwrap();
    let again = raw
        .insert_one(doc! { "runId": "r-1", "jobName": "ours" })
        .await;
    assert!(again.is_err(), "a second record with one runId is refused");
}

#[tokio::test]
async fn the_indexes_build_over_go_crontab_records_and_let_more_in() {
    let env = TestEnv::new().await;
    let (raw, typed) = collections(&env).await;
    for at in [10, 20, 30] {
        raw.insert_one(go_crontab_record("legacy", at))
            .await
            .unwrap();
    }
    ensure_indexes(&typed).await.unwrap();
    ensure_indexes(&typed).await.unwrap();
    assert_both_fit(&raw).await;
    assert_eq!(
        raw.count_documents(doc! { "jobName": "legacy" })
            .await
            .unwrap(),
        5
    );
}

#[tokio::test]
async fn the_index_over_every_document_is_replaced() {
    let env = TestEnv::new().await;
    let (raw, typed) = collections(&env).await;
    let old = IndexModel::builder()
        .keys(doc! { "runId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("runId_unique".to_owned())
                .build(),
        )
        .build();
    raw.create_index(old).await.unwrap();
    raw.insert_one(go_crontab_record("legacy", 10))
        .await
        .unwrap();
    assert!(
        raw.insert_one(go_crontab_record("legacy", 20))
            .await
            .is_err(),
        "the old index refuses a second record without runId"
    );
    ensure_indexes(&typed).await.unwrap();
    let names = raw.list_index_names().await.unwrap();
    assert!(!names.contains(&"runId_unique".to_owned()), "{names:?}");
    assert_both_fit(&raw).await;
}

#[tokio::test]
async fn the_indexes_build_before_the_collection_exists() {
    let env = TestEnv::new().await;
    let (raw, typed) = collections(&env).await;
    ensure_indexes(&typed).await.unwrap();
    assert_both_fit(&raw).await;
}
