//! Per-partition queues of records: the open batch still filling, sealed batches
//! waiting to be sent, and what is in flight. Looked up by topic name and partition
//! index, so a `send` allocates nothing but the record's bytes in its batch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::hash::{tail_word, FxHashMap};
use crate::ids::BrokerId;
use crate::record::{Batch, BatchBuilder, Record, BATCH_HEADER_LEN};
use crate::sync::Arc;
use crate::Error;

use super::delivery::Waiters;
use super::dispatch::{InFlight, RETRY_BACKOFF, RETRY_BACKOFF_MAX};
use super::pool::BufferPool;
use super::slot_ref::{SlotRef, SlotRefs};
use super::DeliverySlot;

/// A batch still taking records.
#[derive(Debug)]
pub(crate) struct OpenBatch {
    builder: BatchBuilder,
    /// Sealed with its CRC, rather than leaving it to the leader
    /// (see [`BatchLimits::crc_at_seal`]).
    crc_at_seal: bool,
    slot: SlotRefs,
    count: u32,
    bytes: usize,
    pub(crate) created: Instant,
}

/// A sealed batch, encoded once, with the completion slot its records wait on.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) batch: Batch,
    pub(crate) slot: SlotRef,
    pub(crate) count: u32,
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
    /// Where the batches in flight went: while any is out, later batches go to
    /// the same leader only, so that a batch never overtakes an earlier one (whose
    /// loss a new leader would report as a sequence gap).
    pub(crate) in_flight_leader: Option<BrokerId>,
    next_seq: i32,
    /// Not before this instant (backoff after a retriable error).
    pub(crate) retry_at: Option<Instant>,
    /// Retriable failures in a row: each doubles the pause before the next try.
    failures: u32,
    /// A batch came back for a retry: nothing new goes out until every batch in
    /// flight has returned, so retries go out in sequence order.
    pub(crate) retrying: bool,
    /// The leader lost this partition's sequence state (an unclean election, a
    /// replica restarted empty): start over under a fresh producer id once nothing
    /// is in flight, as Kafka's KIP-360 epoch bump.
    pub(crate) needs_reset: bool,
    /// The producer id after such a reset.
    producer_id: Option<u64>,
    /// Size of the last sealed batch: the next one is likely alike, so its buffer
    /// starts at that size instead of growing by doubling.
    last_batch_bytes: usize,
}

impl Queue {
    /// Seals the open batch if nothing is in flight and its linger ran out, or at
    /// once when `all` (a flush or close waits).
    pub(crate) fn seal_if_due(
        &mut self,
        now: Instant,
        linger: Duration,
        all: bool,
        producer_id: Option<u64>,
    ) {
        if self.in_flight == 0
            && self
                .open
                .as_ref()
                .is_some_and(|o| all || o.created + linger <= now)
        {
            self.seal(producer_id);
        }
    }

    /// When the sender must look at this queue again at the latest, while it has
    /// a batch ready: the oldest one's delivery timeout, or the end of the
    /// partition's retry backoff.
    pub(crate) fn look_by(&self, delivery_timeout: Duration) -> Option<Instant> {
        let front = self.ready.front()?;
        let due = front.created + delivery_timeout;
        Some(self.retry_at.map_or(due, |r| due.min(r)))
    }

    /// A retry is over once nothing of the partition is in flight. Written only
    /// when it changes: a calling thread appends to this queue, and a store on
    /// every look would take its cache line away.
    pub(crate) fn end_retry_if_idle(&mut self) {
        if self.in_flight == 0 && self.retrying {
            self.retrying = false;
        }
    }

    /// Seals the open batch, giving it the next sequence numbers.
    pub(crate) fn seal(&mut self, producer_id: Option<u64>) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.last_batch_bytes = open.bytes;
        let base_seq = producer_id.map(|_| {
            let s = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(open.count as i32);
            s
        });
        let restamp = self.producer_id.zip(base_seq);
        // Restamped, the batch gets its CRC from the leader either way.
        let mut batch = if open.crc_at_seal && restamp.is_none() {
            open.builder.finish(base_seq)
        } else {
            open.builder.finish_crc_later(base_seq)
        };
        if let Some((pid, seq)) = restamp {
            batch = batch.with_producer(pid, seq);
        }
        self.ready.push_back(Sealed {
            batch,
            slot: open.slot.into_ref(),
            count: open.count,
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
            seq = seq.wrapping_add(s.count as i32);
        }
        self.next_seq = seq;
        self.producer_id = Some(producer_id);
        self.needs_reset = false;
    }

