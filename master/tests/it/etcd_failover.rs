//! A master on a 3-member etcd cluster whose leader is killed: the projector keeps projecting
//! and the API keeps reading etcd, through the live members.

use std::time::{Duration, Instant};

use crate::support::{job, Master};
use cronfleet_common::testkit::{EtcdCluster, TestEnv};
use etcd_client::GetOptions;
use tokio_util::sync::CancellationToken;

/// Whether `jobs/<name>` exists, asked of the members that still run.
async fn projected(endpoints: &[String], master: &Master, name: &str) -> bool {
    for endpoint in endpoints {
        let Ok(mut etcd) = etcd_client::Client::connect([endpoint], None).await else {
            continue;
        };
        let key = format!("{}{name}", master.env.keys.jobs());
        if let Ok(found) = etcd
            .get(key, Some(GetOptions::new().with_count_only()))
            .await
        {
            return found.count() == 1;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_and_the_api_carry_on_when_the_etcd_leader_dies() {
    let mut env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("cronfleet-test-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let mut etcd = EtcdCluster::start(&dir, 3).await;
    env.etcd_endpoints = etcd.endpoints();
    let master = Master::with_env(env).await;
    let stop = CancellationToken::new();
    let projector = tokio::spawn(master.projector("only").run(stop.clone()));

    assert_eq!(
        master
            .post("/api/v1/jobs", job("before", "true"))
            .await
            .status,
        201
    );
    let endpoints = etcd.endpoints();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !projected(&endpoints, &master, "before").await {
        assert!(Instant::now() < deadline, "the first job was not projected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let leader = etcd.leader().await;
    etcd.kill(leader);
    let killed = Instant::now();
    let live: Vec<String> = endpoints
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != leader)
        .map(|(_, endpoint)| endpoint.clone())
        .collect();
    // Writes go to PostgreSQL; the projector carries them to etcd through a live member.
    assert_eq!(
        master
            .post("/api/v1/jobs", job("after", "true"))
            .await
            .status,
        201
    );
    while !projected(&live, &master, "after").await {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the job written after the kill was not projected within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let projected_after = killed.elapsed();
    // Reads of etcd through the API answer again within the election.
    while master.get("/api/v1/workers").await.status != 200 {
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "the API could not read etcd 3 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And every answer after that is a 200: requests no longer reach the dead member.
    for _ in 0..30 {
        assert_eq!(master.get("/api/v1/workers").await.status, 200);
    }
    println!("projected {projected_after:?} after the leader was killed");
    stop.cancel();
    projector.await.unwrap();
    // The members' data and logs stay behind only when the test fails.
    drop(etcd);
    std::fs::remove_dir_all(&dir).unwrap();
}
