//! A job as it was: at a version, at a moment, and reverted to a past version as a normal
//! update checked against If-Match.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::pages::text;
use crate::support::{job, Master};

async fn put(master: &Master, command: &str, version: u64) {
    let mut body = job("tt", command);
    body["version"] = json!(version);
    let reply = master
        .send(
            Method::PUT,
            "/api/v1/jobs/tt",
            Some("alice"),
            &[],
            Some(body.to_string()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn revert(master: &Master, body: serde_json::Value, if_match: &str) -> crate::support::Reply {
    master
        .send(
            Method::POST,
            "/api/v1/jobs/tt/revert",
            Some("bob"),
            &[("if-match", if_match), ("content-type", "application/json")],
            Some(body.to_string()),
        )
        .await
}

#[tokio::test]
async fn a_job_reads_back_at_a_version_and_a_moment_and_reverts_to_one() {
    let master = Master::new().await;
    let before_it = chrono::Utc::now();
    let reply = master.post("/api/v1/jobs", job("tt", "echo one")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let after_one = chrono::Utc::now();
    put(&master, "echo two", 1).await;
    let reply = master.post("/api/v1/jobs/tt/run", json!({})).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    put(&master, "echo three", 2).await;
    let current = master.get("/api/v1/jobs/tt").await.body;
    assert_eq!(current["version"], 4, "run now is an event, not a version");

    let one = master.get("/api/v1/jobs/tt/versions/1").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["command"], "echo one");
    assert_eq!(one.body["version"], 1);
    assert_eq!(one.body["updatedBy"], "alice (token test)");
    for missing in ["3", "9"] {
        let reply = master
            .get(&format!("/api/v1/jobs/tt/versions/{missing}"))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "version {missing}");
    }

    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!(
            "/api/v1/jobs/tt?asOf={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    };
    let then = master.get(&at(after_one)).await;
    assert_eq!(then.status, StatusCode::OK);
    assert_eq!(then.body["command"], "echo one");
    assert_eq!(then.body["version"], 1);
    assert_eq!(
        master.get(&at(before_it)).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = master.get("/api/v1/jobs/tt?asOf=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"]["field"], "asOf");

    let stale = revert(&master, json!({"toVersion": 1}), "\"2\"").await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    for (body, status, field) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "toVersion"),
        (
            json!({"toVersion": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "toVersion",
        ),
        (
            json!({"toVersion": 1, "force": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "force",
        ),
    ] {
        let reply = revert(&master, body.clone(), "\"4\"").await;
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    assert_eq!(
        revert(&master, json!({"toVersion": 3}), "\"4\"")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        master.get("/api/v1/jobs/tt").await.body["version"],
        4,
        "nothing changed"
    );

    let reverted = revert(&master, json!({"toVersion": 1}), "\"4\"").await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.body);
    assert_eq!(reverted.body["command"], "echo one");
    assert_eq!(reverted.body["version"], 5);
    assert_eq!(reverted.body["updatedBy"], "bob (token test)");
    let history = master.get("/api/v1/jobs/tt/history").await.body;
    let newest = &history["items"][0];
    assert_eq!(newest["type"], "JobUpdated");
    assert_eq!(newest["before"]["command"], "echo three");
    assert_eq!(newest["after"]["command"], "echo one");
}

#[tokio::test]
async fn a_past_version_has_its_page_with_a_diff_and_a_revert_button_for_admins() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("tt", "echo one")).await;
    put(&master, "echo two", 1).await;
    let (cookie, csrf) = master.session("alice").await;
    let job_page = master
        .page(Method::GET, "/jobs/tt", Some(&cookie), None)
        .await;
    assert!(text(&job_page).contains(r#"<a href="/jobs/tt/versions/1">version 1</a>"#));

    let page = master
        .page(Method::GET, "/jobs/tt/versions/1", Some(&cookie), None)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in [
        "Changes from version 1 to the current version (2)",
        "<code>command: echo one → echo two</code>",
        "Revert to version 1",
        r#"name="current" value="2""#,
    ] {
        assert!(
            text(&page).contains(needle),
            "the version page lacks {needle}: {}",
            text(&page)
        );
    }
    let between = master
        .page(
            Method::GET,
            "/jobs/tt/versions/1?against=1",
            Some(&cookie),
            None,
        )
        .await;
    assert!(text(&between).contains("None: the spec is the same."));
    let (viewer, _) = master.session("vera").await;
    let seen = master
        .page(Method::GET, "/jobs/tt/versions/1", Some(&viewer), None)
        .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(!text(&seen).contains("Revert to version"));
    let missing = master
        .page(Method::GET, "/jobs/tt/versions/7", Some(&cookie), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A change between showing the page and pressing the button is reported, not undone.
    put(&master, "echo three", 2).await;
    let fields = [("csrf", csrf.as_str()), ("current", "2")];
    let stale = master
        .page(
            Method::POST,
            "/jobs/tt/versions/1/revert",
            Some(&cookie),
            Some(&fields),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(text(&stale).contains("Someone changed this job"));
    assert_eq!(
        master.get("/api/v1/jobs/tt").await.body["command"],
        "echo three"
    );
    let fields = [("csrf", csrf.as_str()), ("current", "3")];
    let done = master
        .page(
            Method::POST,
            "/jobs/tt/versions/1/revert",
            Some(&cookie),
            Some(&fields),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", text(&done));
    let now = master.get("/api/v1/jobs/tt").await.body;
    assert_eq!(now["command"], "echo one");
    assert_eq!(now["version"], 4);
}
