//! Reading a crontab as cron does, into cronfleet jobs.
//!
//! * A user crontab (`crontab -l`): five time fields and the command. A system crontab
//!   (`/etc/crontab`, `/etc/cron.d/*`): five time fields, the user, the command.
//! * `NAME=value` lines (spaces around `=` allowed, the value optionally in single or double
//!   quotes) apply to the lines after them: `SHELL` becomes the job's shell, `CRON_TZ` (and
//!   `TZ`, which cron also passes to the command) its time zone, `MAILTO`/`MAILFROM` are
//!   reported and dropped (cronfleet notifies through channels), anything else goes into the
//!   job's environment.
//! * The comment lines right above a job become its description.
//! * In the command, the first `%` not escaped as `\%` ends it; the rest, every `%` a newline,
//!   is the command's standard input — given to the whole command line as a here-document.
//! * `@reboot` has no tick and is skipped; `@yearly`, `@annually`, `@monthly`, `@weekly`,
//!   `@daily`, `@midnight` and `@hourly` are kept as they are.
//!
//! Names are derived from the file and the command and made unique within the file by a short
//! hash of the line, so importing the same file again names the same jobs.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Map, Value};

/// Whether the file has a user column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    User,
    System,
}

impl Flavor {
    /// A system crontab by its path: `/etc/crontab` and files under a `cron.d` directory.
    pub fn of_path(path: &std::path::Path) -> Self {
        let parent = path.parent().and_then(|p| p.file_name());
        let system = path.ends_with("etc/crontab") || parent.is_some_and(|dir| dir == "cron.d");
        if system {
            Flavor::System
        } else {
            Flavor::User
        }
    }
}

/// What a crontab gives: the jobs, and the lines left out with why.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    /// Each a job spec as the API takes it.
    pub jobs: Vec<Value>,
    /// `line N: why`, for lines read but not imported and settings dropped.
    pub notes: Vec<String>,
}

const SHORTCUTS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Reads `text`; `source` names the jobs (a file name such as `crontab` or `cron.d/backup`).
/// Lines before any `CRON_TZ` run in `host_zone`, the zone of the host the crontab came from
/// (cron reads them in its local time); with none, the master's default, UTC.
pub fn parse(text: &str, source: &str, flavor: Flavor, host_zone: Option<&str>) -> Imported {
    let mut imported = Imported::default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut shell: Option<String> = None;
    let mut timezone: Option<String> = None;
    let mut comments: Vec<String> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    let prefix = slug(source);
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() {
            comments.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            comments.push(comment.trim().to_owned());
            continue;
        }
        if let Some((name, value)) = assignment(line) {
            comments.clear();
            match name.as_str() {
                "SHELL" => shell = Some(value),
                "CRON_TZ" => timezone = Some(value),
                "TZ" => {
                    timezone = Some(value.clone());
                    env.insert(name, value);
                }
                "MAILTO" | "MAILFROM" => imported.notes.push(format!(
                    "line {number}: {name} dropped: cronfleet sends no cron mail; add a notify rule with an email channel"
                )),
                _ => {
                    env.insert(name, value);
                }
            }
            continue;
        }
        let block = std::mem::take(&mut comments);
        // A block drawn as a legend (`# |  .---- hour`) explains the file, not this job.
        let legend = block
            .iter()
            .any(|c| c.starts_with(['|', '.', '*']) || c.contains("---"));
        let description = if legend {
            String::new()
        } else {
            block.join("\n")
        };
        let Some(entry) = entry(line, flavor) else {
            imported.notes.push(format!(
                "line {number}: skipped: not a job line ({} expected before the command)",
                if flavor == Flavor::System {
                    "5 time fields and a user"
                } else {
                    "5 time fields"
                }
            ));
            continue;
        };
        if entry.schedule == "@reboot" {
            imported.notes.push(format!(
                "line {number}: @reboot skipped: it has no tick to schedule"
            ));
            continue;
        }
        let command = command_with_input(&entry.command);
        // Named by what runs, not when: a line whose schedule changes keeps its job.
        let what = format!(
            "{}\0{}",
            entry.user.as_deref().unwrap_or_default(),
            entry.command
        );
        let stem = format!(
            "{prefix}-{}-{}",
            slug(&command_words(&entry.command)),
            short_hash(&what)
        );
        let mut name = stem.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{stem}-{n}");
            n += 1;
        }
        let mut job = Map::new();
        job.insert("name".into(), json!(name));
        job.insert("command".into(), json!(command));
        job.insert("cronExpr".into(), json!(entry.schedule));
        if let Some(tz) = timezone.as_deref().or(host_zone) {
            job.insert("timezone".into(), json!(tz));
        }
        if let Some(shell) = &shell {
            job.insert("shell".into(), json!(shell));
        }
        if !env.is_empty() {
            job.insert("env".into(), json!(env));
        }
        let mut description = description;
        if let Some(user) = &entry.user {
            if !description.is_empty() {
                description.push('\n');
            }
            description.push_str(&format!(
                "Imported from {source} line {number}, where it ran as {user}."
            ));
            if user != "root" {
                imported.notes.push(format!(
                    "line {number}: ran as {user}; cronfleet runs it as the worker's --run-as user"
                ));
            }
        }
        if !description.is_empty() {
            job.insert("description".into(), json!(description));
        }
        imported.jobs.push(Value::Object(job));
    }
    imported
}

