//! Channels, notify rules and chains through the API, against a real PostgreSQL: who may
//! write what, errors naming the field, secrets and header values never shown (answers and
//! audit log), links between jobs and channels kept whole, and the delivery log. The pages
//! are in `channel_pages`.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{job, Master, Reply};

pub const SECRET: &str = "an-hmac-secret-nobody-sees";
pub const TOKEN: &str = "Bearer header-value-nobody-sees";

/// A webhook channel with a secret and an `Authorization` header.
pub fn hook(name: &str) -> Value {
    json!({"name": name, "kind": "webhook", "url": "https://hooks.example.com/cron",
           "secret": SECRET, "headers": {"Authorization": TOKEN}})
}

pub async fn send(master: &Master, method: Method, path: &str, user: &str, body: Value) -> Reply {
    let body = (!body.is_null()).then(|| body.to_string());
    master.send(method, path, Some(user), &[], body).await
}

/// No answer, page or audit payload may carry the secret or a header value.
pub fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret");
    assert!(!text.contains("nobody-sees"), "{what} shows a secret value");
}

/// Queues a delivery of `run` to `channel` with two failed tries, as the notifier does.
pub async fn delivery(master: &Master, run: &str, job: &str, channel: &str) {
    let pool = &master.services.store.pool;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO deliveries (run_id, job_name, channel, outcome, payload, attempts, last_error)
         VALUES ($1, $2, $3, 'failure', '{}', 2, 'HTTP 502 from the receiver') RETURNING id",
    )
    .bind(run)
    .bind(job)
    .bind(channel)
    .fetch_one(pool)
    .await
    .unwrap();
    for attempt in [1, 2] {
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempt, ok, detail)
             VALUES ($1, $2, false, 'HTTP 502')",
        )
        .bind(id)
        .bind(attempt)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn error_of(reply: &Reply, key: &str) -> (StatusCode, Value) {
    (reply.status, reply.body["error"][key].clone())
}

