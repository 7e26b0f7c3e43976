//! Storage: the [`Log`] trait, a memory log and a segment log on disk, recovery,
//! and the data directory lock. The byte layout is in `docs/FORMAT.md`.

use std::fmt;
use std::time::Duration;

use crate::record::Batch;
use crate::{Error, Result};

mod chunks;
mod deleter;
mod epoch;
mod files;
mod index;
mod lock;
mod memory;
pub(crate) mod model;
mod recovery;
mod segment;
#[cfg(test)]
pub(crate) mod tests;

pub(crate) use chunks::Chunks;
pub(crate) use deleter::Deleter;
#[allow(unused_imports)] // Taken by the cluster builder for each data_dir.
pub(crate) use lock::DirLock;
pub(crate) use memory::MemoryLog;
#[allow(unused_imports)] // Logged by the broker when it opens its partitions.
pub(crate) use recovery::RecoveryReport;
pub(crate) use segment::{SegmentConfig, SegmentLog};

/// One partition replica's log: dense offsets, whole batches, a leader-epoch cache.
///
/// Offsets are batch-granular at the edges: truncation keeps whole batches, reads
/// return whole batches.
#[allow(dead_code)] // The replica core and the broker call every method.
pub(crate) trait Log: Send + fmt::Debug {
    /// Appends a batch whose base offset must equal [`Log::log_end_offset`]
    /// (a mismatch is a broken invariant of the caller: `Error::Corrupt` is returned
    /// and nothing is written). A batch whose leader epoch is newer than the latest in
    /// the epoch cache starts a new epoch entry at its base offset.
    fn append(&mut self, batch: &Batch) -> Result<()>;

    /// Appends `batch` as [`Batch::stamped`] with `base_offset` and `leader_epoch`
    /// would make it, as [`append`](Log::append) does. The memory log stamps a copy
    /// (into its broker's chunks); the segment log writes the stamped header and the
    /// rest of the batch to its file without copying it.
    fn append_stamped(&mut self, batch: &Batch, base_offset: u64, leader_epoch: u32) -> Result<()>;

    /// Appends `batches` in order, each as [`append_stamped`](Log::append_stamped)
    /// would, in as few writes as the storage allows: the segment log writes all
    /// that go to one segment file in one vectored write, without copying them
    /// (a write's kernel cost is mostly per call and per page-cache page, so one
    /// write of many batches costs far less than one each).
    ///
    /// Each batch's base offset must follow on from the one before, the first from
    /// the log end. On an error a prefix of whole batches may be in the log:
    /// [`log_end_offset`](Log::log_end_offset) tells how far it got.
    fn append_all(&mut self, batches: &[Stamped<'_>]) -> Result<()> {
        for s in batches {
            if s.is_as_is() {
                // Stamping would change nothing: no stamped copy (the memory log
                // keeps a follower's fetched batch as it came).
                self.append(s.batch)?;
            } else {
                self.append_stamped(s.batch, s.base_offset, s.leader_epoch)?;
            }
        }
        Ok(())
    }

    /// Whether [`append_all`](Log::append_all) of many batches costs less than one
    /// append each: true for the segment log (one write for them all), false in
    /// memory, where a run would only hold back the answers to its first requests.
    fn writes_runs_at_once(&self) -> bool {
        false
    }

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

    /// Deletes whole old segments (never the active one), oldest first, while the
    /// oldest can go: the log stays at least `retention_bytes` large without it
    /// (Kafka's `retention.bytes` rule: the size never drops below the limit because
    /// of retention), or its newest record is more than `retention` older than
    /// `now_ms` (ms since the Unix epoch; Kafka's `retention.ms`). Advances the log
    /// start offset and moves the epoch cache's first entry up to it. Returns the new
    /// log start offset. Only segments wholly below `below` go (the high watermark,
    /// as Kafka's: records not yet committed are never deleted). The memory log
    /// treats each batch as a segment and its last batch as the active one.
    fn apply_retention(
        &mut self,
        retention_bytes: Option<u64>,
        retention: Option<Duration>,
        now_ms: u64,
        below: u64,
    ) -> Result<u64>;

    /// Deletes whole old segments (never the active one) whose records all lie below
    /// `offset`, oldest first: retention with every segment due, bounded by
    /// `offset`. What the compaction of `__consumer_offsets` frees once the snapshot
    /// written at `offset` is committed, and what a follower frees when its
    /// leader's log start moved. Returns the new log start offset.
    fn delete_below(&mut self, offset: u64) -> Result<u64> {
        // A size limit of 0 makes every segment due.
        self.apply_retention(Some(0), None, 0, offset)
    }

    /// Starts a new segment at the log end unless the active one is empty, so that
    /// everything before what is appended next can be deleted as whole segments.
    /// The memory log keeps each batch apart already.
    fn roll_segment(&mut self) -> Result<()> {
        Ok(())
    }

    /// The still open files of segments that retention, truncation or a reset
    /// removed. Their names are gone already (a crash leaves nothing of them), but
    /// closing the last handle of an unlinked file frees its pages and first waits
    /// for any still being written back, which took half a second for 256 MiB here:
    /// the owner closes them off its thread (see [`Deleter`]). Empty in memory.
    fn take_retired(&mut self) -> Vec<std::fs::File> {
        Vec::new()
    }

    /// Records that `epoch` starts at `start_offset` (a new leader does this at its log
    /// end). Ignored if `epoch` is not newer than the latest epoch. Persisted.
    fn assign_epoch(&mut self, epoch: u32, start_offset: u64) -> Result<()>;

    /// The newest epoch in the cache.
    fn latest_epoch(&self) -> Option<u32>;

    /// The oldest epoch in the cache.
    fn earliest_epoch(&self) -> Option<u32>;

    /// OffsetForLeaderEpoch (KIP-101, KIP-279): the largest epoch `<= epoch` in the
    /// cache and its end offset (the start of the next epoch, or the log end for the
    /// latest). `None` when every cached epoch is larger (or the cache is empty).
    fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)>;

