//! The [`Producer`]: a per-partition accumulator (`linger.ms`, `batch.size`), one
//! sender thread that keeps several batches in flight, retries within
//! `delivery.timeout.ms`, and idempotence by producer id and sequence. A calling
//! thread whose batch is ready to go (full, or a record with nothing in flight and
//! `linger.ms` 0) hands it to the leader itself, one thread hop less.

mod accumulator;
mod delivery;
mod dispatch;
mod handoff;
mod partitioner;
mod sender;

use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;

use crate::cluster::ClusterInner;
use crate::config::{Acks, ProducerConfig};
use crate::protocol::ClientRequest;
use crate::record::{BatchBuilder, Record, BATCH_HEADER_LEN};
use crate::sync::{Arc, Mutex};
use crate::{Error, Result};

use accumulator::{BatchLimits, TopicIndex, TopicLimits};
pub(crate) use delivery::DeliverySlot;
pub use delivery::{Delivery, RecordMetadata};
use handoff::{Handoff, Refused};
pub(crate) use partitioner::partition_for_key;

/// What the sender thread and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    cluster: Arc<ClusterInner>,
    config: ProducerConfig,
    /// Set when the producer is idempotent (enable.idempotence with acks=all).
    producer_id: Option<u64>,
    /// The accumulator, its progress condvar and the sender thread's wake-up.
    handoff: Handoff<Sender<()>>,
    /// Where leaders answer produce requests: the sender thread's channel.
    reply_to: Sender<crate::protocol::ProduceResponse>,
    /// The same answers' receiving end: a calling thread that sends a batch takes
    /// the answers waiting there first, under the lock it holds anyway.
    responses: crossbeam_channel::Receiver<crate::protocol::ProduceResponse>,
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
        let (reply_to, responses) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            cluster,
            config,
            producer_id,
            handoff: Handoff::new(wake),
            reply_to,
            responses: responses.clone(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("replog-producer".into())
            .spawn(move || sender::Sender::new(s, wake_rx, responses).run())
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

    fn send_inner(&self, topic: &str, partition: Option<u32>, record: Record) -> Delivery {
        let shared = self.shared();
        let size = BatchBuilder::encoded_len(&record);
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let config = &shared.config;
        let mut appended = None;
        // Backpressure: waits while buffer.memory is full.
        let sent = shared.handoff.send(
            size,
            config.buffer_memory,
            || Instant::now() + config.delivery_timeout,
            |state| self.check(state, topic, partition, &record, size),
            |state, checked| {
                let limits = BatchLimits {
                    batch_size: config.batch_size,
                    max_message_bytes: checked.max_message_bytes,
                    producer_id: shared.producer_id,
                };
                let a = state.append(
                    checked.topic,
                    checked.partition,
                    checked.partitions,
                    &record,
                    timestamp,
                    size,
                    limits,
                );
                // Without linger a record goes out at once unless its partition has
                // a batch in flight: then the answer to that one wakes the sender.
                let lone = a.idle && config.linger.is_zero();
                // This thread sends what is ready itself when it can: one hop less.
                // What it cannot send wakes the sender thread.
                let mut left = false;
                if let Some(old) = a.sealed_elsewhere {
                    left |= !self.dispatch_now(state, checked.topic, old, false);
                }
                if a.full || lone {
                    left |= !self.dispatch_now(state, checked.topic, a.slot.partition, lone);
                }
                appended = Some(a);
                left
            },
        );
        match (sent, appended) {
            (Ok(()), Some(a)) => Delivery::new(a.slot, a.index),
            (Err(Refused::Rejected(e)), _) => Delivery::failed(e),
            (Err(Refused::Closed), _) | (Ok(()), None) => Delivery::failed(Error::ShuttingDown {
                what: "the producer".into(),
            }),
            (Err(Refused::BufferFull), _) => Delivery::failed(Error::Timeout {
                what: format!("buffer.memory of {} bytes to free up", config.buffer_memory),
                after: config.delivery_timeout,
            }),
        }
    }

    /// Checks `record` against its topic under the accumulator lock: the topic
    /// exists, the partition too, the record fits `max.message.bytes`. The topic's
    /// limits are cached in the accumulator and read from the metadata image again
    /// only once it changed (a `send` then takes no lock on the image).
    fn check(
        &self,
        state: &mut accumulator::State,
        topic: &str,
        partition: Option<u32>,
        record: &Record,
        size: usize,
    ) -> Result<Checked> {
        let metadata = &self.shared().cluster.metadata;
        let version = metadata.version();
        let cached = state
            .topics
            .find(topic)
            .and_then(|at| Some((at, state.topics.limits(at)?)))
            .filter(|(_, l)| l.version == version);
        let (at, limits) = match cached {
            Some(c) => c,
            None => {
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
                (at, limits)
            }
        };
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

    /// Sends `partition`'s sealed batches from the calling thread (sealing its open
    /// batch first when `seal_open` and nothing of the partition is in flight),
    /// under the accumulator lock, up to `max.in.flight`; with `acks=0` their
    /// deliveries complete at hand-off. Not while a retry is being sequenced, nor
    /// while a flush or close runs. True when nothing ready is left for the sender
    /// thread.
    fn dispatch_now(
        &self,
        state: &mut accumulator::State,
        topic: TopicIndex,
        partition: u32,
        seal_open: bool,
    ) -> bool {
        let shared = self.shared();
        if state.flushes > 0 || state.closed {
            return false;
        }
        self.take_answers(state);
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
        let left = q.ready.is_empty();
        d.finish(state);
        left
    }

    /// Completes the answers that came back meanwhile, under the lock this thread
    /// holds anyway: the sender thread would otherwise take the lock for each, and
    /// every hold of it makes a `send` give up its core. A failed batch is left to
    /// the sender thread's retries, which it must hear of.
    fn take_answers(&self, state: &mut accumulator::State) {
        let shared = self.shared();
        while let Ok(r) = shared.responses.try_recv() {
            if r.result.is_err() {
                shared.handoff.wake_sender();
            }
            sender::on_response(shared, state, r);
        }
    }

    /// Sends every buffered record now (ignoring `linger.ms`) and waits until each
    /// has been acknowledged or has failed.
    ///
    /// # Errors
    ///
    /// None today; failures are reported per record through each [`Delivery`].
    pub fn flush(&self) -> Result<()> {
        self.shared().handoff.flush();
        Ok(())
    }
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

/// Milliseconds since the Unix epoch (record timestamps, `CreateTime`).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(all(test, loom))]
mod tests;

#[cfg(all(test, not(loom)))]
mod check_tests {
    use crate::{Cluster, Error, ProducerConfig, Record, TopicConfig};

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
