//! Users administered by admins: role changes, disabling (sessions and tokens stop at once),
//! password resets — through the API, the Users page and the command line — each in the
//! audit log, and never leaving the fleet without an enabled admin.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::pages::text;
use crate::support::Master;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_change_roles_disable_users_and_reset_passwords() {
    let master = Master::new().await;
    let patch = |user: &'static str, body: serde_json::Value| {
        let master = &master;
        async move {
            master
                .send(
                    Method::PATCH,
                    &format!("/api/v1/users/{user}"),
                    Some("alice"),
                    &[("content-type", "application/json")],
                    Some(body.to_string()),
                )
                .await
        }
    };
    // With bob and carol disabled, alice is the last enabled admin: she cannot be demoted or
    // disabled.
    for other in ["bob", "carol"] {
        let reply = patch(other, json!({"disabled": true})).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let last = patch("alice", json!({"role": "viewer"})).await;
    assert_eq!(last.status, StatusCode::CONFLICT, "{:?}", last.body);
    assert_eq!(last.body["error"]["code"], "last_admin");
    let last = patch("alice", json!({"disabled": true})).await;
    assert_eq!(last.status, StatusCode::CONFLICT);
    let bad = patch("otto", json!({"role": "root"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["error"]["field"], "role");
    let unknown = patch("otto", json!({"colour": "red"})).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let short = patch("otto", json!({"password": "short"})).await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);

    let promoted = patch("otto", json!({"role": "admin"})).await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    assert_eq!(promoted.body["role"], "admin");
    assert_eq!(
        master.get_as("otto", "/api/v1/users").await.status,
        StatusCode::OK,
        "otto's token acts with the new role at once"
    );

    // Disabling vera stops her token and her session at the next request.
    let (vera_cookie, _) = master.session("vera").await;
    assert_eq!(
        master.get_as("vera", "/api/v1/jobs").await.status,
        StatusCode::OK
    );
    let disabled = patch("vera", json!({"disabled": true})).await;
    assert_eq!(disabled.body["disabled"], true);
    assert_eq!(
        master.get_as("vera", "/api/v1/jobs").await.status,
        StatusCode::UNAUTHORIZED
    );
    let page = master
        .page(Method::GET, "/", Some(&vera_cookie), None)
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // The page: an operator may not see it; an admin resets otto's password there.
    let (cookie, csrf) = master.session("alice").await;
    let listed = master
        .page(Method::GET, "/users", Some(&cookie), None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(text(&listed).contains("vera") && text(&listed).contains("disabled"));
    let (otto_cookie, _) = master.session("otto").await;
    let form = [
        ("csrf", csrf.as_str()),
        ("action", "password"),
        ("password", "a brand new passphrase"),
    ];
    let reset = master
        .page(Method::POST, "/users/otto", Some(&cookie), Some(&form))
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", text(&reset));
    let store = &master.services.store;
    assert!(store
        .check_password("otto", "a long test password")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .check_password("otto", "a brand new passphrase")
        .await
        .unwrap()
        .is_some());
    let after = master
        .page(Method::GET, "/", Some(&otto_cookie), None)
        .await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "a reset ends the sessions"
    );
    let own = [("csrf", csrf.as_str()), ("action", "disable")];
    let refused = master
        .page(Method::POST, "/users/alice", Some(&cookie), Some(&own))
        .await;
    assert!(text(&refused).contains("you cannot disable yourself"));

    // The command line re-enables vera with a new password (the lost-password case).
    let mut args = master.env.master_args();
    args.remove(0);
    args.extend(["user", "reset-password", "--name", "vera"].map(str::to_owned));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cronfleet-master"))
        .args(&args)
        .env("CRON_PASSWORD", "vera's fresh passphrase")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(store
        .check_password("vera", "vera's fresh passphrase")
        .await
        .unwrap()
        .is_some());

    let events = master.get("/api/v1/events?limit=50").await;
    let kinds: Vec<(String, String)> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream"] == "user")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .take(5)
        .collect();
    let kinds: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(k, a)| (k.as_str(), a.as_str()))
        .collect();
    assert_eq!(kinds[0].0, "UserPasswordReset");
    assert!(kinds[0].1.starts_with("cli:"));
    assert_eq!(kinds[1], ("UserEnabled", kinds[0].1));
    assert_eq!(kinds[2], ("UserPasswordReset", "alice"));
    assert_eq!(kinds[3].0, "UserDisabled");
    assert_eq!(kinds[4].0, "UserRoleChanged");
    assert!(
        !events.body.to_string().contains("passphrase"),
        "no password in the log"
    );
}
