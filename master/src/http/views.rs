//! What the admin pages show: formatting of times, durations, schedules and changes.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use cronfleet_common::{ExecutionRecord, JobSpec, Mode, Retention, RetryPolicy, Selector};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// Everything but unreserved characters is encoded in a path segment (as askama's
/// `urlencode_strict`, which the templates use).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A job name or run id as one URL path segment, for links, redirects and `Location`.
pub fn path_segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `2026-11-25 13:04:05 UTC`, or `-`.
pub fn when_ms(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    DateTime::from_timestamp_millis(ms).map_or_else(|| "-".to_owned(), when)
}

pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time in a job's zone, with the zone's abbreviation.
pub fn when_in(t: DateTime<Utc>, tz: Tz) -> String {
    tz.from_utc_datetime(&t.naive_utc())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// How pages show a time of a job: in the job's zone with its abbreviation, the UTC time in
/// the tooltip, as a `<time>` element (built from the time and the zone's name only, so it is
/// safe to insert unescaped); `-` for none.
pub fn at_ms(ms: i64, tz: Tz) -> String {
    match DateTime::from_timestamp_millis(ms).filter(|_| ms > 0) {
        Some(t) => at(t, tz),
        None => "-".to_owned(),
    }
}

/// [`at_ms`] for a time.
pub fn at(t: DateTime<Utc>, tz: Tz) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        when(t),
        when_in(t, tz)
    )
}

