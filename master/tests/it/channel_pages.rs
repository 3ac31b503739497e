//! Channels, notify rules and chains on the admin pages: the channel list and page (forms for
//! admins only, errors beside their inputs, no secret or header value shown, the delivery
//! log), the job form's outcome inputs (round-tripped, errors beside them) and what a job's
//! page shows of its outcomes.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::channels::{assert_hidden, delivery, hook, SECRET, TOKEN};
use crate::pages::text;
use crate::support::{job, Master, Reply};

/// Posts a page form as the signed-in `cookie`.
async fn post(master: &Master, cookie: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
    master
        .page(Method::POST, path, Some(cookie), Some(fields))
        .await
}

async fn get(master: &Master, cookie: &str, path: &str) -> Reply {
    master.page(Method::GET, path, Some(cookie), None).await
}

/// Creates channel `ops` through the page form; returns alice's cookie and CSRF token.
async fn ops_through_the_form(master: &Master) -> (String, String) {
    let (cookie, csrf) = master.session("alice").await;
    let headers = format!("Authorization: {TOKEN}\r\nX-Team: ops");
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "ops"),
        ("kind", "webhook"),
        ("url", "https://hooks.example.com/cron"),
        ("secret", SECRET),
        ("headers", &headers),
        ("recipients", "ignored@example.com"),
    ];
    let created = post(master, &cookie, "/channels", &fields).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", text(&created));
    let location = &created.headers["location"];
    assert_eq!(location, "/channels/ops?done=channel-created");
    (cookie, csrf)
}

