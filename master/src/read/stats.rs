//! Run statistics in PostgreSQL, counted by the notifier in the transaction that acts on each
//! record — so each record counts once — per job and hour of start time (runs by status, a
//! histogram of durations) and for the fleet per minute. A job's stats and the fleet overview
//! read a few hundred rows at most, whatever the number of records. Records from before the
//! notifier first started are not counted.
//!
//! Durations go in buckets ten to a decade ([`bucket`]); a percentile is read from the bucket
//! it falls in, interpolated between the bucket's bounds on a log scale, so it is within a
//! few percent of the true value.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use cronfleet_common::{ExecutionRecord, RunStatus};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::search::FAILURES;

/// How long hourly job statistics are kept: the daily chart's 14 days and a margin.
pub const KEEP_DAYS: i64 = 35;
/// How long the fleet's minutes are kept.
const KEEP_FLEET_HOURS: i64 = 48;
/// Days the daily chart shows.
pub const CHART_DAYS: usize = 14;
/// Bucket of the longest durations (10^9 ms, about 11.6 days, and over).
const TOP_BUCKET: i16 = 90;

/// The histogram bucket of a duration in ms: 0 under 1 ms, else `b` for
/// `[10^((b-1)/10), 10^(b/10))`.
pub fn bucket(ms: i64) -> i16 {
    if ms < 1 {
        return 0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let b = ((ms as f64).log10() * 10.0).floor() as i16 + 1;
    b.min(TOP_BUCKET)
}

/// The statuses of records whose duration is a run's (they started a process).
pub const RAN: [RunStatus; 5] = [
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::TimedOut,
    RunStatus::Killed,
    RunStatus::Abandoned,
];

fn ran(status: RunStatus) -> bool {
    RAN.contains(&status)
}

/// Counts `records` (each exactly once: the caller passes only records acted on for the
/// first time).
pub async fn record(
    tx: &mut Transaction<'static, Postgres>,
    records: &[&ExecutionRecord],
) -> Result<(), sqlx::Error> {
    let counts = Counts::of(records);
    write_by_status(tx, counts.by_status).await?;
    write_durations(tx, counts.durations).await?;
    write_minutes(tx, counts.minutes).await
}

/// What a batch of records adds to each table: runs and total duration by job, hour and
/// status; runs by job, hour and duration bucket; the fleet's runs by minute and status.
#[derive(Default)]
struct Counts<'a> {
    by_status: HashMap<(&'a str, i64, &'a str), (i64, i64)>,
    durations: HashMap<(&'a str, i64, i16), i64>,
    minutes: HashMap<(i64, &'a str), i64>,
}

impl<'a> Counts<'a> {
    fn of(records: &[&'a ExecutionRecord]) -> Self {
        let mut counts = Self::default();
        for r in records {
            let secs = r.start_time.div_euclid(1000);
            let hour = secs - secs.rem_euclid(3600);
            let duration = (r.end_time - r.start_time).max(0);
            let slot = counts
                .by_status
                .entry((&r.job_name, hour, r.status.as_str()))
                .or_default();
            slot.0 += 1;
            slot.1 += duration;
            if ran(r.status) {
                *counts
                    .durations
                    .entry((&r.job_name, hour, bucket(duration)))
                    .or_default() += 1;
            }
            *counts
                .minutes
                .entry((secs.div_euclid(60), r.status.as_str()))
                .or_default() += 1;
        }
        counts
    }
}

async fn write_by_status(
    tx: &mut Transaction<'static, Postgres>,
    by_status: HashMap<(&str, i64, &str), (i64, i64)>,
) -> Result<(), sqlx::Error> {
    let (mut jobs, mut hours, mut statuses, mut runs, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    for ((job, hour, status), (n, ms)) in by_status {
        jobs.push(job);
        hours.push(hour);
        statuses.push(status);
        runs.push(n);
        total.push(ms);
    }
    sqlx::query(
        "INSERT INTO run_stats (job_name, hour, status, runs, duration_ms)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT (job_name, hour, status) DO UPDATE
         SET runs = run_stats.runs + excluded.runs,
             duration_ms = run_stats.duration_ms + excluded.duration_ms",
    )
    .bind(&jobs)
    .bind(&hours)
    .bind(&statuses)
    .bind(&runs)
    .bind(&total)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_durations(
    tx: &mut Transaction<'static, Postgres>,
    durations: HashMap<(&str, i64, i16), i64>,
) -> Result<(), sqlx::Error> {
    let (mut jobs, mut hours, mut buckets, mut runs) = (vec![], vec![], vec![], vec![]);
    for ((job, hour, b), n) in durations {
        jobs.push(job);
        hours.push(hour);
        buckets.push(b);
        runs.push(n);
    }
    sqlx::query(
        "INSERT INTO run_durations (job_name, hour, bucket, runs)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::bigint[])
         ON CONFLICT (job_name, hour, bucket) DO UPDATE
         SET runs = run_durations.runs + excluded.runs",
    )
    .bind(&jobs)
    .bind(&hours)
    .bind(&buckets)
    .bind(&runs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_minutes(
    tx: &mut Transaction<'static, Postgres>,
    minutes: HashMap<(i64, &str), i64>,
) -> Result<(), sqlx::Error> {
    let (mut at, mut statuses, mut runs) = (vec![], vec![], vec![]);
    for ((minute, status), n) in minutes {
        at.push(minute);
        statuses.push(status);
        runs.push(n);
    }
    sqlx::query(
        "INSERT INTO fleet_minutes (minute, status, runs)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[])
         ON CONFLICT (minute, status) DO UPDATE SET runs = fleet_minutes.runs + excluded.runs",
    )
    .bind(&at)
    .bind(&statuses)
    .bind(&runs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drops statistics older than they are kept for.
pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let oldest_hour = now.timestamp() - KEEP_DAYS * 86_400;
    sqlx::query("DELETE FROM run_stats WHERE hour < $1")
        .bind(oldest_hour)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM run_durations WHERE hour < $1")
        .bind(oldest_hour)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM fleet_minutes WHERE minute < $1")
        .bind(now.timestamp() / 60 - KEEP_FLEET_HOURS * 60)
        .execute(pool)
        .await?;
    Ok(())
}

/// A job's runs over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub runs: i64,
    /// Runs by status name.
    pub by_status: BTreeMap<String, i64>,
    /// Succeeded among runs that succeeded or failed (skips do not count); `None` without any.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

/// One day of the daily chart, in the job's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub succeeded: i64,
    /// Every failure status, missed included.
    pub failed: i64,
    /// Skipped.
    pub other: i64,
}

/// A job's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStats {
    pub last_24h: Window,
    pub last_7d: Window,
    /// The last [`CHART_DAYS`] days, oldest first, today last.
    pub daily: Vec<Day>,
}

/// The statistics of `job` as of `now`, its days in `tz`.
pub async fn job(
    pool: &PgPool,
    job: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<JobStats, sqlx::Error> {
    let now_secs = now.timestamp();
    let since = now_secs - i64::try_from(CHART_DAYS + 1).unwrap_or(15) * 86_400;
    let rows =
        sqlx::query("SELECT hour, status, runs FROM run_stats WHERE job_name = $1 AND hour >= $2")
            .bind(job)
            .bind(since - since.rem_euclid(3600))
            .fetch_all(pool)
            .await?;
    let day_of = |hour: i64| {
        tz.timestamp_opt(hour, 0)
            .single()
            .map(|t| t.date_naive())
            .unwrap_or_default()
    };
    let mut daily = chart_days(now, tz);
    let (mut day_window, mut week_window) = (Window::default(), Window::default());
    for row in &rows {
        let hour: i64 = row.get("hour");
        let status: String = row.get("status");
        let runs: i64 = row.get("runs");
        if let Some(day) = daily.iter_mut().find(|d| d.date == day_of(hour)) {
            match status.as_str() {
                "succeeded" => day.succeeded += runs,
                "skipped" => day.other += runs,
                _ => day.failed += runs,
            }
        }
        for (window, span) in [(&mut day_window, 86_400), (&mut week_window, 7 * 86_400)] {
            // An hour counts when it began inside the window.
            if hour > now_secs - span {
                window.runs += runs;
                *window.by_status.entry(status.clone()).or_default() += runs;
            }
        }
    }
    for (window, span) in [(&mut day_window, 86_400), (&mut week_window, 7 * 86_400)] {
        window.success_rate = success_rate(&window.by_status);
        let histogram = durations(pool, job, now_secs - span).await?;
        window.p50_ms = percentile(&histogram, 0.50);
        window.p95_ms = percentile(&histogram, 0.95);
    }
    Ok(JobStats {
        last_24h: day_window,
        last_7d: week_window,
        daily,
    })
}

/// The chart's days, oldest first, ending today in `tz`, all at zero.
fn chart_days(now: DateTime<Utc>, tz: Tz) -> Vec<Day> {
    let today = tz.from_utc_datetime(&now.naive_utc()).date_naive();
    (0..CHART_DAYS)
        .rev()
        .filter_map(|back| today.checked_sub_days(chrono::Days::new(back as u64)))
        .map(|date| Day {
            date,
            succeeded: 0,
            failed: 0,
            other: 0,
        })
        .collect()
}

/// A job's runs by duration bucket over the hours after `after_secs`.
async fn durations(
    pool: &PgPool,
    job: &str,
    after_secs: i64,
) -> Result<BTreeMap<i16, i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT bucket, sum(runs)::bigint AS runs FROM run_durations
         WHERE job_name = $1 AND hour > $2 GROUP BY bucket",
    )
    .bind(job)
    .bind(after_secs)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get("bucket"), row.get("runs")))
        .collect())
}

fn success_rate(by_status: &BTreeMap<String, i64>) -> Option<f64> {
    let succeeded = by_status.get("succeeded").copied().unwrap_or(0);
    let failed: i64 = FAILURES
        .iter()
        .filter_map(|s| by_status.get(s.as_str()))
        .sum();
    #[allow(clippy::cast_precision_loss)]
    (succeeded + failed > 0).then(|| succeeded as f64 / (succeeded + failed) as f64)
}

/// The `q` quantile of a duration histogram, in ms.
pub fn percentile(histogram: &BTreeMap<i16, i64>, q: f64) -> Option<i64> {
    let total: i64 = histogram.values().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let rank = q * total as f64;
    let mut below = 0_i64;
    for (&b, &n) in histogram {
        #[allow(clippy::cast_precision_loss)]
        if (below + n) as f64 >= rank {
            if b == 0 {
                return Some(0);
            }
            let fraction = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            let exponent = (f64::from(b) - 1.0 + fraction) / 10.0;
            #[allow(clippy::cast_possible_truncation)]
            return Some(10_f64.powf(exponent).round() as i64);
        }
        below += n;
    }
    None
}

/// The fleet over the last hour and day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetOverview {
    /// Runs started in each of the last 60 minutes, oldest first (the current minute last).
    pub per_minute: Vec<i64>,
    pub runs_last_hour: i64,
    /// Records with a failure status other than `missed`, in the last 24 hours.
    pub failures_24h: i64,
    pub missed_24h: i64,
    pub runs_24h: i64,
}

/// The fleet overview as of `now`.
pub async fn fleet(pool: &PgPool, now: DateTime<Utc>) -> Result<FleetOverview, sqlx::Error> {
    let minute = now.timestamp() / 60;
    let rows = sqlx::query(
        "SELECT minute, status, runs FROM fleet_minutes WHERE minute > $1 AND minute <= $2",
    )
    .bind(minute - 24 * 60)
    .bind(minute)
    .fetch_all(pool)
    .await?;
    let mut overview = FleetOverview {
        per_minute: vec![0; 60],
        ..FleetOverview::default()
    };
    for row in &rows {
        let at: i64 = row.get("minute");
        let status: String = row.get("status");
        let runs: i64 = row.get("runs");
        overview.runs_24h += runs;
        match status.as_str() {
            "missed" => overview.missed_24h += runs,
            "succeeded" | "skipped" => {}
            _ => overview.failures_24h += runs,
        }
        let back = minute - at;
        if (0..60).contains(&back) {
            let index = usize::try_from(59 - back).unwrap_or(0);
            overview.per_minute[index] += runs;
            overview.runs_last_hour += runs;
        }
    }
    Ok(overview)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ten_to_a_decade() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(9), 10);
        assert_eq!(bucket(10), 11);
        assert_eq!(bucket(1_000), 31);
        assert_eq!(bucket(i64::MAX), TOP_BUCKET);
    }

    #[test]
    fn percentiles_land_within_a_bucket_of_the_truth() {
        let mut histogram = BTreeMap::new();
        for ms in 1..=1000_i64 {
            *histogram.entry(bucket(ms * 10)).or_insert(0) += 1;
        }
        let p50 = percentile(&histogram, 0.5).unwrap();
        let p95 = percentile(&histogram, 0.95).unwrap();
        assert!((4_500..=5_600).contains(&p50), "{p50}");
        assert!((8_900..=10_500).contains(&p95), "{p95}");
        assert_eq!(percentile(&BTreeMap::new(), 0.5), None);
    }

    #[test]
    fn skips_do_not_count_against_the_success_rate() {
        let by_status: BTreeMap<String, i64> = [("succeeded", 3), ("failed", 1), ("skipped", 6)]
            .into_iter()
            .map(|(s, n)| (s.to_owned(), n))
            .collect();
        assert_eq!(success_rate(&by_status), Some(0.75));
    }
}
