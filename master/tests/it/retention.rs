//! Retention: the fleet's default and each job's own days and counts, enforced by the pruner
//! on the records already kept (a changed retention applies at the next pass), by the elected
//! notifier on its own; the setting through the API, the form and the job page.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use clap::Parser;
use cronfleet_common::{ExecutionRecord, Retention, RunStatus};
use cronfleet_master::config::Cli;
use cronfleet_master::prune::{Pruned, Pruner};
use cronfleet_master::Services;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::outcomes::{record, wait_for, write};
use crate::pages::text;
use crate::support::{job, Master};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// A record of `job` that started `ago` ms before `now`, its run id naming both.
fn aged(job: &str, ago: i64, now: i64) -> ExecutionRecord {
    let mut r = record(job, RunStatus::Succeeded);
    r.run_id = format!("{job}-{ago}");
    r.start_time = now - ago;
    r.plan_time = r.start_time;
    r.schedule_time = r.start_time;
    r.end_time = r.start_time + 1000;
    r
}

/// Each job's run ids still in the log.
async fn kept(master: &Master) -> BTreeMap<String, Vec<String>> {
    let log = master.env.mongo().await.collection::<Document>("log");
    let documents: Vec<Document> = log
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in documents {
        let job = d.get_str("jobName").unwrap().to_owned();
        kept.entry(job)
            .or_default()
            .push(d.get_str("runId").unwrap().to_owned());
    }
    for ids in kept.values_mut() {
        ids.sort();
    }
    kept
}

fn ids(job: &str, ages: &[i64]) -> Vec<String> {
    let mut ids: Vec<String> = ages.iter().map(|ago| format!("{job}-{ago}")).collect();
    ids.sort();
    ids
}

