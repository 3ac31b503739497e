//! PostgreSQL going down (a proxy in front of it that cuts every connection and refuses new
//! ones): after the first request notices, requests are answered 503 with `Retry-After` at once
//! instead of after the pool's timeout, readiness says so, and recovery is noticed within a
//! second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::Master;
use axum::http::StatusCode;
use cronfleet_common::testkit::TestEnv;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards a loopback port to `target` while up; when cut, drops every connection and
/// refuses new ones (as a stopped server would).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0u64);
        let accepting = Arc::clone(&up);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_requests_fail_fast_and_recovery_is_noticed_within_a_second() {
    let mut env = TestEnv::new().await;
    let url: url_parts::Url = url_parts::parse(&env.database_url);
    let proxy = Proxy::start(format!("{}:{}", url.host, url.port)).await;
    env.database_url = url.with_port(proxy.port);
    let master = Master::with_env(env).await;
    assert_eq!(master.get("/api/v1/jobs").await.status, StatusCode::OK);

    proxy.set(false);
    // The watcher, or the first request that waits on the pool, notices.
    let noticed = Instant::now();
    while master.get("/readyz").await.body["checks"]["postgres"] != "unavailable" {
        assert!(
            noticed.elapsed() < Duration::from_secs(3),
            "the outage went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in ["/api/v1/jobs", "/api/v1/events", "/api/v1/workers"] {
        let started = Instant::now();
        let reply = master.get(path).await;
        let took = started.elapsed();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(reply.headers["retry-after"], "1", "{path}");
        assert!(
            took < Duration::from_millis(50),
            "{path} took {took:?} to say PostgreSQL is down"
        );
    }

    proxy.set(true);
    let restored = Instant::now();
    while master.get("/api/v1/jobs").await.status != StatusCode::OK {
        assert!(
            restored.elapsed() < Duration::from_secs(1),
            "recovery was not noticed within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(master.get("/readyz").await.body["checks"]["postgres"], "ok");
}

/// Just enough URL handling for `postgres://user:pass@host:port/db`.
mod url_parts {
    pub struct Url {
        pub host: String,
        pub port: u16,
        before: String,
        after: String,
    }

    pub fn parse(url: &str) -> Url {
        let at = url.rfind('@').unwrap() + 1;
        let rest = &url[at..];
        let end = rest.find('/').unwrap_or(rest.len());
        let (host, port) = rest[..end].rsplit_once(':').unwrap();
        Url {
            host: host.to_owned(),
            port: port.parse().unwrap(),
            before: url[..at].to_owned(),
            after: rest[end..].to_owned(),
        }
    }

    impl Url {
        pub fn with_port(&self, port: u16) -> String {
            format!("{}{}:{port}{}", self.before, self.host, self.after)
        }
    }
}
