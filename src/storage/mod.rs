//! Storage: the [`Log`] trait, a memory log and a segment log on disk, recovery,
//! and the data directory lock. The byte layout is in `docs/FORMAT.md`.

use std::fmt;
use std::time::Duration;

use crate::record::Batch;
use crate::Result;

/// One partition replica's log: dense offsets, whole batches, a leader-epoch cache.
///
/// Offsets are batch-granular at the edges: truncation keeps whole batches, reads
/// return whole batches.
pub(crate) trait Log: Send + fmt::Debug {
    /// Appends a batch whose base offset must equal [`Log::log_end_offset`]
    /// (a mismatch is a broken invariant of the caller: `Error::Corrupt` is returned
    /// and nothing is written). A batch whose leader epoch is newer than the latest in
    /// the epoch cache starts a new epoch entry at its base offset.
    fn append(&mut self, batch: &Batch) -> Result<()>;

    /// Whole batches starting with the one that holds `from`, up to about `max_bytes`
    /// (always at least one batch when one exists at `from`). `from == log_end_offset`
    /// gives an empty vector; `from` outside `log_start_offset..=log_end_offset` is
    /// `Error::OffsetOutOfRange`. A batch that fails its CRC ends the read with
    /// `Error::Corrupt { offset: Some(base offset of the bad batch), .. }`; nothing at or
    /// past it is returned.
    fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>>;

    /// Removes every batch that holds an offset `>= offset`; the log end offset becomes
    /// the base of the first removed batch (or stays if nothing is removed). Epoch cache
    /// entries starting at or after the new end are removed too.
    fn truncate(&mut self, offset: u64) -> Result<()>;

    /// Removes everything and restarts the log at `offset` (a follower whose leader's
    /// log starts past its end). The epoch cache is cleared.
    fn reset(&mut self, offset: u64) -> Result<()>;

    /// First offset still in the log.
    fn log_start_offset(&self) -> u64;

    /// Offset the next appended record will get.
    fn log_end_offset(&self) -> u64;

    /// Bytes held.
    fn size_bytes(&self) -> u64;

    /// fsyncs what was appended (a no-op in memory).
    fn flush(&mut self) -> Result<()>;

    /// Deletes whole old segments (never the active one) while the log is larger than
    /// `retention_bytes`, or while a segment's newest record is older than `retention`
    /// at `now_ms` (ms since the Unix epoch); advances the log start offset. Returns the
    /// new log start offset.
    fn apply_retention(
        &mut self,
        retention_bytes: Option<u64>,
        retention: Option<Duration>,
        now_ms: u64,
    ) -> Result<u64>;

    /// Records that `epoch` starts at `start_offset` (a new leader does this at its log
    /// end). Ignored if `epoch` is not newer than the latest epoch. Persisted.
    fn assign_epoch(&mut self, epoch: u32, start_offset: u64) -> Result<()>;

    /// The newest epoch in the cache.
    fn latest_epoch(&self) -> Option<u32>;

    /// OffsetForLeaderEpoch (KIP-101, KIP-279): the largest epoch `<= epoch` in the
    /// cache and its end offset (the start of the next epoch, or the log end for the
    /// latest). `None` when every cached epoch is larger (or the cache is empty).
    fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)>;

    /// The epoch cache as (epoch, start offset), oldest first.
    fn epochs(&self) -> Vec<(u32, u64)>;
}

/// A new, empty memory log.
pub(crate) fn memory_log() -> Box<dyn Log> {
    todo!()
}
/// Opens a segment log; `true` when recovery cut data.
pub(crate) fn open_segment_log(
    path: &std::path::Path,
    fsync: crate::config::FsyncPolicy,
) -> Result<(Box<dyn Log>, bool)> {
    let _ = (path, fsync);
    todo!()
}

/// Placeholder.
#[derive(Debug)]
pub(crate) struct DirLock;
impl DirLock {
    pub(crate) fn acquire(dir: &std::path::Path) -> Result<DirLock> {
        let _ = dir;
        todo!()
    }
}