async fn create(master: &Master, name: &str, retention: Option<serde_json::Value>) {
    let mut body = job(name, "true");
    if let Some(retention) = retention {
        body["retention"] = retention;
    }
    let reply = master.post("/api/v1/jobs", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

#[tokio::test]
async fn records_past_their_jobs_retention_are_deleted_and_a_change_applies_to_those_kept() {
    let master = Master::new().await;
    create(&master, "plain", None).await;
    create(&master, "short", Some(json!({"days": 2}))).await;
    create(&master, "long", Some(json!({"days": 200}))).await;
    create(&master, "few", Some(json!({"maxRecords": 3}))).await;
    create(&master, "both", Some(json!({"days": 2, "maxRecords": 2}))).await;
    let now = chrono::Utc::now().timestamp_millis();
    let written: [(&str, &[i64]); 6] = [
        ("plain", &[DAY, 89 * DAY, 91 * DAY]),
        ("short", &[DAY, 3 * DAY]),
        ("long", &[91 * DAY, 199 * DAY, 201 * DAY]),
        // The newest is younger than the notifier's lookback: kept whatever the count.
        (
            "few",
            &[MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 5 * HOUR],
        ),
        ("both", &[HOUR, 2 * HOUR, 3 * HOUR, 3 * DAY]),
        // A job deleted long ago: its records go by the fleet's default.
        ("gone", &[10 * DAY, 91 * DAY]),
    ];
    for (job, ages) in written {
        for ago in ages {
            write(&master, &aged(job, *ago, now)).await;
        }
    }
    let pruner = Pruner {
        store: master.services.store.clone(),
        log: master.services.log.clone(),
        default: Retention {
            days: Some(90),
            max_records: None,
        },
        every: Duration::from_secs(300),
        settle_ms: 5 * MINUTE,
    };
    let pruned = pruner.prune(now).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            by_age: 5,
            by_count: 4
        }
    );
    let expected = BTreeMap::from([
        ("plain".to_owned(), ids("plain", &[DAY, 89 * DAY])),
        ("short".to_owned(), ids("short", &[DAY])),
        ("long".to_owned(), ids("long", &[91 * DAY, 199 * DAY])),
        ("few".to_owned(), ids("few", &[MINUTE, HOUR, 2 * HOUR])),
        ("both".to_owned(), ids("both", &[HOUR, 2 * HOUR])),
        ("gone".to_owned(), ids("gone", &[10 * DAY])),
    ]);
    assert_eq!(kept(&master).await, expected);
    assert_eq!(
        pruner.prune(now).await.unwrap(),
        Pruned::default(),
        "a second pass finds nothing more"
    );

    // Shortening a job's retention deletes what it no longer keeps at the next pass; a
    // count of one keeps the newest record even when it is only a minute old.
    let mut plain = job("plain", "true");
    plain["retention"] = json!({"days": 30});
    plain["version"] = json!(1);
    let reply = master
        .send(
            Method::PUT,
            "/api/v1/jobs/plain",
            Some("alice"),
            &[],
            Some(plain.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["retention"], json!({"days": 30}));
    let mut few = job("few", "true");
    few["retention"] = json!({"maxRecords": 1});
    few["version"] = json!(1);
    let reply = master
        .send(
            Method::PUT,
            "/api/v1/jobs/few",
            Some("alice"),
            &[],
            Some(few.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let pruned = pruner.prune(now).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            by_age: 1,
            by_count: 2
        }
    );
    let kept = kept(&master).await;
    assert_eq!(kept["plain"], ids("plain", &[DAY]));
    assert_eq!(kept["few"], ids("few", &[MINUTE]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elected_notifier_prunes_on_its_own() {
    let master = Master::new().await;
    create(&master, "nightly", None).await;
    let now = chrono::Utc::now().timestamp_millis();
    write(&master, &aged("nightly", 8 * DAY, now)).await;
    write(&master, &aged("nightly", HOUR, now)).await;
    let mut args = master.env.master_args();
    args.extend(["--retention-days", "7", "--retention-every-secs", "1"].map(str::to_owned));
    let config = Cli::try_parse_from(args).unwrap().config;
    let services = Services::connect(&config).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(services.notifier().unwrap().run(stop.clone()));
    let kept = wait_for(
        Duration::from_secs(30),
        "the week-old record pruned",
        async || {
            let kept = kept(&master).await;
            (kept["nightly"].len() == 1).then_some(kept)
        },
    )
    .await;
    assert_eq!(kept["nightly"], ids("nightly", &[HOUR]));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn retention_is_refused_by_field_set_by_form_and_shown_on_the_job_page() {
    let master = Master::new().await;
    for (retention, field) in [
        (json!({"days": 0}), "retention.days"),
        (json!({"maxRecords": 20_000_000}), "retention.maxRecords"),
        (json!({"hours": 3}), "retention.hours"),
        (json!("90d"), "retention"),
    ] {
        let mut body = job("kept", "true");
        body["retention"] = retention.clone();
        let reply = master.post("/api/v1/jobs", body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{retention}"
        );
        assert_eq!(
            reply.body["error"]["field"], field,
            "{retention}: {}",
            reply.body
        );
    }
    assert_eq!(
        master.get("/api/v1/jobs/kept").await.status,
        StatusCode::NOT_FOUND
    );

    let (cookie, csrf) = master.session("alice").await;
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("name", "kept"),
        ("command", "true"),
        ("cronExpr", "@daily"),
        ("intent", "save"),
        ("retentionDays", "lots"),
    ];
    let refused = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&fields))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&refused).contains(
        r#"<p class="field-error" id="retentionDays-error">retention.days: must be a whole number"#
    ));
    fields.pop();
    fields.push(("retentionMaxRecords", "500"));
    let saved = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&fields))
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", text(&saved));
    let job = master.get("/api/v1/jobs/kept").await.body;
    assert_eq!(job["retention"], json!({"maxRecords": 500}));
    let page = master
        .page(Method::GET, "/jobs/kept", Some(&cookie), None)
        .await;
    assert!(
        text(&page).contains(
            "90 days, at most the newest 500 (this job&#39;s own, with the fleet&#39;s default for the rest)"
        ),
        "{}",
        text(&page)
    );
    let edit = master
        .page(Method::GET, "/jobs/kept/edit", Some(&cookie), None)
        .await;
    assert!(text(&edit).contains(r#"name="retentionMaxRecords" value="500""#));
    assert!(text(&edit).contains("the fleet's default (90 days)"));
}
