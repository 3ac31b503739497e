//! Each command but the jobs' ([`jobs`]): the API calls it makes and what it prints.

use serde_json::{json, Value};

use crate::client::{encode, Client, Failure, Saved};
use crate::input::read_source;
use crate::output::{cell, columns, document, items, say, show, table, Format};
use crate::{crontab, follow, jobs, plan};
use crate::{ApplyArgs, AuditArgs, Cli, Command, ImportArgs, RunFilter, RunsCommand};

pub async fn dispatch(client: &Client, cli: Cli, url: &str, token: &str) -> Result<(), Failure> {
    let format = cli.output;
    match cli.command {
        Command::Login => {
            client.get("/jobs?limit=1").await?;
            let path = Saved {
                url: Some(url.to_owned()),
                token: Some(token.to_owned()),
            }
            .store()?;
            say(&format!("signed in to {url}; saved in {}", path.display()));
            Ok(())
        }
        Command::Jobs(command) => jobs::run(client, command, format).await,
        Command::Runs(command) => runs(client, command, format).await,
        Command::Audit(args) => audit(client, &args, format).await,
        Command::Workers => {
            let body = client.get("/workers").await?;
            show(&body, format, |body| {
                let rows = items(body)
                    .iter()
                    .map(|w| {
                        let running = w["running"].as_array().map_or(0, Vec::len);
                        vec![
                            cell(&w["id"]),
                            cell(&w["hostname"]),
                            cell(&w["slots"]),
                            running.to_string(),
                            cell(&w["startedAt"]),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["ID", "HOST", "SLOTS", "RUNNING", "STARTED"], &rows)
            })
        }
        Command::Apply(args) => apply(client, &args, format).await,
        Command::Export => export(client, format).await,
        Command::ImportCrontab(args) => import(client, &args).await,
        Command::Completions { .. } => Ok(()),
    }
}

async fn runs(client: &Client, command: RunsCommand, format: Format) -> Result<(), Failure> {
    match command {
        RunsCommand::List(filter) => {
            let body = client.get(&runs_path(&filter)).await?;
            show(&body, format, |body| {
                columns(
                    body,
                    &[
                        ("RUN", "runId"),
                        ("JOB", "jobName"),
                        ("STATUS", "status"),
                        ("STARTED", "startedAt"),
                        ("WORKER", "workerId"),
                    ],
                )
            })
        }
        RunsCommand::Show { run_id } => {
            let run = client
                .get(&format!("/executions/{}", encode(&run_id)))
                .await?;
            show(&run, format, |r| {
                let fields = [
                    "runId",
                    "jobName",
                    "status",
                    "exitCode",
                    "workerId",
                    "plannedAt",
                    "startedAt",
                    "endedAt",
                    "trigger",
                    "requestedBy",
                    "killedBy",
                    "err",
                ];
                let rows: Vec<Vec<String>> = fields
                    .iter()
                    .filter(|f| !r[**f].is_null())
                    .map(|f| vec![(*f).to_owned(), cell(&r[*f])])
                    .collect();
                table(&["FIELD", "VALUE"], &rows)
            })
        }
        RunsCommand::Logs {
            run_id,
            follow: true,
        } => follow::follow(client, &run_id).await,
        RunsCommand::Logs {
            run_id,
            follow: false,
        } => {
            let run = client
                .get(&format!("/executions/{}", encode(&run_id)))
                .await?;
            say(run["output"].as_str().unwrap_or_default());
            Ok(())
        }
    }
}

fn runs_path(filter: &RunFilter) -> String {
    let query = query(
        filter.limit,
        &[
            ("job", &filter.job),
            ("status", &filter.status),
            ("worker", &filter.worker),
            ("since", &filter.since),
            ("until", &filter.until),
        ],
    );
    format!("/executions?{query}")
}

/// `limit=N` and each parameter given, encoded.
fn query(limit: u32, parameters: &[(&str, &Option<String>)]) -> String {
    let mut query = vec![format!("limit={limit}")];
    for (name, value) in parameters {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode(value)));
        }
    }
    query.join("&")
}

