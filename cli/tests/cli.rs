//! The `cronfleet` binary against a real master (PostgreSQL, etcd, MongoDB from
//! `compose/services`): login, jobs, apply with its plan, prune and a concurrent change,
//! export read back by apply, crontab import of real files, JSON output, exit codes, and a
//! run's output followed while it runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use clap::Parser as _;
use cronfleet_common::testkit::TestEnv;
use cronfleet_common::values::Holder;
use cronfleet_common::{JobName, Trigger};
use cronfleet_master::config::Cli;
use cronfleet_master::identity::Role;
use cronfleet_master::store::RequestMeta;
use cronfleet_master::{App, Services};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

struct Master {
    env: TestEnv,
    url: String,
    token: String,
    dir: PathBuf,
    shutdown: CancellationToken,
}

impl Master {
    async fn start() -> Self {
        let env = TestEnv::new().await;
        let mut args = env.master_args();
        args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        let config = Cli::try_parse_from(args).unwrap().config;
        let app = App::build(&config).await.unwrap();
        let services = Services::connect(&config).await.unwrap();
        let setup = RequestMeta {
            actor: "setup".into(),
            request_id: "setup".into(),
            idempotency: None,
        };
        services
            .store
            .create_user("ops", Role::Admin, "a long test password", &setup)
            .await
            .unwrap();
        let (token, _) = services
            .store
            .create_token("ops", "cli", None, &setup)
            .await
            .unwrap();
        let url = format!("http://{}", app.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        let dir = std::env::temp_dir().join(format!("cronfleet-cli-{}", env.id));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            env,
            url,
            token: token.plaintext,
            dir,
            shutdown,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cronfleet"));
        command
            .args(args)
            .env("CRONFLEET_URL", &self.url)
            .env("CRONFLEET_TOKEN", &self.token)
            .env("CRONFLEET_CONFIG", self.dir.join("config.json"))
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// Runs a command that must succeed; its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args).await).unwrap()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

const JOBS: &str = r#"
jobs:
  - name: backup
    command: pg_dump app > /backups/app.sql
    cronExpr: "30 2 * * *"
    timezone: Europe/Berlin
    retry: {maxAttempts: 3}
  - name: report
    command: make report
    cronExpr: "@daily"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_plans_applies_prunes_and_reports_a_concurrent_change() {
    let master = Master::start().await;
    let login = master.ok(&["login"]).await;
    assert!(login.starts_with("signed in to"), "{login}");
    let mode = std::fs::metadata(master.dir.join("config.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let file = master.file("jobs.yaml", JOBS);
    let plan = master.ok(&["apply", "-f", &file, "--dry-run"]).await;
    assert!(
        plan.contains("+ create  backup") && plan.contains("+ create  report"),
        "{plan}"
    );
    assert!(plan.contains("plan: 2 to create, 0 to update, 0 to delete, 0 unchanged"));
    assert_eq!(
        master.json(&["jobs", "list"]).await["items"],
        json!([]),
        "a dry run changes nothing"
    );
    let applied = master.ok(&["apply", "-f", &file]).await;
    assert!(
        applied.contains("created backup") && applied.contains("created report"),
        "{applied}"
    );
    let again = master.ok(&["apply", "-f", &file]).await;
    assert!(
        again.contains("plan: 0 to create, 0 to update, 0 to delete, 2 unchanged"),
        "{again}"
    );

    // Paused by an operator: a file that says nothing of pausing leaves it paused.
    master.ok(&["jobs", "pause", "report"]).await;
    let changed = master.file("jobs2.yaml", &JOBS.replace("make report", "make report-v2"));
    let plan = master.ok(&["apply", "-f", &changed, "--dry-run"]).await;
    assert!(plan.contains("~ update  report"), "{plan}");
    assert!(
        plan.contains(r#"command: "make report" → "make report-v2""#),
        "{plan}"
    );
    assert!(!plan.contains("paused"), "{plan}");
    master.ok(&["apply", "-f", &changed]).await;
    let report = master.json(&["jobs", "get", "report"]).await;
    assert_eq!(report["command"], "make report-v2");
    assert_eq!(report["paused"], true);

    // Export, then apply the export: nothing to do.
    let exported = master.ok(&["export"]).await;
    let export_file = master.file("export.yaml", &exported);
    let plan = master.ok(&["apply", "-f", &export_file, "--dry-run"]).await;
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete, 2 unchanged"),
        "{exported}\n{plan}"
    );

    // --prune deletes what the file leaves out.
    let only_backup = master.file("only-backup.yaml", &exported.replace("report", "backup-2"));
    let plan = master
        .ok(&["apply", "-f", &only_backup, "--prune", "--dry-run"])
        .await;
    assert!(
        plan.contains("- delete  report") && plan.contains("+ create  backup-2"),
        "{plan}"
    );

    // A plan saved, a change made by someone else, then the saved plan applied: the change
    // is reported and left standing; the rest of the plan is carried out.
    let ours = master.file(
        "ours.yaml",
        &exported
            .replace("make report-v2", "make ours")
            .replace("30 2 * * *", "45 2 * * *"),
    );
    let saved = master
        .ok(&["apply", "-f", &ours, "--dry-run", "-o", "json"])
        .await;
    let saved_plan: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved_plan["steps"].as_array().unwrap().len(), 2, "{saved}");
    let plan_file = master.file("plan.json", &saved);
    let theirs = master.file(
        "theirs.yaml",
        &exported.replace("make report-v2", "make theirs"),
    );
    master.ok(&["apply", "-f", &theirs]).await;
    let output = master.run(&["apply", "--plan", &plan_file]).await;
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("NOT updated report: it changed since the plan was made"),
        "{stdout}"
    );
    assert!(stdout.contains("updated backup"), "{stdout}");
    assert_eq!(
        master.json(&["jobs", "get", "report"]).await["command"],
        "make theirs"
    );
    assert_eq!(
        master.json(&["jobs", "get", "backup"]).await["cronExpr"],
        "45 2 * * *"
    );

    // A file that names a pause different from the job's pauses or resumes it.
    let resume = master.file(
        "resume.yaml",
        &JOBS.replace(
            "cronExpr: \"@daily\"",
            "cronExpr: \"@daily\"\n    paused: false",
        ),
    );
    let plan = master.ok(&["apply", "-f", &resume, "--dry-run"]).await;
    assert!(plan.contains("~ resume  report"), "{plan}");
    master.ok(&["apply", "-f", &resume]).await;
    let report = master.json(&["jobs", "get", "report"]).await;
    assert_eq!(
        (report["paused"].as_bool(), report["command"].as_str()),
        (Some(false), Some("make report"))
    );
    let again = master.ok(&["apply", "-f", &resume]).await;
    assert!(
        again.contains("0 to update, 0 to delete, 2 unchanged"),
        "{again}"
    );

    // Back in time: the job as it was, and a revert to that version in one command.
    let first = master
        .json(&["jobs", "get", "report", "--version", "1"])
        .await;
    assert_eq!(first["command"], "make report");
    let last = master.file("final.yaml", &JOBS.replace("make report", "make final"));
    master.ok(&["apply", "-f", &last]).await;
    let now = master.json(&["jobs", "get", "report"]).await;
    assert_eq!(now["command"], "make final");
    let reverted = master.ok(&["jobs", "revert", "report", "--to", "1"]).await;
    assert!(
        reverted.starts_with("reverted report to version 1's spec"),
        "{reverted}"
    );
    let after = master.json(&["jobs", "get", "report"]).await;
    assert_eq!(after["command"], "make report");
    assert_eq!(
        after["version"].as_i64(),
        now["version"].as_i64().map(|v| v + 1)
    );
    let before = master
        .run(&["jobs", "get", "report", "--as-of", "2000-01-01T00:00:00Z"])
        .await;
    assert_eq!(before.status.code(), Some(3), "the job did not exist then");

    let stale = master.run(&["jobs", "get", "no-such-job"]).await;
    assert_eq!(stale.status.code(), Some(3));
    let bad = master.file(
        "bad.yaml",
        "jobs: [{name: x, command: make, cronExpr: 'every day'}]",
    );
    let refused = master.run(&["apply", "-f", &bad]).await;
    assert_eq!(
        refused.status.code(),
        Some(2),
        "checked before anything is sent"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("job x: cronExpr:"));

    // --prune for real: what the file leaves out is deleted, what it names is kept.
    let backup_only = master.file(
        "backup-only.yaml",
        &JOBS[..JOBS.find("  - name: report").unwrap()],
    );
    let pruned = master.ok(&["apply", "-f", &backup_only, "--prune"]).await;
    assert!(pruned.contains("deleted report"), "{pruned}");
    let names: Vec<Value> = master.json(&["jobs", "list"]).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["name"].clone())
        .collect();
    assert_eq!(names, [json!("backup")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_edit_between_plan_and_apply_is_reported_not_overwritten() {
    let master = Master::start().await;
    let file = master.file("jobs.yaml", JOBS);
    master.ok(&["apply", "-f", &file]).await;
    // An editor that, while it is open, lets someone else save a change first.
    let script = master.file(
        "editor.sh",
        &format!(
            "#!/bin/sh\nCRONFLEET_URL={url} CRONFLEET_TOKEN={token} {bin} jobs pause report >/dev/null\nsed -i 's/make report/make mine/' \"$1\"\n",
            url = master.url,
            token = master.token,
            bin = env!("CARGO_BIN_EXE_cronfleet"),
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = master
        .command(&["jobs", "edit", "report"])
        .env("EDITOR", &script)
        .env_remove("VISUAL")
        .output()
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        master.json(&["jobs", "get", "report"]).await["command"],
        "make report"
    );

    let editor = master.file(
        "editor2.sh",
        "#!/bin/sh\nsed -i 's/make report/make mine/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = master
        .command(&["jobs", "edit", "report"])
        .env("EDITOR", &editor)
        .env_remove("VISUAL")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = master.json(&["jobs", "get", "report"]).await;
    assert_eq!(report["command"], "make mine");
    assert_eq!(
        report["paused"], true,
        "the edit kept the pause made before it was opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crontabs_import_as_jobs_once() {
    let master = Master::start().await;
    let files = [
        fixture("etc/crontab"),
        fixture("etc/cron.d/php"),
        fixture("etc/cron.d/certbot"),
        fixture("users/deploy"),
    ];
    let mut args = vec!["import-crontab", "--timezone", "America/New_York"];
    args.extend(files.iter().map(String::as_str));
    let mut dry = args.clone();
    dry.push("--dry-run");
    let plan = master.run(&dry).await;
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(
        stdout.contains("plan: 12 to create, 0 to update"),
        "{stdout}"
    );
    let notes = String::from_utf8_lossy(&plan.stderr);
    for note in [
        "@reboot skipped",
        "MAILTO dropped",
        "line 20: skipped: not a job line",
    ] {
        assert!(notes.contains(note), "no note {note:?} in {notes}");
    }
    master.ok(&args).await;
    let again = master.ok(&args).await;
    assert!(
        again.contains("0 to create, 0 to update, 0 to delete, 12 unchanged"),
        "{again}"
    );
    let jobs = master.json(&["jobs", "list", "--name", "deploy"]).await;
    let backup = jobs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["command"].as_str().unwrap().contains("backup"))
        .unwrap();
    assert_eq!(backup["timezone"], "Europe/Berlin", "CRON_TZ in the file");
    let hourly = master
        .json(&["jobs", "list", "--name", "crontab-run-parts"])
        .await;
    assert_eq!(
        hourly["items"][0]["timezone"], "America/New_York",
        "the host's zone"
    );
    assert_eq!(backup["env"]["APP_ENV"], "production");
    assert_eq!(
        backup["description"],
        "Nightly database backup, kept 14 days"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_output_is_followed_until_it_ends() {
    let master = Master::start().await;
    master
        .ok(&["apply", "-f", &master.file("jobs.yaml", JOBS)])
        .await;
    let keys = &master.env.keys;
    let job = JobName::parse("report").unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let holder = Holder {
        worker_id: "w-1".into(),
        run_id: "run-f".into(),
        job_name: "report".into(),
        planned_at: now,
        claimed_at: now,
        trigger: Trigger::Manual,
        job_version: 1,
        tick_id: "manual-run-f".into(),
        attempt: 1,
        source_run_id: None,
        request_id: None,
        requested_by: None,
    };
    let mut etcd = master.env.etcd().await;
    etcd.put(keys.lock(&job), serde_json::to_vec(&holder).unwrap(), None)
        .await
        .unwrap();
    let db = master.env.mongo().await;
    let live = db.collection::<mongodb::bson::Document>("live");
    let tail = |text: &str| {
        mongodb::bson::doc! { "_id": "run-f", "jobName": "report", "workerId": "w-1", "tail": text,
        "updatedAt": mongodb::bson::DateTime::now(), "expireAt": mongodb::bson::DateTime::now() }
    };
    live.insert_one(tail("step 1\n")).await.unwrap();
    let mut child = master
        .command(&["runs", "logs", "run-f", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let next = async |lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>| {
        tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    assert_eq!(next(&mut lines).await, "step 1");
    live.replace_one(
        mongodb::bson::doc! { "_id": "run-f" },
        tail("step 1\nstep 2\n"),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut lines).await, "step 2");
    etcd.delete(keys.lock(&job), None).await.unwrap();
    let record = json!({
        "runId": "run-f", "jobName": "report", "command": "make report", "err": "exit status 2",
        "output": "step 1\nstep 2\nstep 3\n", "planTime": now, "scheduleTime": now,
        "startTime": now, "endTime": now + 3000, "workerId": "w-1", "status": "failed",
        "exitCode": 2, "signal": null, "outputBytes": 21, "truncated": false, "fencingToken": 1,
        "jobVersion": 1, "trigger": "manual"
    });
    db.collection::<mongodb::bson::Document>("log")
        .insert_one(mongodb::bson::to_document(&record).unwrap())
        .await
        .unwrap();
    assert_eq!(next(&mut lines).await, "step 3");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(6),
        "a run that failed ends the follow with 6"
    );
}