struct Entry {
    schedule: String,
    user: Option<String>,
    command: String,
}

/// `NAME=value` (cron allows spaces around `=`), the value unquoted.
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(value);
    Some((name.to_owned(), unquoted.to_owned()))
}

/// The schedule, the user (system crontabs) and the command of a job line.
fn entry(line: &str, flavor: Flavor) -> Option<Entry> {
    let (schedule, rest) = if line.starts_with('@') {
        let (word, rest) = split_word(line)?;
        if word != "@reboot" && !SHORTCUTS.contains(&word) {
            return None;
        }
        (word.to_owned(), rest)
    } else {
        let mut fields = Vec::new();
        let mut rest = line;
        for _ in 0..5 {
            let (field, after) = split_word(rest)?;
            if !time_field(field) {
                return None;
            }
            fields.push(field);
            rest = after;
        }
        (fields.join(" "), rest)
    };
    let (user, command) = match flavor {
        Flavor::System => {
            let (user, command) = split_word(rest)?;
            (Some(user.to_owned()), command)
        }
        Flavor::User => (None, rest),
    };
    let command = command.trim();
    (!command.is_empty()).then(|| Entry {
        schedule,
        user,
        command: command.to_owned(),
    })
}

/// This host's IANA time zone: `TZ`, else where `/etc/localtime` points, else
/// `/etc/timezone`.
pub fn local_zone() -> Option<String> {
    if let Ok(tz) = std::env::var("TZ") {
        let tz = tz.trim_start_matches(':');
        if !tz.is_empty() && !tz.starts_with('/') {
            return Some(tz.to_owned());
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy();
        if let Some(at) = target.find("zoneinfo/") {
            return Some(target[at + "zoneinfo/".len()..].to_owned());
        }
    }
    std::fs::read_to_string("/etc/timezone")
        .ok()
        .map(|zone| zone.trim().to_owned())
        .filter(|zone| !zone.is_empty())
}

/// Whether `field` reads as a cron time field: numbers, `*`, `/`, `,`, `-`, `?`, and
/// month or weekday names.
fn time_field(field: &str) -> bool {
    const NAMES: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "sun",
        "mon", "tue", "wed", "thu", "fri", "sat",
    ];
    field.split([',', '-', '/']).all(|part| {
        part.is_empty() && field.len() > 1
            || part == "*"
            || part == "?"
            || part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty()
            || NAMES.contains(&part.to_ascii_lowercase().as_str())
    })
}

fn split_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

/// The command as cron runs it: up to the first unescaped `%`, with `\%` as `%`; the rest,
/// each `%` a newline, fed to it on standard input by a here-document.
fn command_with_input(raw: &str) -> String {
    let mut command = String::new();
    let mut input: Option<String> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = c == '\\' && chars.peek() == Some(&'%');
        if escaped {
            chars.next();
        }
        match (&mut input, c, escaped) {
            (None, '%', false) => input = Some(String::new()),
            (Some(text), '%', false) => text.push('\n'),
            (target, _, true) => target.as_mut().unwrap_or(&mut command).push('%'),
            (target, c, false) => target.as_mut().unwrap_or(&mut command).push(c),
        }
    }
    match input {
        None => command,
        Some(input) => {
            let mut marker = "CRONTAB_INPUT".to_owned();
            while input.lines().any(|l| l == marker) {
                marker.push('_');
            }
            let input = input.strip_suffix('\n').unwrap_or(&input);
            // Braces give the input to the whole command line, as cron does, and end a
            // comment in it before the here-document starts.
            format!("{{ {command}\n}} <<'{marker}'\n{input}\n{marker}")
        }
    }
}