    /// Pauses the partition after a retriable failure (at `now`): for
    /// [`RETRY_BACKOFF`] after the first of a row, twice as long after each
    /// further one, at most [`RETRY_BACKOFF_MAX`].
    pub(crate) fn back_off(&mut self, now: Instant) {
        let pause = RETRY_BACKOFF
            .saturating_mul(1 << self.failures.min(16))
            .min(RETRY_BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + pause);
    }

    /// A batch of the partition went through: the next failure starts a new row.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
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

/// What a record is checked against, cached from the metadata image of `version`
/// so that a `send` reads the image only after it changed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TopicLimits {
    /// The metadata version these were read under.
    pub(crate) version: u64,
    /// The topic's partition count.
    pub(crate) partitions: u32,
    /// The topic's `max.message.bytes`.
    pub(crate) max_message_bytes: usize,
}

/// A topic's queues, one per partition, and its sticky partition.
#[derive(Debug, Default)]
pub(crate) struct TopicQueues {
    /// The topic's limits as last read from the metadata.
    pub(crate) limits: Option<TopicLimits>,
    pub(crate) partitions: Vec<Queue>,
    /// Where unkeyed records go until `batch.size` bytes have gone there.
    sticky: Option<u32>,
    /// Bytes of unkeyed records sent to the sticky partition since it was chosen.
    sticky_bytes: usize,
}

/// `a == b` without a call to `memcmp`: it runs once per record, and for names of
/// a few dozen bytes the call costs more than the comparison.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        // In at most three loads each: a loop over the bytes was a twentieth of
        // a `send` with a seven-byte name.
        return tail_word(a) == tail_word(b);
    }
    let word =
        |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    // Whole words from the front, then the last eight bytes, which may overlap
    // the last word compared.
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

/// Where a topic's queues sit in [`Topics`]: valid for the producer's lifetime
/// (topics are never removed from it), so a `send` looks the name up once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TopicIndex(usize);

/// Every topic's queues, by name, in the order they were first used.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    ids: FxHashMap<String, usize>,
    queues: Vec<(String, TopicQueues)>,
    /// The topic found last: a producer mostly sends to one topic after another,
    /// and comparing one name is cheaper than hashing it.
    last: usize,
}

impl Topics {
    /// Where `topic`'s queues are, creating them empty on first use (the name is
    /// copied only then).
    pub(crate) fn index(&mut self, topic: &str) -> TopicIndex {
        if let Some(at) = self.find(topic) {
            return at;
        }
        let i = self.queues.len();
        self.queues
            .push((topic.to_string(), TopicQueues::default()));
        self.ids.insert(topic.to_string(), i);
        TopicIndex(i)
    }

    /// Where `topic`'s queues are, if it was ever used.
    // Inlined into `Producer::send`, once per record: see `send_inner`. A plain
    // `#[inline]` left it a call there.
    #[inline(always)]
    pub(crate) fn find(&mut self, topic: &str) -> Option<TopicIndex> {
        if self
            .queues
            .get(self.last)
            .is_some_and(|(name, _)| same_name(name, topic))
        {
            return Some(TopicIndex(self.last));
        }
        self.find_by_hash(topic)
    }

    /// [`find`](Self::find) for another topic than the last one. Kept out of
    /// line: inlined, it made `find` too large to be inlined into `send`, and the
    /// call cost more than the comparison.
    #[inline(never)]
    fn find_by_hash(&mut self, topic: &str) -> Option<TopicIndex> {
        let i = *self.ids.get(topic)?;
        self.last = i;
        Some(TopicIndex(i))
    }

    /// The limits last cached for the topic at `at`.
    pub(crate) fn limits(&self, at: TopicIndex) -> Option<TopicLimits> {
        self.queues[at.0].1.limits
    }

    /// How many topics have queues.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }

