//! Every route, with no credentials and with each role: the status says who may call it. A
//! route the table does not know fails here, and so does one missing from openapi.json.

use crate::support::Master;
use axum::http::{Method, StatusCode};
use cronfleet_master::http::auth::{Access, ACCESS};
use cronfleet_master::identity::Role;

fn concrete(path: &str) -> String {
    path.replace("{name}", "some-job")
        .replace("{id}", "0123456789abcdef")
}

/// Whether a path is one of the admin pages (session cookie) rather than the API (bearer).
fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/") || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}

#[tokio::test]
async fn every_route_answers_by_role() {
    let master = Master::new().await;
    let callers = [
        (None, None),
        (Some("vera"), Some(Role::Viewer)),
        (Some("otto"), Some(Role::Operator)),
        (Some("alice"), Some(Role::Admin)),
    ];
    for (method, path, access) in ACCESS {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let page = is_page(path);
        for (user, role) in callers {
            let reply = if page {
                // A fresh session each time: the table includes sign-out.
                let (cookie, csrf) = match user {
                    Some(user) => {
                        let (cookie, csrf) = master.session(user).await;
                        (Some(cookie), Some(csrf))
                    }
                    None => (None, None),
                };
                let form = [("csrf", csrf.as_deref().unwrap_or(""))];
                let form = (method == Method::POST).then_some(&form[..]);
                master
                    .page(method.clone(), &concrete(path), cookie.as_deref(), form)
                    .await
            } else {
                master
                    .send(
                        method.clone(),
                        &concrete(path),
                        user,
                        &[],
                        Some("{}".to_owned()),
                    )
                    .await
            };
            let label = format!("{method} {path} as {}", user.unwrap_or("nobody"));
            let denied = [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::SEE_OTHER,
            ];
            match (access, role) {
                (Access::Public, _) => assert!(
                    !denied[..2].contains(&reply.status) && !reply.status.is_server_error(),
                    "{label}: {}",
                    reply.status
                ),
                (Access::At(_), None) if page => {
                    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{label}");
                    assert_eq!(reply.headers["location"], "/login", "{label}");
                }
                (Access::At(_), None) => {
                    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{label}")
                }
                (Access::At(required), Some(role)) if role < *required => {
                    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{label}")
                }
                (Access::At(_), Some(_)) => {
                    let refused = [
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::METHOD_NOT_ALLOWED,
                        StatusCode::INTERNAL_SERVER_ERROR,
                    ];
                    let allowed_forbidden =
                        *path == "/jobs/{name}/{action}" && role < Some(Role::Admin);
                    assert!(
                        !refused.contains(&reply.status) || allowed_forbidden,
                        "{label}: {} {}",
                        reply.status,
                        reply.body
                    );
                    if page && method == Method::GET {
                        assert_ne!(
                            reply.status,
                            StatusCode::SEE_OTHER,
                            "{label}: sent to sign in"
                        );
                    }
                    assert_ne!(
                        reply.body["error"]["message"], "no such API route",
                        "{label} is not routed"
                    );
                }
            }
            assert_eq!(
                reply.headers["x-content-type-options"], "nosniff",
                "{label}"
            );
            assert!(reply.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"));
            assert_eq!(reply.headers["referrer-policy"], "same-origin");
            if !path.starts_with("/static/") {
                assert_eq!(reply.headers["cache-control"], "no-store", "{label}");
            }
        }
    }
}

#[tokio::test]
async fn every_route_answers_head_options_and_unknown_methods_without_a_server_error() {
    let master = Master::new().await;
    let mut paths: Vec<&str> = ACCESS.iter().map(|(_, path, _)| *path).collect();
    paths.dedup();
    for path in paths {
        let takes = |method: &str| ACCESS.iter().any(|(m, p, _)| *m == method && *p == path);
        for method in ["HEAD", "OPTIONS", "BREW"] {
            let reply = master
                .send(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete(path),
                    Some("alice"),
                    &[],
                    None,
                )
                .await;
            let label = format!("{method} {path}");
            assert!(!reply.status.is_server_error(), "{label}: {}", reply.status);
            if method == "HEAD" && takes("GET") {
                assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{label}");
                continue;
            }
            assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{label}");
            let allow = reply.headers["allow"].to_str().unwrap().to_owned();
            for (m, p, _) in ACCESS {
                if *p == path {
                    assert!(allow.contains(m), "{label}: Allow {allow} lacks {m}");
                }
            }
            assert!(!takes("GET") || allow.contains("HEAD"), "{label}: {allow}");
        }
    }
}

#[tokio::test]
async fn the_access_table_and_openapi_json_list_the_same_api_routes() {
    let master = Master::new().await;
    let document = master.get("/api/v1/openapi.json").await;
    let mut documented: Vec<(String, String)> = document.body["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), format!("/api/v1{path}")))
        })
        .collect();
    documented.sort();
    let mut listed: Vec<(String, String)> = ACCESS
        .iter()
        .filter(|(_, path, _)| path.starts_with("/api/v1/") && *path != "/api/v1/openapi.json")
        .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    listed.sort();
    assert_eq!(documented, listed);
    assert!(document.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn revoked_expired_and_wrong_tokens_are_refused() {
    let master = Master::new().await;
    let created = master
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some("alice"),
            &[],
            Some(r#"{"user":"vera","name":"short-lived"}"#.to_owned()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    let with = |token: String| {
        let router = master.router.clone();
        async move {
            let request = axum::http::Request::get("/api/v1/jobs")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            tower::ServiceExt::oneshot(router, request)
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(with(token.clone()).await, StatusCode::OK);
    let listed = master.get("/api/v1/tokens").await;
    let entry = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(
        entry["lastUsedAt"].is_string(),
        "last use is recorded: {entry}"
    );
    assert!(
        entry.get("token").is_none() && !listed.body.to_string().contains(&token[20..]),
        "the secret is never shown again"
    );
    let mut wrong = token.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    assert_eq!(with(wrong).await, StatusCode::UNAUTHORIZED);
    let revoked = master
        .send(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some("alice"),
            &[],
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(with(token).await, StatusCode::UNAUTHORIZED);
    sqlx::query(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE user_name = 'otto'",
    )
    .execute(&master.services.store.pool)
    .await
    .unwrap();
    assert_eq!(
        master.get_as("otto", "/api/v1/jobs").await.status,
        StatusCode::UNAUTHORIZED
    );
    let audit = master.get("/api/v1/events?type=TokenRevoked").await;
    assert_eq!(audit.body["items"][0]["subject"], id.as_str());
    assert_eq!(audit.body["items"][0]["stream"], "token");
}

#[tokio::test]
async fn users_are_created_by_admins_as_audited_events() {
    let master = Master::new().await;
    let create = |body: &'static str| {
        master.send(
            Method::POST,
            "/api/v1/users",
            Some("alice"),
            &[],
            Some(body.to_owned()),
        )
    };
    let made =
        create(r#"{"name":"dana","role":"operator","password":"a long enough password"}"#).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(!made.body.to_string().contains("password"), "{}", made.body);
    assert_eq!(
        create(r#"{"name":"dana","role":"viewer","password":"a long enough password"}"#)
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        create(r#"{"name":"eve","role":"root","password":"a long enough password"}"#)
            .await
            .body["error"]["field"],
        "role"
    );
    assert_eq!(
        create(r#"{"name":"eve","role":"viewer","password":"short"}"#)
            .await
            .body["error"]["field"],
        "password"
    );
    assert_eq!(
        create(r#"{"name":"eve","role":"viewer","password":"a long enough password","uid":0}"#)
            .await
            .body["error"]["field"],
        "uid"
    );
    let as_operator = master
        .send(
            Method::POST,
            "/api/v1/users",
            Some("otto"),
            &[],
            Some(r#"{"name":"x","role":"admin","password":"a long enough password"}"#.to_owned()),
        )
        .await;
    assert_eq!(as_operator.status, StatusCode::FORBIDDEN);
    let audit = master.get("/api/v1/events?type=UserCreated").await;
    let subjects: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"dana"));
    assert!(master
        .services
        .store
        .check_password("dana", "a long enough password")
        .await
        .unwrap()
        .is_some());
    assert!(master
        .services
        .store
        .check_password("dana", "wrong password!!")
        .await
        .unwrap()
        .is_none());
}
