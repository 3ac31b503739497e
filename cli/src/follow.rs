//! `runs logs --follow`: a run's output as it comes. While the run is in progress the master
//! answers with the end of its output as its worker last sent it (every 2 s at most); each
//! answer is printed from where the last one left off. When the record arrives, the rest of
//! the kept output is printed and the command ends with the run.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{encode, Client, Failure};
use crate::output::say;

/// How often the run is asked for.
const POLL: Duration = Duration::from_secs(1);
/// How long a run seen running may be unknown to the master before its record arrives.
const RECORD_WAIT: Duration = Duration::from_secs(60);

pub async fn follow(client: &Client, run_id: &str) -> Result<(), Failure> {
    let path = format!("/executions/{}", encode(run_id));
    let mut shown = String::new();
    let mut seen_running: Option<Instant> = None;
    loop {
        let run: Value = match client.get(&path).await {
            Ok(run) => run,
            // Between the end of the run and its record reaching MongoDB the master knows
            // neither; the record is on its way.
            Err(Failure::NotFound(_))
                if seen_running.is_some_and(|at| at.elapsed() < RECORD_WAIT) =>
            {
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(failure) => return Err(failure),
        };
        let output = run["output"].as_str().unwrap_or_default();
        let running = run["status"].as_str() == Some("running");
        let fresh = if running {
            unseen(&shown, output)
        } else {
            rest_of(&shown, output)
        };
        if !fresh.is_empty() {
            say_raw(fresh);
            shown = output.to_owned();
        }
        match run["status"].as_str() {
            Some("running") => {
                seen_running = Some(Instant::now());
                tokio::time::sleep(POLL).await;
            }
            Some("succeeded") => return Ok(()),
            other => {
                return Err(Failure::RunFailed(format!(
                    "run {run_id} ended {}",
                    other.unwrap_or("without a status")
                )))
            }
        }
    }
}

/// What the record's kept output holds after the last tail shown: the record may keep the
/// head and the end of a long output with a marker between, so the tail is looked for
/// anywhere, its last place.
fn rest_of<'a>(shown: &str, output: &'a str) -> &'a str {
    if shown.is_empty() {
        return output;
    }
    match output.rfind(shown) {
        Some(at) => &output[at + shown.len()..],
        None => unseen(shown, output),
    }
}

fn say_raw(text: &str) {
    if text.ends_with('\n') {
        say(text);
    } else {
        say(&format!("{text}\n"));
    }
}

/// The part of `now` not in `before`: both are the end of the same output, `now` later, so
/// the longest end of `before` that starts `now` was shown already. With no overlap (more
/// came than a tail holds), all of `now`.
fn unseen<'a>(before: &str, now: &'a str) -> &'a str {
    if before.is_empty() {
        return now;
    }
    let mut start = 0;
    while start < before.len() {
        if before.is_char_boundary(start) {
            if let Some(rest) = now.strip_prefix(&before[start..]) {
                return rest;
            }
        }
        start += 1;
    }
    now
}

#[cfg(test)]
mod tests {
    use super::unseen;

    #[test]
    fn only_what_came_since_is_printed() {
        assert_eq!(unseen("", "1\n2\n"), "1\n2\n");
        assert_eq!(unseen("1\n2\n", "1\n2\n3\n"), "3\n");
        assert_eq!(unseen("1\n2\n3\n", "2\n3\n4\n"), "4\n");
        assert_eq!(unseen("a\n", "a\n"), "");
        assert_eq!(unseen("old\n", "new\n"), "new\n");
    }

    #[test]
    fn a_record_that_kept_the_head_and_the_end_prints_only_what_follows_the_last_tail() {
        let record = "line 1\n… 9000 bytes left out …\nline 998\nline 999\nline 1000\n";
        assert_eq!(
            super::rest_of("line 998\nline 999\n", record),
            "line 1000\n"
        );
        assert_eq!(super::rest_of("", "all\n"), "all\n");
        assert_eq!(super::rest_of("gone\n", "new\n"), "new\n");
    }
}
