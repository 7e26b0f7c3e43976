//! Test support: a seeded PRNG (no `rand` dependency), batch builders, and harnesses
//! that let one behaviour suite drive both logs.

use bytes::Bytes;
use tempfile::TempDir;

use crate::record::{Batch, Record};
use crate::storage::model::Choices;
pub(crate) use crate::storage::model::{batch_of, random_record};
use crate::storage::{Log, MemoryLog, RecoveryReport, SegmentConfig, SegmentLog};

/// SplitMix64: tiny, seedable, good enough to drive random operation sequences.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

impl Choices for SplitMix64 {
    fn below(&mut self, n: u64) -> u64 {
        SplitMix64::below(self, n)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        SplitMix64::bytes(self, n)
    }
}

/// A batch of `count` records with `value_len`-byte values, timestamped `timestamp`.
pub(crate) fn simple_batch(
    base_offset: u64,
    count: u32,
    value_len: usize,
    epoch: u32,
    timestamp: u64,
) -> Batch {
    let records: Vec<Record> = (0..count)
        .map(|i| {
            Record::new(vec![(base_offset as u8).wrapping_add(i as u8); value_len])
                .timestamp(timestamp)
        })
        .collect();
    batch_of(&records, base_offset, epoch)
}

/// Appends `n` batches of `per_batch` records each at the log end.
pub(crate) fn append_batches(
    log: &mut dyn Log,
    n: usize,
    per_batch: u32,
    value_len: usize,
    epoch: u32,
) -> Vec<Batch> {
    (0..n)
        .map(|_| {
            let b = simple_batch(log.log_end_offset(), per_batch, value_len, epoch, 1_000);
            log.append(&b).unwrap();
            b
        })
        .collect()
}

/// Everything in the log, read in one go.
pub(crate) fn read_all(log: &dyn Log) -> Vec<Batch> {
    log.read(log.log_start_offset(), usize::MAX).unwrap()
}

/// One of the two logs, with a way to close and reopen it.
pub(crate) trait Harness {
    fn log(&mut self) -> &mut dyn Log;
    /// Closes and reopens the log (memory: nothing happens, it has nowhere to go).
    fn reopen(&mut self);
}

pub(crate) struct MemoryHarness(MemoryLog);

impl MemoryHarness {
    pub(crate) fn new() -> Self {
        MemoryHarness(MemoryLog::new())
    }
}

impl Harness for MemoryHarness {
    fn log(&mut self) -> &mut dyn Log {
        &mut self.0
    }
    fn reopen(&mut self) {}
}

pub(crate) struct SegmentHarness {
    pub(crate) dir: TempDir,
    pub(crate) config: SegmentConfig,
    pub(crate) log: Option<SegmentLog>,
    pub(crate) last_report: RecoveryReport,
}

impl SegmentHarness {
    pub(crate) fn new(config: SegmentConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (log, report) = SegmentLog::open(dir.path(), config).unwrap();
        SegmentHarness {
            dir,
            config,
            log: Some(log),
            last_report: report,
        }
    }

    /// Segment log with one batch per segment: retention then removes exactly what the
    /// memory log removes, so the shared suite can expect the same results.
    pub(crate) fn one_batch_per_segment() -> Self {
        Self::new(SegmentConfig {
            segment_bytes: 1,
            index_interval_bytes: 4096,
            ..SegmentConfig::default()
        })
    }

    pub(crate) fn segment_log(&mut self) -> &mut SegmentLog {
        self.log.as_mut().unwrap()
    }
}

impl Harness for SegmentHarness {
    fn log(&mut self) -> &mut dyn Log {
        self.segment_log()
    }
    fn reopen(&mut self) {
        drop(self.log.take());
        let (log, report) = SegmentLog::open(self.dir.path(), self.config).unwrap();
        self.log = Some(log);
        self.last_report = report;
    }
}

/// The bytes of every batch, for byte-identity comparisons.
pub(crate) fn bytes_of(batches: &[Batch]) -> Vec<Bytes> {
    batches.iter().map(|b| b.as_bytes().clone()).collect()
}
