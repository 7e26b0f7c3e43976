//! The [`Producer`]: a per-partition accumulator (`linger.ms`, `batch.size`), one
//! sender thread that keeps several batches in flight, retries within
//! `delivery.timeout.ms`, and idempotence by producer id and sequence. A calling
//! thread whose batch is ready to go (full, or a record with nothing in flight and
//! `linger.ms` 0) hands it to the leader itself, one thread hop less.

mod accumulator;
mod answers;
mod delivery;
mod dispatch;
mod handoff;
mod partitioner;
mod pool;
mod sender;
mod slot_ref;

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::cluster::ClusterInner;
use crate::config::{Acks, ProducerConfig};
use crate::protocol::{ClientRequest, ProduceResponse};
use crate::record::{BatchBuilder, Record, BATCH_HEADER_LEN};
use crate::sync::{Arc, Mutex};
use crate::{Error, Result};

use accumulator::{BatchLimits, TopicIndex, TopicLimits};
pub(crate) use delivery::DeliverySlot;
pub use delivery::{Delivery, RecordMetadata};
use handoff::{Handoff, Refused};
pub(crate) use partitioner::partition_for_key;
pub(crate) use slot_ref::SlotRef;

/// What the sender thread and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    cluster: Arc<ClusterInner>,
    config: ProducerConfig,
    /// Set when the producer is idempotent (enable.idempotence with acks=all).
    producer_id: Option<u64>,
    /// Batches are sealed with their CRC: the brokers keep their logs on disk
    /// (see `BatchLimits::crc_at_seal`).
    crc_at_seal: bool,
    /// The accumulator, its progress condvar and the sender thread's wake-up.
    handoff: Handoff<Sender<()>>,
    /// Where leaders leave their answers, taken by the sender thread or by a
    /// calling thread under the lock it holds anyway.
    answers: Arc<LeaderAnswers>,
}

/// Where partition leaders leave a producer's answers.
pub(crate) type LeaderAnswers = answers::Answers<ProduceResponse, AnswerWake>;

/// How an answer the producer waits for gets settled: by the leader that gave
/// it, when the accumulator lock is free at that moment, else by the sender
/// thread. Settling it at once sends what it frees (the next batch of its
/// partition) without waking the sender thread, which on a small machine costs
/// a context switch or two per batch.
#[derive(Debug)]
pub(crate) struct AnswerWake {
    sender: Sender<()>,
    /// Weak: the answers queue is part of what it points to.
    shared: std::sync::Weak<Shared>,
}

impl handoff::Wake for AnswerWake {
    fn wake(&self) {
        self.sender.wake();
    }

