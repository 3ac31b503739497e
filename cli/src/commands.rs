//! Each command: the API calls it makes and what it prints.

use std::io::Read as _;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{encode, Client, Failure, Saved};
use crate::output::{cell, document, say, table, Format};
use crate::{crontab, follow, plan};
use crate::{ApplyArgs, AuditArgs, Cli, Command, ImportArgs, JobsCommand, RunFilter, RunsCommand};

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
        Command::Jobs(command) => jobs(client, command, format).await,
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

fn items(body: &Value) -> Vec<Value> {
    body["items"].as_array().cloned().unwrap_or_default()
}

/// Prints `body` as asked: the table `draw` makes, or JSON/YAML of the answer.
fn show(body: &Value, format: Format, draw: impl Fn(&Value) -> String) -> Result<(), Failure> {
    match document(body, format)? {
        Some(text) => say(&text),
        None => say(&draw(body)),
    }
    Ok(())
}

fn job_path(name: &str) -> String {
    format!("/jobs/{}", encode(name))
}

/// A file's text, or stdin's for `-`.
fn read_source(path: &str) -> Result<String, Failure> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| Failure::Usage(format!("{path}: {e}")))
}

async fn jobs(client: &Client, command: JobsCommand, format: Format) -> Result<(), Failure> {
    let job_row = |j: &Value| {
        let state = if j["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "active"
        };
        vec![
            cell(&j["name"]),
            cell(&j["cronExpr"]),
            cell(&j["timezone"]),
            state.to_owned(),
            cell(&j["version"]),
            cell(&j["command"]),
        ]
    };
    const HEADERS: [&str; 6] = ["NAME", "SCHEDULE", "ZONE", "STATE", "VERSION", "COMMAND"];
    match command {
        JobsCommand::List { name, status } => {
            let mut query = Vec::new();
            if let Some(name) = name {
                query.push(format!("name={}", encode(&name)));
            }
            if let Some(status) = status {
                query.push(format!("status={}", encode(&status)));
            }
            let path = if query.is_empty() {
                "/jobs".to_owned()
            } else {
                format!("/jobs?{}", query.join("&"))
            };
            let all = json!({ "items": client.all(&path).await? });
            show(&all, format, |body| {
                table(
                    &HEADERS,
                    &items(body).iter().map(job_row).collect::<Vec<_>>(),
                )
            })
        }
        JobsCommand::Get { name } => {
            let job = client.get(&job_path(&name)).await?;
            show(&job, format, |j| table(&HEADERS, &[job_row(j)]))
        }
        JobsCommand::Create { file } => {
            let text = read_source(&file)?;
            let spec: Value = serde_yaml::from_str(&text)
                .map_err(|e| Failure::Usage(format!("{file}: not YAML or JSON: {e}")))?;
            let created = client
                .call(Method::POST, "/jobs", Some(&spec), None)
                .await?;
            show(&created.body, format, |j| {
                format!(
                    "created {} (version {})",
                    cell(&j["name"]),
                    cell(&j["version"])
                )
            })
        }
        JobsCommand::Edit { name } => edit(client, &name).await,
        JobsCommand::Delete { name } => {
            client
                .call(Method::DELETE, &job_path(&name), None, None)
                .await?;
            say(&format!("deleted {name}"));
            Ok(())
        }
        JobsCommand::Run { name } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("{}/run", job_path(&name)),
                    None,
                    None,
                )
                .await?;
            show(&answer.body, format, |b| {
                format!("run requested: {}", cell(&b["requestId"]))
            })
        }
        JobsCommand::Kill { name } => {
            let answer = client
                .call(
                    Method::POST,
                    &format!("{}/kill", job_path(&name)),
                    None,
                    None,
                )
                .await?;
            show(&answer.body, format, |b| {
                format!("kill requested: {}", cell(&b["requestId"]))
            })
        }
        JobsCommand::Pause { name } => toggle(client, &name, "pause", format).await,
        JobsCommand::Resume { name } => toggle(client, &name, "resume", format).await,
    }
}

