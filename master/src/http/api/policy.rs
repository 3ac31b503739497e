//! A job's run policies as the OpenAPI document describes them. The JSON is the common
//! crate's (`Selector`, `Mode`, `RetryPolicy`, validated by `JobSpec::from_user_json`); these
//! types only give it a schema, for requests and answers alike.

use utoipa::ToSchema;

/// The values one selector entry accepts: one value, or a list (1-16) of which any matches.
/// Each value is at most 63 of `[A-Za-z0-9._-]`.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum SelectorValues {
    /// The worker's label must have this value.
    One(String),
    /// The worker's label must have one of these values.
    AnyOf(Vec<String>),
}

/// How many workers run each tick.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// One of the matching workers runs each tick (the default).
    One,
    /// Every live matching worker runs each tick once, with a record each, all with the same
    /// `tickId`. Retries are not available.
    All,
}

/// A status retried besides `failed` and `timed_out`, which always are.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryAlsoOn {
    /// The run's worker died or lost etcd while the run ran.
    Abandoned,
    /// The command could not start (a missing working directory, a shell not allowed).
    FailedToStart,
}

/// When and how often a tick whose run failed is attempted again: attempt `n` is due
/// `initialDelaySecs × multiplier^(n-2)` seconds (at most `maxDelaySecs`, ±20 % jitter) after
/// the previous one ended, and any eligible worker may run it. Every attempt has its own
/// record, with `attempt` and the tick's `tickId`. Not available with `mode: all`.
#[derive(Debug, ToSchema)]
#[schema(as = RetryPolicy)]
#[serde(rename_all = "camelCase")]
pub struct RetrySchema {
    /// Attempts of one tick, the first included (2-20).
    #[schema(minimum = 2, maximum = 20)]
    pub max_attempts: u32,
    /// Seconds before the second attempt (1-86400); default 10.
    #[schema(minimum = 1, maximum = 86400)]
    pub initial_delay_secs: Option<u64>,
    /// Longest delay between two attempts, in seconds (1-86400, at least
    /// `initialDelaySecs`); default 3600.
    #[schema(minimum = 1, maximum = 86400)]
    pub max_delay_secs: Option<u64>,
    /// Each delay is the previous one times this (1-10); default 2.
    #[schema(minimum = 1, maximum = 10)]
    pub multiplier: Option<f64>,
    /// Statuses retried besides `failed` and `timed_out`; default none.
    pub also_on: Option<Vec<RetryAlsoOn>>,
}

/// How long the job's records are kept, over the fleet's default (the master's
/// `--retention-days`, 90 unless set, and `--retention-max-records`, no limit unless set): a
/// side left out is the default's. Records past either limit are deleted within minutes.
#[derive(Debug, ToSchema)]
#[schema(as = Retention)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSchema {
    /// Days a record is kept (1-36500).
    #[schema(minimum = 1, maximum = 36500)]
    pub days: Option<u32>,
    /// The most records kept, the newest (1-10000000).
    #[schema(minimum = 1, maximum = 10000000)]
    pub max_records: Option<u32>,
}
