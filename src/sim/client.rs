//! Simulated clients. The real `Producer` and `Consumer` run threads; these keep the
//! behaviour that matters to the invariants and run inside the simulation's one
//! thread: per-partition batches, idempotent producer ids and sequences, retries to
//! the leader the published metadata names, `acks` 0, 1 and all; consumers fetching
//! below the high watermark from each partition's leader.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use crate::config::Acks;
use crate::controller::MetadataImage;
use crate::group::OFFSETS_TOPIC;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{
    ClientFetch, ClientFetchResponse, ClientRequest, GroupOp, GroupReply, GroupRequest,
    ProduceReply, ProduceRequest, ProduceResponse, ReadLimit, ReplyTo,
};
use crate::record::{Batch, BatchBuilder, Record};
use crate::Error;

use super::checker::Checker;
use super::rng::Rng;

/// How long a produce request may wait at the leader (`request.timeout.ms`).
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);
/// Extra time past the request timeout before a request with no answer is retried.
const REQUEST_SLACK: Duration = Duration::from_millis(500);
/// Pause before a retry, and before looking again for a leader.
const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// How often a producer looks whether the leader of a request in flight moved (the
/// real one is woken by metadata changes).
const LOOK_INTERVAL: Duration = Duration::from_millis(50);

/// What a client wants sent: a request for one broker.
pub(crate) type Outgoing = Vec<(BrokerId, ClientRequest)>;

/// What clients may look at: the published metadata and which brokers run.
pub(crate) struct ClientView<'a> {
    pub(crate) image: &'a MetadataImage,
    pub(crate) running: &'a dyn Fn(BrokerId) -> bool,
}

impl ClientView<'_> {
    fn leader(&self, tp: &TopicPartition) -> Option<BrokerId> {
        let leader = self.image.partition(tp)?.leader?;
        (self.running)(leader).then_some(leader)
    }

    /// The id of the topic's current creation (0 for none).
    fn topic_id(&self, tp: &TopicPartition) -> u64 {
        self.image.partition(tp).map_or(0, |p| p.topic_id)
    }
}

#[derive(Debug)]
struct PendingBatch {
    serial: u64,
    batch: Batch,
    values: Vec<Bytes>,
    /// (request id, leader, sent at).
    in_flight: Option<(u64, BrokerId, Duration)>,
    retry_at: Duration,
    /// While in flight: when to look again whether the leader moved.
    next_look: Duration,
}

#[derive(Debug, Default)]
struct PartState {
    next_seq: i32,
    pending: Option<PendingBatch>,
}

/// A producer writing unique values (`<tag><index>-<n>`) to random partitions, one
/// batch in flight per partition.
#[derive(Debug)]
pub(crate) struct SimProducer {
    index: usize,
    acks: Acks,
    /// The first character of its values (see [`tag`]).
    tag: char,
    /// Its topic may be deleted under it (and created again): a batch refused as
    /// `UnknownTopic` is retried, into the next creation, rather than a breach.
    topic_may_go: bool,
    producer_id: Option<u64>,
    topic: String,
    parts: BTreeMap<u32, PartState>,
    next_value: u64,
    next_serial: u64,
    next_request: u64,
    next_produce: Duration,
    interval_ms: (u64, u64),
    stopped: bool,
    reply_tx: Sender<ProduceResponse>,
    reply_rx: Receiver<ProduceResponse>,
    /// Every request that may still be answered: (partition, topic id it was
    /// routed by, batch serial, values).
    sent: BTreeMap<u64, (TopicPartition, u64, u64, Vec<Bytes>)>,
}

/// The value tag of a producer's acks mode: `a` (all), `o` (one), `z` (zero).
pub(crate) fn tag(acks: Acks) -> char {
    match acks {
        Acks::All => 'a',
        Acks::Leader => 'o',
        Acks::None => 'z',
    }
}

impl SimProducer {
    /// A producer; `producer_id` makes it idempotent (acks=all only, as Kafka).
    pub(crate) fn new(
        index: usize,
        acks: Acks,
        producer_id: Option<u64>,
        topic: &str,
        partitions: u32,
        interval_ms: (u64, u64),
        start: Duration,
    ) -> Self {
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded();
        SimProducer {
            index,
            acks,
            tag: tag(acks),
            topic_may_go: false,
            producer_id,
            topic: topic.to_string(),
            parts: (0..partitions).map(|p| (p, PartState::default())).collect(),
            next_value: 0,
            next_serial: 0,
            next_request: 1,
            next_produce: start,
            interval_ms,
            stopped: false,
            reply_tx,
            reply_rx,
            sent: BTreeMap::new(),
        }
    }