    /// The epoch cache as (epoch, start offset), oldest first.
    fn epochs(&self) -> Vec<(u32, u64)>;

    /// `segment.bytes` of the topic, learned after the log was opened (a broker
    /// recovers its logs before the controller tells it their topic configs).
    fn set_segment_bytes(&mut self, bytes: u64) {
        let _ = bytes;
    }
}

/// A batch to append with the base offset and leader epoch it is written with
/// (see [`Log::append_all`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamped<'a> {
    pub(crate) batch: &'a Batch,
    pub(crate) base_offset: u64,
    pub(crate) leader_epoch: u32,
    /// The batch goes in as it is, stamp and CRC included.
    as_is: bool,
}

impl<'a> Stamped<'a> {
    /// `batch` to be stamped with `base_offset` and `leader_epoch` (a leader
    /// appends it): the log writes those and the batch's CRC (see
    /// [`Batch::stamped`]), whatever the batch carries.
    pub(crate) fn new(batch: &'a Batch, base_offset: u64, leader_epoch: u32) -> Self {
        Stamped {
            batch,
            base_offset,
            leader_epoch,
            as_is: false,
        }
    }

    /// `batch` with the base offset, leader epoch and CRC it carries (a follower
    /// appends what its leader stamped).
    pub(crate) fn as_is(batch: &'a Batch) -> Self {
        Stamped {
            batch,
            base_offset: batch.base_offset(),
            leader_epoch: batch.leader_epoch(),
            as_is: true,
        }
    }

    /// Whether the batch goes in as it is ([`as_is`](Self::as_is)). A leader's
    /// batch is stamped even when it carries its offset and epoch already: a
    /// producer's batch has no CRC yet.
    pub(crate) fn is_as_is(&self) -> bool {
        self.as_is
    }

    /// Offset after the batch's last record, as stamped.
    pub(crate) fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.batch.record_count())
    }
}

/// A new, empty memory log copying into its broker's `chunks`.
pub(crate) fn memory_log(chunks: Chunks) -> Box<dyn Log> {
    Box::new(MemoryLog::with_chunks(chunks))
}

