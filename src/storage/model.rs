//! The storage model check: the memory log, the segment log and a plain `Vec` of
//! batches, driven by the same operation sequence, must never disagree. The
//! sequence comes from [`Choices`]: a seeded PRNG in `tests/model.rs`, the fuzzer's
//! bytes in `fuzz/fuzz_targets/storage_model.rs` (through `crate::fuzz_support`).

use std::path::Path;

use crate::record::{Batch, BatchBuilder, Record};
use crate::storage::{Log, MemoryLog, RecoveryReport, SegmentConfig, SegmentLog};
use crate::Error;

/// Where a model run takes its decisions from.
pub(crate) trait Choices {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64;

    /// `n` bytes.
    fn bytes(&mut self, n: usize) -> Vec<u8>;

    /// Whether the run goes on: a fuzz input that is used up ends it.
    fn more(&self) -> bool {
        true
    }

    /// True `percent` times out of 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random record: sometimes keyed, sometimes with headers.
pub(crate) fn random_record(rng: &mut impl Choices, max_value: usize) -> Record {
    let value_len = rng.below(max_value as u64 + 1) as usize;
    let mut r = Record::new(rng.bytes(value_len)).timestamp(1_000 + rng.below(1_000));
    if rng.chance(50) {
        let key_len = rng.below(16) as usize;
        r = r.key(rng.bytes(key_len));
    }
    for i in 0..rng.below(3) {
        let value_len = rng.below(8) as usize;
        r = r.header(format!("h{i}"), rng.bytes(value_len));
    }
    r
}

/// A sealed batch of `records`, stamped at `base_offset` in `epoch`.
pub(crate) fn batch_of(records: &[Record], base_offset: u64, epoch: u32) -> Batch {
    let mut builder = BatchBuilder::new(None, 256);
    for r in records {
        builder.push(r, 7);
    }
    builder.finish(None).stamped(base_offset, epoch)
}

/// The model: a start offset and the batches, nothing clever.
#[derive(Default)]
struct Model {
    start: u64,
    batches: Vec<Batch>,
    records: Vec<Vec<Record>>,
}

impl Model {
    fn end(&self) -> u64 {
        self.batches.last().map_or(self.start, Batch::next_offset)
    }

    fn read(&self, from: u64, max_bytes: usize) -> Option<Vec<Batch>> {
        if from < self.start || from > self.end() {
            return None;
        }
        let mut out = Vec::new();
        let mut total = 0;
        for b in self.batches.iter().filter(|b| b.next_offset() > from) {
            if !out.is_empty() && total + b.len() > max_bytes {
                break;
            }
            total += b.len();
            out.push(b.clone());
        }
        Some(out)
    }

    fn truncate(&mut self, offset: u64) {
        let keep = self
            .batches
            .iter()
            .take_while(|b| b.next_offset() <= offset)
            .count();
        self.batches.truncate(keep);
        self.records.truncate(keep);
    }
}

fn check_read(log: &dyn Log, model: &Model, from: u64, max_bytes: usize, what: &str) {
    match (log.read(from, max_bytes), model.read(from, max_bytes)) {
        (Ok(got), Some(expected)) => assert_eq!(got, expected, "{what}: read({from}, {max_bytes})"),
        (Err(Error::OffsetOutOfRange { .. }), None) => {}
        (got, expected) => {
            panic!("{what}: read({from}, {max_bytes}) gave {got:?}, model {expected:?}")
        }
    }
}

fn open(dir: &Path, config: SegmentConfig) -> (SegmentLog, RecoveryReport) {
    SegmentLog::open(dir, config).expect("open the segment log")
}

/// Runs up to `ops` operations (append, read, truncate, new epoch, close and
/// reopen, reset) on a memory log, a segment log in the empty directory `dir` and
/// the model, asserting after each that all three agree; `label` names the run in
/// panic messages.
///
/// # Panics
///
/// On any disagreement: that is the point.
pub(crate) fn run(rng: &mut impl Choices, dir: &Path, ops: usize, label: &str) {
    let config = SegmentConfig {
        segment_bytes: 200 + rng.below(3000),
        index_interval_bytes: 1 + rng.below(1000) as usize,
        ..SegmentConfig::default()
    };
    let mut memory = MemoryLog::new();
    let mut disk = open(dir, config).0;
    let mut model = Model::default();
    let mut epoch = 0u32;
    for step in 0..ops {
        if !rng.more() {
            break;
        }
        let what = format!("{label} step {step}");
        match rng.below(100) {
            0..=44 => {
                if rng.chance(10) {
                    epoch += 1;
                }
                let records: Vec<Record> = (0..1 + rng.below(4))
                    .map(|_| random_record(rng, 120))
                    .collect();
                let batch = batch_of(&records, model.end(), epoch);
                memory.append(&batch).unwrap();
                disk.append(&batch).unwrap();
                model.batches.push(batch);
                model.records.push(records);
            }
            45..=74 => {
                let from = model.start + rng.below(model.end() - model.start + 3);
                let max_bytes = rng.below(1200) as usize;
                check_read(&memory, &model, from, max_bytes, &what);
                check_read(&disk, &model, from, max_bytes, &what);
            }
            75..=84 => {
                let to = model.start + rng.below(model.end() - model.start + 2);
                memory.truncate(to).unwrap();
                disk.truncate(to).unwrap();
                model.truncate(to);
            }
            85..=89 => {
                epoch += 1;
                let at = model.end();
                memory.assign_epoch(epoch, at).unwrap();
                disk.assign_epoch(epoch, at).unwrap();
            }
            90..=97 => {
                // Nothing crashed, so recovery must find nothing to cut or rebuild.
                drop(disk);
                let (log, report) = open(dir, config);
                disk = log;
                assert!(report.is_clean(), "{what}: {report:?}");
            }
            _ => {
                let at = model.end() + rng.below(3);
                memory.reset(at).unwrap();
                disk.reset(at).unwrap();
                model = Model {
                    start: at,
                    ..Model::default()
                };
            }
        }
        for log in [&memory as &dyn Log, &disk] {
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (model.start, model.end()),
                "{what}"
            );
        }
        assert_eq!(memory.epochs(), disk.epochs(), "{what}: epochs");
        assert_eq!(memory.size_bytes(), disk.size_bytes(), "{what}: size");
        let probe = rng.below(u64::from(epoch) + 2) as u32;
        assert_eq!(
            memory.end_offset_for_epoch(probe),
            disk.end_offset_for_epoch(probe),
            "{what}"
        );
    }
    // Finally every record, decoded, equals what was pushed.
    let all = disk.read(disk.log_start_offset(), usize::MAX).unwrap();
    assert_eq!(
        all.len(),
        model.records.len(),
        "{label}: batches at the end"
    );
    for (batch, records) in all.iter().zip(&model.records) {
        assert_eq!(batch.record_count() as usize, records.len(), "{label}");
        for (got, pushed) in batch.records().zip(records) {
            assert_eq!(got.key, pushed.key, "{label}");
            assert_eq!(got.value, pushed.value, "{label}");
            assert_eq!(got.headers, pushed.headers, "{label}");
            assert_eq!(Some(got.timestamp), pushed.timestamp, "{label}");
        }
    }
}