    /// A producer (not idempotent: a new creation of the topic knows no sequence)
    /// of values tagged `tag` to a topic that is deleted and created again.
    pub(crate) fn of_churning_topic(mut self, tag: char) -> Self {
        assert!(
            self.producer_id.is_none(),
            "sequences do not survive a deletion"
        );
        self.tag = tag;
        self.topic_may_go = true;
        self
    }

    /// The topic it writes.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Stops starting new batches (the ones begun are still retried until done).
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Batches begun and not yet done.
    /// Batches not yet acknowledged, leaving out these partitions.
    pub(crate) fn pending_except(&self, skip: &[u32]) -> usize {
        self.parts
            .iter()
            .filter(|(p, s)| s.pending.is_some() && !skip.contains(p))
            .count()
    }

    /// When this producer next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let mut d = (!self.stopped).then_some(self.next_produce);
        for p in self.parts.values() {
            if let Some(b) = &p.pending {
                let t = match b.in_flight {
                    // Leader changes are noticed on the next look, at least this often.
                    Some((_, _, sent)) => (sent + REQUEST_TIMEOUT + REQUEST_SLACK).min(b.next_look),
                    None => b.retry_at,
                };
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        }
        d
    }

    /// Starts a batch if it is time, gives up on requests whose leader moved or that
    /// had no answer, and (re)sends what is due.
    pub(crate) fn wake(
        &mut self,
        now: Duration,
        view: &ClientView<'_>,
        rng: &mut Rng,
        checker: &mut Checker,
        out: &mut Outgoing,
    ) {
        if !self.stopped && now >= self.next_produce {
            self.next_produce = now + rng.millis(self.interval_ms.0, self.interval_ms.1);
            let partition = rng.below(self.parts.len() as u64) as u32;
            if self.parts[&partition].pending.is_none() {
                self.begin(partition, now, rng);
            }
        }
        let partitions: Vec<u32> = self.parts.keys().copied().collect();
        for partition in partitions {
            let tp = TopicPartition::new(&self.topic, partition);
            let leader = view.leader(&tp);
            let part = self.parts.get_mut(&partition).expect("known partition");
            let Some(b) = &mut part.pending else {
                continue;
            };
            if let Some((_, to, sent)) = b.in_flight {
                b.next_look = now + LOOK_INTERVAL;
                let moved = leader != Some(to);
                if moved || now >= sent + REQUEST_TIMEOUT + REQUEST_SLACK {
                    b.in_flight = None;
                    b.retry_at = now;
                }
            }
            if b.in_flight.is_some() || now < b.retry_at {
                continue;
            }
            let Some(leader) = leader else {
                b.retry_at = now + RETRY_BACKOFF;
                continue;
            };
            let id = self.next_request;
            self.next_request += 1;
            let topic_id = view.topic_id(&tp);
            out.push((
                leader,
                ClientRequest::Produce(ProduceRequest {
                    id,
                    tp: tp.clone(),
                    topic_id,
                    acks: self.acks,
                    batch: b.batch.clone(),
                    timeout: REQUEST_TIMEOUT,
                    reply: ProduceReply {
                        to: ReplyTo::Channel(self.reply_tx.clone()),
                        slot: None,
                    },
                }),
            ));
            if self.acks == Acks::None {
                // Fire and forget: done at hand-off.
                checker.sent_unacknowledged(&tp, &b.values);
                part.pending = None;
            } else {
                b.in_flight = Some((id, leader, now));
                b.next_look = now + LOOK_INTERVAL;
                self.sent
                    .insert(id, (tp, topic_id, b.serial, b.values.clone()));
            }
        }
    }

    fn begin(&mut self, partition: u32, now: Duration, rng: &mut Rng) {
        let count = rng.range(1, 4) as u32;
        let mut builder = BatchBuilder::new(self.producer_id, 256);
        let mut values = Vec::new();
        for _ in 0..count {
            let v = Bytes::from(format!("{}{}-{}", self.tag, self.index, self.next_value));
            self.next_value += 1;
            builder.push(&Record::new(v.clone()), now.as_millis() as u64);
            values.push(v);
        }
        let part = self.parts.get_mut(&partition).expect("known partition");
        let seq = self.producer_id.map(|_| part.next_seq);
        part.next_seq = part.next_seq.wrapping_add(count as i32);
        let serial = self.next_serial;
        self.next_serial += 1;
        part.pending = Some(PendingBatch {
            serial,
            // As the producer seals it: the leader computes the CRC.
            batch: builder.finish_crc_later(seq),
            values,
            in_flight: None,
            retry_at: now,
            next_look: now,
        });
    }