async fn audit(client: &Client, args: &AuditArgs, format: Format) -> Result<(), Failure> {
    let query = query(
        args.limit,
        &[
            ("job", &args.job),
            ("actor", &args.actor),
            ("type", &args.kind),
            ("since", &args.since),
            ("until", &args.until),
        ],
    );
    let body = client.get(&format!("/events?{query}")).await?;
    show(&body, format, |body| {
        columns(
            body,
            &[
                ("SEQ", "seq"),
                ("AT", "recordedAt"),
                ("TYPE", "type"),
                ("SUBJECT", "subject"),
                ("ACTOR", "actor"),
            ],
        )
    })
}

async fn apply(client: &Client, args: &ApplyArgs, format: Format) -> Result<(), Failure> {
    if let Some(path) = &args.plan {
        let saved: Value = serde_json::from_str(&read_source(path)?)
            .map_err(|e| Failure::Usage(format!("{path}: not a plan: {e}")))?;
        let steps: Vec<plan::Step> = serde_json::from_value(saved["steps"].clone())
            .map_err(|e| Failure::Usage(format!("{path}: not a plan: {e}")))?;
        return carry_out(client, &steps, false, format).await;
    }
    let file = args.file.as_deref().unwrap_or("-");
    let desired = plan::read_specs(&read_source(file)?, file)?;
    let live = client.all("/jobs").await?;
    let steps = plan::plan(&desired, &live, args.prune)?;
    carry_out(client, &steps, args.dry_run, format).await
}

/// Prints the plan (as JSON or YAML when asked, to keep) and, unless `dry_run`, applies it.
async fn carry_out(
    client: &Client,
    steps: &[plan::Step],
    dry_run: bool,
    format: Format,
) -> Result<(), Failure> {
    let kept = json!({ "steps": steps });
    match document(&kept, format)? {
        Some(text) => say(&text),
        None => say(&plan::describe(steps)),
    }
    if dry_run {
        return Ok(());
    }
    let (report, failure) = plan::apply(client, steps).await;
    say(&report);
    failure.map_or(Ok(()), Err)
}

async fn export(client: &Client, format: Format) -> Result<(), Failure> {
    let live = client.all("/jobs").await?;
    let jobs: Vec<Value> = live
        .iter()
        .map(|job| {
            plan::canonical(job, None).unwrap_or_else(|failure| {
                // A job the master kept but would not take today (a schedule that no longer
                // fires): exported as it is, so nothing is lost.
                eprintln!("note: {failure}; exported as the master holds it");
                plan::spec_fields(job)
            })
        })
        .collect();
    let file = json!({ "jobs": jobs });
    let format = if format == Format::Json {
        Format::Json
    } else {
        Format::Yaml
    };
    if let Some(text) = document(&file, format)? {
        say(&text);
    }
    Ok(())
}

fn read_crontabs(args: &ImportArgs) -> Result<crontab::Imported, Failure> {
    let mut all = crontab::Imported::default();
    let zone = args.timezone.clone().or_else(crontab::local_zone);
    if zone.is_none() {
        all.notes.push(
            "this host's time zone is unknown: lines without CRON_TZ run in UTC; pass --timezone"
                .to_owned(),
        );
    }
    for file in &args.files {
        let text = read_source(file)?;
        let path = std::path::Path::new(file);
        let flavor = if args.system {
            crontab::Flavor::System
        } else {
            crontab::Flavor::of_path(path)
        };
        let source = path.file_name().map_or_else(
            || "crontab".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        let imported = crontab::parse(&text, &source, flavor, zone.as_deref());
        all.jobs.extend(imported.jobs);
        all.notes
            .extend(imported.notes.into_iter().map(|n| format!("{file}: {n}")));
    }
    for note in &all.notes {
        eprintln!("note: {note}");
    }
    Ok(all)
}

async fn import(client: &Client, args: &ImportArgs) -> Result<(), Failure> {
    let imported = read_crontabs(args)?;
    let live = client.all("/jobs").await?;
    let steps = plan::plan(&imported.jobs, &live, false)?;
    carry_out(client, &steps, args.dry_run, Format::Table).await
}

/// `import-crontab --dry-run` with no master configured: the jobs the files give.
pub fn import_offline(args: &ImportArgs, format: Format) -> Result<(), Failure> {
    let imported = read_crontabs(args)?;
    let file = json!({ "jobs": imported.jobs });
    let format = if format == Format::Json {
        Format::Json
    } else {
        Format::Yaml
    };
    if let Some(text) = document(&file, format)? {
        say(&text);
    }
    Ok(())
}
