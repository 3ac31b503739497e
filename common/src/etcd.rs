//! How both binaries reach etcd: endpoints, prefix, TLS and etcd's own authentication, as one
//! set of flags with environment fallbacks; and [`LeaseKeeper`], which keeps a lease alive for
//! the worker's session and the projector's election alike.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use etcd_client::{Certificate, ConnectOptions, Identity, LeaseKeepAliveStream, TlsOptions};
use tokio::time::Instant;

use crate::endpoints::{EndpointGuard, PROBE_TIMEOUT};
use crate::keys::DEFAULT_PREFIX;

#[derive(Clone, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (`https://` when TLS is on).
    #[arg(
        long,
        env = "CRON_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub etcd_endpoints: Vec<String>,

    /// Root prefix of every cronfleet key in etcd.
    #[arg(long, env = "CRON_ETCD_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    pub etcd_prefix: String,

    /// CA certificate (PEM) that signed etcd's server certificate; turns TLS on.
    #[arg(long, env = "CRON_ETCD_CA_FILE", global = true)]
    pub etcd_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for etcd's mutual TLS; needs --etcd-key-file.
    #[arg(
        long,
        env = "CRON_ETCD_CERT_FILE",
        requires = "etcd_key_file",
        global = true
    )]
    pub etcd_cert_file: Option<PathBuf>,

    /// Private key (PEM) of the client certificate.
    #[arg(
        long,
        env = "CRON_ETCD_KEY_FILE",
        requires = "etcd_cert_file",
        global = true
    )]
    pub etcd_key_file: Option<PathBuf>,

    /// User for etcd's own authentication; the password comes from CRON_ETCD_PASSWORD.
    #[arg(
        long,
        env = "CRON_ETCD_USER",
        requires = "etcd_password",
        global = true
    )]
    pub etcd_user: Option<String>,

    /// Password of --etcd-user (set it in the environment, not on the command line).
    #[arg(
        long,
        env = "CRON_ETCD_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub etcd_password: Option<String>,
}

impl std::fmt::Debug for EtcdArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdArgs")
            .field("etcd_endpoints", &self.etcd_endpoints)
            .field("etcd_prefix", &self.etcd_prefix)
            .field("etcd_ca_file", &self.etcd_ca_file)
            .field("etcd_cert_file", &self.etcd_cert_file)
            .field("etcd_user", &self.etcd_user)
            .field("etcd_password", &self.etcd_password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl EtcdArgs {
    /// Connection options: TLS and credentials from the flags, and `timeout` per request if set.
    pub fn options(&self, timeout: Option<Duration>) -> Result<ConnectOptions, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            // A member cut off from the leader refuses at once (and ends watches) instead of
            // answering from a stale view or hanging.
            .with_require_leader(true);
        if let Some(timeout) = timeout {
            options = options.with_timeout(timeout);
        }
        if let Some(ca) = &self.etcd_ca_file {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
            };
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&self.etcd_cert_file, &self.etcd_key_file) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(password)) = (&self.etcd_user, &self.etcd_password) {
            options = options.with_user(user.clone(), password.clone());
        }
        Ok(options)
    }

    /// Connects with [`EtcdArgs::options`], and keeps the client's requests on the members
    /// that work for as long as the runtime runs ([`EndpointGuard`]).
    pub async fn connect(&self, timeout: Option<Duration>) -> Result<etcd_client::Client, String> {
        let options = self.options(timeout)?;
        let client = etcd_client::Client::connect(self.etcd_endpoints.clone(), Some(options))
            .await
            .map_err(|e| {
                format!(
                    "connecting to etcd at {}: {e}",
                    self.etcd_endpoints.join(",")
                )
            })?;
        EndpointGuard::spawn(
            &self.etcd_endpoints,
            self.etcd_ca_file.is_some(),
            self.options(Some(PROBE_TIMEOUT))?,
            client.clone(),
        );
        Ok(client)
    }
}

/// Pause before renewing again after a renewal that got no answer.
const RETRY_RENEWAL: Duration = Duration::from_millis(200);

/// Keeps one lease alive over a keep-alive stream that is reopened when it breaks.
pub struct LeaseKeeper {
    client: etcd_client::Client,
    lease: i64,
    interval: Duration,
    alive_until: Instant,
    stream: Option<(etcd_client::LeaseKeeper, LeaseKeepAliveStream)>,
    /// Whether the last renewal got no answer (then the next one is tried soon).
    failed: bool,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// Keeps `lease`, granted with `ttl_secs`, renewing every third of its TTL.
    pub fn new(client: etcd_client::Client, lease: i64, ttl_secs: i64) -> Self {
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(1).max(1));
        Self {
            client,
            lease,
            interval: ttl / 3,
            alive_until: Instant::now() + ttl,
            stream: None,
            failed: false,
        }
    }

    /// Sends one keep-alive and waits up to a renewal interval for the answer. `false` once the
    /// lease is gone: etcd says it expired, or no renewal got through for its whole TTL.
    pub async fn renew(&mut self) -> bool {
        if Instant::now() >= self.alive_until {
            return false;
        }
        if self.stream.is_none() {
            let open = self.client.lease_keep_alive(self.lease);
            self.stream = tokio::time::timeout(self.interval, open)
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some((sender, stream)) = self.stream.as_mut() {
            let answer = async {
                sender.keep_alive().await?;
                stream.message().await
            };
            match tokio::time::timeout(self.interval, answer).await {
                Ok(Ok(Some(reply))) if reply.ttl() > 0 => {
                    let ttl = Duration::from_secs(u64::try_from(reply.ttl()).unwrap_or(0));
                    self.alive_until = Instant::now() + ttl;
                    self.failed = false;
                }
                Ok(Ok(Some(_))) => return false,
                _ => {
                    self.stream = None;
                    self.failed = true;
                }
            }
        } else {
            self.failed = true;
        }
        Instant::now() < self.alive_until
    }

    /// Until when etcd, at its last answer, promised to keep the lease.
    pub fn alive_until(&self) -> Instant {
        self.alive_until
    }

    /// How long to wait before the next renewal: a third of the TTL, never past the lease's end;
    /// after a renewal that got no answer (a member died, an election), a moment, on a new
    /// stream — which goes to a live member once [`crate::endpoints::EndpointGuard`] dropped the
    /// dead one.
    pub fn pause(&self) -> Duration {
        let pause = if self.failed {
            RETRY_RENEWAL
        } else {
            self.interval
        };
        pause.min(self.alive_until.saturating_duration_since(Instant::now()))
    }
}
