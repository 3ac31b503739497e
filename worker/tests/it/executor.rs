//! The executor with real processes, under the `cronfleet-run` supervisor.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use cronfleet_common::{JobSpec, RunStatus};
use cronfleet_worker::clock::Clock;
use cronfleet_worker::executor::{execute, prepare, start, Limits, Outcome, RunContext};
use cronfleet_worker::launcher::Launcher;
use cronfleet_worker::runs::StopReason;
use tokio::sync::watch;

fn job(command: &str, timeout_secs: Option<u64>) -> JobSpec {
    let body = serde_json::json!({
        "name": "test-job",
        "command": command,
        "cronExpr": "@daily",
        "timeoutSecs": timeout_secs,
        "env": {"JOB_LEVEL": "from-job"},
    });
    JobSpec::from_user_json(body.to_string().as_bytes()).unwrap()
}

fn context(run_id: &str) -> RunContext {
    RunContext {
        run_id: run_id.to_owned(),
        planned_at: Utc::now(),
        fencing_token: 42,
    }
}

const OUTPUT_CAP: usize = 4096;

fn limits() -> Limits {
    Limits {
        output_cap: OUTPUT_CAP,
        kill_grace: Duration::from_millis(500),
        launcher: Launcher::new(PathBuf::from(env!("CARGO_BIN_EXE_cronfleet-run"))),
        run_as: None,
        lease_until: None,
        run_limits: cronfleet_worker::run_limits::RunLimits::default(),
        shells: vec!["/bin/sh".to_owned()],
        live: None,
    }
}

async fn run(command: &str, timeout_secs: Option<u64>) -> Outcome {
    let (_keep, stop) = watch::channel(None);
    execute(
        &job(command, timeout_secs),
        &context("run-1"),
        &limits(),
        Clock::with_offset_ms(0),
        stop,
    )
    .await
}

/// Processes whose command line contains `marker`: pid and command line.
fn processes_with(marker: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then_some((pid, cmdline))
        })
        .collect()
}

#[tokio::test]
async fn success_captures_output_and_sets_the_run_environment() {
    // cargo sets this for the test process; runs must not inherit it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let outcome = run(
        "echo \"$CRON_JOB_NAME $CRON_RUN_ID $CRON_FENCING_TOKEN $JOB_LEVEL\"; echo oops >&2; \
         test -n \"$CRON_PLANNED_AT\" && test -z \"$CARGO_MANIFEST_DIR\"",
        None,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
    assert!(
        outcome.output.text.contains("test-job run-1 42 from-job\n"),
        "{:?}",
        outcome.output
    );
    assert!(outcome.output.text.contains("oops\n"));
    assert_eq!(outcome.output.total_bytes, 32);
}

#[tokio::test]
async fn nonzero_exit_is_a_failure_with_its_code() {
    let outcome = run("exit 3", None).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(
        (outcome.exit_code, outcome.err.as_str()),
        (Some(3), "exit code 3")
    );
}

#[tokio::test]
async fn stdin_is_empty() {
    let outcome = run("cat; echo done", None).await;
    assert_eq!(outcome.output.text, "done\n");
}

#[tokio::test]
async fn timeout_kills_a_run_that_ignores_sigterm() {
    let outcome = run("trap '' TERM; sleep 7771; sleep 7771", Some(1)).await;
    assert_eq!(outcome.status, RunStatus::TimedOut, "{outcome:?}");
    assert_eq!(outcome.signal, Some(9));
    assert_eq!(outcome.err, "timed out after 1s");
    assert!(processes_with("sleep 7771").is_empty());
}

