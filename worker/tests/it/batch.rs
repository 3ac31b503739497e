//! The etcd batcher against real etcd: txns sent together share requests, yet each one
//! succeeds or fails on its own and its writes carry the revision it was answered with.

use std::collections::HashSet;
use std::sync::Arc;

use cronfleet_common::testkit::TestEnv;
use cronfleet_common::JobName;
use cronfleet_worker::batch::Batcher;
use cronfleet_worker::metrics::Metrics;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

/// Creates `lock/<job>` unless it exists.
fn create(key: &str) -> Txn {
    Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, "mine", None)])
}

#[tokio::test]
async fn txns_sent_together_share_requests_and_succeed_or_fail_on_their_own() {
    let env = TestEnv::new().await;
    let mut etcd = env.etcd().await;
    let jobs: Vec<JobName> = (0..60)
        .map(|i| JobName::parse(&format!("job-{i}")).unwrap())
        .collect();
    // Every third job's lock exists already: its txn must fail, and only its.
    for job in jobs.iter().step_by(3) {
        etcd.put(env.keys.lock(job), "theirs", None).await.unwrap();
    }
    let batcher = Batcher::spawn(etcd.clone(), Arc::new(Metrics::default()));
    let sends = jobs.iter().map(|job| {
        let batcher = batcher.clone();
        let key = env.keys.lock(job);
        async move { (key.clone(), batcher.send(job, create(&key)).await.unwrap()) }
    });
    // Two txns writing the same key must not share a request (etcd refuses that): both
    // are answered, and exactly one wins.
    let same = JobName::parse("same").unwrap();
    let same_key = env.keys.lock(&same);
    let (answers, first, second) = tokio::join!(
        futures_util::future::join_all(sends),
        batcher.send(&same, create(&same_key)),
        batcher.send(&same, create(&same_key)),
    );
    assert_ne!(first.unwrap().succeeded, second.unwrap().succeeded);

    let mut revisions = HashSet::new();
    for (index, (key, answer)) in answers.iter().enumerate() {
        let stored = etcd.get(key.as_str(), None).await.unwrap();
        let kv = &stored.kvs()[0];
        if index % 3 == 0 {
            assert!(!answer.succeeded, "{key} existed, so its txn must fail");
            assert_eq!(kv.value(), b"theirs");
        } else {
            assert!(answer.succeeded, "{key} was free, so its txn must succeed");
            assert_eq!(kv.value(), b"mine");
            assert_eq!(
                kv.mod_revision(),
                answer.revision,
                "a txn's writes carry the revision it was answered with (its fencing token)"
            );
            revisions.insert(answer.revision);
        }
    }
    assert!(
        revisions.len() < 40,
        "40 txns sent at once went out in {} requests; they should share",
        revisions.len()
    );
}
