//! The audit log's hash chain: each event stores the SHA-256 of its content and of the event
//! before it, computed by the database on insert (the `events_chain` trigger, so every path
//! that appends is covered), so an event changed, removed or slipped in breaks the chain from
//! there on. [`Store::verify_chain`] walks it.
//!
//! The chain shows that the log was changed, not who changed it: someone who can write the
//! table and recompute every hash after the one they changed leaves a consistent chain. Keep
//! the head that `verify` prints somewhere else (a ticket, a log shipped off the box) and pass
//! it back as an anchor: a rewritten chain no longer has that hash at that sequence number.

use sqlx::Row;

use super::{Store, StoreError};

/// Events read per query while verifying.
const BATCH: i64 = 5_000;

/// Where the chain breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Events checked.
    pub events: i64,
    /// The last event's sequence number and hash; `None` for an empty log.
    pub head: Option<(i64, Vec<u8>)>,
    /// The first event that does not match; `None` when the whole chain holds.
    pub broken: Option<Break>,
}

/// An earlier head: the hash an event had when it was written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: Vec<u8>,
}

impl Anchor {
    /// `<seq>:<hex hash>`, as `verify` prints the head.
    pub fn parse(text: &str) -> Option<Self> {
        let (seq, hash) = text.split_once(':')?;
        Some(Self {
            seq: seq.parse().ok()?,
            hash: unhex(hash)?,
        })
    }
}

impl Store {
    /// Walks the whole chain in sequence order; with `anchor`, also checks that the event it
    /// names still has its hash.
    pub async fn verify_chain(&self, anchor: Option<&Anchor>) -> Result<Verified, StoreError> {
        let mut verified = Verified {
            events: 0,
            head: None,
            broken: None,
        };
        let mut after = 0_i64;
        let mut anchor_seen = false;
        loop {
            let rows = sqlx::query(
                "SELECT seq, prev_hash, hash, event_digest(prev_hash, e) AS digest
                 FROM events e WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("seq")?;
            for row in &rows {
                let seq: i64 = row.try_get("seq")?;
                let prev: Option<Vec<u8>> = row.try_get("prev_hash")?;
                let hash: Option<Vec<u8>> = row.try_get("hash")?;
                let digest: Vec<u8> = row.try_get("digest")?;
                let before = verified.head.as_ref().map(|(_, hash)| hash.clone());
                verified.events += 1;
                let reason = if prev != before {
                    Some("its prev_hash is not the hash of the event before it (an event was removed, inserted or rewritten before it)")
                } else if hash.as_ref() != Some(&digest) {
                    Some(
                        "its content does not match its hash (it was changed after it was written)",
                    )
                } else if anchor.is_some_and(|a| a.seq == seq && Some(&a.hash) != hash.as_ref()) {
                    Some("its hash is not the anchor's (the chain was rewritten since the anchor was taken)")
                } else {
                    None
                };
                anchor_seen |= anchor.is_some_and(|a| a.seq == seq);
                if let Some(reason) = reason {
                    verified.broken = Some(Break {
                        seq,
                        reason: reason.to_owned(),
                    });
                    return Ok(verified);
                }
                verified.head = Some((seq, digest));
            }
        }
        if let Some(anchor) = anchor {
            if !anchor_seen {
                verified.broken = Some(Break {
                    seq: anchor.seq,
                    reason: "the anchor's event is no longer in the log".to_owned(),
                });
            }
        }
        Ok(verified)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_reads_back_what_verify_prints() {
        let anchor = Anchor::parse("42:00ff10").unwrap();
        assert_eq!(anchor.seq, 42);
        assert_eq!(hex(&anchor.hash), "00ff10");
        for bad in ["42", "x:00", "4:0", "4:zz", "4:é0"] {
            assert_eq!(Anchor::parse(bad), None, "{bad}");
        }
    }
}