/// Opens (recovering) a segment log; `true` when recovery cut data from it.
pub(crate) fn open_segment_log(
    path: &std::path::Path,
    fsync: crate::config::FsyncPolicy,
) -> Result<(Box<dyn Log>, bool)> {
    let config = SegmentConfig {
        fsync,
        ..SegmentConfig::default()
    };
    let (log, report) = SegmentLog::open(path, config)?;
    Ok((Box::new(log), report.truncated_bytes > 0))
}

/// The file in a partition directory that names the creation of the topic its
/// records belong to (the controller's topic id, in decimal): a directory left by
/// a deleted topic is told from one of the topic created again under its name.
const TOPIC_ID_FILE: &str = "topic.id";

/// Records in `dir` that its records belong to the topic created with `topic_id`.
pub(crate) fn write_topic_id(
    dir: &std::path::Path,
    topic_id: u64,
    fsync: crate::config::FsyncPolicy,
) -> Result<()> {
    let text = format!("{topic_id}\n");
    files::write_atomically(dir, TOPIC_ID_FILE, text.as_bytes(), fsync.syncs())
}

/// The topic id recorded in `dir`, if one was and it reads back whole. `None`
/// (a directory written before topic ids, or a damaged file) matches any id.
pub(crate) fn read_topic_id(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(TOPIC_ID_FILE))
        .ok()?
        .trim_end()
        .parse()
        .ok()
}

/// The file in a partition directory that says its replica lost records it held
/// (recovery, or the scrub after it, cut them) and the controller has not yet
/// acknowledged hearing so. Recovery leaves other files alone (`docs/FORMAT.md`).
const LOSS_MARKER: &str = "unreported-loss";

/// Records in `dir` that its replica lost records, until [`loss_reported`] clears
/// it. A broker that dies before its registration reaches the controller would
/// otherwise find nothing left to cut at its next start and report no loss, and
/// the controller could elect the replica without the records it cut (rule 5).
pub(crate) fn mark_loss(dir: &std::path::Path, fsync: crate::config::FsyncPolicy) -> Result<()> {
    files::write_atomically(dir, LOSS_MARKER, b"", fsync.syncs())
}

/// Whether an earlier start of the replica in `dir` lost records and the
/// controller has not acknowledged it.
pub(crate) fn has_unreported_loss(dir: &std::path::Path) -> bool {
    dir.join(LOSS_MARKER).exists()
}

/// The controller has heard of the loss in `dir` (and keeps it in its metadata).
pub(crate) fn loss_reported(dir: &std::path::Path) -> Result<()> {
    files::remove_if_exists(&dir.join(LOSS_MARKER))
}

/// The error for an append whose batch does not start at the log end: a broken
/// invariant of the caller, refused before anything is written.
fn append_offset_error(location: String, base_offset: u64, log_end: u64) -> Error {
    Error::Corrupt {
        location,
        offset: Some(base_offset),
        reason: format!(
            "append of a batch at base offset {base_offset} to a log ending at {log_end}; offsets must stay dense",
        ),
    }
}

/// `Error::OffsetOutOfRange` for a log, which knows no topic or partition: the replica
/// that owns the log fills those in.
fn out_of_range(offset: u64, log_start: u64, log_end: u64) -> Error {
    Error::OffsetOutOfRange {
        topic: String::new(),
        partition: 0,
        offset,
        log_start,
        log_end,
    }
}

/// The retention rule for the oldest segment (or batch), shared by both logs: delete
/// it when the log stays at least `retention_bytes` large without it, or when its
/// newest record is older than `retention` at `now_ms`.
fn retention_deletes(
    log_size: u64,
    segment_size: u64,
    segment_max_timestamp: u64,
    retention_bytes: Option<u64>,
    retention: Option<Duration>,
    now_ms: u64,
) -> bool {
    let by_size = retention_bytes.is_some_and(|limit| log_size - segment_size >= limit);
    let by_age = retention.is_some_and(|age| {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(segment_max_timestamp) > age_ms
    });
    by_size || by_age
}
