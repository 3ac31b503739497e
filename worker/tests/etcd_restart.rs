//! A worker across a restart of its etcd: it keeps or renews its session, registers again and
//! keeps scheduling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cronfleet_common::{JobName, Keys, RunStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{wait_until, Fleet};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private etcd, killed when dropped so a failing test leaves nothing running.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Etcd {
    /// Stops it with SIGTERM, as an operator would.
    fn stop(&mut self) {
        kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM).unwrap();
        self.0.wait().unwrap();
    }
}

fn start_etcd(dir: &std::path::Path, client: u16, peer: u16) -> Etcd {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .unwrap();
    Command::new("etcd")
        .args(["--name", "restart-test", "--data-dir"])
        .arg(dir.join("etcd-data"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("restart-test=http://127.0.0.1:{peer}"),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map(Etcd)
        .expect("etcd on PATH (compose/services installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_and_scheduling_survive_an_etcd_restart() {
    let mut fleet = Fleet::new().await;
    let (client_port, peer_port) = (free_port(), free_port());
    let mut etcd = start_etcd(&fleet.dir, client_port, peer_port);
    let endpoint = format!("http://127.0.0.1:{client_port}");
    fleet.env.etcd_endpoints = vec![endpoint.clone()];
    fleet.env.keys = Keys::default();
    wait_until(Duration::from_secs(20), "the private etcd", || {
        let endpoint = endpoint.clone();
        async move {
            match etcd_client::Client::connect([endpoint], None).await {
                Ok(mut client) => client.get("probe", None).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    fleet.etcd = etcd_client::Client::connect([endpoint.clone()], None)
        .await
        .unwrap();
    let worker = fleet.worker("survivor", &[]);
    fleet.registered(&["survivor"]).await;

    etcd.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut etcd = start_etcd(&fleet.dir, client_port, peer_port);
    fleet.etcd = loop {
        if let Ok(mut client) = etcd_client::Client::connect([endpoint.clone()], None).await {
            if client.get("probe", None).await.is_ok() {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.registered(&["survivor"]).await;
    fleet
        .put(
            fleet
                .env
                .keys
                .job(&JobName::parse("after-restart").unwrap()),
            r#"{"name":"after-restart","command":"echo ok","cronExpr":"* * * * * *"}"#,
        )
        .await;
    fleet
        .wait_for_records(
            "after-restart",
            Duration::from_secs(20),
            "a run after the restart",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(worker.stop().await, 0);
    etcd.stop();
}