/// The first words of a command that say what it does, for its name: the program, without
/// its directory, and its first argument.
fn command_words(command: &str) -> String {
    let command = command.split('%').next().unwrap_or_default();
    let mut words = command
        .split_whitespace()
        .filter(|w| {
            !w.contains('=') && !["test", "[", "-x", "&&", "||", "]", "cd", "if"].contains(w)
        })
        .map(|w| w.rsplit('/').next().unwrap_or(w));
    [words.next(), words.next()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("-")
}

/// Lowercase letters, digits and single dashes; at most 40 characters.
fn slug(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(40).collect();
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "job".to_owned()
    } else {
        slug
    }
}

/// Six hex digits of FNV-1a over the line: stable across imports and platforms.
fn short_hash(line: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in line.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_ends_the_command_and_the_rest_is_its_input() {
        assert_eq!(command_with_input("date +\\%F"), "date +%F");
        assert_eq!(
            command_with_input("mail -s hi ops%line one%line two%"),
            "{ mail -s hi ops\n} <<'CRONTAB_INPUT'\nline one\nline two\nCRONTAB_INPUT"
        );
    }

    #[test]
    fn settings_apply_to_the_lines_after_them_and_names_are_stable() {
        let text = "SHELL=/bin/bash\nA = 'one two'\n# says hello\n* * * * * echo hi\nCRON_TZ=Asia/Tokyo\n0 9 * * mon-fri  root  /usr/bin/report --daily\n";
        let user = parse(text, "my crontab", Flavor::User, None);
        assert_eq!(user.jobs.len(), 2);
        let first = &user.jobs[0];
        assert_eq!(first["shell"], "/bin/bash");
        assert_eq!(first["env"]["A"], "one two");
        assert_eq!(first["description"], "says hello");
        assert!(first["name"]
            .as_str()
            .unwrap()
            .starts_with("my-crontab-echo-hi-"));
        assert_eq!(first.get("timezone"), None);
        let second = &user.jobs[1];
        assert_eq!(second["timezone"], "Asia/Tokyo");
        assert_eq!(
            second["command"], "root  /usr/bin/report --daily",
            "a user crontab has no user column"
        );
        assert_eq!(
            parse(text, "my crontab", Flavor::User, None),
            user,
            "the same file, the same jobs"
        );
        let system = parse(text, "my crontab", Flavor::System, None);
        assert_eq!(system.jobs[1]["command"], "/usr/bin/report --daily");
        assert_eq!(system.jobs[0]["command"], "hi");
        assert_eq!(
            system.notes,
            ["line 4: ran as echo; cronfleet runs it as the worker's --run-as user"]
        );
    }

    #[test]
    fn the_input_goes_to_the_whole_command_line_even_after_a_comment() {
        let command = command_with_input("tr -d x | tr a-z A-Z # shout it%hello x");
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", &command])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "HELLO \n");
    }

    #[test]
    fn lines_run_in_the_hosts_zone_until_cron_tz_says_otherwise() {
        let text = "0 9 * * * a\nCRON_TZ=Asia/Tokyo\n0 9 * * * b\n";
        let jobs = parse(text, "t", Flavor::User, Some("Europe/Paris")).jobs;
        assert_eq!(jobs[0]["timezone"], "Europe/Paris");
        assert_eq!(jobs[1]["timezone"], "Asia/Tokyo");
        let moved = parse("0 10 * * * a\n", "t", Flavor::User, None).jobs;
        assert_eq!(
            moved[0]["name"],
            parse("0 9 * * * a\n", "t", Flavor::User, None).jobs[0]["name"]
        );
    }

    #[test]
    fn only_cron_time_fields_make_a_job_line() {
        for field in ["*", "*/5", "1,15", "1-5", "mon-fri", "JAN", "?", "0-23/2"] {
            assert!(time_field(field), "{field}");
        }
        for field in ["this", "every", "1..5", ""] {
            assert!(!time_field(field), "{field}");
        }
    }
}
