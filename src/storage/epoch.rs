//! The leader-epoch cache (epoch → start offset, Kafka's `LeaderEpochFileCache`) and
//! its checkpoint file. The byte layout is in `docs/FORMAT.md`, section 2.2.

use std::fs;
use std::io;
use std::path::Path;

use super::files::write_atomically;
use crate::{Error, Result};

/// Name of the checkpoint file in a segment log's directory.
pub(crate) const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const MAGIC: u32 = 0x5245_5045;
const VERSION: u32 = 1;
const ENTRY_LEN: usize = 12;

/// (epoch, start offset) pairs, both strictly increasing, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<(u32, u64)>,
}

impl EpochCache {
    /// A cache holding `entries` (already checked to be strictly increasing).
    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<(u32, u64)>) -> Self {
        EpochCache { entries }
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[(u32, u64)] {
        &self.entries
    }

    /// The newest epoch.
    pub(crate) fn latest(&self) -> Option<u32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// The oldest epoch still in the cache.
    pub(crate) fn earliest(&self) -> Option<u32> {
        self.entries.first().map(|&(epoch, _)| epoch)
    }

    /// Records that `epoch` starts at `start`, if it is newer than the latest epoch.
    /// As Kafka's `assign`, entries starting at or after `start` are dropped first, so
    /// start offsets stay strictly increasing. Returns whether anything changed.
    pub(crate) fn assign(&mut self, epoch: u32, start: u64) -> bool {
        if self.latest().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        self.entries.retain(|&(_, s)| s < start);
        self.entries.push((epoch, start));
        true
    }

    /// Removes entries starting at or after `end` (truncation of the log to `end`).
    /// Returns whether anything changed.
    pub(crate) fn truncate_from_end(&mut self, end: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end);
        self.entries.len() != before
    }

    /// The log now starts at `start`: entries at or below it collapse into the newest
    /// of them, moved to `start` (Kafka's `truncateFromStart`), so the epoch that was
    /// current at `start` is still known. Returns whether anything changed.
    pub(crate) fn truncate_from_start(&mut self, start: u64) -> bool {
        let below = self.entries.partition_point(|&(_, s)| s <= start);
        if below == 0 {
            return false;
        }
        let epoch = self.entries[below - 1].0;
        let before = self.entries.clone();
        self.entries.drain(..below);
        self.entries.insert(0, (epoch, start));
        self.entries != before
    }

    /// Empties the cache. Returns whether anything changed.
    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// OffsetForLeaderEpoch (KIP-279): the largest epoch `<= epoch` and its end offset
    /// (the next epoch's start, or `log_end` for the latest). For an epoch older than
    /// every one known, `epoch` itself, ending where the first known epoch starts: no
    /// record here is from it, as Kafka's `LeaderEpochFileCache.endOffsetFor` answers.
    /// Without that, a follower holding only epochs newer than the leader's answer
    /// found no point to cut at and fetched the same diverging offset forever. `None`
    /// only when no epoch is known at all.
    pub(crate) fn end_offset_for(&self, epoch: u32, log_end: u64) -> Option<(u32, u64)> {
        let floor = self.entries.partition_point(|&(e, _)| e <= epoch);
        let Some(below) = floor.checked_sub(1) else {
            return self.entries.first().map(|&(_, start)| (epoch, start));
        };
        let (found, _) = self.entries[below];
        let end = self.entries.get(floor).map_or(log_end, |&(_, s)| s);
        Some((found, end))
    }

    /// Encodes the checkpoint file.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(16 + ENTRY_LEN * self.entries.len());
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf.extend_from_slice(&VERSION.to_le_bytes());
        let count = u32::try_from(self.entries.len()).expect("more than u32::MAX epochs");
        buf.extend_from_slice(&count.to_le_bytes());
        for &(epoch, start) in &self.entries {
            buf.extend_from_slice(&epoch.to_le_bytes());
            buf.extend_from_slice(&start.to_le_bytes());
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Decodes a checkpoint file; `None` when it fails any check.
    pub(crate) fn decode(buf: &[u8]) -> Option<EpochCache> {
        let body_len = buf.len().checked_sub(4)?;
        let (body, crc) = buf.split_at(body_len);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u32_at = |p: usize| Some(u32::from_le_bytes(body.get(p..p + 4)?.try_into().ok()?));
        if u32_at(0)? != MAGIC || u32_at(4)? != VERSION {
            return None;
        }
        let count = u32_at(8)? as usize;
        let entries_bytes = body.get(12..)?;
        // The count must match the bytes exactly, so it never sizes an allocation alone.
        if entries_bytes.len() != count.checked_mul(ENTRY_LEN)? {
            return None;
        }
        let entries: Vec<(u32, u64)> = entries_bytes
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let epoch = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let mut start = [0u8; 8];
                start.copy_from_slice(&c[4..12]);
                (epoch, u64::from_le_bytes(start))
            })
            .collect();
        let increasing = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        increasing.then_some(EpochCache { entries })
    }
}