    fn answered(&self) {
        let settled = self
            .shared
            .upgrade()
            .is_some_and(|shared| sender::settle(&shared));
        if !settled {
            self.sender.wake();
        }
    }
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // close(): send what is buffered, wait for the answers (each bounded by
        // delivery.timeout.ms), then stop the sender thread.
        self.shared.handoff.close();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// Sends records to topics; usable from any thread (`Clone + Send + Sync`).
///
/// Records for one partition are accumulated into a batch until it holds
/// `batch.size` bytes or has waited `linger.ms`; a sender thread keeps up to
/// `max.in.flight.requests.per.connection` batches per partition in flight and
/// retries retriable failures (leader moved, not enough replicas, timeout) until
/// `delivery.timeout.ms`. With idempotence (the default, with `acks=all`) a retry
/// never writes a record twice.
///
/// # Durability
///
/// See [`Acks`]: a [`Delivery`] resolves `Ok` only when the record is as safe as
/// the configured `acks` promises.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// use replog::{Acks, Cluster, ProducerConfig, Record, TopicConfig};
/// let cluster = Cluster::builder().build()?;
/// cluster.create_topic("clicks", TopicConfig::new(3, 3).min_insync_replicas(2))?;
/// let producer = cluster.producer(ProducerConfig::new().acks(Acks::All))?;
/// let d = producer.send("clicks", Record::new("page=/home").key("user-7"));
/// producer.flush()?;
/// assert!(d.wait()?.offset.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl Producer {
    pub(crate) fn new(cluster: Arc<ClusterInner>, config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        let producer_id = if config.idempotence && config.acks == Acks::All {
            Some(cluster.ask_controller(|reply| ClientRequest::AllocateProducerId { reply })?)
        } else {
            None
        };
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let crc_at_seal = cluster.builder.data_dir.is_some();
        let shared = Arc::new_cyclic(|me| Shared {
            cluster,
            config,
            producer_id,
            crc_at_seal,
            handoff: Handoff::new(wake.clone()),
            answers: Arc::new(answers::Answers::new(AnswerWake {
                sender: wake,
                shared: me.clone(),
            })),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("replog-producer".into())
            .spawn(move || sender::Sender::new(s, wake_rx).run())
            .map_err(|e| Error::io("producer thread", e))?;
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Sends a record. A keyed record goes to the partition Kafka's default
    /// partitioner picks (murmur2 of the key), so equal keys stay in order; an
    /// unkeyed record goes to a partition that sticks until `batch.size` bytes have
    /// gone to it (Kafka's built-in partitioner since 3.3, KIP-794).
    ///
    /// Blocks only while `buffer.memory` is full (backpressure).
    ///
    /// # Errors
    ///
    /// Reported through the [`Delivery`]: `UnknownTopic`, `RecordTooLarge` at once
    /// (other records are unaffected), the rest after retries.
    pub fn send(&self, topic: &str, record: Record) -> Delivery {
        self.send_inner(topic, None, record)
    }

    /// Sends a record to one partition.
    ///
    /// # Errors
    ///
    /// Reported through the [`Delivery`]: `UnknownTopic`, `UnknownPartition`,
    /// `RecordTooLarge` at once, the rest after retries.
    pub fn send_to(&self, topic: &str, partition: u32, record: Record) -> Delivery {
        self.send_inner(topic, Some(partition), record)
    }

    // The per-record path. `Handoff::send`, `State::append` and `check` are
    // `#[inline]`: in a default release build (16 codegen units) they stayed calls,
    // and inlining them cut the calling thread's CPU per record by about 10%.
    fn send_inner(&self, topic: &str, partition: Option<u32>, record: Record) -> Delivery {
        let shared = self.shared();
        let size = BatchBuilder::encoded_len(&record);
        let timestamp = record.timestamp.unwrap_or_else(crate::wall_clock::now_ms);
        let config = &shared.config;
        // Backpressure: waits while buffer.memory is full.
        let sent = shared.handoff.send(
            size,
            config.buffer_memory,
            || Instant::now() + config.delivery_timeout,
            |state| self.check(state, topic, partition, &record, size),
            |state, checked| {
                let (a, left) = self.append(state, checked, &record, timestamp, size);
                (left, Delivery::new(a.slot, a.index))
            },
        );
        sent.unwrap_or_else(|r| refused(config, r))
    }

    /// Sends `records` to `topic`: the same as [`send`](Self::send) for each in
    /// turn, in order, but cheaper per record, as librdkafka's
    /// `rd_kafka_produce_batch`: the producer's lock is taken once for many records
    /// rather than once for each. Returns one [`Delivery`] per record, in order.
    ///
    /// The records are not one unit: each is partitioned as `send` would (keyed by
    /// the murmur2 of its key, unkeyed sticky), they go out in batches of
    /// `batch.size` as they fill, and each succeeds or fails on its own. Records
    /// for one partition keep their order. Blocks only while `buffer.memory` is
    /// full; other threads' sends go on between the lock holds.
    ///
    /// `records` is read 128 at a time, each group before any of it is appended
    /// and without the producer's lock held (so it may block, or send through this
    /// producer itself); the group's records are dropped after it is appended,
    /// also without the lock (a value's owner may send from its drop code). A
    /// source that yields records slowly is better served by one `send` each: a
    /// record waits here until its group is complete.
    ///
    /// # Errors
    ///
    /// Reported through each record's [`Delivery`], as for `send`.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> replog::Result<()> {
    /// use replog::{Cluster, ProducerConfig, Record, TopicConfig};
    /// let cluster = Cluster::builder().build()?;
    /// cluster.create_topic("t", TopicConfig::new(1, 3))?;
    /// let producer = cluster.producer(ProducerConfig::new())?;
    /// let deliveries = producer.send_all("t", (0..100).map(|i| Record::new(format!("{i}"))));
    /// for (i, d) in deliveries.into_iter().enumerate() {
    ///     assert_eq!(d.wait()?.offset, Some(i as u64));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn send_all<I>(&self, topic: &str, records: I) -> Vec<Delivery>
    where
        I: IntoIterator<Item = Record>,
    {
        let shared = self.shared();
        let config = &shared.config;
        let records = records.into_iter();
        let mut out = Vec::with_capacity(records.size_hint().0);
        shared.handoff.send_many(
            records,
            SEND_ALL_PER_LOCK,
            BatchBuilder::encoded_len,
            config.buffer_memory,
            || Instant::now() + config.delivery_timeout,
            // Once per lock hold: the clock (a hold lasts microseconds, timestamps
            // have milliseconds) and the topic, checked by the first record.
            |_| Hold {
                timestamp: crate::wall_clock::now_ms(),
                topic: None,
            },
            |state, hold, record, size| {
                let (at, limits) = match hold.topic {
                    Some(t) => t,
                    None => *hold.topic.insert(self.check_topic(state, topic)?),
                };
                check_record(topic, at, limits, None, record, size)
            },
            |state, hold, record, checked, size| {
                let timestamp = record.timestamp.unwrap_or(hold.timestamp);
                let (a, left) = self.append(state, checked, record, timestamp, size);
                (left, Delivery::new(a.slot, a.index))
            },
            |r| refused(config, r),
            &mut out,
        );
        out
    }

    /// Appends a checked record under the accumulator lock and sends what is ready
    /// from this thread when it can. Returns where the record went and whether the
    /// sender thread must be woken for what is left.
    // Inlined into `send` and `send_all`, once per record: see `send_inner`.
    #[inline]
    fn append(
        &self,
        state: &mut accumulator::State,
        checked: Checked,
        record: &Record,
        timestamp: u64,
        size: usize,
    ) -> (accumulator::Appended, bool) {
        let shared = self.shared();
        let config = &shared.config;
        // Answers left since the last look: a partition whose last batch
        // was answered is idle again, and its record can go out at once.
        if shared.answers.maybe_queued() {
            sender::take_answers(shared, state);
        }
        let limits = BatchLimits {
            batch_size: config.batch_size,
            max_message_bytes: checked.max_message_bytes,
            producer_id: shared.producer_id,
            crc_at_seal: shared.crc_at_seal,
        };
        let a = state.append(
            checked.topic,
            checked.partition,
            checked.partitions,
            record,
            timestamp,
            size,
            limits,
        );
        // Without linger a record goes out at once unless its partition has
        // a batch in flight: then it goes once that batch is answered, and
        // that answer must wake the sender.
        let lone = a.idle && config.linger.is_zero();
        if !a.idle && config.linger.is_zero() {
            shared.answers.want();
        }
        // This thread sends what is ready itself when it can: one hop less.
        // What it cannot send wakes the sender thread.
        let mut left = false;
        if let Some(old) = a.sealed_elsewhere {
            left |= !self.dispatch_now(state, checked.topic, old, false);
        }
        if a.full || lone {
            left |= !self.dispatch_now(state, checked.topic, a.slot.partition, lone);
        }
        // A new batch whose linger runs out before the sender thread next
        // looks by itself: it must look again.
        if let Some(created) = a.opened.filter(|_| !config.linger.is_zero()) {
            left |= state
                .sender_wakes_at
                .is_some_and(|at| created + config.linger < at);
        }
        (a, left)
    }

    /// Checks `record` against its topic under the accumulator lock: the topic
    /// exists, the partition too, the record fits `max.message.bytes`. The topic's
    /// limits are cached in the accumulator and read from the metadata image again
    /// only once it changed (a `send` then takes no lock on the image).
    // Inlined into `Producer::send`, once per record: see `send_inner`.
    #[inline]
    fn check(
        &self,
        state: &mut accumulator::State,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        size: usize,
    ) -> Result<Checked> {
        let (at, limits) = self.check_topic(state, topic)?;
        check_record(topic, at, limits, partition, record, size)
    }

    /// The topic's half of [`check`](Self::check): the topic exists; its queues and
    /// current limits.
    #[inline]
    fn check_topic(
        &self,
        state: &mut accumulator::State,
        topic: &str,
    ) -> Result<(TopicIndex, TopicLimits)> {
        let metadata = &self.shared().cluster.metadata;
        let version = metadata.version();
        let cached = state
            .topics
            .find(topic)
            .and_then(|at| Some((at, state.topics.limits(at)?)))
            .filter(|(_, l)| l.version == version);
        if let Some(c) = cached {
            return Ok(c);
        }
        let limits = metadata
            .with(|image| {
                image.topics.get(topic).map(|t| TopicLimits {
                    version,
                    partitions: t.partitions.len() as u32,
                    max_message_bytes: t.config.max_message_bytes,
                })
            })
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_string(),
            })?;
        // Queues only for topics that exist: a name sent to by mistake
        // leaves nothing behind.
        let at = state.topics.index(topic);
        state.topics.at(at).1.limits = Some(limits);
        Ok((at, limits))
    }

    /// Sends `partition`'s sealed batches from the calling thread (sealing its open
    /// batch first when `seal_open` and nothing of the partition is in flight),
    /// under the accumulator lock, up to `max.in.flight`; with `acks=0` their
    /// deliveries complete at hand-off. Not while a retry is being sequenced, nor
    /// while a flush or close runs. True when the sender thread has nothing to do
    /// now: nothing ready is left, or what is left waits for an answer, which
    /// wakes it.
    fn dispatch_now(
        &self,
        state: &mut accumulator::State,
        topic: TopicIndex,
        partition: u32,
        seal_open: bool,
    ) -> bool {
        let shared = self.shared();
        if state.sending_all() {
            return false;
        }
        let accumulator::State {
            topics,
            in_flight,
            next_request,
            ..
        } = state;
        let (topic, t) = topics.at(topic);
        let Some(q) = t.partitions.get_mut(partition as usize) else {
            return false;
        };
        if q.retrying || q.retry_at.is_some() || q.needs_reset {
            return false;
        }
        if seal_open && q.ready.is_empty() && q.in_flight == 0 {
            q.seal(shared.producer_id);
        }
        let image = shared.cluster.metadata.get();
        let mut d = dispatch::Dispatch::new(shared, &image, Instant::now());
        d.send_queue(topic, partition, q, in_flight, next_request);
        // Held back only by `max.in.flight`: `send_queue` asked for the answers, and
        // the first one wakes the sender thread, which could do nothing before it.
        let left = q.ready.is_empty() || q.in_flight >= shared.config.max_in_flight;
        d.finish(state);
        left
    }

    /// Sends every buffered record now (ignoring `linger.ms`) and waits until each
    /// has been acknowledged or has failed.
    ///
    /// # Errors
    ///
    /// None today; failures are reported per record through each [`Delivery`].
    pub fn flush(&self) -> Result<()> {
        let shared = self.shared();
        shared.handoff.flush(|state| {
            // The answers this flush asked for at once may be needed no more: the
            // sender thread's own rule says. Left wanted, every leader's answer
            // would take the accumulator lock until the sender thread next looks,
            // and a calling thread sending meanwhile would find it taken.
            if !state.needs_answers(shared.config.linger, Instant::now()) {
                shared.answers.set_wanted(false);
            }
        });
        Ok(())
    }
}

/// How many records `send_all` appends under one hold of the accumulator lock:
/// about one batch of 100-byte records, a few microseconds, so the sender thread
/// and other callers wait no longer for the lock than that.
const SEND_ALL_PER_LOCK: usize = 128;

/// The [`Delivery`] of a record that `Handoff` refused.
fn refused(config: &ProducerConfig, r: Refused<Error>) -> Delivery {
    match r {
        Refused::Rejected(e) => Delivery::failed(e),
        Refused::Closed => Delivery::failed(Error::ShuttingDown {
            what: "the producer".into(),
        }),
        Refused::BufferFull => Delivery::failed(Error::Timeout {
            what: format!("buffer.memory of {} bytes to free up", config.buffer_memory),
            after: config.delivery_timeout,
        }),
    }
}

/// The record's half of [`Producer::check`], against its topic's `limits`: the
/// partition exists, the record fits `max.message.bytes`.
#[inline]
fn check_record(
    topic: &str,
    at: TopicIndex,
    limits: TopicLimits,
    partition: Option<u32>,
    record: &Record,
    size: usize,
) -> Result<Checked> {
    let n = limits.partitions;
    let partition = match partition {
        Some(p) if p >= n => {
            return Err(Error::UnknownPartition {
                topic: topic.to_string(),
                partition: p,
                partitions: n,
            })
        }
        Some(p) => Some(p),
        // Keyed: Kafka's default partitioner; unkeyed: the sticky partition.
        None => record.key.as_ref().map(|k| partition_for_key(k, n)),
    };
    let max = limits.max_message_bytes;
    if size + BATCH_HEADER_LEN > max {
        return Err(Error::RecordTooLarge {
            topic: topic.to_string(),
            size: size + BATCH_HEADER_LEN,
            max,
        });
    }
    Ok(Checked {
        topic: at,
        partition,
        partitions: n,
        max_message_bytes: max,
    })
}

/// What `send_all`'s records share while the accumulator lock is held.
#[derive(Debug)]
struct Hold {
    /// The timestamp of records without their own.
    timestamp: u64,
    /// The topic, once a record checked it.
    topic: Option<(TopicIndex, TopicLimits)>,
}

/// A record that passed [`Producer::check`]: where it goes and its batch limit.
#[derive(Clone, Copy, Debug)]
struct Checked {
    topic: TopicIndex,
    /// `None`: the topic's sticky partition.
    partition: Option<u32>,
    partitions: u32,
    max_message_bytes: usize,
}

#[cfg(all(test, loom))]
mod tests;

#[cfg(all(test, not(loom)))]
mod check_tests {
    use std::time::{Duration, Instant};