#[tokio::test]
async fn kill_reaches_background_grandchildren() {
    // The run touches a file once its children are started and it has spoken: the handshake.
    let ready = std::env::temp_dir().join(format!("cronfleet-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let command = format!(
        "sleep 7772 & sleep 7772 & (sleep 7772; echo never) & echo started; touch {}; wait",
        ready.display()
    );
    let job = job(&command, None);
    let (stop_tx, stop) = watch::channel(None);
    let running = tokio::spawn(async move {
        execute(
            &job,
            &context("run-2"),
            &limits(),
            Clock::with_offset_ms(0),
            stop,
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ready.exists()
        || processes_with("sleep 7772")
            .iter()
            .filter(|(_, c)| c.trim() == "sleep 7772")
            .count()
            < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(Some(StopReason::KillRequested(None))).unwrap();
    let outcome = running.await.unwrap();
    let _ = std::fs::remove_file(&ready);
    assert_eq!(outcome.status, RunStatus::Killed, "{outcome:?}");
    assert_eq!(outcome.err, "killed on request");
    assert_eq!(outcome.output.text, "started\n");
    assert!(
        processes_with("sleep 7772").is_empty(),
        "{:?}",
        processes_with("sleep 7772")
    );
}

#[tokio::test]
async fn a_run_that_traps_term_gets_to_clean_up() {
    let ready = std::env::temp_dir().join(format!("cronfleet-trap-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let command = format!(
        "trap 'echo cleaning up; exit 0' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let job = job(&command, None);
    let (stop_tx, stop) = watch::channel(None);
    let running = tokio::spawn(async move {
        execute(
            &job,
            &context("run-3"),
            &limits(),
            Clock::with_offset_ms(0),
            stop,
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !ready.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trap was never set"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(Some(StopReason::KillRequested(None))).unwrap();
    let outcome = running.await.unwrap();
    let _ = std::fs::remove_file(&ready);
    assert_eq!(outcome.status, RunStatus::Killed);
    assert!(
        outcome.output.text.contains("cleaning up"),
        "{:?}",
        outcome.output
    );
}

#[tokio::test]
async fn leftovers_of_a_finished_shell_are_stopped() {
    let outcome = run("sleep 7773 >/dev/null 2>&1 & echo bye", None).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(processes_with("sleep 7773").is_empty());
}

#[tokio::test]
async fn a_gibibyte_of_output_is_counted_but_not_kept() {
    let outcome = run("head -c 1073741824 /dev/zero | tr '\\0' x; echo end", None).await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.output.total_bytes, 1024 * 1024 * 1024 + 4);
    assert!(outcome.output.truncated);
    assert!(outcome.output.text.len() < OUTPUT_CAP + 64);
    assert!(outcome.output.text.ends_with("xxend\n"));
}

#[tokio::test]
async fn runs_execute_as_the_configured_user() {
    let nobody = cronfleet_worker::executor::RunAs::lookup("nobody").unwrap();
    let limits = Limits {
        run_as: Some(nobody.clone()),
        ..limits()
    };
    let (_keep, stop) = watch::channel(None);
    let outcome = execute(
        &job("id -u; id -g; echo $USER", None),
        &context("run-as"),
        &limits,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(
        outcome.output.text,
        format!("{}\n{}\nnobody\n", nobody.uid, nobody.gid)
    );
    assert!(cronfleet_worker::executor::RunAs::lookup("no-such-user-here").is_err());
}

#[tokio::test]
async fn runs_get_the_configured_limits_and_a_run_that_hits_one_says_so() {
    use cronfleet_worker::run_limits::RunLimits;
    let limited = Limits {
        run_limits: RunLimits {
            open_files: Some(64),
            processes: Some(4096),
            address_space: Some(256 * 1024 * 1024),
            core_dumps: false,
        },
        ..limits()
    };
    let (_keep, stop) = watch::channel(None);
    let outcome = execute(
        &job("ulimit -n; ulimit -p; ulimit -v; ulimit -c", None),
        &context("limits"),
        &limited,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.output.text, "64\n4096\n262144\n0\n");

    let (_keep, stop) = watch::channel(None);
    let outcome = execute(
        &job("awk 'BEGIN { s = sprintf(\"%400000000s\", \"\") }'", None),
        &context("too-big"),
        &limited,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    assert!(
        outcome.err.ends_with(
            "(run limits: 64 open files, 4096 processes, 268435456 bytes of address space)"
        ),
        "{}",
        outcome.err
    );
    // Without limits configured, core dumps are still off.
    let (_keep, stop) = watch::channel(None);
    let outcome = execute(
        &job("ulimit -c", None),
        &context("core"),
        &limits(),
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.output.text, "0\n");
}

/// The kernel sends the parent-death signal when the *thread* that started a process ends:
/// a run must outlive the runtime thread that started it, which the runtime retires after
/// its keep-alive (ten seconds by default; here a few milliseconds).
#[test]
fn a_run_outlives_the_runtime_thread_that_started_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(5))
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(run("sleep 1; echo done", None));
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.output.text.trim(), "done");
}

/// The parent of process `pid`, from `/proc`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_run_server_that_dies_takes_its_runs_along_and_the_next_run_starts_a_new_one() {
    let limits = limits();
    let marker = "server-death-marker";
    let (_keep, stop) = watch::channel(None);
    let running = tokio::spawn({
        let limits = limits.clone();
        let job = job(&format!("sleep 30; echo {marker}"), None);
        async move {
            execute(
                &job,
                &context("run-1"),
                &limits,
                Clock::with_offset_ms(0),
                stop,
            )
            .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let shell = loop {
        if let Some((pid, _)) = processes_with(marker).first() {
            break *pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The shell's parent is its supervisor, whose parent is this launcher's run server.
    let server = parent_of(parent_of(shell));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let outcome = running.await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed, "{outcome:?}");
    assert!(outcome.err.contains("run server went away"), "{outcome:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !processes_with(marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run outlived its server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_keep, stop) = watch::channel(None);
    let again = execute(
        &job("echo again", None),
        &context("run-2"),
        &limits,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
    assert_eq!(again.output.text.trim(), "again");
}

/// The run server forks at a higher priority than runs (as root, which the tests are); every
/// run gets the nice value the worker has.
#[tokio::test]
async fn runs_get_the_workers_nice_value_and_the_run_server_a_higher_priority() {
    let nice_of = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let (_, rest) = stat.rsplit_once(')').unwrap();
        rest.split_whitespace()
            .nth(16)
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    let worker = nice_of("self");
    let outcome = run(
        "p=$(cut -d' ' -f4 /proc/$$/stat); s=$(cut -d' ' -f4 /proc/$p/stat); \
         echo $(cut -d' ' -f19 /proc/$$/stat) $(cut -d' ' -f19 /proc/$s/stat)",
        None,
    )
    .await;
    let nices: Vec<i32> = outcome
        .output
        .text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        nices,
        [worker, worker - cronfleet_worker::priority::SERVER_BOOST],
        "{outcome:?}"
    );
}

fn job_with_shell(command: &str, shell: &str) -> JobSpec {
    let body = serde_json::json!({
        "name": "shelled", "command": command, "cronExpr": "@daily", "shell": shell,
    });
    JobSpec::from_user_json(body.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn a_job_runs_under_the_shell_it_names_only_if_the_worker_allows_it() {
    let bashism = "[[ -n $BASH_VERSION ]] && echo bash";
    let (_keep, stop) = watch::channel(None);
    let refused = execute(
        &job_with_shell(bashism, "/bin/bash"),
        &context("refused"),
        &limits(),
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(refused.status, RunStatus::FailedToStart, "{refused:?}");
    assert!(
        refused
            .err
            .contains("/bin/bash is not on this worker's allow-list (/bin/sh)"),
        "{}",
        refused.err
    );
    let allowing = Limits {
        shells: vec!["/bin/sh".to_owned(), "/bin/bash".to_owned()],
        ..limits()
    };
    let (_keep, stop) = watch::channel(None);
    let ran = execute(
        &job_with_shell(bashism, "/bin/bash"),
        &context("bash"),
        &allowing,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(ran.status, RunStatus::Succeeded, "{ran:?}");
    assert_eq!(ran.output.text, "bash\n");
}

#[tokio::test]
async fn a_go_crontab_job_value_runs_under_bash_whatever_the_allow_list() {
    let value = serde_json::json!({
        "name": "legacy", "command": "[[ 1 -eq 1 ]] && echo $0", "cronExpr": "@daily",
    });
    let spec = JobSpec::from_etcd_value(value.to_string().as_bytes()).unwrap();
    let (_keep, stop) = watch::channel(None);
    let ran = execute(
        &spec,
        &context("legacy"),
        &limits(),
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(ran.status, RunStatus::Succeeded, "{ran:?}");
    assert_eq!(ran.output.text, "/bin/bash\n");
}

/// A prepared run's shell starts at its start time by the supervisor's own timer, however
/// late the worker comes back to it; the outcome's start and end are when the shell started
/// and the run was over.
#[tokio::test]
async fn a_prepared_run_starts_on_time_without_the_worker_and_reports_its_start() {
    let job = job("date +%s%3N; sleep 0.3", None);
    let limits = limits();
    let due = Utc::now().timestamp_millis() + 300;
    let prepared = prepare(&job, &context("timed"), &limits, Duration::from_millis(300)).await;
    // The worker is busy elsewhere well past the start time.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (_keep, stop) = watch::channel(None);
    let outcome = start(
        prepared,
        (&job, "timed"),
        &limits,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    let shell_ran: i64 = outcome.output.text.trim().parse().unwrap();
    let started = outcome.started_at.timestamp_millis();
    for (what, at) in [("the shell ran", shell_ran), ("the start", started)] {
        assert!(
            (due..due + 1_000).contains(&at),
            "{what} at {at}, due at {due}"
        );
    }
    // The end is the supervisor's too: when the shell was done, not when the worker looked.
    let ran = (outcome.ended_at - outcome.started_at).num_milliseconds();
    assert!((300..1_000).contains(&ran), "ran {ran} ms: {outcome:?}");
}

/// A prepared run dropped before its start time never starts.
#[tokio::test]
async fn a_prepared_run_called_off_before_its_start_time_never_runs() {
    let marker = format!("/tmp/cronfleet-called-off-{}", uuid::Uuid::new_v4());
    let job = job(&format!("touch {marker}"), None);
    // Its run server lives as long as the launcher, as a worker's does.
    let limits = limits();
    let prepared = prepare(&job, &context("off"), &limits, Duration::from_millis(500)).await;
    drop(prepared);
    // Well past the start time: a shell started then would have touched the file.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!std::path::Path::new(&marker).exists());
    // The same run, not called off, does.
    let prepared = prepare(&job, &context("on"), &limits, Duration::from_millis(500)).await;
    let (_keep, stop) = watch::channel(None);
    let outcome = start(
        prepared,
        (&job, "on"),
        &limits,
        Clock::with_offset_ms(0),
        stop,
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert!(std::path::Path::new(&marker).exists());
    let _ = std::fs::remove_file(&marker);
}

/// A run's shell holds its standard streams and nothing else of the worker's or the
/// supervisor's: not the report pipe, not the run server's socket.
#[tokio::test]
async fn a_run_holds_only_its_standard_streams() {
    // `ls` in the shell's place: its open files are the shell's, and the directory it reads.
    let outcome = run("exec ls /proc/self/fd", None).await;
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.output.text, "0\n1\n2\n3\n", "{outcome:?}");
}

/// A run's shell starts with no signal blocked, whatever its supervisor blocks:
/// otherwise a job's `timeout`, or the worker's own SIGTERM, could not end what it starts.
#[tokio::test]
async fn a_run_starts_with_no_signal_blocked() {
    // Read by the shell's builtins: a shell blocks every signal for a moment around each fork,
    // which a child reading its mask could catch.
    let job = job(
        "while read -r key value; do if [ \"$key\" = SigBlk: ]; then echo \"$value\"; fi; done < /proc/$$/status",
        None,
    );
    let limits = limits();
    // Started at once, and started by the supervisor's timer after a wait.
    for start_in in [Duration::ZERO, Duration::from_millis(300)] {
        let prepared = prepare(&job, &context("masks"), &limits, start_in).await;
        let (_keep, stop) = watch::channel(None);
        let outcome = start(
            prepared,
            (&job, "masks"),
            &limits,
            Clock::with_offset_ms(0),
            stop,
        )
        .await;
        assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");
        assert_eq!(
            outcome.output.text, "0000000000000000\n",
            "started after {start_in:?}"
        );
    }
}
