//! Model test: the memory log, the segment log and a plain `Vec` of batches, driven by
//! the same seeded random operation sequences, must never disagree.

use super::support::*;
use crate::record::{Batch, Record};
use crate::storage::{Log, MemoryLog, SegmentConfig};
use crate::Error;

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

fn run(seed: u64, ops: usize) {
    let mut rng = SplitMix64::new(seed);
    let config = SegmentConfig {
        segment_bytes: 200 + rng.below(3000),
        index_interval_bytes: 1 + rng.below(1000) as usize,
        ..SegmentConfig::default()
    };
    let mut memory = MemoryLog::new();
    let mut disk = SegmentHarness::new(config);
    let mut model = Model::default();
    let mut epoch = 0u32;
    for step in 0..ops {
        let what = format!("seed {seed} step {step}");
        match rng.below(100) {
            0..=44 => {
                if rng.chance(10) {
                    epoch += 1;
                }
                let records: Vec<Record> = (0..1 + rng.below(4))
                    .map(|_| random_record(&mut rng, 120))
                    .collect();
                let batch = batch_of(&records, model.end(), epoch);
                memory.append(&batch).unwrap();
                disk.log().append(&batch).unwrap();
                model.batches.push(batch);
                model.records.push(records);
            }
            45..=74 => {
                let from = model.start + rng.below(model.end() - model.start + 3);
                let max_bytes = rng.below(1200) as usize;
                check_read(&memory, &model, from, max_bytes, &what);
                check_read(disk.log(), &model, from, max_bytes, &what);
            }
            75..=84 => {
                let to = model.start + rng.below(model.end() - model.start + 2);
                memory.truncate(to).unwrap();
                disk.log().truncate(to).unwrap();
                model.truncate(to);
            }
            85..=89 => {
                epoch += 1;
                let at = model.end();
                memory.assign_epoch(epoch, at).unwrap();
                disk.log().assign_epoch(epoch, at).unwrap();
            }
            90..=97 => {
                // Nothing crashed, so recovery must find nothing to cut or rebuild.
                disk.reopen();
                assert!(
                    disk.last_report.is_clean(),
                    "{what}: {:?}",
                    disk.last_report
                );
            }
            _ => {
                let at = model.end() + rng.below(3);
                memory.reset(at).unwrap();
                disk.log().reset(at).unwrap();
                model = Model {
                    start: at,
                    ..Model::default()
                };
            }
        }
        for log in [&memory as &dyn Log, disk.log()] {
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (model.start, model.end()),
                "{what}"
            );
        }
        assert_eq!(memory.epochs(), disk.log().epochs(), "{what}: epochs");
        assert_eq!(memory.size_bytes(), disk.log().size_bytes(), "{what}: size");
        let probe = rng.below(u64::from(epoch) + 2) as u32;
        assert_eq!(
            memory.end_offset_for_epoch(probe),
            disk.log().end_offset_for_epoch(probe),
            "{what}"
        );
    }
    // Finally every record, decoded, equals what was pushed.
    let all = read_all(disk.log());
    for (batch, records) in all.iter().zip(&model.records) {
        for (got, pushed) in batch.records().zip(records) {
            assert_eq!(got.key, pushed.key, "seed {seed}");
            assert_eq!(got.value, pushed.value, "seed {seed}");
            assert_eq!(got.headers, pushed.headers, "seed {seed}");
            assert_eq!(Some(got.timestamp), pushed.timestamp, "seed {seed}");
        }
    }
}

#[test]
fn memory_log_segment_log_and_a_vec_agree_on_random_operation_sequences() {
    for seed in 0..200 {
        run(seed, 200);
    }
}