    use crate::{Acks, Cluster, Error, ProducerConfig, Record, TopicConfig};

    /// Far above what each case takes, far below the second the sender thread
    /// would sleep if a wake-up it needed were lost.
    const PROMPTLY: Duration = Duration::from_millis(500);

    fn cluster() -> Cluster {
        let cluster = Cluster::builder().brokers(3).build().unwrap();
        cluster
            .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
            .unwrap();
        cluster
    }

    /// A record that opens a batch goes out when its linger runs out, also when the
    /// sender thread had gone to sleep for longer.
    #[test]
    fn a_lone_record_goes_out_when_its_linger_runs_out() {
        let cluster = cluster();
        let linger = Duration::from_millis(50);
        let producer = cluster
            .producer(ProducerConfig::new().linger(linger))
            .unwrap();
        // Ten in a row: the first few may find the sender awake anyway, woken by
        // the metadata changes of a new cluster.
        for _ in 0..10 {
            let start = Instant::now();
            producer.send("t", Record::new("x")).wait().unwrap();
            let took = start.elapsed();
            assert!(took >= linger, "sent before its linger ran out: {took:?}");
            assert!(took < PROMPTLY, "{took:?} for a linger of {linger:?}");
        }
    }

    /// A leader settles answers on its own thread only when the accumulator lock
    /// is free at that moment: it never waits for a producer, and otherwise the
    /// answer is left to the sender thread.
    #[test]
    fn a_leader_settles_answers_only_when_the_accumulator_lock_is_free() {
        let cluster = cluster();
        let producer = cluster.producer(ProducerConfig::new()).unwrap();
        let shared = producer.shared();
        let held = shared.handoff.lock();
        assert!(!super::sender::settle(shared), "settled under a held lock");
        drop(held);
        assert!(super::sender::settle(shared));
        // And the producer works on as before.
        let meta = producer.send("t", Record::new("x")).wait().unwrap();
        assert_eq!(meta.offset, Some(0));
    }

