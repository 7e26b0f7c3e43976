//! The memory log: the same batches as on disk, in a `Vec`, gone with the process
//! (as redb's `InMemoryBackend` beside its file backend). The batches a leader
//! stamps are copied into its broker's [`Chunks`].

use std::time::Duration;

use super::chunks::Chunks;
use super::epoch::EpochCache;
use super::{append_offset_error, out_of_range, retention_deletes, Log};
use crate::record::Batch;
use crate::Result;

/// A partition replica's log held in memory.
///
/// Retention treats each batch as a segment and the last batch as the active one:
/// it drops whole batches from the front and never the last, as the segment log
/// never deletes its active segment.
#[derive(Debug, Default)]
pub(crate) struct MemoryLog {
    batches: Vec<Batch>,
    /// Log start offset: the first batch's base offset, or where an empty log starts.
    start: u64,
    /// Log end offset.
    end: u64,
    size: u64,
    epochs: EpochCache,
    /// Where the batches this log stamps are copied to (see [`Chunks`]).
    chunks: Chunks,
}

impl MemoryLog {
    /// An empty log starting at offset 0, with chunks of its own.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An empty log starting at offset 0 that copies into `chunks` (its broker's).
    pub(crate) fn with_chunks(chunks: Chunks) -> Self {
        MemoryLog {
            chunks,
            ..MemoryLog::default()
        }
    }

    /// Index of the batch holding `offset` (which must be below the end).
    fn batch_holding(&self, offset: u64) -> usize {
        self.batches.partition_point(|b| b.next_offset() <= offset)
    }

    /// An append must start at the log end; nothing is written otherwise.
    fn check_at_end(&self, base_offset: u64) -> Result<()> {
        if base_offset != self.end {
            return Err(append_offset_error(
                "memory log".into(),
                base_offset,
                self.end,
            ));
        }
        Ok(())
    }

    /// Appends `batch`, which starts at the log end.
    fn push(&mut self, batch: Batch) {
        self.epochs
            .assign(batch.leader_epoch(), batch.base_offset());
        self.end = batch.next_offset();
        self.size += batch.len() as u64;
        self.batches.push(batch);
    }

    fn drop_front(&mut self, count: usize) {
        for b in self.batches.drain(..count) {
            self.size -= b.len() as u64;
        }
        self.start = self.batches.first().map_or(self.end, Batch::base_offset);
    }
}

impl Log for MemoryLog {
    fn append(&mut self, batch: &Batch) -> Result<()> {
        self.check_at_end(batch.base_offset())?;
        self.push(batch.clone());
        Ok(())
    }

    fn append_stamped(&mut self, batch: &Batch, base_offset: u64, leader_epoch: u32) -> Result<()> {
        // Checked before the copy: a refused append leaves nothing in a chunk.
        self.check_at_end(base_offset)?;
        let chunks = &self.chunks;
        let stamped = batch.stamped_with(base_offset, leader_epoch, |parts| chunks.copy(parts));
        self.push(stamped);
        Ok(())
    }

    fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        if from < self.start || from > self.end {
            return Err(out_of_range(from, self.start, self.end));
        }
        let mut out = Vec::new();
        let mut total = 0usize;
        for b in &self.batches[self.batch_holding(from)..] {
            if !out.is_empty() && total + b.len() > max_bytes {
                break;
            }
            total += b.len();
            out.push(b.clone());
        }
        Ok(out)
    }

    fn truncate(&mut self, offset: u64) -> Result<()> {
        if offset >= self.end {
            // An epoch starting at the end holds no batch and goes (see SegmentLog).
            self.epochs.truncate_from_end(self.end);
            return Ok(());
        }
        let keep = self.batch_holding(offset);
        for b in self.batches.drain(keep..) {
            self.size -= b.len() as u64;
        }
        self.end = self.batches.last().map_or(self.start, Batch::next_offset);
        self.epochs.truncate_from_end(self.end);
        Ok(())
    }

    fn reset(&mut self, offset: u64) -> Result<()> {
        *self = MemoryLog {
            start: offset,
            end: offset,
            ..MemoryLog::with_chunks(self.chunks.clone())
        };
        Ok(())
    }

    fn log_start_offset(&self) -> u64 {
        self.start
    }

    fn log_end_offset(&self) -> u64 {
        self.end
    }

    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn apply_retention(
        &mut self,
        retention_bytes: Option<u64>,
        retention: Option<Duration>,
        now_ms: u64,
        below: u64,
    ) -> Result<u64> {
        let mut size = self.size;
        let mut drop = 0;
        // Never the last batch: it plays the active segment.
        while drop + 1 < self.batches.len() {
            let b = &self.batches[drop];
            if b.next_offset() > below
                || !retention_deletes(
                    size,
                    b.len() as u64,
                    b.max_timestamp(),
                    retention_bytes,
                    retention,
                    now_ms,
                )
            {
                break;
            }
            size -= b.len() as u64;
            drop += 1;
        }
        if drop > 0 {
            self.drop_front(drop);
            self.epochs.truncate_from_start(self.start);
        }
        Ok(self.start)
    }

    fn assign_epoch(&mut self, epoch: u32, start_offset: u64) -> Result<()> {
        self.epochs.assign(epoch, start_offset);
        Ok(())
    }

    fn latest_epoch(&self) -> Option<u32> {
        self.epochs.latest()
    }

    fn earliest_epoch(&self) -> Option<u32> {
        self.epochs.earliest()
    }

    fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        self.epochs.end_offset_for(epoch, self.end)
    }

    fn epochs(&self) -> Vec<(u32, u64)> {
        self.epochs.entries().to_vec()
    }
}
