//! A master's router and projector against the test's own slice of the services.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use clap::Parser;
use cronfleet_common::testkit::TestEnv;
use cronfleet_master::config::Cli;
use cronfleet_master::identity::Role;
use cronfleet_master::projector::Projector;
use cronfleet_master::store::RequestMeta;
use cronfleet_master::Services;
use etcd_client::GetOptions;
use serde_json::Value;
use tower::ServiceExt;

/// The master's log lines go to the output of the test whose threads wrote them, which the
/// harness prints when the test fails.
fn log_to_the_test_output() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,cronfleet_master=info"));
        // Another subscriber set first (none is) would keep its place.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

pub struct Master {
    pub env: TestEnv,
    pub services: Services,
    pub router: Router,
    /// Bearer tokens by user: alice, bob and carol are admins, vera a viewer, otto an operator.
    pub tokens: BTreeMap<String, String>,
}

/// The actor recorded for a request sent as `user`.
pub fn actor(user: &str) -> String {
    format!("{user} (token test)")
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Master {
    pub async fn new() -> Self {
        Self::with_env(TestEnv::new().await).await
    }

    /// A master on `env`, which a test may point at services of its own.
    pub async fn with_env(env: TestEnv) -> Self {
        log_to_the_test_output();
        let services = Services::connect(&Self::config(&env)).await.unwrap();
        let router = cronfleet_master::http::router(services.app_state());
        let mut tokens = BTreeMap::new();
        let setup = RequestMeta {
            actor: "test-setup".to_owned(),
            request_id: "setup".to_owned(),
            idempotency: None,
        };
        let users = [
            ("alice", Role::Admin),
            ("bob", Role::Admin),
            ("carol", Role::Admin),
            ("vera", Role::Viewer),
            ("otto", Role::Operator),
        ];
        for (user, role) in users {
            services
                .store
                .create_user(user, role, "a long test password", &setup)
                .await
                .unwrap();
            let (token, _) = services
                .store
                .create_token(user, "test", None, &setup)
                .await
                .unwrap();
            tokens.insert(user.to_owned(), token.plaintext);
        }
        Self {
            env,
            services,
            router,
            tokens,
        }
    }

    pub fn config(env: &TestEnv) -> cronfleet_master::config::Config {
        Cli::try_parse_from(env.master_args()).unwrap().config
    }

    pub fn projector(&self, candidate: &str) -> Projector {
        self.services.projector(2, candidate.to_owned())
    }

    /// Sends a request as user `actor` (anonymous when `None`) with extra headers and a body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        actor: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(user) = actor {
            request = request.header("authorization", format!("Bearer {}", self.tokens[user]));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Signs `user` in for the pages; returns the cookie header value and the CSRF token.
    pub async fn session(&self, user: &str) -> (String, String) {
        let principal = self
            .services
            .store
            .check_password(user, "a long test password")
            .await
            .unwrap()
            .unwrap();
        let id = self.services.store.open_session(&principal).await.unwrap();
        let session = self.services.store.session(&id).await.unwrap().unwrap();
        (format!("cronfleet_session={id}"), session.csrf)
    }

    /// A page request with a session cookie (when given) and a form body (when given).
    pub async fn page(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "cronfleet.test");
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let body = match form {
            Some(fields) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(fields).unwrap())
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    pub async fn get_as(&self, user: &str, path: &str) -> Reply {
        self.send(Method::GET, path, Some(user), &[], None).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some("alice"), &[], None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some("alice"),
            &[],
            Some(body.to_string()),
        )
        .await
    }

    /// Runs the projector until the log is applied.
    pub async fn project_all(&self) {
        let mut projector = self.projector("test");
        let leadership = projector.campaign().await.unwrap();
        while projector.apply_batch(&leadership.leader).await.unwrap() > 0 {}
        projector.resign(leadership).await;
    }

    /// `jobs/` in etcd, name → JSON value.
    pub async fn etcd_jobs(&self) -> BTreeMap<String, Value> {
        let mut etcd = self.env.etcd().await;
        let found = etcd
            .get(self.env.keys.jobs(), Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        found
            .kvs()
            .iter()
            .map(|kv| {
                let key = kv.key_str().unwrap();
                (
                    key.rsplit('/').next().unwrap().to_owned(),
                    serde_json::from_slice(kv.value()).unwrap(),
                )
            })
            .collect()
    }

    /// The read model's live jobs, name → spec JSON, as etcd should hold them.
    pub async fn read_model(&self) -> BTreeMap<String, Value> {
        let rows: Vec<(String, Value)> =
            sqlx::query_as("SELECT name, spec FROM jobs WHERE NOT deleted")
                .fetch_all(&self.services.store.pool)
                .await
                .unwrap();
        rows.into_iter().collect()
    }
}

pub fn job(name: &str, command: &str) -> Value {
    serde_json::json!({ "name": name, "command": command, "cronExpr": "*/5 * * * *" })
}
