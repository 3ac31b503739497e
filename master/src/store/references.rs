//! Which live jobs refer to a job (through their chains) or to a channel (through their
//! notify rules), from the `jobs` read model: what a job's and a channel's pages show. The
//! writes check the same links under the append lock ([`crate::domain::Links`]).

use cronfleet_common::{ChannelName, JobName};
use serde_json::json;

use super::{Store, StoreError};

impl Store {
    /// The live jobs whose `onSuccess` or `onFailure` names `job`, by name.
    pub async fn upstream(&self, job: &JobName) -> Result<Vec<String>, StoreError> {
        let names = sqlx::query_scalar(
            "SELECT name FROM jobs WHERE NOT deleted AND name <> $1
               AND (spec->'onSuccess' @> $2 OR spec->'onFailure' @> $2)
             ORDER BY name",
        )
        .bind(job.as_str())
        .bind(json!([job.as_str()]))
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }

    /// The live jobs with a notify rule for `channel`, by name.
    pub async fn jobs_notifying(&self, channel: &ChannelName) -> Result<Vec<String>, StoreError> {
        let names = sqlx::query_scalar(
            "SELECT name FROM jobs WHERE NOT deleted AND spec->'notify' @> $1 ORDER BY name",
        )
        .bind(json!([{ "channel": channel.as_str() }]))
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }
}