#[tokio::test]
async fn admins_create_and_delete_channels_whose_secrets_nobody_reads() {
    let master = Master::new().await;
    let created = master.post("/api/v1/channels", hook("ops")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.headers["location"], "/api/v1/channels/ops");
    assert_eq!(created.body["headers"], json!(["authorization"]));
    assert_eq!(created.body["secretSet"], true);
    let again = master.post("/api/v1/channels", hook("ops")).await;
    assert_eq!(
        error_of(&again, "field"),
        (StatusCode::CONFLICT, json!("name"))
    );
    let list = master.get_as("otto", "/api/v1/channels").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        list.body["items"][0]["url"],
        "https://hooks.example.com/cron"
    );
    let one = master.get_as("otto", "/api/v1/channels/ops").await;
    assert_eq!(one.body["kind"], "webhook");
    for reply in [&created, &list, &one] {
        assert_hidden("a channel answer", &reply.body.to_string());
    }
    let viewer = master.get_as("vera", "/api/v1/channels").await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let delete = |user| {
        send(
            &master,
            Method::DELETE,
            "/api/v1/channels/ops",
            user,
            Value::Null,
        )
    };
    assert_eq!(delete("otto").await.status, StatusCode::FORBIDDEN);
    assert_eq!(delete("alice").await.status, StatusCode::NO_CONTENT);
    assert_eq!(delete("alice").await.status, StatusCode::NOT_FOUND);
    let gone = master.get("/api/v1/channels/ops").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_update_keeps_the_secret_and_never_renames() {
    let master = Master::new().await;
    master.post("/api/v1/channels", hook("ops")).await;
    let mut changed = hook("ops");
    let fields = changed.as_object_mut().unwrap();
    fields.remove("secret");
    fields.remove("name");
    changed["url"] = json!("https://hooks.example.com/v2");
    let put = |user, path, body| send(&master, Method::PUT, path, user, body);
    let refused = put("otto", "/api/v1/channels/ops", changed.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let updated = put("alice", "/api/v1/channels/ops", changed).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["url"], "https://hooks.example.com/v2");
    assert_eq!(updated.body["secretSet"], true);
    let stored = master.services.store.channel("ops").await.unwrap().unwrap();
    assert_eq!(stored.secret.as_deref(), Some(SECRET));
    let renamed = put("alice", "/api/v1/channels/ops", hook("other")).await;
    let expected = (StatusCode::UNPROCESSABLE_ENTITY, json!("name"));
    assert_eq!(error_of(&renamed, "field"), expected);
    let missing = put("alice", "/api/v1/channels/nope", hook("nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let as_operator = send(&master, Method::POST, "/api/v1/channels", "otto", hook("x")).await;
    assert_eq!(as_operator.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn channel_changes_are_audited_without_secrets_or_header_values() {
    let master = Master::new().await;
    master.post("/api/v1/channels", hook("ops")).await;
    let mut changed = hook("ops");
    changed["headers"] = json!({"Authorization": "Bearer another-nobody-sees"});
    send(
        &master,
        Method::PUT,
        "/api/v1/channels/ops",
        "alice",
        changed,
    )
    .await;
    send(
        &master,
        Method::DELETE,
        "/api/v1/channels/ops",
        "alice",
        Value::Null,
    )
    .await;
    for kind in ["ChannelCreated", "ChannelUpdated", "ChannelDeleted"] {
        let audit = master.get(&format!("/api/v1/events?type={kind}")).await;
        assert_eq!(audit.status, StatusCode::OK, "{kind}: {}", audit.body);
        let event = &audit.body["items"][0];
        assert_eq!(
            (&event["stream"], &event["subject"]),
            (&json!("channel"), &json!("ops"))
        );
        assert_hidden(kind, &audit.body.to_string());
    }
    let payloads: Vec<Value> =
        sqlx::query_scalar("SELECT payload FROM events WHERE stream = 'channel'")
            .fetch_all(&master.services.store.pool)
            .await
            .unwrap();
    assert_eq!(payloads.len(), 3);
    assert_eq!(payloads[1]["after"]["headers"], json!(["authorization"]));
    assert_hidden("the audit log", &json!(payloads).to_string());
}

#[tokio::test]
async fn invalid_channels_are_refused_naming_the_field() {
    let master = Master::new().await;
    let with = |extra: Value| {
        let mut body = hook("ops");
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    let mail =
        |recipients: Value| json!({"name": "mail", "kind": "email", "recipients": recipients});
    for (body, field) in [
        (
            with(json!({"url": "http://169.254.169.254/latest/meta-data"})),
            "url",
        ),
        (with(json!({"url": "http://[fe80::1]/hook"})), "url"),
        (with(json!({"secret": "short"})), "secret"),
        (with(json!({"headers": {"Host": "evil"}})), "headers.Host"),
        (with(json!({"pager": true})), "pager"),
        (with(json!({"name": "a b"})), "name"),
        (mail(json!(["ops@example.com", "nobody"])), "recipients[1]"),
        (mail(json!([])), "recipients"),
        (
            json!({"name": "h", "kind": "webhook", "url": "https://h.example/x"}),
            "secret",
        ),
    ] {
        let refused = master.post("/api/v1/channels", body.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(refused.body["error"]["field"], field, "{body}");
    }
    assert_eq!(
        master.get("/api/v1/channels").await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn jobs_name_only_channels_that_exist_and_a_used_channel_stays() {
    let master = Master::new().await;
    master.post("/api/v1/channels", hook("ops")).await;
    let mut nightly = job("nightly", "backup.sh");
    nightly["notify"] = json!([{"channel": "nope", "on": ["failure"]}]);
    let unknown = master.post("/api/v1/jobs", nightly.clone()).await;
    let expected = (StatusCode::UNPROCESSABLE_ENTITY, json!("notify[0].channel"));
    assert_eq!(error_of(&unknown, "field"), expected);
    nightly["notify"] = json!([{"channel": "ops", "on": ["failure"], "afterFailures": 3}]);
    let created = master.post("/api/v1/jobs", nightly).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["notify"][0]["afterFailures"], 3);
    let in_use = send(
        &master,
        Method::DELETE,
        "/api/v1/channels/ops",
        "alice",
        Value::Null,
    )
    .await;
    assert_eq!(
        error_of(&in_use, "code"),
        (StatusCode::CONFLICT, json!("channel_in_use"))
    );
    let message = in_use.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nightly"), "{message}");
    assert_eq!(master.get("/api/v1/channels/ops").await.body["version"], 1);
    let deleted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'ChannelDeleted'")
            .fetch_one(&master.services.store.pool)
            .await
            .unwrap();
    assert_eq!(deleted, 0);
}

#[tokio::test]
async fn chains_lead_to_jobs_that_exist_never_back_and_keep_their_targets() {
    let master = Master::new().await;
    master.post("/api/v1/jobs", job("a", "true")).await;
    let mut b = job("b", "true");
    b["onSuccess"] = json!(["nope"]);
    let unknown = master.post("/api/v1/jobs", b.clone()).await;
    let expected = (StatusCode::UNPROCESSABLE_ENTITY, json!("onSuccess[0]"));
    assert_eq!(error_of(&unknown, "field"), expected);
    b["onSuccess"] = json!(["a"]);
    assert_eq!(
        master.post("/api/v1/jobs", b).await.status,
        StatusCode::CREATED
    );
    let mut a = job("a", "true");
    a["onSuccess"] = json!(["b"]);
    let cycle = send(&master, Method::PUT, "/api/v1/jobs/a", "alice", a).await;
    assert_eq!(error_of(&cycle, "field"), expected);
    let message = cycle.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("a → b → a"), "{message}");
    let chained = send(
        &master,
        Method::DELETE,
        "/api/v1/jobs/a",
        "alice",
        Value::Null,
    )
    .await;
    assert_eq!(
        error_of(&chained, "code"),
        (StatusCode::CONFLICT, json!("chained_from"))
    );
    let a = master.get("/api/v1/jobs/a").await.body;
    assert_eq!((&a["version"], &a["onSuccess"]), (&json!(1), &json!([])));
    assert_eq!(
        master.get("/api/v1/jobs/b").await.body["onSuccess"],
        json!(["a"])
    );
}

#[tokio::test]
async fn the_delivery_log_is_read_by_job_and_by_channel() {
    let master = Master::new().await;
    master.post("/api/v1/channels", hook("ops")).await;
    delivery(&master, "run-1", "nightly", "ops").await;
    delivery(&master, "run-2", "other", "ops").await;
    let by_job = master
        .get_as("vera", "/api/v1/jobs/nightly/deliveries")
        .await;
    assert_eq!(by_job.status, StatusCode::OK, "{}", by_job.body);
    let items = by_job.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let first = &items[0];
    assert_eq!(
        (&first["runId"], &first["channel"]),
        (&json!("run-1"), &json!("ops"))
    );
    assert_eq!(
        (&first["state"], &first["attempts"]),
        (&json!("pending"), &json!(2))
    );
    assert_eq!(first["lastError"], "HTTP 502 from the receiver");
    assert_eq!(first["tries"][0]["attempt"], 2, "newest try first");
    assert_eq!(first["tries"][1]["ok"], false);
    let by_channel = master.get("/api/v1/channels/ops/deliveries?limit=1").await;
    let items = by_channel.body["items"].as_array().unwrap();
    assert_eq!(
        (items.len(), &items[0]["runId"]),
        (1, &json!("run-2")),
        "newest first"
    );
    let operator = master
        .get_as("otto", "/api/v1/channels/ops/deliveries")
        .await;
    assert_eq!(operator.status, StatusCode::FORBIDDEN);
    let too_many = master
        .get("/api/v1/jobs/nightly/deliveries?limit=501")
        .await;
    assert_eq!(
        error_of(&too_many, "field"),
        (StatusCode::BAD_REQUEST, json!("limit"))
    );
}