    /// Handles every answer that arrived, in request order.
    pub(crate) fn poll(&mut self, now: Duration, checker: &mut Checker) {
        let mut replies: Vec<ProduceResponse> = self.reply_rx.try_iter().collect();
        if self.acks == Acks::None {
            return; // nobody listens to acks=0 answers
        }
        replies.sort_by_key(|r| r.id);
        for r in replies {
            let Some((tp, topic_id, serial, values)) = self.sent.get(&r.id).cloned() else {
                continue;
            };
            let part = self.parts.get_mut(&tp.partition).expect("known partition");
            let current = part
                .pending
                .as_mut()
                .filter(|b| b.serial == serial && b.in_flight.is_some_and(|f| f.0 == r.id));
            match r.result {
                Ok(base) => {
                    self.sent.remove(&r.id);
                    checker.acknowledged(now, self.acks, (&tp, topic_id), base, &values);
                    // Even a late answer to an abandoned request completes the batch.
                    if part.pending.as_ref().is_some_and(|b| b.serial == serial) {
                        part.pending = None;
                    }
                }
                Err(e) => {
                    self.sent.remove(&r.id);
                    let Some(b) = current else {
                        continue;
                    };
                    b.in_flight = None;
                    b.retry_at = now + RETRY_BACKOFF;
                    let gone = self.topic_may_go && matches!(e, Error::UnknownTopic { .. });
                    if !retriable(&e) && !gone {
                        checker.violation(
                            now,
                            format!(
                                "producer {} ({:?}) got a non-retriable error for {tp}: {e}",
                                self.index, self.acks
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn retriable(e: &Error) -> bool {
    e.is_retriable()
}

/// A consumer reading every partition of the topic from offset 0, one fetch in flight
/// per partition, to the leader the metadata names, below its high watermark.
#[derive(Debug)]
pub(crate) struct SimConsumer {
    topic: String,
    positions: BTreeMap<u32, u64>,
    /// Per partition: (its own answer channel, broker, sent at, max wait).
    in_flight: BTreeMap<u32, (Receiver<ClientFetchResponse>, BrokerId, Duration, Duration)>,
    next_poll: Duration,
    interval_ms: (u64, u64),
}

impl SimConsumer {
    pub(crate) fn new(
        topic: &str,
        partitions: u32,
        interval_ms: (u64, u64),
        start: Duration,
    ) -> Self {
        SimConsumer {
            topic: topic.to_string(),
            positions: (0..partitions).map(|p| (p, 0)).collect(),
            in_flight: BTreeMap::new(),
            next_poll: start,
            interval_ms,
        }
    }

    /// The next offset to read of `partition`.
    pub(crate) fn position(&self, partition: u32) -> u64 {
        self.positions.get(&partition).copied().unwrap_or(0)
    }

    pub(crate) fn next_deadline(&self) -> Duration {
        let mut d = self.next_poll;
        for (_, _, sent, wait) in self.in_flight.values() {
            d = d.min(*sent + *wait + REQUEST_SLACK);
        }
        d
    }

    /// Sends a fetch for every partition with none in flight; abandons fetches that
    /// had no answer in time (the broker died, or they went to a former leader).
    pub(crate) fn wake(
        &mut self,
        now: Duration,
        view: &ClientView<'_>,
        rng: &mut Rng,
        out: &mut Outgoing,
    ) {
        self.in_flight.retain(|_, (_, to, sent, wait)| {
            now < *sent + *wait + REQUEST_SLACK && (view.running)(*to)
        });
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + rng.millis(self.interval_ms.0, self.interval_ms.1);
        for (&partition, &position) in &self.positions {
            if self.in_flight.contains_key(&partition) {
                continue;
            }
            let tp = TopicPartition::new(&self.topic, partition);
            let Some(leader) = view.leader(&tp) else {
                continue;
            };
            let max_wait = if rng.chance(0.5) {
                Duration::ZERO
            } else {
                rng.millis(1, 200)
            };
            let (tx, rx) = crossbeam_channel::bounded(1);
            out.push((
                leader,
                ClientRequest::Fetch(ClientFetch {
                    partitions: vec![(tp.clone(), position, Some(view.topic_id(&tp)))],
                    max_wait,
                    max_bytes: 16 * 1024,
                    limit: ReadLimit::HighWatermark,
                    reply: tx,
                }),
            ));
            self.in_flight
                .insert(partition, (rx, leader, now, max_wait));
        }
    }

    /// Handles every answer that arrived: records are checked and counted in order.
    pub(crate) fn poll(&mut self, now: Duration, checker: &mut Checker) {
        let done: Vec<(u32, ClientFetchResponse)> = self
            .in_flight
            .iter()
            .filter_map(|(p, (rx, ..))| rx.try_recv().ok().map(|r| (*p, r)))
            .collect();
        for (partition, response) in done {
            let broker = self.in_flight.remove(&partition).map(|f| f.1);
            for (tp, result) in response.partitions {
                let Some(pos) = self.positions.get_mut(&tp.partition) else {
                    continue;
                };
                match result {
                    Ok(data) => {
                        'batches: for batch in &data.batches {
                            for r in batch.records() {
                                if r.offset < *pos {
                                    continue;
                                }
                                if r.offset >= data.upto {
                                    break 'batches;
                                }
                                if r.offset != *pos {
                                    checker.violation(
                                        now,
                                        format!(
                                            "consumer skipped offsets {}..{} of {tp} (from broker {broker:?})",
                                            *pos, r.offset
                                        ),
                                    );
                                }
                                checker.consumed(now, &tp, r.offset, &r.value);
                                *pos = r.offset + 1;
                            }
                        }
                    }
                    Err(Error::OffsetOutOfRange { log_end, .. }) if *pos > log_end => {
                        checker.violation(
                            now,
                            format!(
                                "consumer position {} of {tp} is past leader {broker:?}'s log end {log_end}: consumed offsets vanished",
                                *pos
                            ),
                        );
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// A standalone committer (`Consumer::commit_offsets` without a subscription) of one
/// group: commits a rising offset for every partition of the topic to the group's
/// coordinator, the leader the metadata names for the group's offsets partition, one
/// commit in flight. Offsets rise with every attempt, so whatever a coordinator
/// rebuilds must be at least the highest acknowledged one.
#[derive(Debug)]
pub(crate) struct SimCommitter {
    group: String,
    offsets_tp: TopicPartition,
    partitions: Vec<TopicPartition>,
    next_offset: u64,
    /// (answer channel, offset sent, give up at).
    in_flight: Option<(Receiver<crate::Result<GroupReply>>, u64, Duration)>,
    next_commit: Duration,
    interval_ms: (u64, u64),
    stopped: bool,
}

impl SimCommitter {
    /// A committer of `group` whose offsets partition is `offsets_partition`, for the
    /// `partitions` partitions of `topic`.
    pub(crate) fn new(
        group: &str,
        offsets_partition: u32,
        topic: &str,
        partitions: u32,
        interval_ms: (u64, u64),
        start: Duration,
    ) -> Self {
        SimCommitter {
            group: group.to_string(),
            offsets_tp: TopicPartition::new(OFFSETS_TOPIC, offsets_partition),
            partitions: (0..partitions)
                .map(|p| TopicPartition::new(topic, p))
                .collect(),
            next_offset: 1,
            in_flight: None,
            next_commit: start,
            interval_ms,
            stopped: false,
        }
    }

    /// Starts no more commits (the one in flight runs out).
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether a commit waits for its answer.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        match &self.in_flight {
            Some((_, _, give_up)) => Some(*give_up),
            None => (!self.stopped).then_some(self.next_commit),
        }
    }

    /// Gives up a commit with no answer in time; sends the next one when due.
    pub(crate) fn wake(
        &mut self,
        now: Duration,
        view: &ClientView<'_>,
        rng: &mut Rng,
        out: &mut Outgoing,
    ) {
        if self.in_flight.as_ref().is_some_and(|(_, _, at)| now >= *at) {
            self.in_flight = None;
        }
        if self.in_flight.is_some() || self.stopped || now < self.next_commit {
            return;
        }
        let Some(coordinator) = view.leader(&self.offsets_tp) else {
            self.next_commit = now + RETRY_BACKOFF;
            return;
        };
        self.next_commit = now + rng.millis(self.interval_ms.0, self.interval_ms.1);
        let offset = self.next_offset;
        self.next_offset += 1;
        let (tx, rx) = crossbeam_channel::bounded(1);
        out.push((
            coordinator,
            ClientRequest::Group(GroupRequest {
                group: self.group.clone(),
                op: GroupOp::Commit {
                    member: None,
                    offsets: self
                        .partitions
                        .iter()
                        .map(|tp| (tp.clone(), offset))
                        .collect(),
                    timeout: REQUEST_TIMEOUT,
                },
                reply: tx,
            }),
        ));
        self.in_flight = Some((rx, offset, now + REQUEST_TIMEOUT + REQUEST_SLACK));
    }

    /// Takes the answer, if one came: an acknowledged offset is the checker's to
    /// hold the coordinators to; a refusal or a lost request is tried again.
    pub(crate) fn poll(&mut self, now: Duration, checker: &mut Checker) {
        let Some((rx, offset, _)) = &self.in_flight else {
            return;
        };
        let offset = *offset;
        match rx.try_recv() {
            Ok(Ok(_)) => {
                for tp in &self.partitions {
                    checker.commit_acknowledged(&self.offsets_tp, tp, offset);
                }
                self.in_flight = None;
            }
            Ok(Err(_)) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.in_flight = None;
                self.next_commit = self.next_commit.min(now + RETRY_BACKOFF);
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
    }
}