/// What reading the checkpoint file found.
#[derive(Debug)]
pub(crate) enum Checkpoint {
    /// No file.
    Missing,
    /// A file that fails a check (size, magic, version, CRC, ordering).
    Invalid,
    /// A valid file.
    Valid(EpochCache),
}

/// Reads `dir/leader-epoch-checkpoint`.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let path = dir.join(EPOCH_CHECKPOINT);
    match fs::read(&path) {
        Ok(bytes) => Ok(EpochCache::decode(&bytes).map_or(Checkpoint::Invalid, Checkpoint::Valid)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkpoint::Missing),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes the checkpoint atomically; `sync` fsyncs it and the directory.
pub(crate) fn write_checkpoint(dir: &Path, cache: &EpochCache, sync: bool) -> Result<()> {
    write_atomically(dir, EPOCH_CHECKPOINT, &cache.encode(), sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(u32, u64)]) -> EpochCache {
        EpochCache::from_entries(entries.to_vec())
    }

    /// KIP-279 golden table: (asked epoch) → (epoch found, end offset), for the cache
    /// [(1, 0), (3, 10), (6, 25)] and a log end of 40.
    #[test]
    fn end_offset_for_epoch_follows_kip_279_table() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        let table: &[(u32, Option<(u32, u64)>)] = &[
            (0, Some((0, 0))),
            (1, Some((1, 10))),
            (2, Some((1, 10))),
            (3, Some((3, 25))),
            (5, Some((3, 25))),
            (6, Some((6, 40))),
            (9, Some((6, 40))),
        ];
        for &(asked, expected) in table {
            assert_eq!(c.end_offset_for(asked, 40), expected, "epoch {asked}");
        }
        assert_eq!(EpochCache::default().end_offset_for(3, 40), None);
    }

    #[test]
    fn assign_ignores_older_epochs_and_drops_entries_at_or_after_start() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(!c.assign(3, 20));
        assert!(!c.assign(2, 20));
        assert!(c.assign(4, 10));
        assert_eq!(c.entries(), &[(1, 0), (4, 10)]);
    }

    #[test]
    fn truncate_from_end_removes_entries_at_or_after_end() {
        let mut c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert!(!c.truncate_from_end(25));
    }

    #[test]
    fn truncate_from_start_moves_the_epoch_current_at_start() {
        let mut c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(3, 12), (6, 25)]);
        assert!(!c.truncate_from_start(12));
        assert!(c.truncate_from_start(25));
        assert_eq!(c.entries(), &[(6, 25)]);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_every_damage() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        let bytes = c.encode();
        assert_eq!(EpochCache::decode(&bytes), Some(c));
        for len in 0..bytes.len() {
            assert_eq!(EpochCache::decode(&bytes[..len]), None, "cut to {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(EpochCache::decode(&damaged), None, "bit {bit}");
        }
    }

    #[test]
    fn checkpoint_with_huge_count_is_invalid_without_allocating() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(EpochCache::decode(&bytes), None);
    }
}
