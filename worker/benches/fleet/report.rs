//! The figures printed for one scenario.

use std::collections::{BTreeMap, HashMap};

use cronfleet_common::{ExecutionRecord, RunStatus};

use crate::support::floor::{boot_ms, Floor};
use crate::support::{compare, Spread};

/// The key under which [`Report::txns`] holds the workers' etcd requests.
pub const REQUESTS: &str = "etcd requests";

/// The planned ticks of one scenario, what became of them, and what it cost.
pub struct Report {
    pub planned: usize,
    pub records: Vec<ExecutionRecord>,
    pub txns: BTreeMap<String, f64>,
    /// Per worker: share of one core used by the worker, and by the runs it reaped.
    pub cpu: Vec<(f64, f64)>,
    /// Share of one core used by each server (etcd, the MongoDB-wire server).
    pub servers: Vec<(&'static str, f64)>,
}

impl Report {
    /// Prints the report beside `floor`; returns the last start against the floor's, by the
    /// records' `startTime` and by the shells' own clock.
    pub fn print(&self, title: &str, floor: &Floor) -> (Option<f64>, Option<f64>) {
        let boot = boot_ms();
        let mut shell_delays = Vec::new();
        let mut per_tick: HashMap<(&str, i64), usize> = HashMap::new();
        let mut starts: HashMap<(&str, i64), usize> = HashMap::new();
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        let mut delays = Vec::new();
        let mut claim_to_start = Vec::new();
        let mut run_times = Vec::new();
        let mut shares: BTreeMap<&str, usize> = BTreeMap::new();
        for record in &self.records {
            let tick = (record.job_name.as_str(), record.plan_time);
            *per_tick.entry(tick).or_default() += 1;
            let label = match (record.status, record.reason) {
                (RunStatus::Missed, Some(reason)) => format!("missed ({})", reason.as_str()),
                (status, _) => status.as_str().to_owned(),
            };
            *statuses.entry(label).or_default() += 1;
            if record.fencing_token > 0 {
                *shares.entry(record.worker_id.as_str()).or_default() += 1;
                *starts.entry(tick).or_default() += 1;
                delays.push((record.start_time - record.plan_time) as f64);
                claim_to_start.push((record.start_time - record.schedule_time) as f64);
                run_times.push((record.end_time - record.start_time) as f64);
                if let Ok(up) = record.output.trim().parse::<f64>() {
                    shell_delays.push(boot + up * 1000.0 - record.plan_time as f64);
                }
            }
        }
        let ran = delays.len();
        let duplicates = starts.values().filter(|n| **n > 1).count();
        let doubly_recorded = per_tick.values().filter(|n| **n > 1).count();
        println!("\n{title}");
        println!(
            "  planned ticks {}, recorded {} ({:.2} %), unrecorded {}, recorded twice {}, started twice {}",
            self.planned,
            per_tick.len(),
            per_tick.len() as f64 * 100.0 / self.planned as f64,
            self.planned.saturating_sub(per_tick.len()),
            doubly_recorded,
            duplicates
        );
        println!(
            "  ran {ran} ({:.2} %); by status: {statuses:?}; runs per worker: {:?}",
            ran as f64 * 100.0 / self.planned as f64,
            shares.values().collect::<Vec<_>>()
        );
        let last_start = Spread::of(delays).map(|delay| {
            println!("  start delay (planTime to startTime): {delay}");
            compare("spawned", &delay, &floor.spawned)
        });
        if last_start.is_none() {
            println!("  start delay: nothing ran");
        }
        let shell_last = Spread::of(shell_delays).map(|delay| {
            println!("  planTime to the shell running, by its own clock (10 ms steps): {delay}");
            compare("shells running", &delay, &floor.shells)
        });
        if let Some(spread) = Spread::of(claim_to_start) {
            println!("  dispatch to start (scheduleTime to startTime): {spread}");
        }
        if let Some(spread) = Spread::of(run_times) {
            println!("  run time, a slot's share (startTime to endTime): {spread}");
        }
        let mut txns = self.txns.clone();
        let requests = txns.remove(REQUESTS).unwrap_or(0.0);
        let total: f64 = txns.values().sum();
        let lost = txns.get("lost").copied().unwrap_or(0.0);
        println!(
            "  claim txns per execution: {:.3} ({total} txns for {ran} runs; lost {lost}, {:.3} per execution; by result {txns:?})",
            total / ran.max(1) as f64,
            lost / ran.max(1) as f64,
        );
        println!(
            "  etcd requests carrying claims and releases: {requests} ({:.3} per execution)",
            requests / ran.max(1) as f64
        );
        let cpu: Vec<String> = self
            .cpu
            .iter()
            .map(|(own, runs)| format!("{:.0} % (its runs {:.0} %)", own * 100.0, runs * 100.0))
            .collect();
        println!("  worker CPU, share of one core: {}", cpu.join("; "));
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|(name, share)| format!("{name} {:.0} %", share * 100.0))
            .collect();
        println!("  server CPU, share of one core: {}", servers.join(", "));
        (last_start, shell_last)
    }
}