/// `850 ms`, `12.3 s`, `4 min 5 s`.
pub fn duration_ms(ms: i64) -> String {
    match ms {
        ms if ms < 0 => "-".to_owned(),
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The exit code or signal of a run, in words.
pub fn exit(record: &ExecutionRecord) -> String {
    match (record.exit_code, record.signal) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "-".to_owned(),
    }
}

/// The last non-blank line of a run's output (where errors are), at most its last 80
/// characters.
pub fn excerpt(output: &str) -> String {
    let line = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim_end();
    let count = line.chars().count();
    if count <= 80 {
        return line.to_owned();
    }
    let tail: String = line.chars().skip(count - 80).collect();
    format!("…{tail}")
}

/// What started a run, in words: the schedule, a run-now by someone (with its request id),
/// or a chain from another run.
pub fn started_by(record: &ExecutionRecord) -> String {
    let mut words = match (record.trigger, &record.requested_by) {
        (cronfleet_common::Trigger::Schedule, _) => "the schedule".to_owned(),
        (_, Some(actor)) => format!("run now by {actor}"),
        (_, None) => "run now".to_owned(),
    };
    if let Some(request) = &record.request_id {
        words.push_str(&format!(" (request {request})"));
    }
    words
}

/// A cron expression in words, for the common shapes; other expressions are described as
/// custom.
pub fn schedule_words(expr: &str) -> String {
    let expr = expr.trim();
    if let Some(every) = expr.strip_prefix("@every") {
        return format!("every {}", every.trim());
    }
    match expr {
        "@yearly" | "@annually" => return "every year on 1 January at midnight".to_owned(),
        "@monthly" => return "on the first of every month at midnight".to_owned(),
        "@weekly" => return "every Sunday at midnight".to_owned(),
        "@daily" | "@midnight" => return "every day at midnight".to_owned(),
        "@hourly" => return "every hour".to_owned(),
        _ => {}
    }
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let (seconds, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 | 7 => (fields[0], &fields[1..6]),
        _ => return "custom schedule".to_owned(),
    };
    let [minute, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
    let every_day = dom == "*" && month == "*" && (dow == "*" || dow == "?");
    let step = |field: &str| field.strip_prefix("*/").and_then(|n| n.parse::<u32>().ok());
    let number = |field: &str| field.parse::<u32>().ok();
    if !every_day {
        return "custom schedule".to_owned();
    }
    match (seconds, minute, hour) {
        ("*", "*", "*") => "every second".to_owned(),
        (s, "*", "*") if step(s).is_some() => {
            stepped(step(s).unwrap_or(1), 60, "second", "every minute")
        }
        ("0", "*", "*") => "every minute".to_owned(),
        ("0", m, "*") if step(m).is_some() => {
            stepped(step(m).unwrap_or(1), 60, "minute", "every hour")
        }
        ("0", m, "*") if number(m).is_some() => format!("every hour at minute {m}"),
        ("0", m, h) if number(m).is_some() && number(h).is_some() => {
            format!(
                "every day at {:02}:{:02}",
                number(h).unwrap_or(0),
                number(m).unwrap_or(0)
            )
        }
        ("0", "0", h) if step(h).is_some() => match step(h).unwrap_or(1) {
            n if 24 % n == 0 => stepped(n, 24, "hour", "every day"),
            n => {
                let times = (0..24).step_by(n as usize).map(|h| format!("{h:02}:00"));
                format!("every day at {}", listed(times.collect()))
            }
        },
        _ => "custom schedule".to_owned(),
    }
}

/// `*/n` over a field of `range` values from 0: "every n units" when `n` divides the range, so
/// the gaps are all equal; otherwise the values it picks (`*/25` minutes: 0, 25 and 50, and
/// the gap from 50 to the next hour's 0 is 10 minutes; `*/70`: only 0).
fn stepped(n: u32, range: u32, unit: &str, within: &str) -> String {
    match n {
        0 | 1 => format!("every {unit}"),
        n if range % n == 0 => format!("every {n} {unit}s"),
        n => {
            let values: Vec<String> = (0..range)
                .step_by(n as usize)
                .map(|v| v.to_string())
                .collect();
            let plural = if values.len() > 1 { "s" } else { "" };
            format!("{within} at {unit}{plural} {}", listed(values))
        }
    }
}

/// `a`, `a and b`, `a, b and c`.
fn listed(mut items: Vec<String>) -> String {
    match items.pop() {
        None => String::new(),
        Some(last) if items.is_empty() => last,
        Some(last) => format!("{} and {last}", items.join(", ")),
    }
}

/// The fields that differ between two job specs, as `field: before → after` lines. Objects
/// (`env`, `selector`, `retry`) are compared key by key, as `retry.maxAttempts: 3 → 5`.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = Map::new();
    let before_map = before.and_then(Value::as_object).unwrap_or(&empty);
    let after_map = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut lines = Vec::new();
    diff_fields("", before_map, after_map, &mut lines);
    lines
}

fn diff_fields(
    prefix: &str,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    lines: &mut Vec<String>,
) {
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let empty = Map::new();
    for key in keys.into_iter().filter(|key| key.as_str() != "version") {
        let (old, new) = (before.get(key), after.get(key));
        if old == new {
            continue;
        }
        let field = format!("{prefix}{key}");
        let nested = [old, new]
            .into_iter()
            .all(|value| value.is_none_or(Value::is_object));
        if nested {
            let old = old.and_then(Value::as_object).unwrap_or(&empty);
            let new = new.and_then(Value::as_object).unwrap_or(&empty);
            diff_fields(&format!("{field}."), old, new, lines);
        } else {
            let show = |v: Option<&Value>| v.map_or_else(|| "∅".to_owned(), short);
            lines.push(format!("{field}: {} → {}", show(old), show(new)));
        }
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut cut: String = text.chars().take(120).collect();
    if text.chars().count() > 120 {
        cut.push('…');
    }
    cut
}

/// The timeout of a job, in words.
pub fn timeout(spec: &JobSpec) -> String {
    spec.timeout_secs
        .map_or_else(|| "none".to_owned(), |secs| format!("{secs} s"))
}

/// Which workers may run a job, in words.
pub fn selector(selector: &Selector) -> String {
    if selector.is_empty() {
        "any worker".to_owned()
    } else {
        selector.describe()
    }
}

/// How many workers run each tick, in words.
pub fn mode(mode: Mode) -> &'static str {
    match mode {
        Mode::One => "one: one matching worker runs each tick",
        Mode::All => "all: every live matching worker runs each tick once",
    }
}

/// A retry policy in words, or `none`.
pub fn retry(policy: Option<&RetryPolicy>) -> String {
    let Some(policy) = policy else {
        return "none".to_owned();
    };
    let mut statuses = vec!["failed", "timed_out"];
    statuses.extend(policy.also_on.iter().map(|status| status.as_str()));
    format!(
        "up to {} attempts of a tick whose run ended {}: {} s before the second, × {} before each next, at most {} s (±20 %)",
        policy.max_attempts,
        statuses.join(", "),
        policy.initial_delay_secs,
        policy.multiplier,
        policy.max_delay_secs,
    )
}

/// How long a job's records are kept, in words, saying which sides are the fleet's default.
pub fn retention(own: Retention, default: Retention) -> String {
    let kept = own.over(default).describe();
    match (own.days.is_some(), own.max_records.is_some()) {
        (false, false) => format!("{kept} (the fleet's default)"),
        (true, true) => format!("{kept} (this job's own)"),
        _ if default.is_default() => format!("{kept} (this job's own)"),
        _ => format!("{kept} (this job's own, with the fleet's default for the rest)"),
    }
}

/// The starting deadline of a job, in words.
pub fn starting_deadline(spec: &JobSpec) -> String {
    spec.starting_deadline_secs.map_or_else(
        || "60 s or the time to the next tick, whichever is less".to_owned(),
        |secs| format!("{secs} s after the planned time"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_in_words() {
        for (expr, words) in [
            ("*/5 * * * *", "every 5 minutes"),
            ("30 2 * * *", "every day at 02:30"),
            ("15 * * * *", "every hour at minute 15"),
            ("* * * * * *", "every second"),
            ("*/10 * * * * *", "every 10 seconds"),
            ("@every 90s", "every 90s"),
            ("@daily", "every day at midnight"),
            ("0 9 * * MON-FRI", "custom schedule"),
            ("*/70 * * * *", "every hour at minute 0"),
            ("*/25 * * * *", "every hour at minutes 0, 25 and 50"),
            ("*/1 * * * *", "every minute"),
            ("*/45 * * * * *", "every minute at seconds 0 and 45"),
            ("0 */6 * * *", "every 6 hours"),
            (
                "0 */5 * * *",
                "every day at 00:00, 05:00, 10:00, 15:00 and 20:00",
            ),
            ("0 */30 * * *", "every day at 00:00"),
        ] {
            assert_eq!(schedule_words(expr), words, "{expr}");
        }
    }

    #[test]
    fn diffs_name_changed_fields_only() {
        let before = serde_json::json!({"command": "a", "cronExpr": "@daily", "version": 1});
        let after = serde_json::json!({"command": "b", "cronExpr": "@daily", "version": 2});
        assert_eq!(diff(Some(&before), Some(&after)), ["command: a → b"]);
        assert_eq!(diff(None, Some(&after)).len(), 2);
    }

    #[test]
    fn nested_objects_diff_key_by_key() {
        let before = serde_json::json!({"selector": {"zone": "eu"}, "env": {"A": "1"}});
        let after = serde_json::json!({
            "selector": {"zone": "eu", "disk": ["ssd", "nvme"]},
            "retry": {"maxAttempts": 3, "multiplier": 2.0},
        });
        assert_eq!(
            diff(Some(&before), Some(&after)),
            [
                "env.A: 1 → ∅",
                "retry.maxAttempts: ∅ → 3",
                "retry.multiplier: ∅ → 2.0",
                r#"selector.disk: ∅ → ["ssd","nvme"]"#,
            ]
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_300), "12.3 s");
        assert_eq!(duration_ms(245_000), "4 min 5 s");
    }
}
