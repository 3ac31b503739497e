//! The REST API through the router, against real PostgreSQL, etcd and MongoDB.

use crate::support::{actor, job, Master};
use axum::http::{Method, StatusCode};
use cronfleet_common::{ExecutionRecord, RunStatus, Trigger};
use serde_json::{json, Value};

async fn with_header(
    master: &Master,
    method: Method,
    path: &str,
    name: &str,
    value: &str,
    body: String,
) -> crate::support::Reply {
    master
        .send(method, path, Some("bob"), &[(name, value)], Some(body))
        .await
}

#[tokio::test]
async fn create_read_update_delete_with_versions() {
    let master = Master::new().await;
    let created = master
        .post("/api/v1/jobs", job("backup", "pg_dump app"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers["etag"], "\"1\"");
    assert_eq!(created.headers["location"], "/api/v1/jobs/backup");
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["nextRuns"].as_array().unwrap().len(), 5);

    let read = master.get("/api/v1/jobs/backup").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["createdBy"], actor("alice"));
    assert_eq!(read.headers["etag"], "\"1\"");

    let body = job("backup", "pg_dump --clean app").to_string();
    let update = |if_match: &'static str| {
        with_header(
            &master,
            Method::PUT,
            "/api/v1/jobs/backup",
            "if-match",
            if_match,
            body.clone(),
        )
    };
    let updated = update("\"1\"").await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["version"], 2);
    let stale = update("\"1\"").await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["error"]["code"], "version_conflict");
    assert_eq!(stale.body["error"]["currentVersion"], 2);

    let mut by_body = job("backup", "other");
    by_body["version"] = json!(1);
    let stale = master
        .send(
            Method::PUT,
            "/api/v1/jobs/backup",
            Some("bob"),
            &[],
            Some(by_body.to_string()),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::CONFLICT,
        "a body version works like If-Match"
    );

    let deleted = master
        .send(
            Method::DELETE,
            "/api/v1/jobs/backup",
            Some("carol"),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        master.get("/api/v1/jobs/backup").await.status,
        StatusCode::NOT_FOUND
    );
    let again = master
        .send(
            Method::DELETE,
            "/api/v1/jobs/backup",
            Some("carol"),
            &[],
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let master = Master::new().await;
    let cases = [
        (
            json!({"name": "a", "command": "x", "cronExpr": "@daily", "uid": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "uid",
        ),
        (
            json!({"name": "a/b", "command": "x", "cronExpr": "@daily"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "a", "command": "x", "cronExpr": "61 * * * *"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cronExpr",
        ),
        (
            json!({"name": "a", "command": "x", "cronExpr": "@daily", "timezone": "Mars/Base"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "timezone",
        ),
        (
            json!({"name": "a", "command": "", "cronExpr": "@daily"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            json!({"name": "a", "command": "x", "cronExpr": "@daily", "startingDeadlineSecs": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "startingDeadlineSecs",
        ),
    ];
    for (body, status, field) in cases {
        let reply = master.post("/api/v1/jobs", body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(
            reply.body["error"]["field"], field,
            "{body}: {}",
            reply.body
        );
    }
    let huge = json!({"name": "a", "command": "x".repeat(300 * 1024), "cronExpr": "@daily"});
    let too_large = master.post("/api/v1/jobs", huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.body["error"]["code"], "too_large");
    let not_a_number = master.get("/api/v1/jobs?limit=many").await;
    assert_eq!(not_a_number.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        not_a_number.body["error"]["field"], "limit",
        "{}",
        not_a_number.body
    );
    let anonymous = master
        .send(
            Method::POST,
            "/api/v1/jobs",
            None,
            &[],
            Some(job("a", "x").to_string()),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["error"]["code"], "unauthenticated");
    assert_eq!(anonymous.headers["www-authenticate"], "Bearer");
    let events = master
        .get("/api/v1/events?stream=job&type=JobCreated")
        .await;
    assert_eq!(
        events.body["items"].as_array().unwrap().len(),
        0,
        "nothing was appended"
    );
    let bad_limit = master.get("/api/v1/jobs?limit=0").await;
    assert_eq!(
        (bad_limit.status, bad_limit.body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("limit"))
    );
    let bad_type = master.get("/api/v1/events?type=JobExploded").await;
    assert_eq!(bad_type.body["error"]["field"], "type");
    let bad_time = master.get("/api/v1/events?since=yesterday").await;
    assert_eq!(bad_time.body["error"]["field"], "since");
}

#[tokio::test]
async fn pause_resume_run_kill_and_refused_transitions() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("nightly", "true")).await;
    let paused = master.post("/api/v1/jobs/nightly/pause", Value::Null).await;
    assert_eq!(
        (paused.status, paused.body["paused"].clone()),
        (StatusCode::OK, json!(true))
    );
    let again = master.post("/api/v1/jobs/nightly/pause", Value::Null).await;
    assert_eq!(
        (again.status, again.body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("already_paused"))
    );
    let resumed = master
        .post("/api/v1/jobs/nightly/resume", Value::Null)
        .await;
    assert_eq!(resumed.body["paused"], false);
    let run = master.post("/api/v1/jobs/nightly/run", Value::Null).await;
    assert_eq!(run.status, StatusCode::ACCEPTED);
    assert!(run.body["requestId"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let kill = master.post("/api/v1/jobs/nightly/kill", Value::Null).await;
    assert_eq!(kill.status, StatusCode::ACCEPTED);
    // Run-now and kill are on the record but leave the version (and the ETag) as they were.
    assert_eq!(kill.body["version"], 3);
    let got = master.get("/api/v1/jobs/nightly").await;
    assert_eq!(got.body["version"], 3);
    assert_eq!(got.headers["etag"], "\"3\"");
    let missing = master.post("/api/v1/jobs/ghost/kill", Value::Null).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let master = Master::new().await;
    let body = job("once", "true").to_string();
    let send = |key: &'static str, body: String| {
        with_header(
            &master,
            Method::POST,
            "/api/v1/jobs",
            "idempotency-key",
            key,
            body,
        )
    };
    let first = send("k-1", body.clone()).await;
    let retry = send("k-1", body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, first.body);
    // A write answers the job whole, who created and changed it included, as GET does.
    assert!(first.body["createdAt"].is_string(), "{}", first.body);
    assert_eq!(first.body["createdAt"], first.body["updatedAt"]);
    assert_eq!(first.body["createdBy"], first.body["updatedBy"]);
    let got = master.get("/api/v1/jobs/once").await;
    for field in ["createdAt", "createdBy", "updatedAt", "updatedBy"] {
        assert_eq!(got.body[field], first.body[field], "{field}");
    }
    // The job changes; a late retry still gets the answer of its own request (version 1).
    let run = |key: &'static str| {
        with_header(
            &master,
            Method::POST,
            "/api/v1/jobs/once/run",
            "idempotency-key",
            key,
            String::new(),
        )
    };
    let ran = run("r-1").await;
    assert_eq!(ran.status, StatusCode::ACCEPTED);
    let late = send("k-1", body.clone()).await;
    assert_eq!(late.body, first.body);
    assert_eq!(late.body["version"], 1);
    let ran_again = run("r-1").await;
    assert_eq!(ran_again.status, StatusCode::ACCEPTED);
    assert_eq!(ran_again.body, ran.body);
    assert_eq!(ran_again.body["version"], 1);
    // An update that changes nothing appends nothing; its retry still gets the job.
    let same = |key: &'static str| {
        with_header(
            &master,
            Method::PUT,
            "/api/v1/jobs/once",
            "idempotency-key",
            key,
            body.clone(),
        )
    };
    let unchanged = same("u-1").await;
    assert_eq!(unchanged.status, StatusCode::OK);
    assert_eq!(unchanged.body["version"], 1);
    let unchanged_again = same("u-1").await;
    assert_eq!(unchanged_again.status, StatusCode::OK);
    assert_eq!(unchanged_again.body, unchanged.body);
    assert_eq!(unchanged.body["createdAt"], first.body["createdAt"]);
    assert_eq!(unchanged.body["updatedAt"], first.body["updatedAt"]);
    let other = send("k-1", job("once", "false").to_string()).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["error"]["code"], "idempotency_key_reused");
    let events = master.get("/api/v1/events?job=once").await;
    assert_eq!(
        events.body["items"].as_array().unwrap().len(),
        2,
        "the retries appended nothing"
    );
}

#[tokio::test]
async fn history_and_audit_query_show_who_changed_what() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("audited", "v1")).await;
    master
        .send(
            Method::PUT,
            "/api/v1/jobs/audited",
            Some("bob"),
            &[],
            Some(job("audited", "v2").to_string()),
        )
        .await;
    master
        .send(
            Method::POST,
            "/api/v1/jobs/audited/pause",
            Some("carol"),
            &[],
            None,
        )
        .await;
    master.post("/api/v1/jobs", job("other", "x")).await;

    let history = master.get("/api/v1/jobs/audited/history").await;
    let items = history.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["JobPaused", "JobUpdated", "JobCreated"]);
    assert_eq!(items[1]["actor"], actor("bob"));
    assert_eq!(items[1]["before"]["command"], "v1");
    assert_eq!(items[1]["after"]["command"], "v2");
    assert_eq!(items[2]["before"], Value::Null);

    let by_bob = master
        .get("/api/v1/events?actor=bob%20(token%20test)")
        .await;
    assert_eq!(by_bob.body["items"].as_array().unwrap().len(), 1);
    let created = master.get("/api/v1/events?type=JobCreated").await;
    assert_eq!(created.body["items"].as_array().unwrap().len(), 2);
    let future = master
        .get("/api/v1/events?since=2999-01-01T00:00:00Z")
        .await;
    assert!(future.body["items"].as_array().unwrap().is_empty());

    let first = master.get("/api/v1/events?limit=2").await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = master
        .get(&format!("/api/v1/events?limit=2&cursor={cursor}"))
        .await;
    let seqs: Vec<i64> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.body["items"].as_array().unwrap())
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let newest = seqs[0];
    assert_eq!(seqs, [newest, newest - 1, newest - 2, newest - 3]);
    let rest = master
        .get(&format!("/api/v1/events?cursor={newest}&limit=500"))
        .await;
    let streams: Vec<&str> = rest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream"].as_str().unwrap())
        .collect();
    assert!(
        streams[3..].iter().all(|s| *s != "job"),
        "the setup's user and token events come before: {streams:?}"
    );
}

#[tokio::test]
async fn jobs_list_filters_and_pages() {
    let master = Master::new().await;
    for name in ["a-1", "a-2", "a-3", "b-1"] {
        master.post("/api/v1/jobs", job(name, "true")).await;
    }
    master.post("/api/v1/jobs/a-2/pause", Value::Null).await;
    let names = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&master.get("/api/v1/jobs?name=a-").await),
        ["a-1", "a-2", "a-3"]
    );
    assert_eq!(
        names(&master.get("/api/v1/jobs?status=paused").await),
        ["a-2"]
    );
    let page = master.get("/api/v1/jobs?limit=3").await;
    assert_eq!(names(&page), ["a-1", "a-2", "a-3"]);
    let next = master
        .get(&format!(
            "/api/v1/jobs?limit=3&cursor={}",
            page.body["nextCursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(names(&next), ["b-1"]);
}

#[tokio::test]
async fn executions_come_from_mongo_newest_first_with_a_cursor() {
    let master = Master::new().await;
    let log = master
        .env
        .mongo()
        .await
        .collection::<ExecutionRecord>("log");
    let records: Vec<ExecutionRecord> = (0..5)
        .map(|i| ExecutionRecord {
            run_id: format!("run-{i}"),
            job_name: "reported".to_owned(),
            command: "true".to_owned(),
            err: String::new(),
            output: format!("{i}\n"),
            plan_time: 1000 * i,
            schedule_time: 1000 * i,
            start_time: 1000 * i,
            end_time: 1000 * i + 5,
            worker_id: "w".to_owned(),
            status: RunStatus::Succeeded,
            exit_code: Some(0),
            signal: None,
            output_bytes: 2,
            truncated: false,
            fencing_token: i + 1,
            job_version: 1,
            trigger: Trigger::Schedule,
            reason: None,
            tick_id: None,
            attempt: None,
            source_run_id: None,
            will_retry: None,
            request_id: None,
            requested_by: None,
            killed_by: None,
        })
        .collect();
    log.insert_many(&records).await.unwrap();
    let first = master.get("/api/v1/jobs/reported/executions?limit=3").await;
    let ids = |reply: &crate::support::Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["runId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["run-4", "run-3", "run-2"]);
    let cursor = first.body["nextCursor"].as_str().unwrap().to_owned();
    let second = master
        .get(&format!(
            "/api/v1/jobs/reported/executions?limit=3&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&second), ["run-1", "run-0"]);
    assert_eq!(second.body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn workers_are_read_from_etcd() {
    let master = Master::new().await;
    let mut etcd = master.env.etcd().await;
    etcd.put(
        master.env.keys.worker("w-1"),
        json!({"id": "w-1", "slots": 4}).to_string(),
        None,
    )
    .await
    .unwrap();
    let workers = master.get("/api/v1/workers").await;
    assert_eq!(workers.status, StatusCode::OK);
    assert_eq!(workers.body["items"][0]["id"], "w-1");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let master = Master::new().await;
    assert_eq!(master.get("/healthz").await.status, StatusCode::OK);
    let ready = master.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["postgres"], "ok");
    master.post("/api/v1/jobs", job("counted", "true")).await;
    let metrics = master.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains(
            r#"cronfleet_http_requests_total{method="POST",route="/api/v1/jobs",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("cronfleet_http_request_duration_seconds_bucket"));
    assert!(text.contains("cronfleet_events_appended_total 1"));
    assert!(text.contains("cronfleet_projector_lag_events 1"));
}

#[tokio::test]
async fn a_dead_database_or_etcd_answers_503_within_a_second() {
    let master = Master::new().await;
    let token = master.tokens["alice"].clone();
    let dead_postgres = {
        let mut state = master.services.app_state();
        state.store.pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_secs(1))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        cronfleet_master::http::router(state)
    };
    let dead_etcd = {
        let mut state = master.services.app_state();
        let options =
            etcd_client::ConnectOptions::new().with_timeout(std::time::Duration::from_secs(1));
        state.reads.etcd = etcd_client::Client::connect(["http://127.0.0.1:1"], Some(options))
            .await
            .unwrap();
        cronfleet_master::http::router(state)
    };
    for (router, path) in [
        (dead_postgres, "/api/v1/jobs"),
        (dead_etcd, "/api/v1/workers"),
    ] {
        let started = std::time::Instant::now();
        let request = axum::http::Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        let elapsed = started.elapsed();
        assert!(
            elapsed < std::time::Duration::from_millis(1500),
            "{path} took {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn every_answer_carries_the_request_id_its_events_record() {
    let master = Master::new().await;
    let given = with_header(
        &master,
        Method::POST,
        "/api/v1/jobs",
        "x-request-id",
        "deploy-42",
        job("traced", "true").to_string(),
    )
    .await;
    assert_eq!(given.status, StatusCode::CREATED);
    assert_eq!(given.headers["x-request-id"], "deploy-42");
    let made = master
        .send(
            Method::POST,
            "/api/v1/jobs/traced/run",
            Some("bob"),
            &[],
            None,
        )
        .await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(!id.is_empty() && id != "deploy-42");
    let insane = with_header(
        &master,
        Method::POST,
        "/api/v1/jobs/traced/pause",
        "x-request-id",
        &"x".repeat(200),
        String::new(),
    )
    .await;
    let replaced = insane.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        replaced.len(),
        36,
        "an id over 128 characters is replaced by a new one"
    );
    let events = master.get("/api/v1/events?job=traced").await;
    let recorded: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, [replaced.as_str(), id.as_str(), "deploy-42"]);
}

#[tokio::test]
async fn a_job_names_its_shell_and_the_api_and_etcd_carry_it() {
    let master = Master::new().await;
    let created = master
        .post(
            "/api/v1/jobs",
            json!({"name": "bashy", "command": "[[ 1 ]]", "cronExpr": "@daily", "shell": "/bin/bash"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["shell"], "/bin/bash");
    master.post("/api/v1/jobs", job("plain", "true")).await;
    assert_eq!(
        master.get("/api/v1/jobs/plain").await.body["shell"],
        "/bin/sh"
    );
    master.project_all().await;
    assert_eq!(master.etcd_jobs().await["bashy"]["shell"], "/bin/bash");
}
