//! The projector against real PostgreSQL and etcd: sequence order under concurrent writers,
//! crashes on either side of the etcd txn, one leader among many, and rebuild.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::Master;
use cronfleet_common::{JobName, JobSpec};
use cronfleet_master::domain::Command;
use cronfleet_master::store::{RequestMeta, Written};
use etcd_client::{EventType, GetOptions, WatchOptions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn spec(name: &str, command: &str) -> JobSpec {
    let body = format!(r#"{{"name":"{name}","command":"{command}","cronExpr":"@hourly"}}"#);
    JobSpec::from_user_json(body.as_bytes()).unwrap()
}

fn meta(actor: &str) -> RequestMeta {
    RequestMeta {
        actor: actor.to_owned(),
        request_id: uuid::Uuid::new_v4().to_string(),
        idempotency: None,
    }
}

/// A deterministic mix of commands over a few jobs; refusals are expected and ignored.
async fn mixed_commands(master: &Master, writer: usize, count: usize) -> usize {
    let mut appended = 0;
    for i in 0..count {
        let name = format!("job-{}", (writer * 7 + i) % 13);
        let job = JobName::parse(&name).unwrap();
        let command = match (writer + i) % 7 {
            0 | 1 => Command::CreateJob(spec(&name, &format!("echo {writer}-{i}"))),
            2 => Command::UpdateJob(spec(&name, &format!("echo updated {writer}-{i}"))),
            3 => Command::PauseJob,
            4 => Command::ResumeJob,
            5 => Command::KillJob {
                request_id: format!("k-{writer}-{i}"),
            },
            _ => Command::DeleteJob,
        };
        let written = master
            .services
            .store
            .execute(&job, command, None, &meta(&format!("writer-{writer}")))
            .await;
        if let Ok(Written { events, .. }) = written {
            appended += events.len();
        }
    }
    appended
}

async fn assert_etcd_equals_read_model(master: &Master) {
    let etcd: BTreeMap<String, Value> = master.etcd_jobs().await;
    let read_model = master.read_model().await;
    assert_eq!(etcd, read_model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_writers_are_projected_in_commit_order() {
    let master = std::sync::Arc::new(Master::new().await);
    let shutdown = CancellationToken::new();
    let live = tokio::spawn(master.projector("live").run(shutdown.clone()));
    let writers: Vec<_> = (0..20)
        .map(|writer| {
            let master = std::sync::Arc::clone(&master);
            tokio::spawn(async move { mixed_commands(&master, writer, 50).await })
        })
        .collect();
    let mut appended = 0;
    for writer in writers {
        appended += writer.await.unwrap();
    }
    assert!(appended > 200, "only {appended} commands were accepted");
    let last = master.services.store.last_seq().await.unwrap();
    let (count, max, jobs): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), max(seq), count(*) FILTER (WHERE stream = 'job') FROM events",
    )
    .fetch_one(&master.services.store.pool)
    .await
    .unwrap();
    assert_eq!(
        (count, jobs),
        (max, appended as i64),
        "sequence numbers have no gaps"
    );
    let mut projector = master.projector("observer");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while projector.checkpoint().await.unwrap().0 < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live projector did not catch up: {:?} of {last}",
            projector.checkpoint().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    live.await.unwrap();
    assert_etcd_equals_read_model(&master).await;
}

/// Every PUT and DELETE under `jobs/`, `killer/` and `trigger/` since `start`, as (kind, key).
async fn etcd_history(master: &Master, start: i64) -> Vec<(EventType, String)> {
    let mut etcd = master.env.etcd().await;
    let current = etcd
        .get("probe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut stream = etcd
        .watch(
            master.env.keys.prefix(),
            Some(WatchOptions::new().with_prefix().with_start_revision(start)),
        )
        .await
        .unwrap();
    let mut history = Vec::new();
    loop {
        let response = stream.message().await.unwrap().unwrap();
        for event in response.events() {
            let kv = event.kv().unwrap();
            let key = kv.key_str().unwrap().to_owned();
            if !key.contains("/master/") {
                history.push((event.event_type(), key));
            }
            if kv.mod_revision() >= current {
                return history;
            }
        }
        if response.header().is_some_and(|h| h.revision() >= current)
            && !response.events().is_empty()
        {
            return history;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_on_either_side_of_the_etcd_txn_applies_each_event_once() {
    let master = Master::new().await;
    let mut etcd = master.env.etcd().await;
    let start = etcd
        .put(format!("{}start", master.env.keys.prefix()), "", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
        + 1;

    // Committed in PostgreSQL, and the projector dies before its etcd txn: nothing in etcd yet.
    let a = JobName::parse("a").unwrap();
    let store = &master.services.store;
    store
        .execute(&a, Command::CreateJob(spec("a", "one")), None, &meta("x"))
        .await
        .unwrap();
    store
        .execute(
            &a,
            Command::KillJob {
                request_id: "k1".into(),
            },
            None,
            &meta("x"),
        )
        .await
        .unwrap();
    let mut crashed = master.projector("crashed-before");
    let leadership = crashed.campaign().await.unwrap();
    assert_eq!(master.etcd_jobs().await.len(), 0);
    drop(leadership);
    drop(crashed);

    // The next projector waits out the dead one's lease and applies both events.
    master.project_all().await;
    assert_etcd_equals_read_model(&master).await;

    // Applied, then dies after its txn and before doing anything else: nothing is applied twice.
    store
        .execute(&a, Command::UpdateJob(spec("a", "two")), None, &meta("x"))
        .await
        .unwrap();
    let mut crashed = master.projector("crashed-after");
    let leadership = crashed.campaign().await.unwrap();
    assert_eq!(crashed.apply_batch(&leadership.leader).await.unwrap(), 1);
    drop(leadership);
    drop(crashed);
    master.project_all().await;
    assert_etcd_equals_read_model(&master).await;

    let history = etcd_history(&master, start).await;
    let puts = |suffix: &str| {
        history
            .iter()
            .filter(|(kind, key)| *kind == EventType::Put && key.ends_with(suffix))
            .count()
    };
    assert_eq!(puts("/jobs/a"), 2, "{history:?}");
    assert_eq!(puts("/killer/a"), 1, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projector_leads_and_another_takes_over_when_it_dies() {
    let master = Master::new().await;
    let store = &master.services.store;
    let shutdown_first = CancellationToken::new();
    let first = tokio::spawn(master.projector("first").run(shutdown_first.clone()));
    let mut etcd = master.env.etcd().await;
    let leader = || {
        let mut etcd = etcd.clone();
        let key = master.env.keys.projector_election();
        async move {
            let found = etcd
                .get(
                    key,
                    Some(GetOptions::new().with_prefix().with_sort(
                        etcd_client::SortTarget::Create,
                        etcd_client::SortOrder::Ascend,
                    )),
                )
                .await
                .unwrap();
            found
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        }
    };
    // The second candidate starts once the first leads.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leader().await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shutdown_second = CancellationToken::new();
    let second = tokio::spawn(master.projector("second").run(shutdown_second.clone()));
    assert_eq!(leader().await.as_deref(), Some("first"));
    let b = JobName::parse("b").unwrap();
    store
        .execute(&b, Command::CreateJob(spec("b", "one")), None, &meta("x"))
        .await
        .unwrap();
    wait_for_jobs(&master, 1).await;

    // The leader dies without resigning: its lease must expire (TTL 2 s) first.
    first.abort();
    let _ = first.await;
    let died = std::time::Instant::now();
    let c = JobName::parse("c").unwrap();
    store
        .execute(&c, Command::CreateJob(spec("c", "two")), None, &meta("x"))
        .await
        .unwrap();
    wait_for_jobs(&master, 2).await;
    assert!(
        died.elapsed() < Duration::from_secs(2 + 3),
        "takeover took {:?}",
        died.elapsed()
    );
    assert_eq!(leader().await.as_deref(), Some("second"));
    assert_etcd_equals_read_model(&master).await;
    shutdown_second.cancel();
    second.await.unwrap();
    shutdown_first.cancel();
    etcd.delete("unused", None).await.unwrap();
}

async fn wait_for_jobs(master: &Master, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while master.etcd_jobs().await.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "projection did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_replays_the_log_into_the_live_state() {
    let master = Master::new().await;
    let mut appended = 0;
    for writer in 0..12 {
        appended += mixed_commands(&master, writer, 100).await;
    }
    assert!(appended > 200, "only {appended} commands were accepted");
    master.project_all().await;
    let live_read_model = master.read_model().await;
    let live_etcd = master.etcd_jobs().await;
    let live_versions: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, version FROM jobs ORDER BY name")
            .fetch_all(&master.services.store.pool)
            .await
            .unwrap();

    // Damage both sides: an empty read model, a stray and a stale key in etcd.
    sqlx::query("DELETE FROM jobs")
        .execute(&master.services.store.pool)
        .await
        .unwrap();
    let mut etcd = master.env.etcd().await;
    etcd.put(
        master.env.keys.job(&JobName::parse("stray").unwrap()),
        spec("stray", "x").to_etcd_value(),
        None,
    )
    .await
    .unwrap();
    if let Some(name) = live_etcd.keys().next() {
        etcd.put(
            master.env.keys.job(&JobName::parse(name).unwrap()),
            spec(name, "stale").to_etcd_value(),
            None,
        )
        .await
        .unwrap();
    }

    let mut projector = master.projector("rebuild");
    let rebuilt = cronfleet_master::rebuild::rebuild(&mut projector)
        .await
        .unwrap();
    let last = master.services.store.last_seq().await.unwrap();
    assert_eq!(rebuilt.through_seq, last);
    assert_eq!(rebuilt.deleted, 1);
    assert_eq!(master.read_model().await, live_read_model);
    assert_eq!(master.etcd_jobs().await, live_etcd);
    let versions: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, version FROM jobs ORDER BY name")
            .fetch_all(&master.services.store.pool)
            .await
            .unwrap();
    assert_eq!(versions, live_versions);
    assert_eq!(projector.checkpoint().await.unwrap().0, last);
}
