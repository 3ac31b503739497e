//! The worker's lease confirmations, as the supervisor reads them from its stdin: one line per
//! renewal of the worker's etcd lease, the milliseconds it is good for. The supervisor's loop
//! polls stdin beside its signals and wakes at [`LeaseWatch::stop_at`]; no thread, no timer.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

pub struct LeaseWatch<R> {
    stdin: BufReader<R>,
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    /// Whether the worker may still write (no end of file yet).
    open: bool,
    /// When the run must start ending; `None` until the first confirmation.
    stop_at: Option<Instant>,
    /// How long before the lease runs out the run starts ending.
    lead: Duration,
}

impl<R: Read + AsFd> LeaseWatch<R> {
    /// Follows the confirmations on `stdin`, including those it has already buffered; the run
    /// starts ending `lead` before the last confirmed lease runs out.
    pub fn new(mut stdin: BufReader<R>, lead: Duration) -> Self {
        let buffered = stdin.buffer().to_vec();
        stdin.consume(buffered.len());
        let mut watch = Self {
            stdin,
            partial: Vec::new(),
            open: true,
            stop_at: None,
            lead,
        };
        watch.take(&buffered);
        watch
    }

    /// Stdin while the worker may still write to it, to poll.
    pub fn readable(&self) -> Option<BorrowedFd<'_>> {
        self.open.then(|| self.stdin.get_ref().as_fd())
    }

    pub fn stop_at(&self) -> Option<Instant> {
        self.stop_at
    }

    /// Reads what the worker wrote; call when stdin polls readable.
    pub fn read(&mut self) {
        match self.stdin.fill_buf() {
            Ok([]) => self.open = false,
            Ok(bytes) => {
                let bytes = bytes.to_vec();
                self.stdin.consume(bytes.len());
                self.take(&bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.open = false,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        for byte in bytes {
            if *byte != b'\n' {
                self.partial.push(*byte);
                continue;
            }
            let line = std::mem::take(&mut self.partial);
            if let Some(valid_ms) = std::str::from_utf8(&line)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
            {
                let until = Instant::now() + Duration::from_millis(valid_ms);
                self.stop_at = Some(until.checked_sub(self.lead).unwrap_or_else(Instant::now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_last_confirmation_sets_when_the_run_must_end() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut write = std::fs::File::from(write);
        let mut stdin = BufReader::new(std::fs::File::from(read));
        // The environment block, then a confirmation the reader buffered with it.
        write.write_all(b"\x0060000\n").unwrap();
        assert_eq!(
            super::super::invocation::read_environment(&mut stdin),
            Some(Vec::new())
        );
        let lead = Duration::from_secs(5);
        let before = Instant::now();
        let mut watch = LeaseWatch::new(stdin, lead);
        let first = watch.stop_at().expect("the buffered confirmation counts");
        assert!(first >= before + Duration::from_secs(55));
        // A confirmation in two pieces counts once whole; a lease that is gone stops at once.
        write.write_all(b"3").unwrap();
        watch.read();
        assert_eq!(watch.stop_at(), Some(first));
        write.write_all(b"0\n0\n").unwrap();
        watch.read();
        assert!(watch.stop_at().unwrap() <= Instant::now());
        assert!(watch.readable().is_some());
        drop(write);
        watch.read();
        assert!(
            watch.readable().is_none(),
            "end of file: nothing more to poll"
        );
    }
}
