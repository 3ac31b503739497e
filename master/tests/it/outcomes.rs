//! The notifier against real PostgreSQL, MongoDB-wire and SMTP servers and a real HTTP
//! receiver: records are written to `log` as a worker writes them, and what they set off —
//! signed webhooks, mail, chained run-nows — is observed where it lands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use cronfleet_common::{ExecutionRecord, RunStatus};
use cronfleet_master::config::Cli;
use cronfleet_master::notify::channel::ChannelInput;
use cronfleet_master::Services;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::support::Master;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// Deliveries a receiver accepted, by run id, each with its body.
type Received = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// An HTTP receiver on `port` that checks the signature of every delivery (a bad one gets
/// 401 and fails the test when counted) and keeps the bodies by run id.
async fn receiver(port: u16) -> (Received, CancellationToken) {
    let received: Received = Arc::default();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let timestamp = header("x-cronfleet-timestamp");
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(format!("{timestamp}.").as_bytes());
                mac.update(&body);
                let expected: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if header("x-cronfleet-signature") != format!("sha256={expected}") {
                    return StatusCode::UNAUTHORIZED;
                }
                let body: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(header("idempotency-key"), body["id"].as_str().unwrap());
                let run = body["runId"].as_str().unwrap().to_owned();
                kept.lock().unwrap().entry(run).or_default().push(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
            .unwrap();
    });
    (received, stop)
}

/// A notifier on `master`'s slice, with the test SMTP sink; stops with the token.
pub(crate) async fn notifier(master: &Master) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let mut args = master.env.master_args();
    args.extend(
        [
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &std::env::var("CRON_SMTP_PORT").expect("CRON_SMTP_PORT from compose/services"),
            "--smtp-tls",
            "none",
            "--public-url",
            "http://cron.example:8080",
        ]
        .map(str::to_owned),
    );
    let config = Cli::try_parse_from(args).unwrap().config;
    let services = Services::connect(&config).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(services.notifier().unwrap().run(stop.clone()));
    (stop, task)
}

pub(crate) fn record(job: &str, status: RunStatus) -> ExecutionRecord {
    let run_id = uuid::Uuid::now_v7().to_string();
    let mut record: ExecutionRecord = serde_json::from_value(json!({
        "runId": run_id, "jobName": job, "command": "backup.sh", "err": "",
        "output": "starting\nerror: disk full\n", "planTime": 1_900_000_000_000_i64,
        "scheduleTime": 1_900_000_000_001_i64, "startTime": 1_900_000_000_002_i64,
        "endTime": 1_900_000_003_000_i64, "workerId": "w1", "status": "succeeded",
        "exitCode": 0, "signal": null, "outputBytes": 27, "truncated": false,
        "fencingToken": 7, "jobVersion": 1, "trigger": "schedule", "attempt": 1
    }))
    .unwrap();
    record.status = status;
    if status == RunStatus::Failed {
        record.exit_code = Some(3);
        record.err = "exit status 3".to_owned();
    }
    record
}

/// Writes `record` to `log` as a worker does.
pub(crate) async fn write(master: &Master, record: &ExecutionRecord) {
    let log = master
        .env
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("log");
    log.insert_one(mongodb::bson::to_document(record).unwrap())
        .await
        .unwrap();
}

pub(crate) async fn wait_for<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mail the sink stored for run `run_id`, if any.
fn mail_for(run_id: &str) -> Vec<String> {
    let spool = std::env::var("CRON_SMTP_SPOOL").expect("CRON_SMTP_SPOOL from compose/services");
    std::fs::read_dir(spool)
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
                .filter(|text| text.contains(&format!("<{run_id}.")))
                .collect()
        })
        .unwrap_or_default()
}

