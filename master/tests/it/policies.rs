//! Run policies (working directory, worker selector, mode, retries) through the API, the
//! OpenAPI document and the audit log; [`crate::policy_pages`] has the admin pages.

use crate::pages::text;
use crate::support::Master;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

pub fn with_policies(name: &str) -> Value {
    json!({
        "name": name, "command": "make", "cronExpr": "@daily", "workingDir": "/srv/app",
        "selector": {"zone": "eu", "disk": ["ssd", "nvme"]},
        "retry": {"maxAttempts": 3, "alsoOn": ["abandoned"]},
    })
}

#[tokio::test]
async fn the_api_accepts_and_returns_run_policies_and_projects_them() {
    let master = Master::new().await;
    let created = master.post("/api/v1/jobs", with_policies("built")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let read = master.get("/api/v1/jobs/built").await.body;
    assert_eq!(read["workingDir"], "/srv/app");
    assert_eq!(
        read["selector"],
        json!({"disk": ["ssd", "nvme"], "zone": "eu"})
    );
    assert_eq!(read["mode"], "one");
    assert_eq!(
        read["retry"],
        json!({"maxAttempts": 3, "initialDelaySecs": 10, "maxDelaySecs": 3600,
               "multiplier": 2.0, "alsoOn": ["abandoned"]}),
        "the defaults are filled in"
    );
    let everywhere =
        json!({"name": "everywhere", "command": "sync", "cronExpr": "@hourly", "mode": "all"});
    assert_eq!(
        master.post("/api/v1/jobs", everywhere).await.status,
        StatusCode::CREATED
    );
    let plain = master.get("/api/v1/jobs/everywhere").await.body;
    assert_eq!(
        (
            &plain["mode"],
            &plain["selector"],
            &plain["retry"],
            &plain["workingDir"]
        ),
        (&json!("all"), &json!({}), &Value::Null, &Value::Null)
    );
    master.project_all().await;
    let etcd = master.etcd_jobs().await;
    assert_eq!(etcd["built"]["selector"]["disk"], json!(["ssd", "nvme"]));
    assert_eq!(etcd["built"]["retry"]["maxAttempts"], 3);
    assert_eq!(etcd["everywhere"]["mode"], "all");
    assert!(etcd["everywhere"].get("retry").is_none());
}

#[tokio::test]
async fn bad_policies_are_refused_naming_the_field_and_change_nothing() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", with_policies("kept")).await;
    let base = |extra: Value| {
        let mut body = json!({"name": "kept", "command": "make", "cronExpr": "@daily"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, field) in [
        (json!({"retry": {"maxAttempts": 1}}), "retry.maxAttempts"),
        (
            json!({"retry": {"initialDelaySecs": 5}}),
            "retry.maxAttempts",
        ),
        (
            json!({"retry": {"maxAttempts": 3, "alsoOn": ["killed"]}}),
            "retry.alsoOn",
        ),
        (json!({"selector": {"zone": "e u"}}), "selector.zone"),
        (json!({"selector": {"zone": []}}), "selector.zone"),
        (json!({"workingDir": "srv/app"}), "workingDir"),
        (json!({"mode": "some"}), "mode"),
        (json!({"mode": "all", "retry": {"maxAttempts": 2}}), "retry"),
    ] {
        let body = base(extra);
        for reply in [
            master.post("/api/v1/jobs", body.clone()).await,
            master
                .send(
                    Method::PUT,
                    "/api/v1/jobs/kept",
                    Some("alice"),
                    &[],
                    Some(body.to_string()),
                )
                .await,
        ] {
            assert_eq!(
                reply.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {}",
                reply.body
            );
            assert_eq!(
                reply.body["error"]["field"], field,
                "{body}: {}",
                reply.body
            );
        }
    }
    let kept = master.get("/api/v1/jobs/kept").await.body;
    assert_eq!(
        (&kept["version"], &kept["workingDir"]),
        (&json!(1), &json!("/srv/app"))
    );
    let events = master.get("/api/v1/jobs/kept/history").await.body;
    assert_eq!(events["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_openapi_document_describes_the_policies() {
    let master = Master::new().await;
    let document = master.get("/api/v1/openapi.json").await.body;
    let schemas = &document["components"]["schemas"];
    for schema in ["JobView", "JobInput"] {
        let properties = &schemas[schema]["properties"];
        for field in ["workingDir", "selector", "mode", "retry"] {
            assert!(
                properties[field].is_object(),
                "{schema}.{field}: {properties}"
            );
        }
        assert!(properties["selector"]
            .to_string()
            .contains("SelectorValues"));
    }
    let retry = &schemas["RetryPolicy"];
    assert_eq!(retry["required"], json!(["maxAttempts"]));
    assert_eq!(retry["properties"]["maxAttempts"]["minimum"], 2);
    assert!(retry["description"]
        .as_str()
        .unwrap()
        .contains("multiplier^(n-2)"));
    assert_eq!(schemas["RunMode"]["enum"], json!(["one", "all"]));
    assert_eq!(
        schemas["RetryAlsoOn"]["enum"],
        json!(["abandoned", "failed_to_start"])
    );
    assert!(schemas["SelectorValues"]["oneOf"].is_array());
}

#[tokio::test]
async fn the_audit_log_shows_policy_changes_field_by_field() {
    let master = Master::new().await;
    master
        .post(
            "/api/v1/jobs",
            json!({"name": "audited", "command": "make", "cronExpr": "@daily"}),
        )
        .await;
    let changed = master
        .send(
            Method::PUT,
            "/api/v1/jobs/audited",
            Some("alice"),
            &[("if-match", "\"1\"")],
            Some(with_policies("audited").to_string()),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let history = master.get("/api/v1/jobs/audited/history").await.body;
    assert_eq!(history["items"][0]["after"]["selector"]["zone"], "eu");
    assert_eq!(history["items"][0]["before"].get("selector"), None);
    let (cookie, _) = master.session("alice").await;
    let audit = master
        .page(Method::GET, "/audit?job=audited", Some(&cookie), None)
        .await;
    for line in [
        "retry.maxAttempts: ∅ → 3",
        "selector.zone: ∅ → eu",
        "workingDir: ∅ → /srv/app",
    ] {
        assert!(text(&audit).contains(line), "audit page lacks {line}");
    }
}
