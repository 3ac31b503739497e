//! The master's settings: flags with environment fallbacks, and the subcommands.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use cronfleet_common::etcd::EtcdArgs;
use cronfleet_common::record::DEFAULT_MONGO_DB;

use crate::notify::settings::NotifyArgs;
use crate::prune::RetentionArgs;

/// cronfleet master: takes job commands over REST, records each as an event in PostgreSQL and
/// projects the jobs into etcd for the workers.
#[derive(Debug, Clone, Parser)]
#[command(name = "cronfleet-master", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Action>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Action {
    /// Serve HTTP and take part in the projector election (the default).
    Serve,
    /// Replay the whole event log into a fresh read model and etcd, then exit.
    Rebuild,
    /// Apply the database migrations, then exit (serve applies them too).
    Migrate,
    /// Manage users (the first admin is made here).
    #[command(subcommand)]
    User(UserAction),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenAction),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditAction),
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditAction {
    /// Walk the audit log's hash chain and name the first event that does not match; prints
    /// the head (`<seq>:<hash>`) to keep elsewhere. Exits 1 when the chain is broken.
    Verify {
        /// A head printed by an earlier `verify` (`<seq>:<hash>`): the event must still have
        /// that hash, so a log rewritten from before it is caught.
        #[arg(long)]
        anchor: Option<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Create a user. The password comes from CRON_PASSWORD or, if unset, the first line of
    /// standard input; never from the command line.
    Create {
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
    },
    /// Set a user's password (a lost admin password), and enable the user if disabled. The
    /// password comes as for `create`; the user's sessions end.
    ResetPassword {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Create an API token for a user and print it (shown this once).
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// What the token is for, e.g. "ci-deploy".
        #[arg(long)]
        name: String,
        /// Days until it expires; never when omitted.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

#[derive(Clone, Args)]
pub struct Config {
    /// Address to serve HTTP on.
    #[arg(
        long,
        env = "CRON_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// PostgreSQL URL (credentials and `sslmode` go in the URL).
    #[arg(
        long,
        env = "CRON_DATABASE_URL",
        default_value = "postgres://cronfleet@127.0.0.1:5432/cronfleet",
        global = true
    )]
    pub database_url: String,

    /// Most PostgreSQL connections this master opens.
    #[arg(
        long,
        env = "CRON_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// MongoDB URL, for execution records (credentials and TLS options go in the URL).
    #[arg(
        long,
        env = "CRON_MONGO_URL",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true",
        global = true
    )]
    pub mongo_url: String,

    /// MongoDB database that holds the `log` collection.
    #[arg(long, env = "CRON_MONGO_DB", default_value = DEFAULT_MONGO_DB, global = true)]
    pub mongo_db: String,

    /// Time to live of the projector election lease, in seconds: how long a dead master's
    /// projector blocks the others.
    #[arg(long, env = "CRON_PROJECTOR_LEASE_TTL_SECS", default_value_t = 5, value_parser = clap::value_parser!(i64).range(2..=60), global = true)]
    pub projector_lease_ttl_secs: i64,

    /// Mark the admin pages' session cookie `Secure`: set it when users reach the master over
    /// HTTPS (a TLS-terminating proxy in front of it).
    #[arg(long, env = "CRON_SECURE_COOKIES", global = true)]
    pub secure_cookies: bool,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "CRON_LOG_JSON", global = true)]
    pub log_json: bool,

    #[command(flatten)]
    pub notify: NotifyArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// Credentials live in the URLs; never print them.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact(&self.database_url))
            .field("etcd", &self.etcd)
            .field("mongo_url", &redact(&self.mongo_url))
            .field("mongo_db", &self.mongo_db)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
