use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Schedule;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn next_n(expr: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
    Schedule::parse(expr, tz)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .upcoming(at(after), n)
        .iter()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

#[test]
fn every_accepted_form_fires_when_expected() {
    let utc = Tz::UTC;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "*/5 * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"],
        ),
        (
            "30 * * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:00:30Z", "2026-01-01T00:01:30Z"],
        ),
        (
            "*/20 * * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z"],
        ),
        (
            "0 0 12 1 1 * 2030",
            "2026-01-01T00:00:00Z",
            &["2030-01-01T12:00:00Z"],
        ),
        (
            "*/5 * * * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:00:05Z"],
        ),
        ("@yearly", "2026-03-01T00:00:00Z", &["2027-01-01T00:00:00Z"]),
        (
            "@annually",
            "2026-03-01T00:00:00Z",
            &["2027-01-01T00:00:00Z"],
        ),
        (
            "@monthly",
            "2026-03-15T00:00:00Z",
            &["2026-04-01T00:00:00Z"],
        ),
        ("@weekly", "2026-11-25T10:00:00Z", &["2026-11-29T00:00:00Z"]),
        ("@daily", "2026-11-25T10:00:00Z", &["2026-11-26T00:00:00Z"]),
        (
            "@midnight",
            "2026-11-25T10:00:00Z",
            &["2026-11-26T00:00:00Z"],
        ),
        ("@hourly", "2026-11-25T10:00:00Z", &["2026-11-25T11:00:00Z"]),
        (
            "@every 90s",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:01:30Z", "2026-01-01T00:03:00Z"],
        ),
        (
            "@every 1h30m",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T01:30:00Z", "2026-01-01T03:00:00Z"],
        ),
        (
            "0 0 29 2 *",
            "2026-03-01T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
        (
            "0 0 0 1 1 * 2027-2028",
            "2026-06-01T00:00:00Z",
            &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        ),
        (
            "0 9 * * MON-FRI",
            "2026-11-27T10:00:00Z",
            &["2026-11-30T09:00:00Z"],
        ),
        (
            "0 0 * * 0",
            "2026-11-25T00:00:00Z",
            &["2026-11-29T00:00:00Z"],
        ),
        (
            "0 0 * * 7",
            "2026-11-25T00:00:00Z",
            &["2026-11-29T00:00:00Z"],
        ),
        (
            "0 0 * JAN,jul *",
            "2026-02-01T00:00:00Z",
            &["2026-07-01T00:00:00Z"],
        ),
        (
            "15-45/15 3 * * *",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T03:15:00Z",
                "2026-01-01T03:30:00Z",
                "2026-01-01T03:45:00Z",
            ],
        ),
        (
            "0 10/6 * * *",
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-01T10:00:00Z",
                "2026-01-01T16:00:00Z",
                "2026-01-01T22:00:00Z",
            ],
        ),
        // Day-of-month and day-of-week both restricted: either matches (crontab semantics).
        (
            "0 0 13 * FRI",
            "2026-11-25T00:00:00Z",
            &["2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z"],
        ),
        (
            "0 0 0 ? * SUN",
            "2026-11-25T00:00:00Z",
            &["2026-11-29T00:00:00Z"],
        ),
    ];
    for (expr, after, expected) in cases {
        assert_eq!(
            &next_n(expr, utc, after, expected.len()),
            expected,
            "{expr} after {after}"
        );
    }
}

#[test]
fn year_field_ends_the_schedule() {
    let schedule = Schedule::parse("0 0 0 1 1 * 2027-2028", Tz::UTC).unwrap();
    assert_eq!(schedule.next_after(at("2028-01-01T00:00:00Z")), None);
}

#[test]
fn time_zone_shifts_wall_clock_times() {
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    assert_eq!(
        next_n("0 9 * * *", tokyo, "2026-11-25T00:00:00Z", 1),
        ["2026-11-26T00:00:00Z"]
    );
}

#[test]
fn spring_forward_fixed_hour_runs_once_right_after_the_jump() {
    // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never exists.
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    assert_eq!(
        next_n("30 2 * * *", berlin, "2026-03-28T12:00:00Z", 3),
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
}

#[test]
fn spring_forward_wildcard_hour_keeps_real_time_cadence() {
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    assert_eq!(
        next_n("30 * * * *", berlin, "2026-03-28T23:00:00Z", 3),
        [
            "2026-03-28T23:30:00Z",
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:30:00Z"
        ]
    );
}

#[test]
fn fall_back_fixed_hour_runs_once() {
    // America/New_York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let new_york: Tz = "America/New_York".parse().unwrap();
    assert_eq!(
        next_n("30 1 * * *", new_york, "2026-10-31T12:00:00Z", 3),
        [
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
            "2026-11-03T06:30:00Z"
        ]
    );
}

#[test]
fn fall_back_wildcard_hour_runs_on_both_passes() {
    let new_york: Tz = "America/New_York".parse().unwrap();
    assert_eq!(
        next_n("30 * * * *", new_york, "2026-11-01T04:00:00Z", 4),
        [
            "2026-11-01T04:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-01T07:30:00Z"
        ]
    );
}

#[test]
fn every_is_aligned_to_the_epoch_so_all_workers_agree() {
    let schedule = Schedule::parse("@every 7s", Tz::UTC).unwrap();
    let next = schedule.next_after(at("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(next.timestamp() % 7, 0);
    assert_eq!(schedule.next_after(at("2026-01-01T00:00:01Z")), Some(next));
}

#[test]
fn rejections_name_the_bad_field() {
    let cases = [
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * * FUNDAY", "day-of-week"),
        ("60 * * * * *", "seconds"),
        ("0 0 0 1 1 * 1969", "year"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("? * * * *", "minute"),
        ("0 0 0 31 2 *", "expression"),
        ("* * * *", "expression"),
        ("* * * * * * * *", "expression"),
        ("", "expression"),
        ("@fortnightly", "expression"),
        ("@every", "@every"),
        ("@every 0s", "@every"),
        ("@every 5x", "@every"),
        ("@every 400d", "@every"),
        ("@every 99999999999999999999s", "@every"),
    ];
    for (expr, field) in cases {
        let err = Schedule::parse(expr, Tz::UTC).expect_err(expr);
        assert_eq!(err.field, field, "{expr}: {err}");
    }
}

#[test]
fn never_firing_expression_says_so() {
    let err = Schedule::parse("0 0 0 31 2 *", Tz::UTC).unwrap_err();
    assert_eq!(err.to_string(), "expression: never fires");
}
