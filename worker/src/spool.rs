//! The on-disk spool: every execution record is appended to a segment file the moment it is
//! produced, and a segment is deleted only after MongoDB has all of it. A crash, a restart or a
//! Mongo outage therefore loses nothing; a segment uploaded twice is harmless because `runId` is
//! unique in Mongo.
//!
//! Segments being written are `<pid>-<seq>.open`; finished ones are `<millis>-<pid>-<seq>.sealed`
//! and upload oldest first. On start a worker seals the open segments of processes that are gone.
//!
//! Appends go to the page cache, which survives the worker's own crash. A segment is flushed to
//! the disk with fsync only when it has to wait (MongoDB refused or could not be reached), so
//! the fast path costs no fsync per batch; the exposure is a power loss in the milliseconds
//! between a batch closing and MongoDB taking it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use cronfleet_common::ExecutionRecord;

/// The spool directory of this process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    pid: u32,
    seq: u64,
    /// The segment being written: its path, file, records and bytes.
    open: Option<(PathBuf, File, usize, u64)>,
}

impl Spool {
    /// Opens (creating) `dir` and seals segments left open by processes that no longer run.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let pid = std::process::id();
        let spool = Self {
            dir: dir.to_owned(),
            pid,
            seq: 0,
            open: None,
        };
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(stem) = name.strip_suffix(".open") else {
                continue;
            };
            let owner: Option<u32> = stem.split('-').next().and_then(|p| p.parse().ok());
            let alive =
                owner.is_some_and(|p| p != pid && Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                fs::rename(&path, spool.sealed_path(stem))?;
            }
        }
        Ok(spool)
    }

    fn sealed_path(&self, stem: &str) -> PathBuf {
        let millis = chrono::Utc::now().timestamp_millis();
        self.dir.join(format!("{millis:015}-{stem}.sealed"))
    }

    /// Appends one record to the open segment; returns how many records it now holds. A
    /// record the disk refuses leaves nothing behind: a partly written line is cut off again,
    /// so the next record starts on a line of its own.
    pub fn append(&mut self, record: &ExecutionRecord) -> io::Result<usize> {
        if self.open.is_none() {
            self.seq += 1;
            let path = self.dir.join(format!("{}-{:08}.open", self.pid, self.seq));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.open = Some((path, file, 0, 0));
        }
        let Some((_, file, count, bytes)) = self.open.as_mut() else {
            unreachable!("a segment was opened just above")
        };
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = file.write_all(&line) {
            // Shrinking a file needs no free space.
            file.set_len(*bytes)?;
            return Err(e);
        }
        *count += 1;
        *bytes += line.len() as u64;
        Ok(*count)
    }

    /// Whether an open segment holds records.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// Closes the open segment and hands it to the uploader.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Some((path, _, _, _)) = self.open.take() {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("segment")
                .to_owned();
            fs::rename(&path, self.sealed_path(&stem))?;
        }
        Ok(())
    }

    /// Sealed segments in `dir`, oldest first.
    pub fn sealed(dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "sealed"))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Flushes segments that have to wait, and the directory entries naming them, to the disk.
    pub fn persist(dir: &Path, segments: &[PathBuf]) -> io::Result<()> {
        for segment in segments {
            match File::open(segment) {
                Ok(file) => file.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        File::open(dir)?.sync_all()
    }

    /// The records of a segment. A torn last line (a crash mid-write) is skipped.
    pub fn read(path: &Path) -> io::Result<Vec<ExecutionRecord>> {
        let mut records = Vec::new();
        for line in BufReader::new(File::open(path)?).lines() {
            match serde_json::from_str(&line?) {
                Ok(record) => records.push(record),
                Err(e) => {
                    tracing::warn!(segment = %path.display(), error = %e, "skipping an unreadable spool line")
                }
            }
        }
        Ok(records)
    }
}
