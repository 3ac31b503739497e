//! A job's environment reaches only its shell, after the switch to the run-as user, and never
//! with variables that steer the dynamic loader: a shared object named in `LD_PRELOAD` through
//! etcd (the API refuses it) is loaded by no process of the run, least of all a root one.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use crate::support::Fleet;
use cronfleet_common::{JobName, RunStatus};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ld_preload_from_a_job_reaches_no_process_and_other_variables_reach_the_shell() {
    let mut fleet = Fleet::new().await;
    let lab = fleet.dir.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    std::fs::set_permissions(&lab, std::fs::Permissions::from_mode(0o777)).unwrap();
    // A constructor that leaves a file named after the effective uid of whoever loads it.
    let source = lab.join("evil.c");
    std::fs::write(
        &source,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void planted(void) {{\n\
               char path[512]; snprintf(path, sizeof path, \"{}/loaded-by-%d\", (int)geteuid());\n\
               FILE *f = fopen(path, \"w\"); if (f) fclose(f);\n}}\n",
            lab.display()
        ),
    )
    .unwrap();
    let library = lab.join("evil.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("a C compiler (cc), which building cronfleet needs anyway");
    assert!(built.success());
    std::fs::set_permissions(&library, std::fs::Permissions::from_mode(0o755)).unwrap();

    let worker = fleet.worker("guarded", &[("CRON_RUN_AS", "nobody")]);
    fleet.registered(&["guarded"]).await;
    fleet
        .put_job(json!({
            "name": "preload",
            "command": "echo \"greeting=$GREETING preload=$LD_PRELOAD user=$(id -un)\"",
            "cronExpr": "@every 1h",
            "env": {"LD_PRELOAD": library.to_str().unwrap(), "GREETING": "hi"},
        }))
        .await;
    let job = JobName::parse("preload").unwrap();
    fleet.put(fleet.env.keys.trigger(&job), "{}").await;
    let records = fleet
        .wait_for_records(
            "preload",
            Duration::from_secs(15),
            "the run",
            |r| r.status == RunStatus::Succeeded,
            1,
        )
        .await;
    assert_eq!(
        records[0].output.trim(),
        "greeting=hi preload= user=nobody",
        "the job's other variables reach the shell, LD_PRELOAD does not"
    );
    let loaded: Vec<String> = std::fs::read_dir(&lab)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("loaded-by-"))
        .collect();
    assert!(
        loaded.is_empty(),
        "the planted library was loaded by uid(s) {loaded:?}"
    );
    assert_eq!(worker.stop().await, 0);
}
