//! Test support: each integration test gets its own slice of the real services.
//!
//! `compose/test` starts etcd, PostgreSQL and a MongoDB-wire server and exports their URLs as
//! `CRON_ETCD_ENDPOINTS`, `CRON_DATABASE_URL` and `CRON_MONGO_URL`. [`TestEnv::new`] reads them
//! and gives the test a unique etcd prefix, a fresh PostgreSQL database migrated from
//! `migrations/`, and a unique Mongo database, so tests run in parallel without seeing each
//! other's data. Without those variables it panics with a message that says how to start them:
//! an integration test never skips itself. Panicking is the point here, so `expect` is allowed.

#![allow(clippy::expect_used)]

use std::env;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::keys::Keys;

mod etcd_cluster;
pub use etcd_cluster::EtcdCluster;

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// The migrations every test database starts from.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// One test's private view of the services.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Unique per test; used in every name below.
    pub id: String,
    pub etcd_endpoints: Vec<String>,
    /// Keys under `/test-<id>/`.
    pub keys: Keys,
    /// URL of this test's own database.
    pub database_url: String,
    pub mongo_url: String,
    /// This test's own Mongo database name.
    pub mongo_db: String,
}

fn required_var(name: &str) -> String {
    match env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set. Integration tests run against real etcd, PostgreSQL and \
             MongoDB-wire servers: run them with `compose/test`, or start the services with \
             `compose/services start` and export the CRON_*= lines it prints."
        ),
    }
}

impl TestEnv {
    /// The command line of a master on this slice of the services (program name first).
    pub fn master_args(&self) -> Vec<String> {
        [
            "cronfleet-master",
            "--database-url",
            &self.database_url,
            "--etcd-endpoints",
            &self.etcd_endpoints.join(","),
            "--etcd-prefix",
            self.keys.prefix(),
            "--mongo-url",
            &self.mongo_url,
            "--mongo-db",
            &self.mongo_db,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Creates the test's database (migrated) and names its etcd prefix and Mongo database.
    pub async fn new() -> Self {
        let etcd_endpoints: Vec<String> = required_var("CRON_ETCD_ENDPOINTS")
            .split(',')
            .map(str::to_owned)
            .collect();
        let admin_url = required_var("CRON_DATABASE_URL");
        let mongo_url = required_var("CRON_MONGO_URL");
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let keys = Keys::new(&format!("/test-{id}/")).expect("a generated prefix is valid");
        let database_url = create_database(&admin_url, &format!("test_{id}")).await;
        Self {
            keys,
            database_url,
            mongo_url,
            mongo_db: format!("test_{id}"),
            etcd_endpoints,
            id,
        }
    }

    /// A client for the shared etcd; keep to [`TestEnv::keys`].
    pub async fn etcd(&self) -> etcd_client::Client {
        etcd_client::Client::connect(&self.etcd_endpoints, None)
            .await
            .expect("connect to etcd at CRON_ETCD_ENDPOINTS")
    }

    /// A pool on this test's own, migrated database.
    pub async fn postgres(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(8)
            .connect(&self.database_url)
            .await
            .expect("connect to the test database")
    }

    /// This test's own Mongo database.
    pub async fn mongo(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.mongo_url)
            .await
            .expect("connect to Mongo at CRON_MONGO_URL")
            .database(&self.mongo_db)
    }
}

async fn create_database(admin_url: &str, name: &str) -> String {
    let admin: PgConnectOptions = admin_url
        .parse()
        .expect("CRON_DATABASE_URL is a postgres URL");
    let mut connection = admin
        .connect()
        .await
        .expect("connect to PostgreSQL at CRON_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut connection)
        .await
        .expect("create the test database");
    connection.close().await.ok();
    let options = admin.database(name);
    let mut connection = options
        .connect()
        .await
        .expect("connect to the test database");
    MIGRATOR
        .run(&mut connection)
        .await
        .expect("apply migrations/ to the test database");
    connection.close().await.ok();
    let mut url = url_without_database(admin_url);
    url.push_str(name);
    url
}

/// `postgres://u:p@h:5432/db?x` → `postgres://u:p@h:5432/` (query dropped).
fn url_without_database(url: &str) -> String {
    let without_query = url.split('?').next().unwrap_or(url);
    let authority_end = without_query
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| without_query[start..].find('/').map(|slash| start + slash))
        .unwrap_or(without_query.len());
    format!("{}/", &without_query[..authority_end])
}
