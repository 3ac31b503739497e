//! A worker across a restart of its etcd: it keeps or renews its session, registers again and
//! keeps scheduling.

use std::time::Duration;

use crate::support::Fleet;
use cronfleet_common::testkit::EtcdCluster;
use cronfleet_common::{JobName, Keys, RunStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_scheduling_survive_an_etcd_restart() {
    let mut fleet = Fleet::new().await;
    let mut etcd = EtcdCluster::start(&fleet.dir, 1).await;
    let endpoint = etcd.endpoints()[0].clone();
    fleet.env.etcd_endpoints = vec![endpoint.clone()];
    fleet.env.keys = Keys::default();
    fleet.etcd = etcd_client::Client::connect([endpoint.clone()], None)
        .await
        .unwrap();
    let worker = fleet.worker("survivor", &[]);
    fleet.registered(&["survivor"]).await;

    etcd.stop(0);
    // An outage of 5 s: longer than the worker's lease.
    tokio::time::sleep(Duration::from_secs(5)).await;
    etcd.restart(0).await;
    fleet.etcd = etcd_client::Client::connect([endpoint.clone()], None)
        .await
        .unwrap();
    fleet.registered(&["survivor"]).await;
    fleet
        .put(
            fleet
                .env
                .keys
                .job(&JobName::parse("after-restart").unwrap()),
            r#"{"name":"after-restart","command":"echo ok","cronExpr":"* * * * * *"}"#,
        )
        .await;
    fleet
        .wait_for_records(
            "after-restart",
            Duration::from_secs(20),
            "a run after the restart",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(worker.stop().await, 0);
    etcd.stop(0);
}
