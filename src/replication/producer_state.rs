//! Idempotent producers (rule 8): per producer id, the last batches it wrote, so a
//! retried batch is answered with its original offset and never appended twice.

use std::collections::{HashMap, VecDeque};

use crate::record::Batch;

/// How many batches per producer are remembered: Kafka's 5, hence at most 5 in flight.
pub(crate) const BATCHES_REMEMBERED: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    first_seq: i32,
    last_seq: i32,
    base_offset: u64,
    last_offset: u64,
}

/// The verdict on an incoming idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New and in order: append it.
    Append,
    /// Written before, at these offsets: answer with them, append nothing.
    Duplicate { base_offset: u64, last_offset: u64 },
    /// A gap or a sequence from the past that is no longer remembered.
    OutOfOrder { expected: i32 },
}

/// Per partition: producer id → its last batches.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerStateTable {
    producers: HashMap<u64, VecDeque<Entry>>,
}

impl ProducerStateTable {
    /// Checks a batch from `producer_id` starting at `base_seq` with `count` records.
    pub(crate) fn check(&self, producer_id: u64, base_seq: i32, count: u32) -> SequenceCheck {
        let Some(entries) = self.producers.get(&producer_id) else {
            // Unknown producer (new, or its batches aged out of the log): accept.
            return SequenceCheck::Append;
        };
        let last_seq = base_seq.wrapping_add(count as i32 - 1);
        if let Some(e) = entries
            .iter()
            .find(|e| e.first_seq == base_seq && e.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                base_offset: e.base_offset,
                last_offset: e.last_offset,
            };
        }
        let expected = entries.back().map_or(0, |e| e.last_seq.wrapping_add(1));
        if base_seq == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Records an appended batch (leader or follower alike, so a new leader knows).
    pub(crate) fn record(&mut self, batch: &Batch) {
        self.record_at(batch, batch.base_offset());
    }

    /// As [`record`](Self::record), for a batch appended at `base_offset` (stamped
    /// as it was written, not in memory).
    pub(crate) fn record_at(&mut self, batch: &Batch, base_offset: u64) {
        let (Some(pid), Some(seq)) = (batch.producer_id(), batch.base_sequence()) else {
            return;
        };
        let count = batch.record_count();
        let entries = self.producers.entry(pid).or_default();
        entries.push_back(Entry {
            first_seq: seq,
            last_seq: seq.wrapping_add(count as i32 - 1),
            base_offset,
            last_offset: base_offset + u64::from(count) - 1,
        });
        while entries.len() > BATCHES_REMEMBERED {
            entries.pop_front();
        }
    }

    /// Forgets everything (before a rebuild from the log after truncation).
    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }
}
