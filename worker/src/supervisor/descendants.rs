//! The processes of a run, wherever they moved: as a child subreaper the supervisor inherits
//! every orphan the run leaves, so the run's processes are exactly its live descendants.

use std::collections::HashMap;

use nix::unistd::Pid;

/// Every live (not zombie) descendant of this process, from `/proc`.
pub(super) fn descendants() -> Vec<Pid> {
    let me = std::process::id();
    // The usual case: no child left at all (zombies waiting to be reaped have been reaped).
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        if children.trim().is_empty() {
            return Vec::new();
        }
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut live = std::collections::HashSet::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name in parentheses may contain spaces; the fields after it do not.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let Some(parent) = fields.next().and_then(|f| f.parse::<u32>().ok()) else {
            continue;
        };
        children.entry(parent).or_default().push(pid);
        if state != Some("Z") && state != Some("X") {
            live.insert(pid);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![me];
    while let Some(pid) = next.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            next.push(*child);
            if live.contains(child) {
                found.push(Pid::from_raw(i32::try_from(*child).unwrap_or(i32::MAX)));
            }
        }
    }
    found
}
