//! The whole system: a master serving HTTP and projecting into etcd, a worker process, jobs
//! created, run now and killed through the REST API, executions read back through it — the
//! killed run found by the request id its run-now answered, saying who started and killed it.

use std::time::Duration;

use crate::support::Fleet;
use clap::Parser as _;
use cronfleet_master::config::Cli;
use cronfleet_master::App;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The admin token the requests carry.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One HTTP/1.1 request over a fresh connection; returns the status and the JSON body.
async fn http(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let token = TOKEN.get().expect("the test made a token");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: cronfleet\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn executions(address: std::net::SocketAddr, job: &str) -> Vec<Value> {
    let (_, page) = http(
        address,
        "GET",
        &format!("/api/v1/jobs/{job}/executions"),
        None,
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_execution(address: std::net::SocketAddr, job: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = executions(address, job)
            .await
            .into_iter()
            .find(|r| r["status"] == status)
        {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {status} execution of {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_run_kill_through_the_api() {
    let fleet = Fleet::new().await;
    let env = &fleet.env;
    let mut args = env.master_args();
    args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
    let cli = Cli::try_parse_from(args).unwrap();
    let app = App::build(&cli.config).await.unwrap();
    let services = cronfleet_master::Services::connect(&cli.config)
        .await
        .unwrap();
    let setup = cronfleet_master::store::RequestMeta {
        actor: "setup".into(),
        request_id: "setup".into(),
        idempotency: None,
    };
    let role = cronfleet_master::identity::Role::Admin;
    services
        .store
        .create_user("e2e", role, "a long test password", &setup)
        .await
        .unwrap();
    let (token, _) = services
        .store
        .create_token("e2e", "e2e", None, &setup)
        .await
        .unwrap();
    TOKEN.set(token.plaintext).unwrap();
    let address = app.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let master = tokio::spawn(app.run(shutdown.clone()));
    let worker = fleet.worker("e2e-worker", &[]);

    let (status, created) = http(address, "POST", "/api/v1/jobs", Some(json!({"name": "greet", "command": "echo hello from $CRON_JOB_NAME", "cronExpr": "* * * * * *"}))).await;
    assert_eq!(status, 201, "{created}");
    let first = wait_for_execution(address, "greet", "succeeded").await;
    assert_eq!(first["output"], "hello from greet\n");
    assert_eq!(first["jobVersion"], 1);

    let (status, _) = http(
        address,
        "POST",
        "/api/v1/jobs",
        Some(json!({"name": "long", "command": "sleep 300", "cronExpr": "@yearly"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, requested) = http(address, "POST", "/api/v1/jobs/long/run", None).await;
    assert_eq!(status, 202);
    let request_id = requested["requestId"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, workers) = http(address, "GET", "/api/v1/workers", None).await;
        let running = workers["items"][0]["running"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if running.iter().any(|r| r["jobName"] == "long") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run-now run never showed up: {workers}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = http(address, "POST", "/api/v1/jobs/long/kill", None).await;
    assert_eq!(status, 202);
    let killed = wait_for_execution(address, "long", "killed").await;
    assert_eq!(killed["trigger"], "manual");
    let actor = "e2e (token e2e)";
    assert_eq!(killed["requestId"], request_id.as_str(), "{killed}");
    assert_eq!(killed["requestedBy"], actor);
    assert_eq!(killed["killedBy"], actor);
    assert!(
        killed["startedAt"].as_str().unwrap().ends_with('Z'),
        "{killed}"
    );
    let path = format!("/api/v1/executions?requestId={request_id}");
    let (status, found) = http(address, "GET", &path, None).await;
    assert_eq!(status, 200, "{found}");
    let found = found["items"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["runId"], killed["runId"]);
    let (_, failures) = http(address, "GET", "/api/v1/executions?status=failures", None).await;
    let jobs: Vec<&str> = failures["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["jobName"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["long"], "greet only succeeded");

    let (_, history) = http(address, "GET", "/api/v1/jobs/long/history", None).await;
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["KillRequested", "RunRequested", "JobCreated"]);
    assert!(history["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "e2e (token e2e)"));

    assert_eq!(worker.stop().await, 0);
    shutdown.cancel();
    master.await.unwrap().unwrap();
}