async fn setup(master: &Master, hook_port: u16) {
    let channels = [
        json!({"name": "hook", "kind": "webhook", "url": format!("http://127.0.0.1:{hook_port}/hook"),
               "secret": SECRET}),
        json!({"name": "mail", "kind": "email", "recipients": ["ops@example.com"]}),
    ];
    let meta = cronfleet_master::store::RequestMeta {
        actor: "alice".to_owned(),
        request_id: "setup".to_owned(),
        idempotency: None,
    };
    for channel in channels {
        let input = ChannelInput::from_json(channel, false).unwrap();
        master
            .services
            .store
            .create_channel(input, &meta)
            .await
            .unwrap();
    }
    for job in ["cleanup", "report"] {
        let reply = master
            .post("/api/v1/jobs", crate::support::job(job, "true"))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let mut nightly = crate::support::job("nightly", "backup.sh");
    nightly["notify"] = json!([
        {"channel": "hook", "on": ["failure", "recovery"]},
        {"channel": "mail", "on": ["failure"]}
    ]);
    nightly["onSuccess"] = json!(["report"]);
    nightly["onFailure"] = json!(["cleanup"]);
    let reply = master.post("/api/v1/jobs", nightly).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
}

/// The chained run-now events of `job`: (actor, sourceRunId).
async fn chained_runs(master: &Master, job: &str) -> Vec<(String, String)> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT actor, payload FROM events WHERE stream = 'job' AND job_name = $1
         AND type = 'RunRequested' ORDER BY seq",
    )
    .bind(job)
    .fetch_all(&master.services.store.pool)
    .await
    .unwrap();
    rows.into_iter()
        .filter_map(|(actor, payload)| Some((actor, payload["sourceRunId"].as_str()?.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_signed_mailed_and_chained_once_and_recovery_follows_it() {
    let master = Master::new().await;
    let port = cronfleet_common::testkit::free_port();
    let (received, _receiver) = receiver(port).await;
    setup(&master, port).await;
    let (_stop, _task) = notifier(&master).await;

    let ok = record("nightly", RunStatus::Succeeded);
    write(&master, &ok).await;
    let report = wait_for(
        Duration::from_secs(15),
        "the chained report run",
        async || {
            let runs = chained_runs(&master, "report").await;
            (!runs.is_empty()).then_some(runs)
        },
    )
    .await;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].1, ok.run_id);
    assert!(report[0].0.contains(&ok.run_id), "actor {}", report[0].0);

    let failed = record("nightly", RunStatus::Failed);
    write(&master, &failed).await;
    let body = wait_for(
        Duration::from_secs(15),
        "the signed failure webhook",
        async || {
            received
                .lock()
                .unwrap()
                .get(&failed.run_id)
                .map(|b| b[0].clone())
        },
    )
    .await;
    assert_eq!(body["outcome"], "failure");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["exitCode"], 3);
    assert_eq!(body["job"], "nightly");
    assert!(body["outputTail"].as_str().unwrap().contains("disk full"));
    assert_eq!(
        body["url"],
        format!("http://cron.example:8080/executions/{}", failed.run_id)
    );
    let mail = wait_for(Duration::from_secs(15), "the failure mail", async || {
        let found = mail_for(&failed.run_id);
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("Subject: [cronfleet] nightly: failure (failed)"));
    assert!(mail[0].contains("X-Envelope-To: ops@example.com"));
    assert!(mail[0].contains("disk full"));
    let cleanup = wait_for(
        Duration::from_secs(15),
        "the chained cleanup run",
        async || {
            let runs = chained_runs(&master, "cleanup").await;
            (!runs.is_empty()).then_some(runs)
        },
    )
    .await;
    assert_eq!(cleanup[0].1, failed.run_id);
    // The projector hands the source run to the workers with the run-now.
    master.project_all().await;
    let mut etcd = master.env.etcd().await;
    let cleanup_name = cronfleet_common::JobName::parse("cleanup").unwrap();
    let trigger = etcd
        .get(master.env.keys.trigger(&cleanup_name), None)
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(trigger.kvs()[0].value()).unwrap();
    assert_eq!(value["sourceRunId"], failed.run_id.as_str());

    let back = record("nightly", RunStatus::Succeeded);
    write(&master, &back).await;
    let recovery = wait_for(
        Duration::from_secs(15),
        "the recovery webhook",
        async || {
            received
                .lock()
                .unwrap()
                .get(&back.run_id)
                .map(|b| b[0].clone())
        },
    )
    .await;
    assert_eq!(recovery["outcome"], "recovery");
    // Reading the same records again (a restarted notifier replays its lookback) repeats
    // nothing: one delivery per run, one chained run per outcome.
    let (_again, _task2) = notifier(&master).await;
    write(&master, &record("other-job", RunStatus::Failed)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = received.lock().unwrap().clone();
    assert!(
        !received.contains_key(&ok.run_id),
        "success is not on the hook's rules"
    );
    assert!(
        received.values().all(|bodies| bodies.len() == 1),
        "{received:#?}"
    );
    assert_eq!(chained_runs(&master, "cleanup").await.len(), 1);
    assert_eq!(chained_runs(&master, "report").await.len(), 2);
    assert_eq!(mail_for(&failed.run_id).len(), 1);
}

/// Every delivery of run `run_id` with its tries, as text for a failure message.
async fn deliveries_of(pool: &sqlx::PgPool, run_id: &str) -> String {
    let rows: Vec<(String, String, i32, String, Option<String>)> = sqlx::query_as(
        "SELECT channel, state, attempts, next_at::text, last_error FROM deliveries WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .unwrap();
    let tries: Vec<(i32, String, bool, String)> = sqlx::query_as(
        "SELECT a.attempt, a.at::text, a.ok, a.detail FROM delivery_attempts a
         JOIN deliveries d ON d.id = a.delivery_id WHERE d.run_id = $1 ORDER BY a.at",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .unwrap();
    format!("{rows:?}; tries {tries:?}; now {}", chrono::Utc::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_thirty_seconds_gets_the_delivery_once_when_it_returns() {
    let master = Master::new().await;
    let port = cronfleet_common::testkit::free_port();
    setup(&master, port).await;
    let (_stop, _task) = notifier(&master).await;
    let failed = record("nightly", RunStatus::Failed);
    write(&master, &failed).await;
    let pool = master.services.store.pool.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (tries, span): (i64, f64) = sqlx::query_as(
            "SELECT count(*), coalesce(extract(epoch FROM max(a.at) - min(a.at))::float8, 0)
             FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.run_id = $1 AND d.channel = 'hook' AND NOT a.ok",
        )
        .bind(&failed.run_id)
        .fetch_one(&pool)
        .await
        .unwrap();
        if tries >= 2 && span >= 30.0 {
            break;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for 30 s of failed tries; the deliveries: {}",
                deliveries_of(&pool, &failed.run_id).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (received, _receiver) = receiver(port).await;
    wait_for(
        Duration::from_secs(45),
        "the delivery after the receiver came back",
        async || received.lock().unwrap().get(&failed.run_id).map(|_| ()),
    )
    .await;
    let (state, attempts): (String, i32) = sqlx::query_as(
        "SELECT state, attempts FROM deliveries WHERE run_id = $1 AND channel = 'hook'",
    )
    .bind(&failed.run_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "sent");
    assert!(attempts >= 3, "{attempts} tries");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.lock().unwrap()[&failed.run_id].len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_killed_midway_loses_and_repeats_no_outcome() {
    let master = Master::new().await;
    let port = cronfleet_common::testkit::free_port();
    let (received, _receiver) = receiver(port).await;
    setup(&master, port).await;
    let records: Vec<ExecutionRecord> = (0..30)
        .map(|_| record("nightly", RunStatus::Failed))
        .collect();
    let (_first_stop, first) = notifier(&master).await;
    for record in &records {
        write(&master, record).await;
    }
    let pool = master.services.store.pool.clone();
    wait_for(Duration::from_secs(20), "the first outcomes", async || {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outcomes")
            .fetch_one(&pool)
            .await
            .unwrap();
        (n > 0).then_some(())
    })
    .await;
    // Dropped wherever it is, mid-transaction or mid-delivery, as a crash would leave it.
    first.abort();
    let (_second_stop, _second) = notifier(&master).await;
    wait_for(
        Duration::from_secs(60),
        "every failure delivered",
        async || {
            let got = received.lock().unwrap();
            records
                .iter()
                .all(|r| got.contains_key(&r.run_id))
                .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(30),
        "every cleanup chained",
        async || (chained_runs(&master, "cleanup").await.len() >= records.len()).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received.lock().unwrap().clone();
    assert!(got.values().all(|bodies| bodies.len() == 1), "{got:#?}");
    let sources: std::collections::HashSet<String> = chained_runs(&master, "cleanup")
        .await
        .into_iter()
        .map(|(_, source)| source)
        .collect();
    assert_eq!(sources.len(), records.len());
    assert_eq!(chained_runs(&master, "cleanup").await.len(), records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_holds_up_only_its_own_deliveries() {
    let master = Master::new().await;
    // Connections to it complete in the kernel's backlog and are never answered, so every
    // webhook try waits for its timeout.
    let hanging = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    setup(&master, hanging.local_addr().unwrap().port()).await;
    let (_stop, _task) = notifier(&master).await;
    let pool = master.services.store.pool.clone();
    let first = record("nightly", RunStatus::Failed);
    write(&master, &first).await;
    wait_for(Duration::from_secs(20), "the first mail", async || {
        (!mail_for(&first.run_id).is_empty()).then_some(())
    })
    .await;
    let second = record("nightly", RunStatus::Failed);
    write(&master, &second).await;
    wait_for(Duration::from_secs(20), "the second mail", async || {
        (!mail_for(&second.run_id).is_empty()).then_some(())
    })
    .await;
    let hook_tries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.run_id = $1 AND d.channel = 'hook'",
    )
    .bind(&first.run_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        hook_tries,
        0,
        "the second mail went out only after the first hanging webhook try had ended: {}",
        deliveries_of(&pool, &first.run_id).await
    );
}
