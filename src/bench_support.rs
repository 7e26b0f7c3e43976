//! Hidden support for `benches/storage.rs`: the batch and log types are crate-private,
//! so the benches reach them through these thin wrappers. Not part of the API; may
//! change at any time.

use std::path::Path;

use crate::record::{Batch, BatchBuilder, Record};
use crate::storage::{Log, MemoryLog, SegmentConfig, SegmentLog};
use crate::{FsyncPolicy, Result};

/// Sealed batches at consecutive offsets from 0, all of the same shape.
#[derive(Debug)]
pub struct BenchBatches {
    batches: Vec<Batch>,
    records_per_batch: u32,
}

impl BenchBatches {
    /// `count` batches of about `batch_bytes` each, filled with records of
    /// `value_len`-byte values (no key, no headers).
    pub fn new(count: usize, batch_bytes: usize, value_len: usize) -> Self {
        let record = Record::new(vec![0xAB; value_len]).timestamp(1);
        let per_batch = (batch_bytes.saturating_sub(crate::record::BATCH_HEADER_LEN)
            / BatchBuilder::encoded_len(&record))
        .max(1);
        let mut builder = BatchBuilder::new(None, batch_bytes);
        for _ in 0..per_batch {
            builder.push(&record, 1);
        }
        let template = builder.finish(None);
        let records_per_batch = template.record_count();
        let batches = (0..count as u64)
            .map(|i| {
                template
                    .clone()
                    .stamped(i * u64::from(records_per_batch), 0)
            })
            .collect();
        BenchBatches {
            batches,
            records_per_batch,
        }
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Records in each batch.
    pub fn records_per_batch(&self) -> u32 {
        self.records_per_batch
    }

    /// Encoded bytes of batch `i` (every batch has the same length).
    pub fn bytes(&self, i: usize) -> &[u8] {
        self.batches[i].as_bytes()
    }
}

/// A memory or segment log behind the crate's `Log` trait.
#[derive(Debug)]
pub struct BenchLog {
    log: Box<dyn Log>,
}

impl BenchLog {
    /// An empty memory log.
    pub fn memory() -> Self {
        BenchLog {
            log: Box::new(MemoryLog::new()),
        }
    }

    /// A segment log in `dir` with `segment.bytes` = `segment_bytes`, the default index
    /// interval, and `FsyncPolicy::Never`.
    ///
    /// # Errors
    ///
    /// `Error::Io` when the directory cannot be opened.
    pub fn segment(dir: &Path, segment_bytes: u64) -> Result<Self> {
        let config = SegmentConfig {
            segment_bytes,
            fsync: FsyncPolicy::Never,
            ..SegmentConfig::default()
        };
        let (log, _) = SegmentLog::open(dir, config)?;
        Ok(BenchLog { log: Box::new(log) })
    }

    /// Appends batch `i` of `batches`, which must start at the log end.
    ///
    /// # Errors
    ///
    /// As `Log::append`.
    pub fn append(&mut self, batches: &BenchBatches, i: usize) -> Result<()> {
        self.log.append(&batches.batches[i])
    }

    /// Reads from `from`, up to `max_bytes`; returns (batches, bytes) read.
    ///
    /// # Errors
    ///
    /// As `Log::read`.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<(usize, usize)> {
        let batches = self.log.read(from, max_bytes)?;
        Ok((batches.len(), batches.iter().map(Batch::len).sum()))
    }

    /// Empties the log, restarting it at offset 0.
    ///
    /// # Errors
    ///
    /// As `Log::reset`.
    pub fn reset(&mut self) -> Result<()> {
        self.log.reset(0)
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }
}

/// The clock `Producer::send` stamps records with (milliseconds since the Unix
/// epoch), for a benchmark ceiling that must take timestamps the same way.
pub fn now_ms() -> u64 {
    crate::wall_clock::now_ms()
}
