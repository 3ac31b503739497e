//! 503 at once for a request that needs a dependency the master knows is down ([`Health`]),
//! instead of a wait on the connection pool; and a dependency a handler found unreachable is
//! marked down for the requests after it.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::layout::Nav;
use super::AppState;
use crate::health::{Dependency, Health};

pub async fn fail_fast(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let page = !path.starts_with("/api/");
    for dependency in needs(request.method(), path) {
        if !state.health.is_up(dependency) {
            return unavailable(dependency, page);
        }
    }
    let response = next.run(request).await;
    if let Some(dependency) = response.extensions().get::<Dependency>() {
        state.health.mark_down(*dependency);
    }
    response
}

/// What a request waits on: PostgreSQL for everything but health, metrics, the stylesheet and
/// the sign-in form; etcd too for the workers.
fn needs(method: &Method, path: &str) -> Vec<Dependency> {
    let free = matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/static/")
        || (path == "/login" && method == Method::GET);
    if free {
        return Vec::new();
    }
    let mut needs = vec![Dependency::Postgres];
    if matches!(path, "/workers" | "/api/v1/workers") {
        needs.push(Dependency::Etcd);
    }
    needs
}

fn unavailable(dependency: Dependency, page: bool) -> Response {
    let message = format!("{} is unavailable; retry shortly", dependency.name());
    let error = HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    if page {
        error.page(&Nav::default())
    } else {
        error.into_response()
    }
}

/// The readiness checks the health watcher keeps.
pub fn checks(health: &Health) -> [(&'static str, bool); 2] {
    [
        ("postgres", health.is_up(Dependency::Postgres)),
        ("etcd", health.is_up(Dependency::Etcd)),
    ]
}