    /// The name and queues at `at`.
    pub(crate) fn at(&mut self, at: TopicIndex) -> (&str, &mut TopicQueues) {
        let (name, t) = &mut self.queues[at.0];
        (name, t)
    }

    /// `topic`'s queues, if it was ever used.
    pub(crate) fn get_mut(&mut self, topic: &str) -> Option<&mut TopicQueues> {
        let at = self.find(topic)?;
        Some(self.at(at).1)
    }

    /// Every topic's queues.
    pub(crate) fn values(&self) -> impl Iterator<Item = &TopicQueues> {
        self.queues.iter().map(|(_, t)| t)
    }

    /// Every topic's queues, to change.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut TopicQueues> {
        self.queues.iter_mut().map(|(_, t)| t)
    }

    /// Every topic's name and queues.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut TopicQueues)> {
        self.queues.iter_mut().map(|(n, t)| (n.as_str(), t))
    }
}

/// Where an appended record went.
#[derive(Debug)]
pub(crate) struct Appended {
    pub(crate) slot: SlotRef,
    pub(crate) index: u32,
    /// This record's partition sealed a full batch: there is work to send now.
    pub(crate) full: bool,
    /// The previous sticky partition, whose full batch was sealed on moving on.
    pub(crate) sealed_elsewhere: Option<u32>,
    /// The partition has nothing in flight or sealed: with `linger.ms` 0 its open
    /// batch goes out as soon as the sender looks.
    pub(crate) idle: bool,
    /// When the record opened a new batch: its creation time, from which its
    /// linger runs.
    pub(crate) opened: Option<Instant>,
}

/// Limits a batch must respect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    pub(crate) batch_size: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) producer_id: Option<u64>,
    /// Whether a batch is sealed with its CRC (brokers on disk) or leaves it to
    /// the leader that stamps it (in memory). A memory leader copies each batch
    /// into its log and computes the CRC on its way; the thread calling `send`
    /// sets the pace there, and this takes a pass over every batch off it. A
    /// segment log writes the batch without touching it, and its broker's
    /// thread, in the kernel for most of its time, sets the pace: the sealing
    /// thread computes the CRC while the batch is still in its cache.
    pub(crate) crc_at_seal: bool,
}

/// Everything the accumulator holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) topics: Topics,
    sticky_next: u32,
    /// Bytes of records not yet acknowledged (buffer.memory).
    pub(crate) buffered: usize,
    /// Records sent and not yet completed.
    pub(crate) outstanding: u64,
    /// Callers inside `flush`: linger is ignored while any waits.
    pub(crate) flushes: u32,
    pub(crate) closed: bool,
    /// Batches sent and not yet answered, by request id.
    pub(crate) in_flight: FxHashMap<u64, InFlight>,
    /// The next request id.
    pub(crate) next_request: u64,
    /// Callers blocked in `send` until buffer memory frees up.
    pub(crate) waiting: u32,
    /// When the sender thread wakes next by itself, as its last pass left it
    /// (`None` before its first pass, which comes at once).
    pub(crate) sender_wakes_at: Option<Instant>,
    /// Leaders' answers taken out of the queue, kept for its capacity.
    pub(crate) answers: Vec<crate::protocol::ProduceResponse>,
    /// The producer's waiting `Delivery` futures, shared with every batch's slot.
    waiters: Arc<Waiters>,
    /// Buffers of answered batches, for new batches to be written into (see
    /// [`State::recycle`]).
    spare: BufferPool,
}