#[tokio::test]
async fn the_channel_page_shows_settings_and_the_log_but_no_secret() {
    let master = Master::new().await;
    let (cookie, csrf) = ops_through_the_form(&master).await;
    delivery(&master, "run-9", "nightly", "ops").await;
    let page = get(&master, &cookie, "/channels/ops?done=channel-created").await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "Channel created.",
        "<dt>Secret</dt><dd>secret set</dd>",
        "<code>authorization</code> <code>x-team</code>",
        "Delivery log",
        r#"<a href="/jobs/nightly">nightly</a>"#,
        r#"<a href="/executions/run-9">"#,
        "HTTP 502 from the receiver",
        ">authorization:\nx-team:\n</textarea>",
        r#"action="/channels/ops/delete""#,
        &format!(r#"name="csrf" value="{csrf}""#),
    ] {
        assert!(text(&page).contains(shown), "channel page lacks {shown}");
    }
    assert_hidden("the channel page", text(&page));
    let list = get(&master, &cookie, "/channels").await;
    assert!(text(&list).contains("<code>https://hooks.example.com/cron</code>"));
    assert!(text(&list).contains(r#"<form class="card" method="post" action="/channels">"#));
    assert_hidden("the channel list", text(&list));
}

#[tokio::test]
async fn an_edit_keeps_headers_named_alone_and_an_empty_secret() {
    let master = Master::new().await;
    let (cookie, csrf) = ops_through_the_form(&master).await;
    let fields = [
        ("csrf", csrf.as_str()),
        ("kind", "webhook"),
        ("url", "https://hooks.example.com/v2"),
        ("secret", ""),
        ("headers", "Authorization:\n"),
    ];
    let edited = post(&master, &cookie, "/channels/ops/edit", &fields).await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", text(&edited));
    let stored = master.services.store.channel("ops").await.unwrap().unwrap();
    assert_eq!(stored.secret.as_deref(), Some(SECRET));
    assert_eq!(stored.target.public()["headers"], json!(["authorization"]));
    assert!(format!("{:?}", stored.target).contains(TOKEN));
    let unknown = [
        ("csrf", csrf.as_str()),
        ("kind", "webhook"),
        ("url", "https://h.example/x"),
        ("headers", "X-New:"),
    ];
    let refused = post(&master, &cookie, "/channels/ops/edit", &unknown).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&refused).contains(r#"id="ch-headers-error">headers.X-New: has no value"#));
    assert!(
        text(&refused).contains(">X-New:</textarea>"),
        "the form comes back as typed"
    );
}

#[tokio::test]
async fn channel_forms_show_errors_beside_their_inputs() {
    let master = Master::new().await;
    let (cookie, csrf) = ops_through_the_form(&master).await;
    let csrf = csrf.as_str();
    let metadata = [
        ("csrf", csrf),
        ("name", "meta"),
        ("kind", "webhook"),
        ("url", "http://169.254.169.254/"),
        ("secret", SECRET),
    ];
    let bad = post(&master, &cookie, "/channels", &metadata).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let beside = r#"<p class="field-error" id="ch-url-error">url: points at a link-local"#;
    assert!(text(&bad).contains(beside), "{}", text(&bad));
    assert!(text(&bad).contains(r#"value="http://169.254.169.254/""#));
    assert_hidden("a refused form", text(&bad));
    let mail = [
        ("csrf", csrf),
        ("name", "mail"),
        ("kind", "email"),
        ("recipients", "x@y.example\nnot mail"),
    ];
    let bad = post(&master, &cookie, "/channels", &mail).await;
    assert!(text(&bad).contains(r#"id="ch-recipients-error">recipients[1]:"#));
    let taken = [
        ("csrf", csrf),
        ("name", "ops"),
        ("kind", "email"),
        ("recipients", "x@y.example"),
    ];
    let bad = post(&master, &cookie, "/channels", &taken).await;
    assert_eq!(bad.status, StatusCode::CONFLICT);
    assert!(text(&bad).contains(r#"id="ch-name-error">channel ops already exists"#));
}

#[tokio::test]
async fn a_channel_a_job_notifies_is_not_deleted_from_its_page() {
    let master = Master::new().await;
    let (cookie, csrf) = ops_through_the_form(&master).await;
    let csrf = csrf.as_str();
    let mut nightly = job("nightly", "true");
    nightly["notify"] = json!([{"channel": "ops", "on": ["failure"]}]);
    master.post("/api/v1/jobs", nightly).await;
    let confirm = [("csrf", csrf), ("confirm", "ops")];
    let kept = post(&master, &cookie, "/channels/ops/delete", &confirm).await;
    assert_eq!(kept.status, StatusCode::CONFLICT);
    assert!(text(&kept).contains("channel ops is used by jobs nightly"));
    assert_eq!(
        master.get("/api/v1/channels/ops").await.status,
        StatusCode::OK
    );
    master.post("/api/v1/channels", hook("spare")).await;
    let confirm = [("csrf", csrf), ("confirm", "spare")];
    let deleted = post(&master, &cookie, "/channels/spare/delete", &confirm).await;
    assert_eq!(
        deleted.headers["location"],
        "/channels?done=channel-deleted"
    );
}

#[tokio::test]
async fn operators_see_channels_without_forms_and_viewers_not_at_all() {
    let master = Master::new().await;
    master.post("/api/v1/channels", hook("ops")).await;
    let (otto, csrf) = master.session("otto").await;
    let list = get(&master, &otto, "/channels").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(text(&list).contains(r#"<a href="/channels/ops">ops</a>"#));
    assert!(text(&list).contains(r#"<a href="/channels">Channels</a>"#));
    assert!(!text(&list).contains("New channel"));
    let detail = get(&master, &otto, "/channels/ops").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!text(&detail).contains("Delivery log") && !text(&detail).contains("/edit"));
    let fields = [("csrf", csrf.as_str()), ("confirm", "ops")];
    let refused = post(&master, &otto, "/channels/ops/delete", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let (vera, _) = master.session("vera").await;
    assert_eq!(
        get(&master, &vera, "/channels").await.status,
        StatusCode::FORBIDDEN
    );
    let dashboard = get(&master, &vera, "/").await;
    assert!(!text(&dashboard).contains(r#"href="/channels""#));
}

/// The job form with `notify` and `onSuccess` as typed and one quoted `onFailure` target.
fn job_form<'a>(csrf: &'a str, notify: &'a str, on_success: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", "formed"),
        ("command", "make"),
        ("cronExpr", "@daily"),
        ("intent", "save"),
        ("notify", notify),
        ("onSuccess", on_success),
        ("onFailure", r#""clean, then report""#),
    ]
}

async fn channels_and_targets(master: &Master) {
    master.post("/api/v1/channels", hook("ops")).await;
    let mail = json!({"name": "mail", "kind": "email", "recipients": ["ops@example.com"]});
    master.post("/api/v1/channels", mail).await;
    for name in ["report", "clean, then report"] {
        master.post("/api/v1/jobs", job(name, "true")).await;
    }
}

const RULES: &str = "ops: failure, recovery\r\nmail: failure after 3";

#[tokio::test]
async fn the_job_form_round_trips_notify_rules_and_chains() {
    let master = Master::new().await;
    channels_and_targets(&master).await;
    let (cookie, csrf) = master.session("alice").await;
    let fresh = get(&master, &cookie, "/jobs/new").await;
    assert!(text(&fresh).contains("Channels: mail, ops."));
    let saved = post(
        &master,
        &cookie,
        "/jobs/new",
        &job_form(&csrf, RULES, "report"),
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", text(&saved));
    let api = master.get("/api/v1/jobs/formed").await.body;
    let rules = json!([{"channel": "ops", "on": ["failure", "recovery"]},
                       {"channel": "mail", "on": ["failure"], "afterFailures": 3}]);
    assert_eq!(api["notify"], rules);
    assert_eq!(api["onSuccess"], json!(["report"]));
    assert_eq!(api["onFailure"], json!(["clean, then report"]));
    let edit = get(&master, &cookie, "/jobs/formed/edit").await;
    for prefilled in [
        ">ops: failure, recovery\nmail: failure after 3\n</textarea>",
        ">report</textarea>",
        ">&#34;clean, then report&#34;</textarea>",
    ] {
        assert!(
            text(&edit).contains(prefilled),
            "edit form lacks {prefilled}"
        );
    }
    let resaved = post(
        &master,
        &cookie,
        "/jobs/formed/edit",
        &job_form(&csrf, RULES, "report"),
    )
    .await;
    assert_eq!(resaved.status, StatusCode::SEE_OTHER);
    assert_eq!(
        master.get("/api/v1/jobs/formed").await.body["version"],
        1,
        "nothing changed"
    );
}

#[tokio::test]
async fn the_job_form_shows_rule_and_chain_errors_beside_their_inputs() {
    let master = Master::new().await;
    channels_and_targets(&master).await;
    let (cookie, csrf) = master.session("alice").await;
    for (notify, on_success, error_id, message) in [
        (
            "nope: failure",
            "report",
            "notify-error",
            "notify[0].channel: no channel is named nope",
        ),
        (
            "ops: failure\nops",
            "report",
            "notify-error",
            "notify[1]: &#34;ops&#34; is not channel:",
        ),
        (
            "ops: fire",
            "report",
            "notify-error",
            "notify[0].on: &#34;fire&#34; is not one of",
        ),
        (
            "",
            "report, nope",
            "onSuccess-error",
            "onSuccess[1]: no job is named nope",
        ),
        (
            "",
            "report, report",
            "onSuccess-error",
            "onSuccess[1]: names report twice",
        ),
    ] {
        let fields = job_form(&csrf, notify, on_success);
        let refused = post(&master, &cookie, "/jobs/new", &fields).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{notify} {on_success}"
        );
        let beside = format!(r#"<p class="field-error" id="{error_id}">{message}"#);
        assert!(
            text(&refused).contains(&beside),
            "no {beside} in {}",
            text(&refused)
        );
    }
}

#[tokio::test]
async fn the_job_form_refuses_a_chain_that_closes_a_cycle_beside_its_input() {
    let master = Master::new().await;
    channels_and_targets(&master).await;
    let (cookie, csrf) = master.session("alice").await;
    post(
        &master,
        &cookie,
        "/jobs/new",
        &job_form(&csrf, "", "report"),
    )
    .await;
    // report running formed, which runs report, would close a cycle.
    let mut report = job_form(&csrf, "", "formed");
    report.retain(|(field, _)| *field != "onFailure");
    let cycle = post(&master, &cookie, "/jobs/report/edit", &report).await;
    assert_eq!(cycle.status, StatusCode::UNPROCESSABLE_ENTITY);
    let beside =
        r#"id="onSuccess-error">onSuccess[0]: would form a cycle: report → formed → report"#;
    assert!(text(&cycle).contains(beside), "{}", text(&cycle));
    assert!(
        text(&cycle).contains(">formed</textarea>"),
        "the form comes back as typed"
    );
}

#[tokio::test]
async fn the_job_page_shows_rules_chains_both_ways_and_deliveries() {
    let master = Master::new().await;
    channels_and_targets(&master).await;
    let (cookie, csrf) = master.session("alice").await;
    post(
        &master,
        &cookie,
        "/jobs/new",
        &job_form(&csrf, RULES, "report"),
    )
    .await;
    delivery(&master, "run-5", "formed", "ops").await;
    let (vera, _) = master.session("vera").await;
    let page = get(&master, &vera, "/jobs/formed").await;
    for shown in [
        "ops: failure, recovery",
        "mail: failure (a failure once 3 ticks in a row have failed)",
        r#"on success: <a href="/jobs/report">report</a>"#,
        r#"on failure: <a href="/jobs/clean%2C%20then%20report">clean, then report</a>"#,
        "<dt>Upstream</dt><dd>no job chains to this one</dd>",
        "Recent deliveries",
        r#"<a href="/executions/run-5">"#,
        r#"<span class="status s-pending">pending</span>"#,
        "HTTP 502 from the receiver",
    ] {
        assert!(text(&page).contains(shown), "job page lacks {shown}");
    }
    assert!(
        !text(&page).contains(r#"href="/channels/ops""#),
        "no channel link for a viewer"
    );
    let upstream = get(&master, &vera, "/jobs/report").await;
    let shown = r#"<dt>Upstream</dt><dd><a href="/jobs/formed">formed</a></dd>"#;
    assert!(text(&upstream).contains(shown));
    let admin = get(&master, &cookie, "/jobs/formed").await;
    assert!(text(&admin).contains(r#"<a href="/channels/ops">ops</a>: failure, recovery"#));
}
