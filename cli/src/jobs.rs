//! `cronfleet jobs …`: list, show (now, at a version, at a moment), create, edit in an editor,
//! revert to a version, delete, run, kill, pause, resume.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{encode, job_path, Client, Failure};
use crate::input::read_source;
use crate::output::{cell, items, say, show, table, Format};
use crate::plan;
use crate::JobsCommand;

pub async fn run(client: &Client, command: JobsCommand, format: Format) -> Result<(), Failure> {
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
        JobsCommand::Get {
            name,
            version,
            as_of,
        } => {
            let path = match (version, as_of) {
                (Some(version), _) => format!("{}/versions/{version}", job_path(&name)),
                (None, Some(at)) => format!("{}?asOf={}", job_path(&name), encode(&at)),
                (None, None) => job_path(&name),
            };
            let job = client.get(&path).await?;
            show(&job, format, |j| table(&HEADERS, &[job_row(j)]))
        }
        JobsCommand::Revert { name, to } => {
            let current = client
                .call(Method::GET, &job_path(&name), None, None)
                .await?;
            let body = json!({ "toVersion": to });
            let path = format!("{}/revert", job_path(&name));
            let answer = client
                .call(Method::POST, &path, Some(&body), current.version)
                .await?;
            show(&answer.body, format, |j| {
                format!(
                    "reverted {name} to version {to}'s spec (now version {})",
                    cell(&j["version"])
                )
            })
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
    // The spec may hold secrets in its environment: readable by its owner only, and never
    // an existing file (a link planted under that name).
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
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
