//! The admin pages through the router: sign-in, sessions, CSRF, every page's key content, and
//! escaping of hostile job fields and output.

use crate::support::Master;
use axum::http::{Method, StatusCode};
use cronfleet_common::{ExecutionRecord, JobName, JobSpec, MissReason, RunStatus, Trigger};
use cronfleet_master::domain::Command;
use cronfleet_master::store::RequestMeta;
use serde_json::json;

const HOSTILE: &str = "<script>alert(1)</script>\\\"'><img src=x onerror=alert(2)>";

pub fn text(reply: &crate::support::Reply) -> &str {
    reply.body.as_str().unwrap()
}

/// No payload gets through raw; where the page shows the hostile fields, they show escaped.
fn assert_escaped(path: &str, page: &str) {
    assert!(!page.contains("<script>alert"), "{path}: raw script");
    assert!(!page.contains("<img src=x"), "{path}: raw img");
    if path != "/" {
        let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
        assert!(page.contains(escaped), "{path}: escaped payload missing");
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it() {
    let master = Master::new().await;
    let anonymous = master.page(Method::GET, "/", None, None).await;
    assert_eq!(
        (
            anonymous.status,
            anonymous.headers["location"].to_str().unwrap()
        ),
        (StatusCode::SEE_OTHER, "/login")
    );
    let form = master.page(Method::GET, "/login", None, None).await;
    assert!(text(&form).contains(r#"type="password""#));

    let wrong = master
        .page(
            Method::POST,
            "/login",
            None,
            Some(&[("name", "alice"), ("password", "nope nope nope")]),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(text(&wrong).contains("Wrong user name or password"));
    let right = master
        .page(
            Method::POST,
            "/login",
            None,
            Some(&[("name", "alice"), ("password", "a long test password")]),
        )
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let cookie = right.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP here; --secure-cookies turns Secure on"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let dashboard = master.page(Method::GET, "/", Some(&session), None).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(text(&dashboard).contains("alice"));

    let csrf = text(&dashboard)
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let out = master
        .page(
            Method::POST,
            "/logout",
            Some(&session),
            Some(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        master
            .page(Method::GET, "/", Some(&session), None)
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn repeated_failures_throttle_sign_in() {
    let master = Master::new().await;
    for _ in 0..5 {
        let reply = master
            .page(
                Method::POST,
                "/login",
                None,
                Some(&[("name", "bob"), ("password", "wrong wrong wrong")]),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = master
        .page(
            Method::POST,
            "/login",
            None,
            Some(&[("name", "bob"), ("password", "a long test password")]),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(text(&blocked).contains("Too many failed sign-ins"));
}

#[tokio::test]
async fn forms_need_the_csrf_token_and_this_origin() {
    let master = Master::new().await;
    let (cookie, csrf) = master.session("alice").await;
    let fields = [
        ("name", "csrf-job"),
        ("command", "true"),
        ("cronExpr", "@daily"),
        ("intent", "save"),
    ];
    let without = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&fields))
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let mut with: Vec<(&str, &str)> = fields.to_vec();
    with.push(("csrf", &csrf));
    let request = axum::http::Request::post("/jobs/new")
        .header("host", "cronfleet.test")
        .header("origin", "https://evil.example")
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(
            serde_urlencoded::to_string(&with).unwrap(),
        ))
        .unwrap();
    let cross_site = tower::ServiceExt::oneshot(master.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        master.get("/api/v1/jobs/csrf-job").await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    let created = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&with))
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    assert_eq!(created.headers["location"], "/jobs/csrf-job?done=created");
    let detail = master
        .page(
            Method::GET,
            "/jobs/csrf-job?done=created",
            Some(&cookie),
            None,
        )
        .await;
    assert!(text(&detail).contains("Job created."));
}

async fn hostile_job(master: &Master) -> String {
    let spec = JobSpec::from_user_json(json!({"name": "hostile", "command": format!("echo '{HOSTILE}'"), "cronExpr": "*/5 * * * *", "description": HOSTILE}).to_string().as_bytes()).unwrap();
    let meta = RequestMeta {
        actor: "alice".into(),
        request_id: "r".into(),
        idempotency: None,
    };
    let name = JobName::parse("hostile").unwrap();
    master
        .services
        .store
        .execute(&name, Command::CreateJob(spec), None, &meta)
        .await
        .unwrap();
    let record = ExecutionRecord {
        run_id: "run-hostile".into(),
        job_name: "hostile".into(),
        command: format!("echo '{HOSTILE}'"),
        err: HOSTILE.into(),
        output: format!("{HOSTILE}\n"),
        plan_time: 1_764_000_000_000,
        schedule_time: 1_764_000_000_000,
        start_time: 1_764_000_000_001,
        end_time: 1_764_000_000_050,
        worker_id: "w<1>".into(),
        status: RunStatus::Failed,
        exit_code: Some(1),
        signal: None,
        output_bytes: 64,
        truncated: false,
        fencing_token: 9,
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
    };
    let missed = ExecutionRecord {
        run_id: "missed-hostile-1763999700000".into(),
        status: RunStatus::Missed,
        reason: Some(MissReason::NoFreeSlot),
        plan_time: 1_763_999_700_000,
        start_time: 1_763_999_760_000,
        end_time: 1_763_999_760_000,
        exit_code: None,
        fencing_token: 0,
        output: String::new(),
        ..record.clone()
    };
    let log = master
        .env
        .mongo()
        .await
        .collection::<ExecutionRecord>("log");
    log.insert_many([&record, &missed]).await.unwrap();
    record.run_id
}

#[tokio::test]
async fn every_page_renders_its_content_with_hostile_fields_escaped() {
    let master = Master::new().await;
    let run_id = hostile_job(&master).await;
    let (cookie, _) = master.session("alice").await;
    let pages = [
        ("/", vec!["hostile", "every 5 minutes", "failed"]),
        (
            "/jobs/hostile",
            vec![
                "Recent executions",
                "Starting deadline",
                "missed</span></a> <small>no_free_slot</small>",
                "History",
                "JobCreated",
                "Run now",
                "Delete this job",
            ],
        ),
        (
            "/jobs/hostile/edit",
            vec!["Save changes", "Preview next runs"],
        ),
        (
            &format!("/executions/{run_id}") as &str,
            vec!["Fencing token", "w&#60;1&#62;"],
        ),
        ("/audit?job=hostile", vec!["JobCreated", "alice"]),
    ];
    for (path, expected) in pages {
        let reply = master.page(Method::GET, path, Some(&cookie), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        for needle in expected {
            assert!(text(&reply).contains(needle), "{path} lacks {needle}");
        }
        assert_escaped(path, text(&reply));
    }
    for (path, needle) in [
        ("/jobs/new", "Create job"),
        ("/workers", "No cronfleet worker is registered"),
        ("/tokens", "Create token"),
    ] {
        let reply = master.page(Method::GET, path, Some(&cookie), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(text(&reply).contains(needle), "{path} lacks {needle}");
    }
    let missing = master
        .page(Method::GET, "/no/such/page", Some(&cookie), None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        text(&missing).contains("There is no such page")
            && text(&missing).contains("/static/style.css")
    );
    let css = master
        .page(Method::GET, "/static/style.css", None, None)
        .await;
    assert_eq!(
        (css.status, css.headers["content-type"].to_str().unwrap()),
        (StatusCode::OK, "text/css; charset=utf-8")
    );
}

#[tokio::test]
async fn viewers_see_no_buttons_they_cannot_use() {
    let master = Master::new().await;
    hostile_job(&master).await;
    let (cookie, _) = master.session("vera").await;
    let detail = master
        .page(Method::GET, "/jobs/hostile", Some(&cookie), None)
        .await;
    assert!(!text(&detail).contains("Run now") && !text(&detail).contains("Delete this job"));
    assert_eq!(
        master
            .page(Method::GET, "/jobs/new", Some(&cookie), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_form_previews_validates_inline_and_reports_a_concurrent_edit() {
    let master = Master::new().await;
    let (cookie, csrf) = master.session("alice").await;
    let preview = master
        .page(
            Method::POST,
            "/jobs/new",
            Some(&cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "berlin"),
                ("command", "true"),
                ("cronExpr", "30 2 * * *"),
                ("timezone", "Europe/Berlin"),
                ("intent", "preview"),
            ]),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK);
    assert_eq!(
        text(&preview).matches("CET").count() + text(&preview).matches("CEST").count(),
        5,
        "five fire times in Berlin time"
    );
    assert_eq!(
        master.get("/api/v1/jobs/berlin").await.status,
        StatusCode::NOT_FOUND,
        "a preview saves nothing"
    );
    let invalid = master
        .page(
            Method::POST,
            "/jobs/new",
            Some(&cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "bad"),
                ("command", "true"),
                ("cronExpr", "61 * * * *"),
                ("intent", "save"),
            ]),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        text(&invalid).contains("minute: 61 is out of range 0-59")
            && text(&invalid).contains(r#"id="cron-error""#)
    );
    assert!(
        text(&invalid).contains(r#"value="bad""#),
        "the form keeps what was typed"
    );
    // Every error at once, each beside its field.
    let many = master
        .page(
            Method::POST,
            "/jobs/new",
            Some(&cookie),
            Some(&[
                ("csrf", &csrf),
                ("name", "a/b"),
                ("command", "true"),
                ("cronExpr", "61 * * * *"),
                ("timezone", "Mars/Olympus"),
                ("timeoutSecs", "soon"),
                ("intent", "save"),
            ]),
        )
        .await;
    assert_eq!(many.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["name-error", "cron-error", "tz-error", "timeout-error"] {
        assert!(
            text(&many).contains(&format!(r#"id="{id}""#)),
            "{id} missing: {}",
            text(&many)
        );
    }

    let bad_env = [
        ("csrf", csrf.as_str()),
        ("name", "envy"),
        ("command", "true"),
        ("cronExpr", "@daily"),
        ("env", "A-B=1"),
        ("intent", "save"),
    ];
    let refused = master
        .page(Method::POST, "/jobs/new", Some(&cookie), Some(&bad_env))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&refused).contains(r#"id="env-error""#) && text(&refused).contains("env.A-B"));
    let good_env = [
        ("csrf", csrf.as_str()),
        ("name", "envy"),
        ("command", "true"),
        ("cronExpr", "@daily"),
        ("env", "GREETING=hi there\r\nLEVEL=3"),
        ("intent", "save"),
    ];
    assert_eq!(
        master
            .page(Method::POST, "/jobs/new", Some(&cookie), Some(&good_env))
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        master.get("/api/v1/jobs/envy").await.body["env"],
        json!({"GREETING": "hi there", "LEVEL": "3"})
    );

    master
        .post(
            "/api/v1/jobs",
            json!({"name": "shared", "command": "v1", "cronExpr": "@daily"}),
        )
        .await;
    let edit = [
        ("csrf", csrf.as_str()),
        ("command", "mine"),
        ("cronExpr", "@daily"),
        ("version", "1"),
        ("intent", "save"),
    ];
    master
        .send(
            Method::PUT,
            "/api/v1/jobs/shared",
            Some("bob"),
            &[],
            Some(json!({"name": "shared", "command": "theirs", "cronExpr": "@daily"}).to_string()),
        )
        .await;
    let conflict = master
        .page(
            Method::POST,
            "/jobs/shared/edit",
            Some(&cookie),
            Some(&edit),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert!(text(&conflict).contains("Someone changed this job"));
    assert_eq!(
        master.get("/api/v1/jobs/shared").await.body["command"],
        "theirs",
        "the other edit was not overwritten"
    );
}

#[tokio::test]
async fn actions_post_and_redirect_and_delete_needs_the_name() {
    let master = Master::new().await;
    master
        .post(
            "/api/v1/jobs",
            json!({"name": "acted", "command": "true", "cronExpr": "@daily"}),
        )
        .await;
    let (cookie, csrf) = master.session("otto").await;
    let paused = master
        .page(
            Method::POST,
            "/jobs/acted/pause",
            Some(&cookie),
            Some(&[("csrf", &csrf)]),
        )
        .await;
    assert_eq!(
        (paused.status, paused.headers["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/jobs/acted?done=pause")
    );
    assert_eq!(master.get("/api/v1/jobs/acted").await.body["paused"], true);
    let refused = master
        .page(
            Method::POST,
            "/jobs/acted/delete",
            Some(&cookie),
            Some(&[("csrf", &csrf), ("confirm", "acted")]),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "operators cannot delete"
    );
    let (admin, admin_csrf) = master.session("alice").await;
    let unconfirmed = master
        .page(
            Method::POST,
            "/jobs/acted/delete",
            Some(&admin),
            Some(&[("csrf", &admin_csrf), ("confirm", "nope")]),
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    let deleted = master
        .page(
            Method::POST,
            "/jobs/acted/delete",
            Some(&admin),
            Some(&[("csrf", &admin_csrf), ("confirm", "acted")]),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        master.get("/api/v1/jobs/acted").await.status,
        StatusCode::NOT_FOUND
    );
    let history = master.get("/api/v1/events?job=acted").await;
    let actors: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors[..2],
        ["alice", "otto"],
        "page actions record the signed-in user"
    );
}

#[tokio::test]
async fn the_workers_page_says_which_workers_hold_their_claims_and_why() {
    let master = Master::new().await;
    let mut etcd = master.env.etcd().await;
    for (id, holds) in [("steady", json!([])), ("skewed", json!(["clock_skew"]))] {
        let registration = json!({
            "id": id, "hostname": "h", "pid": 1, "version": "0", "startedAt": "2026-01-01T00:00:00Z",
            "slots": 4, "running": [], "heartbeatAt": "2026-01-01T00:00:05Z", "holds": holds,
        });
        etcd.put(master.env.keys.worker(id), registration.to_string(), None)
            .await
            .unwrap();
    }
    let (cookie, _) = master.session("vera").await;
    let reply = master
        .page(Method::GET, "/workers", Some(&cookie), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let page = text(&reply);
    let row = |id: &str| {
        let start = page.find(&format!("<td>{id}</td>")).unwrap();
        let end = page[start..].find("</tr>").unwrap();
        page[start..start + end].to_owned()
    };
    assert!(row("steady").contains("<td>yes</td>"), "{}", row("steady"));
    assert!(
        row("skewed").contains(">no</span> <small>clock skew</small>"),
        "{}",
        row("skewed")
    );
}

#[tokio::test]
async fn a_page_whose_service_is_down_answers_503_in_the_layout_without_its_error_text() {
    let mut master = Master::new().await;
    hostile_job(&master).await;
    let (cookie, _) = master.session("alice").await;
    let mut state = master.services.app_state();
    state.reads.log = mongodb::Client::with_uri_str(
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
    )
    .await
    .unwrap()
    .database("gone")
    .collection("cron.log");
    master.router = cronfleet_master::http::router(state);
    for path in ["/jobs/hostile", "/", "/executions/run-hostile"] {
        let reply = master.page(Method::GET, path, Some(&cookie), None).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(reply.headers["retry-after"], "1", "{path}");
        assert!(reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = reply.body.as_str().unwrap();
        assert!(
            html.contains("MongoDB is unavailable; retry shortly"),
            "{path}: {html}"
        );
        assert!(html.contains("Sign out"), "{path}: rendered in the layout");
        for leak in ["127.0.0.1:1", "Kind", "ServerSelection", "refused"] {
            assert!(!html.contains(leak), "{path}: {leak} leaked: {html}");
        }
    }
}
