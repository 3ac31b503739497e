//! The contract between cronfleet's master and its workers.
//!
//! * [`job`]: job names and job specs, validated once at the edge (`JobName::parse`,
//!   `JobSpec::from_user_json`, `JobSpec::from_etcd_value`).
//! * [`schedule`]: cron expressions in every accepted form, fire times in the job's time zone,
//!   and the daylight-saving rules.
//! * [`policy`]: run policies beside the schedule (labels and selectors, broadcast, retries,
//!   working directory).
//! * [`keys`]: the etcd key layout; every key is built there.
//! * [`record`]: the execution record workers write to MongoDB and the master reads back.
//! * [`values`]: what the fleet writes under its etcd keys (run holders, tick guards, worker
//!   registrations, run-now and kill requests).
//! * [`telemetry`]: the tracing setup both binaries share; with the `etcd` feature, [`etcd`]
//!   holds the etcd connection flags both take and [`endpoints`] the fail-over between etcd
//!   members.
//!
//! Nothing here does IO besides installing the log subscriber. With the `testkit` feature, [`testkit`] gives integration tests their
//! own slice of the real etcd, PostgreSQL and MongoDB-wire servers that `compose/test` starts.

#[cfg(feature = "etcd")]
pub mod endpoints;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod job;
pub mod keys;
pub mod outcome;
pub mod policy;
pub mod record;
pub mod retention;
pub mod schedule;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod values;

pub use job::{Concurrency, FieldError, JobName, JobSpec};
pub use keys::Keys;
pub use outcome::{ChannelName, NotifyOn, NotifyRule};
pub use policy::{Labels, Mode, RetryPolicy, Selector};
pub use record::{ExecutionRecord, MissReason, RunStatus, Trigger};
pub use retention::Retention;
pub use schedule::{Schedule, ScheduleError};