impl State {
    /// Adds one record to `partition` of `topic` (`None`: the topic's sticky
    /// partition, for unkeyed records), which has `partitions` partitions.
    #[allow(clippy::too_many_arguments)]
    // Inlined into `Producer::send`, once per record: see `send_inner`.
    #[inline]
    pub(crate) fn append(
        &mut self,
        topic: TopicIndex,
        partition: Option<u32>,
        partitions: u32,
        record: &Record,
        timestamp: u64,
        size: usize,
        limits: BatchLimits,
    ) -> Appended {
        let limit = limits
            .batch_size
            .min(limits.max_message_bytes.saturating_sub(BATCH_HEADER_LEN));
        let (topic, t) = self.topics.at(topic);
        let mut full = false;
        let mut sealed_elsewhere = None;
        // Unkeyed records stick to one partition until batch.size bytes have gone
        // there, as Kafka's built-in partitioner does since 3.3 (KIP-794): whole
        // batches under load, and with linger.ms 0 a partition keeps taking records
        // across small batches instead of moving on after each.
        let p = match partition {
            Some(p) => p,
            None => match t.sticky {
                Some(p)
                    if p < partitions
                        && (t.sticky_bytes + size <= limit || t.sticky_bytes == 0) =>
                {
                    p
                }
                old => {
                    // Moving on: the old partition's batch cannot take this record,
                    // so it is as full as it gets.
                    let old = old.filter(|&o| o < partitions);
                    if let Some(o) = old {
                        if let Some(q) = t.partitions.get_mut(o as usize) {
                            if q.open
                                .as_ref()
                                .is_some_and(|b| b.count > 0 && b.bytes + size > limit)
                            {
                                q.seal(limits.producer_id);
                                sealed_elsewhere = Some(o);
                            }
                        }
                    }
                    let p = self.sticky_next % partitions;
                    self.sticky_next = self.sticky_next.wrapping_add(1);
                    t.sticky = Some(p);
                    t.sticky_bytes = 0;
                    p
                }
            },
        };
        if partition.is_none() {
            t.sticky_bytes += size;
        }
        if t.partitions.len() <= p as usize {
            t.partitions.resize_with(p as usize + 1, Queue::default);
        }
        let q = &mut t.partitions[p as usize];
        if q.open
            .as_ref()
            .is_some_and(|o| o.count > 0 && o.bytes + size > limit)
        {
            q.seal(limits.producer_id);
            full = true;
        }
        let last = q.last_batch_bytes;
        let mut opened = None;
        let open = q.open.get_or_insert_with(|| OpenBatch {
            crc_at_seal: limits.crc_at_seal,
            // Sized for what is likely to come: the size of the partition's last
            // batch (whole batches under load, so no growing by reallocation and
            // copying), a few records otherwise, not batch.size for a lone record.
            builder: BatchBuilder::reusing(
                self.spare.take(),
                limits.producer_id,
                (size * 8).max(last).min(limit) + BATCH_HEADER_LEN,
            ),
            slot: DeliverySlot::for_batch(topic, p, self.waiters.clone()),
            count: 0,
            bytes: 0,
            created: *opened.insert(Instant::now()),
        });
        open.builder.push(record, timestamp);
        let index = open.count;
        open.count += 1;
        open.bytes += size;
        let slot = open.slot.take();
        if open.bytes >= limit {
            q.seal(limits.producer_id);
            full = true;
        }
        let idle = q.in_flight == 0 && q.ready.is_empty();
        self.buffered += size;
        self.outstanding += 1;
        Appended {
            slot,
            index,
            full,
            sealed_elsewhere,
            idle,
            opened,
        }
    }

    /// Whether a flush or close waits: every open batch goes out now, linger or
    /// not, and the sender thread sends it.
    pub(crate) fn sending_all(&self) -> bool {
        self.flushes > 0 || self.closed
    }

    /// Seals open batches that waited `linger` (all of them when flushing or closing).
    ///
    /// A batch that is not full also waits while an earlier batch of its partition
    /// is in flight (a group commit): records that arrive during one round trip go
    /// out together in the next request instead of one small request each. The
    /// answer to the batch in flight wakes the sender, so the wait is at most one
    /// round trip; a lone record with nothing in flight goes out at once.
    pub(crate) fn seal_due(&mut self, now: Instant, linger: Duration, producer_id: Option<u64>) {
        let all = self.sending_all();
        for t in self.topics.values_mut() {
            for q in t.partitions.iter_mut() {
                q.seal_if_due(now, linger, all, producer_id);
            }
        }
    }

