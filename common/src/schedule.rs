//! Cron schedules: parsing every accepted form and computing fire times in a job's time zone.
//!
//! Fields are checked here, one by one, so an error can name the field that is wrong; the checked
//! fields are then handed to the `cron` crate in its own dialect (seconds first, Sunday = 1) to walk
//! wall-clock candidates. Mapping wall-clock times to instants is done here too, with the rules of
//! ISC/Vixie cron for daylight-saving changes:
//!
//! * a job with a fixed hour whose time falls in a skipped hour runs once, right after the jump;
//! * a job with a fixed hour whose time falls in a repeated hour runs once, at the first pass;
//! * a job with a wildcard or stepped hour keeps its real-time cadence (skipped times do not
//!   exist; repeated times run on both passes).

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// The largest change of UTC offset around a transition that is looked for, in seconds.
const MAX_OFFSET_SHIFT_SECS: i64 = 3 * 3600;
/// Longest accepted `@every` interval: a year.
const MAX_EVERY_SECS: i64 = 366 * 24 * 3600;

/// Why an expression was refused. `field` names the cron field (`minute`, `day-of-week`, ...)
/// or is `expression` when the problem is the whole thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ScheduleError {
    pub field: &'static str,
    pub reason: String,
}

fn error(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        reason: reason.into(),
    }
}

/// A parsed schedule bound to a time zone. Small (about 90 bytes, no heap): a worker holds one
/// per job, for 100,000 jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    timezone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `@every <duration>`: fires at every multiple of the interval since the Unix epoch, so
    /// every worker computes the same ticks.
    Every { secs: i64 },
    /// A cron expression, checked and reduced to one bit per allowed value of each field. The
    /// `cron` crate walks the candidates; its schedule is built from these bits when a fire
    /// time is needed, which keeps the per-job footprint small.
    Cron(Fields),
}

/// The allowed values of each field as bits: seconds to day-of-week (in the `cron` crate's
/// numbering, Sunday = 1) and years from 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    bits: [u64; 6],
    years: [u64; 3],
    /// Fields written as `*` or `?` (bit per field index).
    starred: u8,
    /// The hour field is a fixed list or range, not a wildcard or a step (the DST rules differ).
    fixed_hour: bool,
}

impl Schedule {
    /// Parses `expr` (5, 6 or 7 fields, an `@` macro or `@every <duration>`) in `timezone`.
    pub fn parse(expr: &str, timezone: Tz) -> Result<Self, ScheduleError> {
        let expr = expr.trim();
        let kind = if let Some(duration) = expr.strip_prefix("@every") {
            Kind::Every {
                secs: parse_every(duration.trim())?,
            }
        } else if expr.starts_with('@') {
            let fields = macro_fields(expr)?;
            cron_kind(&fields)?
        } else {
            cron_kind(&split_fields(expr)?)?
        };
        let schedule = Self { kind, timezone };
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        if schedule.next_after(epoch).is_none() {
            return Err(error("expression", "never fires"));
        }
        Ok(schedule)
    }

    /// The time zone the expression is read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire time strictly after `after`, or `None` when there is none (a year field
    /// that has passed).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every { secs } => {
                let next = (after.timestamp().div_euclid(*secs) + 1) * secs;
                DateTime::from_timestamp(next, 0)
            }
            Kind::Cron(fields) => {
                self.next_cron(&fields.schedules().ok()?, fields.fixed_hour, after)
            }
        }
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(count);
        let mut cursor = after;
        while times.len() < count {
            match self.next_after(cursor) {
                Some(next) => {
                    times.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        times
    }

    fn next_cron(
        &self,
        schedules: &[cron::Schedule],
        fixed_hour: bool,
        after: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        // A wall-clock time that maps to an instant after `after` is later than `after` plus the
        // smallest UTC offset in force around it.
        let mut cursor = after.naive_utc() + offset_near(tz, after, Iterator::min);
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        while let Some(naive) = next_naive(schedules, cursor) {
            // Once a candidate's wall-clock time is past the best instant plus the largest offset
            // around it, no later candidate can map to an earlier instant.
            if best.is_some_and(|(_, bound)| naive > bound) {
                break;
            }
            for instant in instants(tz, naive, fixed_hour) {
                if instant > after && best.is_none_or(|(b, _)| instant < b) {
                    let bound = instant.naive_utc() + offset_near(tz, instant, Iterator::max);
                    best = Some((instant, bound));
                }
            }
            cursor = naive;
        }
        best.map(|(instant, _)| instant)
    }
}

/// The smallest or largest UTC offset in force within a few hours of `at`.
fn offset_near(
    tz: Tz,
    at: DateTime<Utc>,
    pick: fn(std::array::IntoIter<Duration, 3>) -> Option<Duration>,
) -> Duration {
    let window = Duration::seconds(MAX_OFFSET_SHIFT_SECS);
    let offsets = [at - window, at, at + window].map(|t| {
        Duration::seconds(i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ))
    });
    pick(offsets.into_iter()).unwrap_or_default()
}

