//! Per-partition queues of records: the open batch still filling, sealed batches
//! waiting to be sent, and what is in flight.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::ids::TopicPartition;
use crate::record::{Batch, BatchBuilder, Record, BATCH_HEADER_LEN};
use crate::sync::Arc;
use crate::Error;

use super::DeliverySlot;

/// A batch still taking records.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    builder: BatchBuilder,
    slots: Vec<Arc<DeliverySlot>>,
    bytes: usize,
    pub(crate) created: Instant,
}

/// A sealed batch, encoded once, with the deliveries of its records.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) batch: Batch,
    pub(crate) slots: Vec<Arc<DeliverySlot>>,
    pub(crate) bytes: usize,
    pub(crate) created: Instant,
    pub(crate) base_seq: Option<i32>,
    /// The last retriable error, reported if the delivery timeout runs out.
    pub(crate) last_error: Option<Error>,
}

/// One partition's queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub(crate) open: Option<OpenBatch>,
    pub(crate) ready: VecDeque<Sealed>,
    pub(crate) in_flight: usize,
    next_seq: i32,
    /// Not before this instant (backoff after a retriable error).
    pub(crate) retry_at: Option<Instant>,
    /// A batch came back for a retry: nothing new goes out until every batch in
    /// flight has returned, so retries go out in sequence order.
    pub(crate) retrying: bool,
    /// The leader lost this partition's sequence state (an unclean election, a
    /// replica restarted empty): start over under a fresh producer id once nothing
    /// is in flight, as Kafka's KIP-360 epoch bump.
    pub(crate) needs_reset: bool,
    /// The producer id after such a reset.
    producer_id: Option<u64>,
}

impl Queue {
    /// Seals the open batch, giving it the next sequence numbers.
    pub(crate) fn seal(&mut self, producer_id: Option<u64>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let count = open.slots.len() as i32;
        let base_seq = producer_id.map(|_| {
            let s = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(count);
            s
        });
        let mut batch = open.builder.finish(base_seq);
        if let (Some(pid), Some(seq)) = (self.producer_id, base_seq) {
            batch = batch.with_producer(pid, seq);
        }
        self.ready.push_back(Sealed {
            batch,
            slots: open.slots,
            bytes: open.bytes,
            created: open.created,
            base_seq,
            last_error: None,
        });
    }

    /// Starts the partition's sequences over under `producer_id`: every batch not
    /// yet acknowledged is restamped in order from sequence 0.
    pub(crate) fn reset_sequences(&mut self, producer_id: u64) {
        let mut seq = 0i32;
        for s in self.ready.iter_mut() {
            s.batch = s.batch.with_producer(producer_id, seq);
            s.base_seq = Some(seq);
            seq = seq.wrapping_add(s.slots.len() as i32);
        }
        self.next_seq = seq;
        self.producer_id = Some(producer_id);
        self.needs_reset = false;
    }

    /// Puts a batch back for another try, keeping sequence order.
    pub(crate) fn requeue(&mut self, sealed: Sealed) {
        let pos = match sealed.base_seq {
            Some(seq) => self
                .ready
                .iter()
                .position(|s| s.base_seq.is_some_and(|x| x > seq))
                .unwrap_or(self.ready.len()),
            None => 0,
        };
        self.ready.insert(pos, sealed);
    }
}

/// Everything the accumulator holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) queues: HashMap<TopicPartition, Queue>,
    /// The sticky partition of each topic for unkeyed records.
    sticky: HashMap<String, u32>,
    sticky_next: u32,
    /// Bytes of records not yet acknowledged (buffer.memory).
    pub(crate) buffered: usize,
    /// Records sent and not yet completed.
    pub(crate) outstanding: u64,
    /// Callers inside `flush`: linger is ignored while any waits.
    pub(crate) flushes: u32,
    pub(crate) closed: bool,
}

impl State {
    /// The partition unkeyed records of `topic` go to now.
    pub(crate) fn sticky_partition(&mut self, topic: &str, partitions: u32) -> u32 {
        if let Some(p) = self.sticky.get(topic) {
            if *p < partitions {
                return *p;
            }
        }
        let p = self.sticky_next % partitions;
        self.sticky_next = self.sticky_next.wrapping_add(1);
        self.sticky.insert(topic.to_string(), p);
        p
    }

    /// Moves unkeyed records of the topic on to another partition once its batch
    /// is sealed, as Kafka's sticky partitioner does.
    fn unstick(&mut self, tp: &TopicPartition) {
        if self.sticky.get(&tp.topic) == Some(&tp.partition) {
            self.sticky.remove(&tp.topic);
        }
    }

    /// Adds one record; true when a batch became full.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        tp: TopicPartition,
        record: &Record,
        timestamp: u64,
        size: usize,
        slot: Arc<DeliverySlot>,
        batch_size: usize,
        producer_id: Option<u64>,
        max_message_bytes: usize,
    ) -> bool {
        let limit = batch_size.min(max_message_bytes.saturating_sub(BATCH_HEADER_LEN));
        let mut full = false;
        let q = self.queues.entry(tp.clone()).or_default();
        if q.open
            .as_ref()
            .is_some_and(|o| !o.slots.is_empty() && o.bytes + size > limit)
        {
            q.seal(producer_id);
            full = true;
        }
        let open = q.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::new(producer_id, batch_size.max(size) + BATCH_HEADER_LEN),
            slots: Vec::new(),
            bytes: 0,
            created: Instant::now(),
        });
        open.builder.push(record, timestamp);
        open.slots.push(slot);
        open.bytes += size;
        if open.bytes >= limit {
            q.seal(producer_id);
            full = true;
        }
        self.buffered += size;
        self.outstanding += 1;
        if full {
            self.unstick(&tp);
        }
        full
    }

    /// Seals open batches that waited `linger` (all of them when flushing or closing).
    pub(crate) fn seal_due(
        &mut self,
        now: Instant,
        linger: std::time::Duration,
        producer_id: Option<u64>,
    ) {
        let all = self.flushes > 0 || self.closed;
        let mut sealed = Vec::new();
        for (tp, q) in self.queues.iter_mut() {
            if q.open
                .as_ref()
                .is_some_and(|o| all || o.created + linger <= now)
            {
                q.seal(producer_id);
                sealed.push(tp.clone());
            }
        }
        for tp in sealed {
            self.unstick(&tp);
        }
    }

    /// The earliest moment an open batch's linger runs out.
    pub(crate) fn next_linger_deadline(&self, linger: std::time::Duration) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| q.open.as_ref().map(|o| o.created + linger))
            .min()
    }

    /// Bookkeeping once a batch is finished, either way.
    pub(crate) fn release(&mut self, bytes: usize, records: usize) {
        self.buffered = self.buffered.saturating_sub(bytes);
        self.outstanding = self.outstanding.saturating_sub(records as u64);
    }
}
