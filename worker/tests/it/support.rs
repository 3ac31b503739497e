//! Worker processes against the real services, for the fleet tests.

pub use cronfleet_common::testkit::free_port;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cronfleet_common::testkit::TestEnv;
use cronfleet_common::{ExecutionRecord, JobName};
use etcd_client::GetOptions;
use futures_util::TryStreamExt;
use mongodb::bson::doc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

/// A worker process; killed with SIGKILL if the test drops it while it runs.
pub struct WorkerProcess {
    pub id: String,
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGTERM, then waits for the exit code.
    pub async fn stop(mut self) -> i32 {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not stop; log {}",
                self.id,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One test's fleet: the services slice plus a scratch directory.
pub struct Fleet {
    pub env: TestEnv,
    pub etcd: etcd_client::Client,
    pub log: mongodb::Collection<ExecutionRecord>,
    pub dir: PathBuf,
}

/// The scratch directory (workers' logs and spools) stays behind only when the test fails.
impl Drop for Fleet {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Fleet {
    pub async fn new() -> Self {
        let env = TestEnv::new().await;
        let etcd = env.etcd().await;
        let log = env.mongo().await.collection("log");
        let dir = std::env::temp_dir().join(format!("cronfleet-test-{}", env.id));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            env,
            etcd,
            log,
            dir,
        }
    }

    /// Starts a worker with a 3 s lease, 1 s kill grace and 100 ms log flushes.
    pub fn worker(&self, id: &str, extra_env: &[(&str, &str)]) -> WorkerProcess {
        self.worker_with_mongo(id, &self.env.mongo_url, extra_env)
    }

    pub fn worker_with_mongo(
        &self,
        id: &str,
        mongo_url: &str,
        extra_env: &[(&str, &str)],
    ) -> WorkerProcess {
        let log = self.dir.join(format!("{id}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cronfleet-worker"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("CRON_ETCD_ENDPOINTS", self.env.etcd_endpoints.join(","))
            .env("CRON_ETCD_PREFIX", self.env.keys.prefix())
            .env("CRON_MONGO_URL", mongo_url)
            .env("CRON_MONGO_DB", &self.env.mongo_db)
            .env("CRON_WORKER_ID", id)
            .env("CRON_LEASE_TTL_SECS", "3")
            .env("CRON_KILL_GRACE_SECS", "1")
            .env("CRON_LOG_FLUSH_MS", "100")
            .env("CRON_SPOOL_DIR", self.dir.join(format!("spool-{id}")))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        WorkerProcess {
            id: id.to_owned(),
            child,
            log,
        }
    }

    /// Writes `jobs/<name>` as the projector would.
    pub async fn put_job(&mut self, spec: serde_json::Value) {
        let name = JobName::parse(spec["name"].as_str().unwrap()).unwrap();
        self.etcd
            .put(self.env.keys.job(&name), spec.to_string(), None)
            .await
            .unwrap();
    }

    pub async fn put(&mut self, key: String, value: &str) {
        self.etcd.put(key, value, None).await.unwrap();
    }

    /// Waits until every worker id is registered.
    pub async fn registered(&mut self, ids: &[&str]) {
        let prefix = self.env.keys.workers();
        wait_until(Duration::from_secs(15), "workers to register", || {
            let mut etcd = self.etcd.clone();
            let prefix = prefix.clone();
            async move {
                let found = etcd
                    .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                    .await
                    .unwrap();
                ids.iter().all(|id| {
                    found
                        .kvs()
                        .iter()
                        .any(|kv| kv.key_str().unwrap().ends_with(&format!("/{id}")))
                })
            }
        })
        .await;
    }

    /// The value of a key, if any.
    pub async fn get(&mut self, key: &str) -> Option<serde_json::Value> {
        let found = self.etcd.get(key, None).await.unwrap();
        found
            .kvs()
            .first()
            .map(|kv| serde_json::from_slice(kv.value()).unwrap_or_default())
    }

    /// Waits until `key` exists and returns its JSON value.
    pub async fn wait_for_key(&mut self, key: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = self.get(key).await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {key}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every record of `job`, oldest planned first.
    pub async fn records(&self, job: &str) -> Vec<ExecutionRecord> {
        self.log
            .find(doc! { "jobName": job })
            .sort(doc! { "planTime": 1, "startTime": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Waits until `job` has at least `count` records matching `filter`.
    pub async fn wait_for_records(
        &self,
        job: &str,
        within: Duration,
        what: &str,
        filter: impl Fn(&ExecutionRecord) -> bool,
        count: usize,
    ) -> Vec<ExecutionRecord> {
        let deadline = Instant::now() + within;
        loop {
            let records = self.records(job).await;
            if records.iter().filter(|r| filter(r)).count() >= count {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; have {records:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `condition` every 50 ms until it holds or `within` passes (then panics naming `what`).
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts records per planned time; any count above one is a duplicate start.
pub fn starts_per_tick(records: &[ExecutionRecord]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for record in records.iter().filter(|r| r.fencing_token > 0) {
        *counts.entry(record.plan_time).or_default() += 1;
    }
    counts
}

fn command_lines() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| {
            String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// Processes whose command line is exactly `command` (arguments joined by spaces).
pub fn processes_running(command: &str) -> usize {
    command_lines()
        .iter()
        .filter(|line| *line == command)
        .count()
}

/// Processes whose command line contains `marker` anywhere (shells and supervisors included).
pub fn processes_mentioning(marker: &str) -> usize {
    command_lines()
        .iter()
        .filter(|line| line.contains(marker))
        .count()
}

/// A MongoDB-wire server of the test's own, to stop and start without disturbing other tests.
pub struct PrivateMongo {
    child: Option<Child>,
    pub port: u16,
    storage: PathBuf,
    log: PathBuf,
}

impl PrivateMongo {
    /// Starts `secantusd-py` (from `CRON_SECANTUSD`, which `compose/test` sets) on a free port.
    pub async fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut mongo = Self {
            child: None,
            port,
            storage: dir.join("mongo-data"),
            log: dir.join("mongo.log"),
        };
        mongo.restart().await;
        mongo
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        let binary = std::env::var("CRON_SECANTUSD").expect(
            "CRON_SECANTUSD is not set: run the tests with compose/test, which points it at secantusd-py",
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--standalone",
                "--log-level",
                "WARNING",
            ])
            .arg("--storage-path")
            .arg(&self.storage)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url();
        wait_until(
            Duration::from_secs(30),
            "the private Mongo to answer",
            || {
                let url = url.clone();
                async move {
                    let Ok(client) = mongodb::Client::with_uri_str(&url).await else {
                        return false;
                    };
                    client
                        .database("admin")
                        .run_command(doc! { "ping": 1 })
                        .await
                        .is_ok()
                }
            },
        )
        .await;
    }

    /// Stops the server (it ignores SIGTERM; SIGINT stops it) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP port nobody listens on right now.
/// The Prometheus text a worker serves on `127.0.0.1:<port>/metrics`.
pub async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The sum of every sample of `metric` (any labels) in a Prometheus text body.
pub fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