    /// The earliest moment after `now` an open batch's linger runs out. An open
    /// batch held behind one in flight whose linger already ran out (see
    /// [`State::seal_due`]) waits for that batch's answer instead:
    /// [`State::needs_answers`].
    pub(crate) fn next_linger_deadline(&self, linger: Duration, now: Instant) -> Option<Instant> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|q| {
                let due = q.open.as_ref()?.created + linger;
                (q.in_flight == 0 || due > now).then_some(due)
            })
            .min()
    }

    /// Whether someone waits for the answers of batches in flight: a flush, a
    /// close, a caller blocked on buffer memory, or a partition whose sealed
    /// batches, or open batch past its linger, can go out only once an answer
    /// frees the way. Otherwise answers may wait for the next pass.
    pub(crate) fn needs_answers(&self, linger: Duration, now: Instant) -> bool {
        self.flushes > 0
            || self.closed
            || self.waiting > 0
            || self
                .topics
                .values()
                .flat_map(|t| t.partitions.iter())
                .any(|q| {
                    q.in_flight > 0
                        && (!q.ready.is_empty()
                            || q.open.as_ref().is_some_and(|o| o.created + linger <= now))
                })
    }

    /// The queue of `partition` of `topic`.
    pub(crate) fn queue_mut(&mut self, topic: &str, partition: u32) -> Option<&mut Queue> {
        self.topics
            .get_mut(topic)?
            .partitions
            .get_mut(partition as usize)
    }

    /// Keeps the buffer of `batch`, which was answered, for a new batch, if
    /// nothing else holds it any more, it is at most `max_capacity` bytes, and the
    /// kept buffers stay within the pool's bound and, with the buffered records,
    /// within `buffer_memory` bytes. Call it once the batch's records, `held`
    /// bytes of them, no longer count as buffered.
    ///
    /// The buffer counts for no more than those `held` bytes, as it did while it
    /// was in use: its batch header and the end its last record did not fill were
    /// never counted. Otherwise, under backpressure, when the records waiting
    /// fill `buffer_memory` to within a record, an answered batch would free a
    /// few dozen bytes less than its buffer holds, and no buffer would be kept:
    /// every new batch would be a new allocation, written into cold memory.
    pub(crate) fn recycle(
        &mut self,
        batch: Batch,
        held: usize,
        max_capacity: usize,
        buffer_memory: usize,
    ) {
        if let Some(b) = batch.into_spare(max_capacity) {
            let unaccounted = b.capacity().saturating_sub(held);
            let room = buffer_memory.saturating_sub(self.buffered) + unaccounted;
            self.spare.give(b, room);
        }
    }

    /// How many buffers are kept for reuse.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn spare_buffers(&self) -> usize {
        self.spare.len()
    }

    /// Bookkeeping once a batch is finished, either way.
    pub(crate) fn release(&mut self, bytes: usize, records: usize) {
        self.buffered = self.buffered.saturating_sub(bytes);
        self.outstanding = self.outstanding.saturating_sub(records as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        batch_size: 16 * 1024,
        max_message_bytes: 1024 * 1024,
        producer_id: None,
        crc_at_seal: false,
    };

    fn append(state: &mut State) -> Appended {
        let record = Record::new("v");
        let size = BatchBuilder::encoded_len(&record);
        let t = state.topics.index("t");
        state.append(t, Some(0), 1, &record, 0, size, LIMITS)
    }

    #[test]
    fn a_batch_is_sealed_with_its_crc_only_when_its_limits_ask_for_it() {
        for crc_at_seal in [false, true] {
            let mut state = State::default();
            let record = Record::new("v");
            let size = BatchBuilder::encoded_len(&record);
            let t = state.topics.index("t");
            let limits = BatchLimits {
                crc_at_seal,
                ..LIMITS
            };
            state.append(t, Some(0), 1, &record, 0, size, limits);
            let q = state.queue_mut("t", 0).expect("queue");
            q.seal(None);
            let batch = q.ready.pop_front().expect("sealed").batch;
            let decoded = Batch::decode(batch.as_bytes().clone());
            assert_eq!(decoded.is_ok(), crc_at_seal, "crc_at_seal {crc_at_seal}");
        }
    }

    #[test]
    fn topic_names_compare_equal_only_when_every_byte_is_equal() {
        for (a, b, same) in [
            ("", "", true),
            ("t", "t", true),
            ("t", "u", false),
            ("clicks", "click", false),
            // Differing in the first eight bytes, in the tail after them, in the
            // second eight.
            ("orders-eu-1", "xrders-eu-1", false),
            ("orders-europe-1", "orders-europx-1", false),
            ("orders-europe-1", "orders-europe-2", false),
            ("orders-europe-1", "orders-europe-1", true),
            ("exactly-16-bytes", "exactly-16-bytes", true),
            ("exactly-16-bytes", "exactly-16-bytez", false),
        ] {
            assert_eq!(same_name(a, b), same, "{a:?} against {b:?}");
        }
        // Every length up to three words, differing at each position in turn.
        let name = "abcdefghijklmnopqrstuvwx";
        for len in 0..=name.len() {
            let a = &name[..len];
            assert!(same_name(a, a), "{a:?}");
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'.';
                let b = std::str::from_utf8(&b).expect("ASCII");
                assert!(!same_name(a, b), "{a:?} against {b:?}");
            }
        }
    }

    #[test]
    fn a_topic_is_found_by_its_whole_name_not_by_the_one_found_last() {
        let mut topics = Topics::default();
        let a = topics.index("orders-europe-1");
        let b = topics.index("orders-europe-2");
        assert_ne!(a, b);
        assert_eq!(topics.find("orders-europe-2"), Some(b));
        assert_eq!(topics.find("orders-europe-1"), Some(a));
        assert_eq!(topics.find("orders-europe-3"), None);
        assert_eq!(topics.find("orders-europe-1"), Some(a));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_maximum_and_start_over_after_a_success() {
        let mut q = Queue::default();
        let now = Instant::now();
        let pauses = |q: &mut Queue, n: usize| -> Vec<u128> {
            (0..n)
                .map(|_| {
                    q.back_off(now);
                    (q.retry_at.expect("set") - now).as_micros()
                })
                .collect()
        };
        assert_eq!(pauses(&mut q, 6), [250, 500, 1000, 2000, 2000, 2000]);
        q.succeeded();
        assert_eq!(pauses(&mut q, 2), [250, 500]);
        // However long a partition stays unavailable, the pause stays bounded.
        assert_eq!(pauses(&mut q, 100).last(), Some(&2000));
    }

    #[test]
    fn a_lone_record_with_nothing_in_flight_goes_out_at_once() {
        let mut state = State::default();
        let a = append(&mut state);
        assert!(a.idle && !a.full);
        state.seal_due(Instant::now(), Duration::ZERO, None);
        let q = state.queue_mut("t", 0).expect("queue");
        assert_eq!(q.ready.len(), 1);
        assert!(q.open.is_none());
    }

    #[test]
    fn records_behind_a_batch_in_flight_wait_for_its_answer_and_go_out_together() {
        let mut state = State::default();
        append(&mut state);
        let now = Instant::now();
        state.seal_due(now, Duration::ZERO, None);
        let q = state.queue_mut("t", 0).expect("queue");
        q.ready.pop_front().expect("sent");
        q.in_flight = 1;

        for _ in 0..5 {
            assert!(!append(&mut state).idle, "a batch is in flight");
        }
        // Linger (0) ran out and a flush waits, but the batch in flight holds them.
        let later = now + Duration::from_secs(1);
        assert!(
            state.needs_answers(Duration::ZERO, later),
            "only an answer lets them go"
        );
        state.flushes = 1;
        state.seal_due(later, Duration::ZERO, None);
        assert_eq!(state.next_linger_deadline(Duration::ZERO, later), None);
        let q = state.queue_mut("t", 0).expect("queue");
        assert!(q.ready.is_empty());
        assert_eq!(q.open.as_ref().map(|o| o.count), Some(5));

        // Its answer came back: all five go out in one batch.
        q.in_flight = 0;
        assert!(state.next_linger_deadline(Duration::ZERO, later).is_some());
        state.seal_due(now + Duration::from_secs(1), Duration::ZERO, None);
        let q = state.queue_mut("t", 0).expect("queue");
        assert_eq!(q.ready.len(), 1);
        assert_eq!(q.ready[0].count, 5);
    }

    fn append_unkeyed(state: &mut State, partitions: u32) -> (u32, bool, Option<u32>) {
        // 924 encoded bytes: 17 fit in a 16 KiB batch and the 18th does not.
        let record = Record::new(vec![0u8; 900]);
        let size = BatchBuilder::encoded_len(&record);
        let t = state.topics.index("t");
        let a = state.append(t, None, partitions, &record, 0, size, LIMITS);
        (a.slot.partition, a.full, a.sealed_elsewhere)
    }

    #[test]
    fn unkeyed_records_stick_to_a_partition_until_batch_size_bytes_went_there() {
        let mut state = State::default();
        let (first, _, _) = append_unkeyed(&mut state, 3);
        // Small batches sent one by one (linger.ms 0) do not move the sticky
        // partition: only the bytes sent there do.
        let size = BatchBuilder::encoded_len(&Record::new(vec![0u8; 900]));
        let mut bytes = size;
        let mut moved_at = None;
        for i in 0..40 {
            state.seal_due(Instant::now(), Duration::ZERO, None);
            let (p, full, elsewhere) = append_unkeyed(&mut state, 3);
            if p != first {
                moved_at = Some(i);
                // Moving on seals nothing here: every batch went out already.
                assert!(!full && elsewhere.is_none());
                break;
            }
            bytes += size;
        }
        assert!(moved_at.is_some(), "moves on eventually");
        assert!(bytes <= LIMITS.batch_size, "{bytes} bytes before moving on");
        assert!(
            bytes + size > LIMITS.batch_size,
            "moved on early, after {bytes} bytes"
        );
    }

    #[test]
    fn moving_on_seals_the_full_batch_left_behind() {
        let mut state = State::default();
        let (first, _, _) = append_unkeyed(&mut state, 3);
        loop {
            let (p, full, elsewhere) = append_unkeyed(&mut state, 3);
            if p != first {
                assert!(!full, "the new partition's batch stays open");
                assert_eq!(elsewhere, Some(first), "the batch left behind is sealed");
                let q = state.queue_mut("t", first).expect("queue");
                assert_eq!(q.ready.len(), 1);
                assert!(q.open.is_none());
                break;
            }
        }
    }

    #[test]
    fn a_full_batch_goes_out_even_with_a_batch_in_flight() {
        let mut state = State::default();
        append(&mut state);
        state.seal_due(Instant::now(), Duration::ZERO, None);
        let q = state.queue_mut("t", 0).expect("queue");
        q.ready.pop_front().expect("sent");
        q.in_flight = 1;
        let record = Record::new(vec![0u8; 6000]);
        let size = BatchBuilder::encoded_len(&record);
        let mut full = false;
        let t = state.topics.index("t");
        for _ in 0..3 {
            full |= state.append(t, Some(0), 1, &record, 0, size, LIMITS).full;
        }
        assert!(full);
        assert_eq!(state.queue_mut("t", 0).expect("queue").ready.len(), 1);
    }

    #[cfg(not(loom))]
    #[test]
    fn answered_buffers_are_kept_only_within_buffer_memory_beside_what_is_buffered() {
        let record = Record::new("v");
        let held = BatchBuilder::encoded_len(&record);
        let answered = || {
            let mut b = BatchBuilder::new(None, 4096);
            b.push(&record, 0);
            b.finish_crc_later(None)
        };
        let capacity = answered()
            .into_spare(usize::MAX)
            .expect("unique")
            .capacity();
        assert!(capacity > held);
        let buffer_memory = 64 * 1024;
        // Under backpressure: what waits fills buffer memory but for the bytes the
        // answered batch's records freed. Its buffer is kept, though it is larger.
        let mut state = State {
            buffered: buffer_memory - held,
            ..State::default()
        };
        state.recycle(answered(), held, 8192, buffer_memory);
        assert_eq!(state.spare_buffers(), 1);
        // A buffer shared with a log is not kept.
        state.buffered = 0;
        let shared = answered();
        let log_copy = shared.clone();
        state.recycle(shared, held, 8192, buffer_memory);
        assert_eq!(state.spare_buffers(), 1);
        drop(log_copy);
        // A second is kept only while, beside what is buffered, the kept buffer
        // (by its capacity) and the answered batch's records fit.
        state.buffered = buffer_memory - capacity - held + 1;
        state.recycle(answered(), held, 8192, buffer_memory);
        assert_eq!(state.spare_buffers(), 1);
        state.buffered -= 1;
        state.recycle(answered(), held, 8192, buffer_memory);
        assert_eq!(state.spare_buffers(), 2);
    }
}
