//! `cronfleet`: the master's REST API from a shell — jobs, runs, the audit log and workers,
//! jobs kept as code (`apply`, `export`) and crontabs brought over (`import-crontab`).
//!
//! Exit codes: 0 done; 1 the master refused the request; 2 a wrong command line or file; 3
//! not found; 4 a conflict (the job changed since it was read; a name taken); 5 the master
//! could not be reached or could not answer; 6 a followed run ended but did not succeed.

mod client;
mod commands;
mod crontab;
mod follow;
mod input;
mod jobs;
mod output;
mod plan;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::client::{Client, Failure, Saved};
use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "cronfleet",
    version,
    about = "cronfleet from the command line: jobs, runs, audit, jobs as code"
)]
pub struct Cli {
    /// The master, as users open it (e.g. http://cron.example.com:8080).
    #[arg(long, env = "CRONFLEET_URL", global = true)]
    url: Option<String>,
    /// An API token (`cft_…`).
    #[arg(long, env = "CRONFLEET_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Output: aligned tables, or the API's answer as JSON or YAML.
    #[arg(short, long, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the URL and token against the master and keep them (mode 0600) for later calls.
    Login,
    /// Jobs: list, show (now or as they were), create, edit, revert, delete, run, kill, pause,
    /// resume.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Execution records and runs in progress.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// The audit log: who changed what, when.
    Audit(AuditArgs),
    /// The live workers.
    Workers,
    /// Make the live jobs what a YAML or JSON file says: prints the plan, then applies it
    /// (`--dry-run -o json` prints a plan that `--plan` carries out later).
    Apply(ApplyArgs),
    /// Every job as a file `apply` reads back unchanged (YAML unless `-o json`).
    Export,
    /// Turn crontab files into jobs: prints the plan, then creates them (as `apply`).
    ImportCrontab(ImportArgs),
    /// A completion script for a shell.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    List {
        /// Only jobs whose name contains this.
        #[arg(long)]
        name: Option<String>,
        /// active, paused or failing.
        #[arg(long)]
        status: Option<String>,
    },
    /// The job now, or as it was at a version or a moment.
    Get {
        name: String,
        /// A version it had (its ETag then).
        #[arg(long, conflicts_with = "as_of")]
        version: Option<i64>,
        /// An RFC 3339 time.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Give the job back the spec of a past version, as an update of the version it has now.
    Revert {
        name: String,
        /// The version to go back to.
        #[arg(long)]
        to: i64,
    },
    /// Create a job from a YAML or JSON spec file (`-` for stdin).
    Create {
        #[arg(short, long)]
        file: String,
    },
    /// Open the job's spec in $VISUAL or $EDITOR and save it as an update of the version opened.
    Edit {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Run now; prints the request id the run's records will carry.
    Run {
        name: String,
    },
    /// Kill every run of the job in progress.
    Kill {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Records across jobs, newest first.
    List(RunFilter),
    /// One run: its record, or the run in progress.
    Show { run_id: String },
    /// A run's output; with --follow, its output as it comes while it runs, until it ends.
    Logs {
        run_id: String,
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Debug, Args)]
struct RunFilter {
    #[arg(long)]
    job: Option<String>,
    /// A status, a comma list, or `failures`.
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    worker: Option<String>,
    /// RFC 3339, or YYYY-MM-DD[THH:MM] in UTC.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
struct AuditArgs {
    #[arg(long)]
    job: Option<String>,
    #[arg(long)]
    actor: Option<String>,
    /// An event type (JobUpdated, KillRequested, UserCreated…).
    #[arg(long = "type")]
    kind: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// The jobs file (`-` for stdin).
    #[arg(short, long, required_unless_present = "plan")]
    file: Option<String>,
    /// Carry out a plan printed earlier by `apply --dry-run -o json`, as it was made.
    #[arg(long, conflicts_with_all = ["file", "prune", "dry_run"])]
    plan: Option<String>,
    /// Also delete the live jobs the file does not name.
    #[arg(long)]
    prune: bool,
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Crontab files: a user's (5 fields and the command), or a system one (`/etc/crontab`,
    /// `/etc/cron.d/*`: 5 fields, the user, the command).
    #[arg(required = true)]
    files: Vec<String>,
    /// Read every file as a system crontab (by default: `/etc/crontab` and files in a
    /// `cron.d` directory are, the rest are user crontabs).
    #[arg(long)]
    system: bool,
    /// The IANA time zone of the host the crontabs come from, for the lines before any
    /// `CRON_TZ` (cron reads them in local time); default: this host's.
    #[arg(long)]
    timezone: Option<String>,
    /// Print the plan only.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match run(cli).await {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("cronfleet: {failure}");
            failure.exit_code()
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "cronfleet",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    if let Command::ImportCrontab(args) = &cli.command {
        if args.dry_run && cli.url.is_none() && Saved::load()?.url.is_none() {
            return commands::import_offline(args, cli.output);
        }
    }
    let saved = Saved::load()?;
    let url = cli.url.clone().or(saved.url).ok_or_else(|| {
        Failure::Usage("no master: pass --url, set CRONFLEET_URL, or run `cronfleet login`".into())
    })?;
    let token = cli.token.clone().or(saved.token).ok_or_else(|| {
        Failure::Usage(
            "no token: pass --token, set CRONFLEET_TOKEN, or run `cronfleet login`".into(),
        )
    })?;
    let client = Client::new(&url, &token)?;
    commands::dispatch(&client, cli, &url, &token).await
}
