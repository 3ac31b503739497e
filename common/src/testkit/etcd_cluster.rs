//! A private etcd cluster on loopback, for tests that stop, kill or restart its members.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Polls `condition` every 50 ms until it holds; panics naming `what` after `within`.
async fn wait_until<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// `n` etcd members started together; every member still running is killed when dropped.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster takes writes.
    pub async fn start(dir: &Path, n: usize) -> Self {
        let members = (0..n)
            .map(|i| Member {
                name: format!("member-{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            dir: dir.to_owned(),
            members,
        };
        for index in 0..n {
            cluster.spawn(index);
        }
        let endpoints = cluster.endpoints();
        wait_until(Duration::from_secs(30), "the private etcd cluster", || {
            let endpoints = endpoints.clone();
            async move {
                match etcd_client::Client::connect(endpoints, None).await {
                    Ok(mut client) => client.put("probe", "", None).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let member = &mut self.members[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", member.name)))
            .expect("the member's log file");
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &member.name, "--data-dir"])
            .arg(self.dir.join(format!("{}-data", member.name)))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", "cronfleet-test"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the member's log file"))
            .stderr(log)
            .spawn()
            .expect("etcd on PATH (compose/services installs it)");
        member.child = Some(child);
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The index of the member that is the leader now.
    pub async fn leader(&self) -> usize {
        for (index, endpoint) in self.endpoints().into_iter().enumerate() {
            let Ok(mut client) = etcd_client::Client::connect([endpoint], None).await else {
                continue;
            };
            if let Ok(status) = client.status().await {
                if status.header().map(|h| h.member_id()) == Some(status.leader()) {
                    return index;
                }
            }
        }
        panic!("no etcd member says it is the leader");
    }

    /// SIGKILL: the member dies without a word to its peers.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            child.kill().expect("SIGKILL an etcd member");
            child.wait().expect("reap an etcd member");
        }
    }

    /// SIGTERM, as an operator stops a member, and waits for it to exit.
    pub fn stop(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let sent = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill(1)");
            assert!(sent.success(), "SIGTERM to an etcd member");
            child.wait().expect("reap an etcd member");
        }
    }

    /// Starts a stopped member again on its ports and data.
    pub async fn restart(&mut self, index: usize) {
        self.spawn(index);
        let endpoint = self.endpoints()[index].clone();
        wait_until(Duration::from_secs(30), "the etcd member to answer", || {
            let endpoint = endpoint.clone();
            async move {
                match etcd_client::Client::connect([endpoint], None).await {
                    Ok(mut client) => client.get("probe", None).await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
