//! What both benchmarks print figures with.

#![allow(dead_code)]

pub mod floor;

/// The value at fraction `p` of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Milliseconds at p50, p99 and max, and how many.
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Self {
            p50: percentile(&values, 0.5),
            p99: percentile(&values, 0.99),
            max: values[values.len() - 1],
            n: values.len(),
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
            self.p50, self.p99, self.max, self.n
        )
    }
}

/// `summary` of an empty list says so instead of panicking.
pub fn summary(values: Vec<f64>) -> String {
    Spread::of(values).map_or_else(|| "no samples".to_owned(), |s| s.to_string())
}

/// A benchmark run: its scratch directory, removed at the end, and the sections named on the
/// command line (`cargo bench --bench <name> -- <section>…`; none named runs them all).
pub struct Bench {
    pub scratch: std::path::PathBuf,
    only: Vec<String>,
}

impl Bench {
    /// Prints the heading and makes the scratch directory.
    pub fn start(name: &str) -> Self {
        let scratch = std::env::temp_dir().join(format!("cronfleet-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("a scratch directory");
        println!(
            "cronfleet {name} benchmark ({} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let only = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        Self { scratch, only }
    }

    /// Whether `section` is to run.
    pub fn wanted(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == section)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.scratch).ok();
    }
}

/// Writes `(name, cronExpr)` jobs running `command` (no quotes or backslashes in it) to etcd as
/// the projector would, 128 a txn.
pub async fn put_jobs(
    etcd: &mut etcd_client::Client,
    keys: &cronfleet_common::Keys,
    command: &str,
    jobs: impl Iterator<Item = (String, String)>,
) {
    let ops: Vec<etcd_client::TxnOp> = jobs
        .map(|(name, expr)| {
            let value = format!(
                r#"{{"name":"{name}","command":"{command}","cronExpr":"{expr}","version":1}}"#
            );
            let name = cronfleet_common::JobName::parse(&name).expect("a valid job name");
            etcd_client::TxnOp::put(keys.job(&name), value, None)
        })
        .collect();
    for chunk in ops.chunks(128) {
        etcd.txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await
            .expect("etcd takes the jobs");
    }
}

/// Prints `delay` against the floor's `what`; returns the last against the floor's last.
pub fn compare(what: &str, delay: &Spread, floor: &Spread) -> f64 {
    println!(
        "  against the raw floor's {what} for {} at once ({floor}): p50 {:.2}×, p99 {:.2}×, max {:.2}×",
        floor.n,
        delay.p50 / floor.p50,
        delay.p99 / floor.p99,
        delay.max / floor.max
    );
    delay.max / floor.max
}