/// Pauses or resumes a job (`action`).
async fn toggle(client: &Client, name: &str, action: &str, format: Format) -> Result<(), Failure> {
    let answer = client
        .call(
            Method::POST,
            &format!("{}/{action}", job_path(name)),
            None,
            None,
        )
        .await?;
    show(&answer.body, format, |j| {
        format!(
            "{action}d {} (version {})",
            cell(&j["name"]),
            cell(&j["version"])
        )
    })
}

/// Opens the spec in the user's editor and saves what comes back as an update of the version
/// opened, so an edit made meanwhile is reported.
async fn edit(client: &Client, name: &str) -> Result<(), Failure> {
    let current = client
        .call(Method::GET, &job_path(name), None, None)
        .await?;
    let spec = plan::canonical(&current.body, None)?;
    let path = std::env::temp_dir().join(format!(
        "cronfleet-{}-{}.yaml",
        std::process::id(),
        encode(name)
    ));
    let text = serde_yaml::to_string(&spec).map_err(|e| Failure::Usage(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("editor")
        .arg(&path)
        .status()
        .map_err(|e| Failure::Usage(format!("{editor}: {e}")))?;
    let edited = std::fs::read_to_string(&path)
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())));
    let _ = std::fs::remove_file(&path);
    if !status.success() {
        return Err(Failure::Usage(format!(
            "{editor} exited with {status}; nothing saved"
        )));
    }
    let edited: Value = serde_yaml::from_str(&edited?)
        .map_err(|e| Failure::Usage(format!("the edited spec: {e}")))?;
    if plan::canonical(&edited, None)? == spec {
        say(&format!("{name}: no change"));
        return Ok(());
    }
    let answer = client
        .call(Method::PUT, &job_path(name), Some(&edited), current.version)
        .await?;
    say(&format!(
        "updated {name} (version {})",
        cell(&answer.body["version"])
    ));
    Ok(())
}

async fn runs(client: &Client, command: RunsCommand, format: Format) -> Result<(), Failure> {
    match command {
        RunsCommand::List(filter) => {
            let body = client.get(&runs_path(&filter)).await?;
            show(&body, format, |body| {
                let rows = items(body)
                    .iter()
                    .map(|r| {
                        vec![
                            cell(&r["runId"]),
                            cell(&r["jobName"]),
                            cell(&r["status"]),
                            cell(&r["startedAt"]),
                            cell(&r["workerId"]),
                        ]
                    })
                    .collect::<Vec<_>>();
                table(&["RUN", "JOB", "STATUS", "STARTED", "WORKER"], &rows)
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
    let mut query = vec![format!("limit={}", filter.limit)];
    for (name, value) in [
        ("job", &filter.job),
        ("status", &filter.status),
        ("worker", &filter.worker),
        ("since", &filter.since),
        ("until", &filter.until),
    ] {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode(value)));
        }
    }
    format!("/executions?{}", query.join("&"))
}

async fn audit(client: &Client, args: &AuditArgs, format: Format) -> Result<(), Failure> {
    let mut query = vec![format!("limit={}", args.limit)];
    for (name, value) in [
        ("job", &args.job),
        ("actor", &args.actor),
        ("type", &args.kind),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode(value)));
        }
    }
    let body = client.get(&format!("/events?{}", query.join("&"))).await?;
    show(&body, format, |body| {
        let rows = items(body)
            .iter()
            .map(|e| {
                vec![
                    cell(&e["seq"]),
                    cell(&e["recordedAt"]),
                    cell(&e["type"]),
                    cell(&e["subject"]),
                    cell(&e["actor"]),
                ]
            })
            .collect::<Vec<_>>();
        table(&["SEQ", "AT", "TYPE", "SUBJECT", "ACTOR"], &rows)
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
    let jobs = live
        .iter()
        .map(|job| plan::canonical(job, None))
        .collect::<Result<Vec<_>, _>>()?;
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
        let imported = crontab::parse(&text, &source, flavor);
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