/// The earliest wall-clock candidate strictly after `cursor` among the schedules.
fn next_naive(schedules: &[cron::Schedule], cursor: NaiveDateTime) -> Option<NaiveDateTime> {
    let cursor = cursor.and_utc();
    schedules
        .iter()
        .filter_map(|s| s.after(&cursor).next())
        .min()
        .map(|t| t.naive_utc())
}

/// The instants at which the wall-clock time `naive` fires, by the DST rules in the module doc.
fn instants(tz: Tz, naive: NaiveDateTime, fixed_hour: bool) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
        LocalResult::Ambiguous(first, second) if fixed_hour => {
            vec![first.min(second).with_timezone(&Utc)]
        }
        LocalResult::Ambiguous(first, second) => {
            vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
        }
        LocalResult::None if fixed_hour => end_of_gap(tz, naive).into_iter().collect(),
        LocalResult::None => Vec::new(),
    }
}

/// The first instant after a skipped stretch of wall-clock time that contains `naive`.
fn end_of_gap(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = naive.with_second(0)?;
    for _ in 0..=MAX_OFFSET_SHIFT_SECS / 60 {
        probe += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

fn parse_every(text: &str) -> Result<i64, ScheduleError> {
    const FIELD: &str = "@every";
    if text.is_empty() {
        return Err(error(FIELD, "needs a duration such as 90s, 5m or 1h30m"));
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(error(
                FIELD,
                format!("{text:?} is not a duration such as 90s, 5m or 1h30m"),
            ));
        }
        let amount: i64 = rest[..digits]
            .parse()
            .map_err(|_| error(FIELD, format!("{text:?} is too large")))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(error(
                    FIELD,
                    format!("unit {other:?} in {text:?} is not one of s, m, h, d"),
                ))
            }
        };
        rest = &rest[unit_len..];
        total = amount
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| error(FIELD, format!("{text:?} is too large")))?;
    }
    if total < 1 {
        return Err(error(FIELD, "the interval must be at least 1s"));
    }
    if total > MAX_EVERY_SECS {
        return Err(error(FIELD, "the interval must be at most 366d"));
    }
    Ok(total)
}

/// The seven fields (seconds first, year last) an `@` macro stands for.
fn macro_fields(expr: &str) -> Result<Vec<&'static str>, ScheduleError> {
    let fields: &[&str] = match expr {
        "@yearly" | "@annually" => &["0", "0", "0", "1", "1", "*", "*"],
        "@monthly" => &["0", "0", "0", "1", "*", "*", "*"],
        "@weekly" => &["0", "0", "0", "*", "*", "0", "*"],
        "@daily" | "@midnight" => &["0", "0", "0", "*", "*", "*", "*"],
        "@hourly" => &["0", "0", "*", "*", "*", "*", "*"],
        other => {
            return Err(error(
                "expression",
                format!(
                    "{other:?} is not one of @yearly, @annually, @monthly, @weekly, @daily, \
                     @midnight, @hourly, @every <duration>"
                ),
            ))
        }
    };
    Ok(fields.to_vec())
}

/// Splits an expression into seven fields, seconds first and year last.
fn split_fields(expr: &str) -> Result<Vec<&str>, ScheduleError> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    match parts.len() {
        5 => Ok([&["0"], &parts[..], &["*"]].concat()),
        6 => Ok([&parts[..], &["*"]].concat()),
        7 => Ok(parts),
        0 => Err(error("expression", "is empty")),
        n => Err(error(
            "expression",
            format!(
                "has {n} fields; expected 5 (minute hour day-of-month month day-of-week), \
                 6 (seconds first) or 7 (seconds first, year last)"
            ),
        )),
    }
}

