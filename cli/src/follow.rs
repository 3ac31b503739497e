//! `runs logs --follow`: a run's output as it comes. While the run is in progress the master
//! answers with the end of its output as its worker last sent it (every 2 s at most); each
//! answer is printed from where the last one left off. When the record arrives, the rest of
//! the kept output is printed and the command ends with the run.

use std::time::Duration;

use serde_json::Value;

use crate::client::{encode, Client, Failure};
use crate::output::say;

/// How often the run is asked for.
const POLL: Duration = Duration::from_secs(1);

pub async fn follow(client: &Client, run_id: &str) -> Result<(), Failure> {
    let path = format!("/executions/{}", encode(run_id));
    let mut shown = String::new();
    loop {
        let run: Value = client.get(&path).await?;
        let output = run["output"].as_str().unwrap_or_default();
        let fresh = unseen(&shown, output);
        if !fresh.is_empty() {
            say_raw(fresh);
            shown = output.to_owned();
        }
        match run["status"].as_str() {
            Some("running") => tokio::time::sleep(POLL).await,
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
}
