//! Hostile or malformed input gets a 4xx that names what is wrong, never a 500, and changes
//! nothing: NUL bytes, duplicate JSON keys, other content types, schedules that never fire,
//! job variables that steer the loader, and sign-ins with impossible names.

use std::time::{Duration, Instant};

use crate::support::{job, Master};
use axum::http::{Method, StatusCode};
use serde_json::json;

async fn post_raw(
    master: &Master,
    path: &str,
    content_type: &str,
    body: &str,
) -> crate::support::Reply {
    master
        .send(
            Method::POST,
            path,
            Some("alice"),
            &[("content-type", content_type)],
            Some(body.to_owned()),
        )
        .await
}

#[tokio::test]
async fn bad_api_input_is_refused_by_name_and_changes_nothing() {
    let master = Master::new().await;
    let cases: Vec<(crate::support::Reply, StatusCode, &str)> = vec![
        (
            master.get("/api/v1/events?job=a%00b").await,
            StatusCode::BAD_REQUEST,
            "job",
        ),
        (
            master.get("/api/v1/jobs?status=%00").await,
            StatusCode::BAD_REQUEST,
            "status",
        ),
        (
            post_raw(
                &master,
                "/api/v1/jobs",
                "application/json",
                r#"{"name":"dup","command":"true","cronExpr":"@daily","command":"rm -rf /"}"#,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            post_raw(
                &master,
                "/api/v1/jobs",
                "application/json",
                r#"{"name":"nul","command":"true","cronExpr":"@daily","description":"a\u0000b"}"#,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "description",
        ),
        (
            master
                .post(
                    "/api/v1/jobs",
                    json!({"name": "past", "command": "true", "cronExpr": "0 0 0 1 1 * 2025"}),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "cronExpr",
        ),
        (
            master
                .post(
                    "/api/v1/jobs",
                    json!({"name": "preload", "command": "true", "cronExpr": "@daily",
                           "env": {"LD_PRELOAD": "/tmp/x.so"}}),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "env.LD_PRELOAD",
        ),
        (
            master
                .post(
                    "/api/v1/jobs",
                    json!({"name": "shelled", "command": "true", "cronExpr": "@daily",
                           "shell": "bash -e"}),
                )
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "shell",
        ),
    ];
    for (reply, status, field) in cases {
        assert_eq!(reply.status, status, "{field}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{}", reply.body);
    }
    let form = post_raw(
        &master,
        "/api/v1/jobs",
        "application/x-www-form-urlencoded",
        &job("form", "true").to_string(),
    )
    .await;
    assert_eq!(
        form.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        form.body
    );
    assert_eq!(
        master.get("/api/v1/jobs").await.body["items"],
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn impossible_sign_in_names_are_refused_without_a_lookup_or_a_500() {
    let master = Master::new().await;
    for name in ["a\0b", &"x".repeat(200 * 1024), ""] {
        let reply = master
            .page(
                Method::POST,
                "/login",
                None,
                Some(&[("name", name), ("password", "whatever it is")]),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", name.len());
    }
}

#[tokio::test]
async fn an_unknown_user_costs_a_sign_in_the_same_hash_work_as_a_known_one() {
    let master = Master::new().await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Interleaved, so that load on the machine weighs on both alike; five tries for each of
    // five names of each kind, which the throttle still lets through to the password check.
    let known_names = ["alice", "bob", "carol", "vera", "otto"];
    let unknown_names = ["nobody-1", "nobody-2", "nobody-3", "nobody-4", "nobody-5"];
    for round in 0..25 {
        let pair = [
            (known_names[round % 5], &mut known),
            (unknown_names[round % 5], &mut unknown),
        ];
        for (name, times) in pair {
            let password = format!("wrong password {round}");
            let started = Instant::now();
            let reply = master
                .page(
                    Method::POST,
                    "/login",
                    None,
                    Some(&[("name", name), ("password", &password)]),
                )
                .await;
            times.push(started.elapsed());
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        }
    }
    // The fastest of each: load from other tests only ever adds time, so the minimum is the
    // sign-in's own cost (medians of five drifted past the bound under a parallel suite).
    let fastest = |times: &[Duration]| times.iter().min().copied().unwrap_or_default();
    let (known, unknown) = (fastest(&known), fastest(&unknown));
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    println!("fastest sign-ins: known user {known:?}, unknown user {unknown:?}, ratio {ratio:.2}");
    assert!(
        (0.8..=1.2).contains(&ratio),
        "unknown user {unknown:?} against known user {known:?} (ratio {ratio:.2})"
    );
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_caller_and_compare_requests_by_meaning() {
    let master = Master::new().await;
    let send = |user: &'static str, body: &'static str| {
        let master = &master;
        async move {
            master
                .send(
                    Method::POST,
                    "/api/v1/jobs",
                    Some(user),
                    &[("idempotency-key", "nightly-1")],
                    Some(body.to_owned()),
                )
                .await
        }
    };
    let first = send(
        "alice",
        r#"{"name":"a-job","command":"true","cronExpr":"@daily"}"#,
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    // The same request by meaning (other key order, other whitespace): the first answer.
    let again = send(
        "alice",
        r#"{ "cronExpr": "@daily", "command": "true", "name": "a-job" }"#,
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, first.body);
    // Another request under the same key: refused.
    let other = send(
        "alice",
        r#"{"name":"b-job","command":"true","cronExpr":"@daily"}"#,
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.body
    );
    // Another caller's key of the same name is a key of its own: its request runs.
    let bob = send(
        "bob",
        r#"{"name":"b-job","command":"true","cronExpr":"@daily"}"#,
    )
    .await;
    assert_eq!(bob.status, StatusCode::CREATED, "{}", bob.body);
    assert_eq!(bob.body["name"], "b-job");
}
