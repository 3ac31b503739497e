//! Output capture under a cap: the first half of the cap from the start of the output, the
//! second half from its end, and a count of every byte. Memory stays at the cap whatever the
//! run writes. [`capture`] reads a run's stdout and stderr into it.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::oneshot;

/// Collects a run's stdout and stderr.
#[derive(Debug)]
pub struct Output {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

/// What is kept of a run's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Head and tail, joined by a marker line when bytes were dropped between them.
    pub text: String,
    /// Every byte the run wrote.
    pub total_bytes: u64,
    /// Whether bytes were dropped.
    pub truncated: bool,
}

impl Output {
    /// An empty capture that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: cap - head_cap,
            total: 0,
        }
    }

    /// Appends a chunk as it arrives.
    pub fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        if chunk.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + chunk.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(chunk);
    }

    /// Every byte written so far.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// The last `max` bytes kept so far (invalid UTF-8 replaced), for a look while the run
    /// goes on.
    pub fn end(&self, max: usize) -> String {
        let from_tail = self.tail.len().min(max);
        let from_head = (max - from_tail).min(self.head.len());
        let mut bytes = self.head[self.head.len() - from_head..].to_vec();
        bytes.extend(self.tail.range(self.tail.len() - from_tail..));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The kept text (invalid UTF-8 replaced) and the counts.
    pub fn finish(self) -> Captured {
        let kept = self.head.len() + self.tail.len();
        let truncated = self.total > kept as u64;
        let mut bytes = self.head;
        if truncated {
            let dropped = self.total - kept as u64;
            bytes.extend_from_slice(format!("\n[... {dropped} bytes omitted ...]\n").as_bytes());
        }
        bytes.extend(self.tail);
        Captured {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            total_bytes: self.total,
            truncated,
        }
    }
}

/// Reads stdout and stderr to their ends, or until `finish`, offering what it has to `live`
/// as it goes.
pub async fn capture(
    (mut stdout, mut stderr): (
        Option<impl AsyncRead + Unpin>,
        Option<impl AsyncRead + Unpin>,
    ),
    cap: usize,
    mut live: Option<crate::live::Publisher>,
    mut finish: oneshot::Receiver<()>,
) -> Captured {
    let mut output = Output::new(cap);
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            _ = &mut finish => break,
            read = read_some(&mut stdout, &mut out_buf) => match read {
                Some(n) => output.push(&out_buf[..n]),
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => output.push(&err_buf[..n]),
                None => stderr = None,
            },
        }
        if let Some(live) = live.as_mut() {
            live.offer(&output);
        }
    }
    if let Some(live) = live {
        live.ended();
    }
    output.finish()
}

/// Reads a chunk; `None` at end of stream or on error. Pending forever once the stream is gone.
async fn read_some(stream: &mut Option<impl AsyncRead + Unpin>, buf: &mut [u8]) -> Option<usize> {
    match stream {
        Some(stream) => match stream.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut output = Output::new(16);
        output.push(b"hello ");
        output.push(b"world");
        let captured = output.finish();
        assert_eq!(captured.text, "hello world");
        assert_eq!((captured.total_bytes, captured.truncated), (11, false));
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let mut output = Output::new(8);
        for chunk in [&b"abcdef"[..], b"ghijkl", b"mnop", b"qrstuvwxyz"] {
            output.push(chunk);
        }
        let captured = output.finish();
        assert_eq!(captured.text, "abcd\n[... 18 bytes omitted ...]\nwxyz");
        assert_eq!((captured.total_bytes, captured.truncated), (26, true));
    }

    #[test]
    fn byte_at_a_time_matches_one_chunk() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut chunked = Output::new(100);
        for byte in &data {
            chunked.push(std::slice::from_ref(byte));
        }
        let mut whole = Output::new(100);
        whole.push(&data);
        assert_eq!(chunked.finish(), whole.finish());
    }

    #[test]
    fn the_end_so_far_is_the_last_bytes_kept() {
        let mut output = Output::new(8);
        output.push(b"abc");
        assert_eq!(
            (output.end(2).as_str(), output.end(10).as_str()),
            ("bc", "abc")
        );
        output.push(b"defghijklmnop");
        assert_eq!(output.end(3), "nop");
        assert_eq!(output.end(6), "cdmnop", "head, then tail, without the gap");
        assert_eq!(output.total_bytes(), 16);
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let mut output = Output::new(10);
        output.push(b"0123456789");
        let captured = output.finish();
        assert_eq!(captured.text, "0123456789");
        assert!(!captured.truncated);
    }
}