    /// With `linger.ms` 0, records that arrive while their partition's batch is in
    /// flight go out together once it is answered: each writer's next record
    /// follows its previous one's answer without waiting for the sender thread to
    /// wake by itself.
    #[test]
    fn records_held_behind_a_batch_in_flight_go_out_on_its_answer() {
        let cluster = cluster();
        let producer = cluster.producer(ProducerConfig::new()).unwrap();
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let sent = Instant::now();
                        producer.send("t", Record::new("x")).wait().unwrap();
                        assert!(sent.elapsed() < PROMPTLY, "{:?}", sent.elapsed());
                    }
                });
            }
        });
        let end = producer.send("t", Record::new("x")).wait().unwrap();
        assert_eq!(
            end.offset,
            Some(200),
            "{:?} for 200 records",
            start.elapsed()
        );
    }

    /// Full batches held back by `max.in.flight` go out on the answers to the
    /// batches ahead of them, with nobody sending any more and the linger far off:
    /// the `send` that could not dispatch them leaves that to the first answer,
    /// which must wake the sender thread.
    #[test]
    fn full_batches_held_back_by_max_in_flight_go_out_on_answers() {
        let cluster = cluster();
        let record = |round: u8| Record::new(vec![round; 100]);
        // Exactly 8 records to a batch: the 8th fills it, and it is sealed at once.
        let size = crate::record::BatchBuilder::encoded_len(&record(0));
        let producer = cluster
            .producer(
                ProducerConfig::new()
                    .linger(Duration::from_secs(30))
                    .batch_size(8 * size)
                    .max_in_flight(1),
            )
            .unwrap();
        for round in 0..5u8 {
            let start = Instant::now();
            // 4 full batches: the first goes out from this thread, the other three
            // wait for an answer each.
            let deliveries: Vec<_> = (0..32).map(|_| producer.send("t", record(round))).collect();
            for d in deliveries {
                d.wait().unwrap();
            }
            let took = start.elapsed();
            assert!(took < PROMPTLY, "round {round}: {took:?}");
        }
    }

    /// Answered batches' buffers are kept and written into again.
    #[test]
    fn answered_batches_buffers_are_reused() {
        let cluster = cluster();
        // A linger far off: the last record's batch stays open until the flush.
        let producer = cluster
            .producer(
                ProducerConfig::new()
                    .batch_size(1000)
                    .linger(Duration::from_secs(30)),
            )
            .unwrap();
        let spare = || producer.shared().handoff.lock().spare_buffers();
        // 20 batches of 8 records; `flush` returns once every answer is taken.
        let sent: Vec<_> = (0..160)
            .map(|_| producer.send("t", Record::new(vec![1u8; 100])))
            .collect();
        producer.flush().unwrap();
        let kept = spare();
        assert!(kept > 0, "no buffer kept");
        // The next batch is written into one of them.
        let next = producer.send("t", Record::new(vec![2u8; 100]));
        assert_eq!(spare(), kept - 1);
        producer.flush().unwrap();
        for (i, d) in sent.into_iter().chain([next]).enumerate() {
            assert_eq!(d.wait().unwrap().offset, Some(i as u64));
        }
    }

    /// After a flush nothing is left to answer: leaders must not go on taking the
    /// accumulator lock for answers nobody waits for.
    #[test]
    fn a_flush_that_leaves_nothing_outstanding_stops_asking_for_answers() {
        let cluster = cluster();
        let producer = cluster
            .producer(
                ProducerConfig::new()
                    .acks(Acks::Leader)
                    .linger(Duration::from_millis(5)),
            )
            .unwrap();
        let sent: Vec<_> = (0..1000)
            .map(|_| producer.send("t", Record::new(vec![1u8; 100])))
            .collect();
        producer.flush().unwrap();
        assert!(
            !producer.shared().answers.is_wanted(),
            "answers still wanted after the flush"
        );
        for d in sent {
            assert!(d.wait().unwrap().offset.is_some());
        }
    }

    /// A `send` blocked on `buffer.memory` goes on as soon as answers free it.
    #[test]
    fn a_send_blocked_on_buffer_memory_goes_on_once_answers_free_it() {
        let cluster = cluster();
        let producer = cluster
            .producer(
                ProducerConfig::new()
                    .acks(Acks::All)
                    .linger(Duration::from_millis(1))
                    .buffer_memory(1000),
            )
            .unwrap();
        let mut deliveries = Vec::new();
        for _ in 0..40 {
            let sent = Instant::now();
            deliveries.push(producer.send("t", Record::new(vec![7u8; 400])));
            assert!(sent.elapsed() < PROMPTLY, "blocked {:?}", sent.elapsed());
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.wait().unwrap().offset, Some(i as u64));
        }
    }

    #[test]
    fn sends_to_unknown_topics_leave_no_queues_behind() {
        let cluster = Cluster::builder().brokers(1).build().unwrap();
        cluster.create_topic("t", TopicConfig::new(1, 1)).unwrap();
        let producer = cluster.producer(ProducerConfig::new()).unwrap();
        for i in 0..100 {
            let e = producer
                .send(&format!("typo-{i}"), Record::new("x"))
                .wait()
                .unwrap_err();
            assert!(matches!(e, Error::UnknownTopic { .. }), "{e}");
        }
        producer.send("t", Record::new("x")).wait().unwrap();
        assert_eq!(producer.shared().handoff.lock().topics.len(), 1);
    }
}
