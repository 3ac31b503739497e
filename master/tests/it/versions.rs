//! Run-now and kill requests are on the record but are no change to the job: an editor (API
//! client holding an ETag, or an open edit form) who loaded the job before them still saves,
//! and the job's `updatedAt`/`updatedBy` stay those of its last change. Kill on the page asks
//! first.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::pages::text;
use crate::support::Master;

#[tokio::test]
async fn run_now_and_kill_leave_the_version_an_editor_holds() {
    let master = Master::new().await;
    let spec = json!({"name": "held", "command": "true", "cronExpr": "@daily"});
    let created = master.post("/api/v1/jobs", spec.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    let (cookie, csrf) = master.session("otto").await;
    let unconfirmed = master
        .page(
            Method::POST,
            "/jobs/held/kill",
            Some(&cookie),
            Some(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&unconfirmed).contains("confirm it"));
    for (action, confirm) in [("run", ""), ("kill", "kill")] {
        let pressed = master
            .page(
                Method::POST,
                &format!("/jobs/held/{action}"),
                Some(&cookie),
                Some(&[("csrf", &csrf), ("confirm", confirm)]),
            )
            .await;
        assert_eq!(pressed.status, StatusCode::SEE_OTHER, "{action}");
    }
    let ran = master.post("/api/v1/jobs/held/run", Value::Null).await;
    assert_eq!(
        (ran.status, &ran.body["version"]),
        (StatusCode::ACCEPTED, &json!(1))
    );

    let job = master.get("/api/v1/jobs/held").await;
    assert_eq!(job.headers["etag"].to_str().unwrap(), etag);
    assert_eq!(
        job.body["updatedBy"], "alice (token test)",
        "a run-now is no change to the job"
    );
    let events = master.get("/api/v1/events?job=held").await;
    let kinds: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "RunRequested").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"KillRequested"), "{kinds:?}");

    let mut changed = spec.clone();
    changed["command"] = json!("echo via api");
    let saved = master
        .send(
            Method::PUT,
            "/api/v1/jobs/held",
            Some("alice"),
            &[("if-match", &etag)],
            Some(changed.to_string()),
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{:?}", saved.body);
    let version = saved.body["version"].as_u64().unwrap();
    assert!(version > 1);

    // The form opened at that version; someone presses Run now; the form still saves.
    let (admin, admin_csrf) = master.session("alice").await;
    let pressed = master
        .page(
            Method::POST,
            "/jobs/held/run",
            Some(&cookie),
            Some(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(pressed.status, StatusCode::SEE_OTHER);
    let version = version.to_string();
    let form = [
        ("csrf", admin_csrf.as_str()),
        ("command", "echo via form"),
        ("cronExpr", "@daily"),
        ("version", version.as_str()),
        ("intent", "save"),
    ];
    let saved = master
        .page(Method::POST, "/jobs/held/edit", Some(&admin), Some(&form))
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", text(&saved));
    assert_eq!(
        master.get("/api/v1/jobs/held").await.body["command"],
        "echo via form"
    );
}