/// One cron field's name, range and names for its values.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELD_KINDS: [FieldKind; 7] = [
    FieldKind {
        name: "seconds",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldKind {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    FieldKind {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    FieldKind {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    FieldKind {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    FieldKind {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: WEEKDAYS,
    },
    FieldKind {
        name: "year",
        min: 1970,
        max: 2099,
        names: &[],
    },
];

const DAY_OF_MONTH: usize = 3;
const DAY_OF_WEEK: usize = 5;
const HOUR: usize = 2;
const YEAR: usize = 6;

fn cron_kind(fields: &[&str]) -> Result<Kind, ScheduleError> {
    let mut compact = Fields {
        bits: [0; 6],
        years: [0; 3],
        starred: 0,
        fixed_hour: {
            let hour = fields[HOUR];
            !(hour.starts_with('*') || hour.starts_with('?') || hour.contains('/'))
        },
    };
    for (index, (field, kind)) in fields.iter().zip(&FIELD_KINDS).enumerate() {
        if matches!(*field, "*" | "?") {
            compact.starred |= 1 << index;
        }
        for value in parse_field(field, kind)? {
            match index {
                // crontab counts weekdays 0-7 with Sunday as 0 and 7; the cron crate, 1-7.
                DAY_OF_WEEK => compact.bits[index] |= 1 << (value % 7 + 1),
                YEAR => {
                    let offset = value - FIELD_KINDS[YEAR].min;
                    compact.years[(offset / 64) as usize] |= 1 << (offset % 64);
                }
                _ => compact.bits[index] |= 1 << value,
            }
        }
    }
    compact.schedules()?;
    Ok(Kind::Cron(compact))
}

impl Fields {
    fn starred(&self, index: usize) -> bool {
        self.starred & (1 << index) != 0
    }

    fn render(&self, index: usize) -> String {
        if self.starred(index) {
            return "*".to_owned();
        }
        let values: Vec<String> = if index == YEAR {
            (0..192u32)
                .filter(|offset| self.years[(offset / 64) as usize] & (1 << (offset % 64)) != 0)
                .map(|offset| (offset + FIELD_KINDS[YEAR].min).to_string())
                .collect()
        } else {
            (0..64u32)
                .filter(|value| self.bits[index] & (1 << value) != 0)
                .map(|value| value.to_string())
                .collect()
        };
        values.join(",")
    }

    /// The `cron` crate schedules these fields stand for: one, or two when day-of-month and
    /// day-of-week are both restricted (crontab fires when either matches).
    fn schedules(&self) -> Result<Vec<cron::Schedule>, ScheduleError> {
        let rendered: Vec<String> = (0..7).map(|i| self.render(i)).collect();
        let variants = if !self.starred(DAY_OF_MONTH) && !self.starred(DAY_OF_WEEK) {
            let mut by_month_day = rendered.clone();
            by_month_day[DAY_OF_WEEK] = "*".to_owned();
            let mut by_weekday = rendered;
            by_weekday[DAY_OF_MONTH] = "*".to_owned();
            vec![by_month_day, by_weekday]
        } else {
            vec![rendered]
        };
        variants
            .iter()
            .map(|fields| {
                cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
                    error("expression", format!("is not a valid cron expression: {e}"))
                })
            })
            .collect()
    }
}

/// Expands one field (`*`, `?`, `5`, `1-5`, `*/15`, `10-40/5`, `MON-FRI`, comma lists) to values.
fn parse_field(text: &str, kind: &FieldKind) -> Result<Vec<u32>, ScheduleError> {
    let mut values = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    error(
                        kind.name,
                        format!("step {step:?} in {text:?} is not a positive number"),
                    )
                })?;
                (range, step)
            }
            None => (item, 1),
        };
        if range == "?" && !matches!(kind.name, "day-of-month" | "day-of-week") {
            return Err(error(
                kind.name,
                "\"?\" is only allowed in day-of-month and day-of-week",
            ));
        }
        let (low, high) = if range == "*" || range == "?" {
            (kind.min, kind.max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (value(low, kind, text)?, value(high, kind, text)?);
            if low > high {
                return Err(error(kind.name, format!("range {range:?} runs backwards")));
            }
            (low, high)
        } else {
            let single = value(range, kind, text)?;
            // "5/15" means from 5 to the end of the range, every 15.
            (single, if item.contains('/') { kind.max } else { single })
        };
        values.extend((low..=high).step_by(step as usize));
    }
    values.sort_unstable();
    values.dedup();
    Ok(values)
}

fn value(token: &str, kind: &FieldKind, text: &str) -> Result<u32, ScheduleError> {
    let upper = token.to_ascii_uppercase();
    if let Some(index) = kind.names.iter().position(|name| *name == upper) {
        let offset = u32::from(kind.name == "month");
        return u32::try_from(index)
            .map(|i| i + offset)
            .map_err(|_| error(kind.name, "bad name"));
    }
    let number: u32 = token.parse().map_err(|_| {
        let names = if kind.names.is_empty() {
            String::new()
        } else {
            format!(" or a name ({})", kind.names.join(", "))
        };
        error(
            kind.name,
            format!("{token:?} in {text:?} is not a number{names}"),
        )
    })?;
    if number < kind.min || number > kind.max {
        return Err(error(
            kind.name,
            format!("{number} is out of range {}-{}", kind.min, kind.max),
        ));
    }
    Ok(number)
}

#[cfg(test)]
mod tests;
