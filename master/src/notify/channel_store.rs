//! Channels in PostgreSQL: the `channels` table, with every change an event of the `channel`
//! stream in the audit log, appended in the same transaction. The audit log and the views
//! carry header names and whether a secret is set, never a secret or a header value.

use chrono::{DateTime, Utc};
use cronfleet_common::{ChannelName, FieldError};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;

use super::channel::{ChannelInput, Target};
use crate::store::{append, begin, NewEvent, RequestMeta, Store, StoreError};

/// The event types of the `channel` stream.
pub const KINDS: &[&str] = &["ChannelCreated", "ChannelUpdated", "ChannelDeleted"];

/// A channel as the API and pages show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub name: String,
    #[serde(flatten)]
    pub target: Value,
    pub secret_set: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A channel as the sender needs it.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub target: Target,
    pub secret: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("channel {0} already exists")]
    Exists(String),
    #[error("channel {0} does not exist")]
    NotFound(String),
    #[error("channel {channel} is used by jobs {}; remove it from their notify rules first", .jobs.join(", "))]
    InUse { channel: String, jobs: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChannelError {
    fn from(error: sqlx::Error) -> Self {
        ChannelError::Store(StoreError::Database(error))
    }
}

const COLUMNS: &str = "SELECT name, config, secret IS NOT NULL AS secret_set, version, created_at, created_by, updated_at, updated_by FROM channels";

impl Store {
    /// Creates a channel; a webhook needs a secret.
    #[tracing::instrument(skip_all, fields(channel = %input.name))]
    pub async fn create_channel(
        &self,
        input: ChannelInput,
        meta: &RequestMeta,
    ) -> Result<ChannelView, ChannelError> {
        if matches!(input.target, Target::Webhook { .. }) && input.secret.is_none() {
            return Err(FieldError::new("secret", "is required for a webhook").into());
        }
        let config =
            serde_json::to_value(&input.target).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = begin(&self.pool).await?;
        let inserted = sqlx::query(
            "INSERT INTO channels (name, kind, config, secret, version, created_by, updated_by)
             VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING name",
        )
        .bind(input.name.as_str())
        .bind(input.target.kind())
        .bind(&config)
        .bind(&input.secret)
        .bind(&meta.actor)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Err(ChannelError::Exists(input.name.to_string()));
        }
        let after = input.target.public();
        let payload = json!({"after": after, "secretSet": input.secret.is_some()});
        record(
            &mut tx,
            input.name.as_str(),
            "ChannelCreated",
            &payload,
            meta,
        )
        .await?;
        tx.commit().await?;
        self.channel_view(&input.name).await
    }

    /// Replaces a channel's target; a secret left out is kept (a webhook's only).
    #[tracing::instrument(skip_all, fields(channel = %input.name))]
    pub async fn update_channel(
        &self,
        input: ChannelInput,
        meta: &RequestMeta,
    ) -> Result<ChannelView, ChannelError> {
        let mut tx = begin(&self.pool).await?;
        let found = sqlx::query("SELECT config, secret FROM channels WHERE name = $1 FOR UPDATE")
            .bind(input.name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(found) = found else {
            return Err(ChannelError::NotFound(input.name.to_string()));
        };
        let before: Target = serde_json::from_value(found.try_get("config")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let old_secret: Option<String> = found.try_get("secret")?;
        let secret = match &input.target {
            Target::Webhook { .. } => input.secret.clone().or(old_secret.clone()),
            Target::Email { .. } => None,
        };
        if matches!(input.target, Target::Webhook { .. }) && secret.is_none() {
            return Err(FieldError::new("secret", "is required for a webhook").into());
        }
        if before == input.target && secret == old_secret {
            drop(tx);
            return self.channel_view(&input.name).await;
        }
        let config =
            serde_json::to_value(&input.target).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE channels SET kind = $2, config = $3, secret = $4, version = version + 1,
                    updated_at = now(), updated_by = $5 WHERE name = $1",
        )
        .bind(input.name.as_str())
        .bind(input.target.kind())
        .bind(&config)
        .bind(&secret)
        .bind(&meta.actor)
        .execute(&mut *tx)
        .await?;
        let payload = json!({
            "before": before.public(),
            "after": input.target.public(),
            "secretChanged": secret != old_secret,
        });
        record(
            &mut tx,
            input.name.as_str(),
            "ChannelUpdated",
            &payload,
            meta,
        )
        .await?;
        tx.commit().await?;
        self.channel_view(&input.name).await
    }

    /// Deletes a channel no job notifies.
    #[tracing::instrument(skip_all, fields(channel = %name))]
    pub async fn delete_channel(
        &self,
        name: &ChannelName,
        meta: &RequestMeta,
    ) -> Result<(), ChannelError> {
        let mut tx = begin(&self.pool).await?;
        let jobs: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM jobs WHERE NOT deleted AND spec->'notify' @> $1 ORDER BY name",
        )
        .bind(json!([{ "channel": name.as_str() }]))
        .fetch_all(&mut *tx)
        .await?;
        if !jobs.is_empty() {
            return Err(ChannelError::InUse {
                channel: name.to_string(),
                jobs,
            });
        }
        let deleted = sqlx::query("DELETE FROM channels WHERE name = $1 RETURNING config")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(deleted) = deleted else {
            return Err(ChannelError::NotFound(name.to_string()));
        };
        let before: Target = serde_json::from_value(deleted.try_get("config")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let payload = json!({"before": before.public()});
        record(&mut tx, name.as_str(), "ChannelDeleted", &payload, meta).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every channel, by name.
    pub async fn channels(&self) -> Result<Vec<ChannelView>, ChannelError> {
        let rows = sqlx::query(&format!("{COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(view).collect()
    }

    /// One channel.
    pub async fn channel_view(&self, name: &ChannelName) -> Result<ChannelView, ChannelError> {
        let row = sqlx::query(&format!("{COLUMNS} WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(view)
            .transpose()?
            .ok_or_else(|| ChannelError::NotFound(name.to_string()))
    }

    /// A channel with its secret, for delivering; `None` when it is gone.
    pub async fn channel(&self, name: &str) -> Result<Option<Channel>, StoreError> {
        let row = sqlx::query("SELECT config, secret FROM channels WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Channel {
                name: name.to_owned(),
                target: serde_json::from_value(row.try_get("config")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                secret: row.try_get("secret")?,
            })
        })
        .transpose()
    }
}

fn view(row: &sqlx::postgres::PgRow) -> Result<ChannelView, ChannelError> {
    let target: Target = serde_json::from_value(row.try_get("config")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(ChannelView {
        name: row.try_get("name")?,
        target: target.public(),
        secret_set: row.try_get("secret_set")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &str,
    kind: &str,
    payload: &Value,
    meta: &RequestMeta,
) -> Result<(), StoreError> {
    let event = NewEvent {
        stream: "channel",
        subject: name,
        version: None,
        kind,
        payload,
    };
    append(tx, event, meta).await?;
    Ok(())
}
