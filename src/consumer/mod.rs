//! The [`Consumer`]: reads partitions from their leaders, never past the high
//! watermark, as a long-poll; with a group, membership and offset commits.

mod group;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::cluster::ClusterInner;
use crate::config::{ConsumerConfig, OffsetReset};
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{
    ClientFetch, ClientFetchResponse, ClientRequest, GroupOp, GroupReply, Inbound, OffsetsInfo,
    ReadLimit,
};
use crate::record::ConsumedRecord;
use crate::{Error, Result};

pub use group::RebalanceListener;
use group::{Membership, GROUP_CALL_TIMEOUT};

/// Pause after a round in which no leader could answer (an election is running),
/// unless metadata changes first.
const NO_LEADER_WAIT: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct State {
    assignment: Vec<TopicPartition>,
    positions: HashMap<TopicPartition, u64>,
    buffer: VecDeque<ConsumedRecord>,
}

/// Reads records from partitions, from their leaders, never past the high
/// watermark: a record a consumer sees is committed and will not disappear.
///
/// `poll` is a long-poll: it waits (without spinning) until records arrive or the
/// timeout passes.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// use std::time::Duration;
/// use replog::*;
/// let cluster = Cluster::builder().build()?;
/// cluster.create_topic("t", TopicConfig::new(1, 3))?;
/// cluster.producer(ProducerConfig::new())?.send("t", Record::new("hi")).wait()?;
/// let consumer = cluster.consumer(ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest))?;
/// consumer.assign(&[TopicPartition::new("t", 0)])?;
/// let records = consumer.poll(Duration::from_secs(5))?;
/// assert_eq!(records[0].value, "hi");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<ClusterInner>,
    config: ConsumerConfig,
    state: Mutex<State>,
    /// Set by `subscribe`: membership in the group.
    group: Mutex<Option<Membership>>,
    next_auto_commit: Mutex<Instant>,
    metadata: Receiver<()>,
}

impl Consumer {
    pub(crate) fn new(cluster: Arc<ClusterInner>, config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        let metadata = cluster.notify.watch();
        if config.group.is_some() {
            cluster.ensure_offsets_topic()?;
        }
        Ok(Consumer {
            next_auto_commit: Mutex::new(Instant::now() + config.auto_commit_interval),
            cluster,
            config,
            state: Mutex::new(State::default()),
            group: Mutex::new(None),
            metadata,
        })
    }

    /// Reads exactly these partitions (no group rebalancing), as Kafka's `assign`.
    /// Positions of partitions kept are kept; new ones start from the committed
    /// offset (with a group) or `auto.offset.reset`.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`, `UnknownPartition`.
    pub fn assign(&self, partitions: &[TopicPartition]) -> Result<()> {
        if self.group.lock().is_some() {
            return Err(Error::Usage(
                "this consumer is subscribed: assign() and subscribe() do not mix (as Kafka)"
                    .into(),
            ));
        }
        let image = self.cluster.metadata.get();
        for tp in partitions {
            let t = image
                .topics
                .get(&tp.topic)
                .ok_or_else(|| Error::UnknownTopic {
                    topic: tp.topic.clone(),
                })?;
            if tp.partition as usize >= t.partitions.len() {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    partitions: t.partitions.len() as u32,
                });
            }
        }
        let mut s = self.state.lock();
        let mut assignment = partitions.to_vec();
        assignment.sort();
        assignment.dedup();
        s.positions.retain(|tp, _| assignment.contains(tp));
        s.buffer.retain(|r| {
            assignment
                .iter()
                .any(|tp| tp.topic == r.topic && tp.partition == r.partition)
        });
        s.assignment = assignment;
        Ok(())
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.state.lock().assignment.clone()
    }

    /// Sets where the next `poll` reads `tp` from.
    ///
    /// # Errors
    ///
    /// `Usage` when `tp` is not assigned.
    pub fn seek(&self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let mut s = self.state.lock();
        if !s.assignment.contains(tp) {
            return Err(not_assigned(tp));
        }
        s.positions.insert(tp.clone(), offset);
        s.buffer
            .retain(|r| !(r.topic == tp.topic && r.partition == tp.partition));
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp`.
    ///
    /// # Errors
    ///
    /// `Usage` when `tp` is not assigned; `LeaderNotAvailable` when the position must
    /// be looked up and the partition has no leader.
    pub fn position(&self, tp: &TopicPartition) -> Result<u64> {
        let mut s = self.state.lock();
        if !s.assignment.contains(tp) {
            return Err(not_assigned(tp));
        }
        if let Some(r) = s
            .buffer
            .iter()
            .find(|r| r.topic == tp.topic && r.partition == tp.partition)
        {
            return Ok(r.offset);
        }
        if let Some(p) = s.positions.get(tp) {
            return Ok(*p);
        }
        let p = self.reset_position(tp)?;
        s.positions.insert(tp.clone(), p);
        Ok(p)
    }

    /// Fetches records from the assigned partitions, waiting up to `timeout` for
    /// some to arrive. Returns at most `max.poll.records`.
    ///
    /// # Errors
    ///
    /// `ShuttingDown` when the cluster is gone.
    pub fn poll(&self, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let deadline = Instant::now() + timeout;
        // Even `poll(Duration::ZERO)` asks the leaders once.
        let mut fetched = false;
        loop {
            // Heartbeats, joins and auto commits run here, so a long poll wakes up
            // for them: the member's session never lapses while it waits.
            self.drive_membership()?;
            self.maybe_auto_commit()?;
            let wake = self.next_group_work().map_or(deadline, |t| t.min(deadline));
            let mut s = self.state.lock();
            if !s.buffer.is_empty() {
                let n = s.buffer.len().min(self.config.max_poll_records);
                return Ok(s.buffer.drain(..n).collect());
            }
            let now = Instant::now();
            if now >= deadline && (fetched || s.assignment.is_empty()) {
                return Ok(Vec::new());
            }
            if s.assignment.is_empty() {
                drop(s);
                // Nothing assigned yet (a rebalance converging): wait for a change.
                let wait = wake
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(50));
                let _ = self.metadata.recv_timeout(wait);
                continue;
            }
            let answered = self.fetch_round(&mut s, wake)?;
            fetched = true;
            drop(s);
            let now = Instant::now();
            if !answered && now < wake {
                // No leader could answer: wait for metadata to change, briefly.
                let wait = NO_LEADER_WAIT.min(wake - now);
                let _ = self.metadata.recv_timeout(wait);
            }
        }
    }

    /// The starting position of `tp` when none is known: the group's committed
    /// offset, else `auto.offset.reset`.
    fn reset_position(&self, tp: &TopicPartition) -> Result<u64> {
        if self.config.group.is_some() {
            if let Some(o) = self.committed(tp)? {
                return Ok(o);
            }
        }
        self.offset_reset(tp)
    }

    fn offset_reset(&self, tp: &TopicPartition) -> Result<u64> {
        let info = self.list_offsets(tp)?;
        Ok(match self.config.auto_offset_reset {
            OffsetReset::Earliest => info.log_start,
            OffsetReset::Latest => info.high_watermark,
        })
    }

    /// The leader of `tp` and the creation of its topic, as the metadata has them.
    fn leader_of(&self, tp: &TopicPartition) -> Option<(BrokerId, u64)> {
        let image = self.cluster.metadata.get();
        let p = image
            .topics
            .get(&tp.topic)?
            .partitions
            .get(tp.partition as usize)?;
        Some((p.leader?, p.topic_id))
    }

    fn list_offsets(&self, tp: &TopicPartition) -> Result<OffsetsInfo> {
        let no_leader = || Error::LeaderNotAvailable {
            topic: tp.topic.clone(),
            partition: tp.partition,
        };
        let (leader, topic_id) = self.leader_of(tp).ok_or_else(no_leader)?;
        let tx = self.cluster.broker_tx(leader).ok_or_else(no_leader)?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        tx.send(Inbound::Client(ClientRequest::ListOffsets {
            tp: tp.clone(),
            topic_id,
            reply,
        }))
        .map_err(|_| no_leader())?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| no_leader())?
    }

    /// One fetch to every leader of an assigned partition; returns whether any
    /// leader answered.
    fn fetch_round(&self, s: &mut State, deadline: Instant) -> Result<bool> {
        // Positions first (committed offset or auto.offset.reset).
        let assignment = s.assignment.clone();
        for tp in &assignment {
            if !s.positions.contains_key(tp) {
                if let Ok(p) = self.reset_position(tp) {
                    s.positions.insert(tp.clone(), p);
                }
            }
        }
        let mut by_leader: HashMap<BrokerId, Vec<(TopicPartition, u64, Option<u64>)>> =
            HashMap::new();
        for tp in &assignment {
            let (Some(pos), Some((leader, topic_id))) = (s.positions.get(tp), self.leader_of(tp))
            else {
                continue;
            };
            by_leader
                .entry(leader)
                .or_default()
                .push((tp.clone(), *pos, Some(topic_id)));
        }
        let (reply, rx) = crossbeam_channel::unbounded();
        let mut asked = 0;
        let max_wait = deadline.saturating_duration_since(Instant::now());
        for (leader, partitions) in by_leader {
            let Some(tx) = self.cluster.broker_tx(leader) else {
                continue;
            };
            let fetch = ClientFetch {
                partitions,
                max_wait,
                max_bytes: self.config.fetch_max_bytes,
                limit: ReadLimit::HighWatermark,
                reply: reply.clone(),
            };
            if tx
                .send(Inbound::Client(ClientRequest::Fetch(fetch)))
                .is_ok()
            {
                asked += 1;
            }
        }
        drop(reply);
        if asked == 0 {
            return Ok(false);
        }
        let mut answered = false;
        // The first answer (data, or the long-poll ran out); then whatever else is
        // already there. Later answers are dropped with the channel: their records
        // are fetched again next time, positions only move on what was taken.
        let first = rx.recv_timeout(max_wait + Duration::from_millis(100));
        let mut responses: Vec<ClientFetchResponse> = first.into_iter().collect();
        responses.extend(rx.try_iter());
        for resp in responses {
            for (tp, result) in resp.partitions {
                match result {
                    Ok(data) => {
                        answered = true;
                        let Some(pos) = s.positions.get(&tp).copied() else {
                            continue;
                        };
                        let mut next = pos;
                        for b in &data.batches {
                            for r in b.records() {
                                if r.offset >= next && r.offset < data.upto {
                                    next = r.offset + 1;
                                    s.buffer.push_back(r.into_consumed(&tp));
                                }
                            }
                        }
                        s.positions.insert(tp, next);
                    }
                    Err(Error::OffsetOutOfRange { .. }) => {
                        answered = true;
                        s.positions.remove(&tp);
                        if let Ok(p) = self.offset_reset(&tp) {
                            s.positions.insert(tp, p);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(answered)
    }

    /// Subscribes to topics with group management: the group's coordinator spreads
    /// their partitions over the members, and `poll` follows its decisions.
    ///
    /// # Errors
    ///
    /// `Usage` without a `group.id`, or with an empty topic list; `UnknownTopic`.
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        self.subscribe_inner(topics, None)
    }

    /// [`Consumer::subscribe`], with callbacks when partitions are assigned and
    /// revoked (Kafka's `ConsumerRebalanceListener`).
    ///
    /// # Errors
    ///
    /// As [`Consumer::subscribe`].
    pub fn subscribe_with_listener(
        &self,
        topics: &[&str],
        listener: impl RebalanceListener + 'static,
    ) -> Result<()> {
        self.subscribe_inner(topics, Some(Arc::new(listener)))
    }

    fn subscribe_inner(
        &self,
        topics: &[&str],
        listener: Option<Arc<dyn RebalanceListener>>,
    ) -> Result<()> {
        self.group_id("subscribe")?;
        if topics.is_empty() {
            return Err(Error::Usage(
                "subscribe needs at least one topic; to stop, call close()".into(),
            ));
        }
        let image = self.cluster.metadata.get();
        for t in topics {
            if !image.topics.contains_key(*t) {
                return Err(Error::UnknownTopic {
                    topic: t.to_string(),
                });
            }
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        let mut g = self.group.lock();
        match g.as_mut() {
            Some(m) => {
                // A new subscription: rejoin with it.
                m.topics = topics;
                m.next_heartbeat = None;
                if let Some(l) = listener {
                    m.listener = Some(l);
                }
                let id = m.member_id.take();
                drop(g);
                if let Some(member_id) = id {
                    let _ = self.group_call(GroupOp::Leave { member_id }, GROUP_CALL_TIMEOUT);
                }
            }
            None => {
                let mut s = self.state.lock();
                s.assignment.clear();
                s.positions.clear();
                s.buffer.clear();
                *g = Some(Membership {
                    topics,
                    listener,
                    ..Membership::default()
                });
            }
        }
        Ok(())
    }

    /// Commits the positions of what `poll` returned, for every assigned partition
    /// (synchronously: it returns once `__consumer_offsets` has the commit with
    /// `acks=all`).
    ///
    /// # Errors
    ///
    /// `Usage` without a `group.id`; `IllegalGeneration` when the group moved on
    /// (rebalanced) since this consumer's last poll.
    ///
    /// # Durability
    ///
    /// A committed offset is in the log of every in-sync replica of its
    /// `__consumer_offsets` partition.
    pub fn commit(&self) -> Result<()> {
        let assignment = self.state.lock().assignment.clone();
        let offsets = self.consumed_positions(&assignment);
        self.commit_now(&offsets)
    }

    /// Commits these offsets: for each partition, the offset of the next record to
    /// read.
    ///
    /// # Errors
    ///
    /// As [`Consumer::commit`].
    pub fn commit_offsets(&self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.commit_now(offsets)
    }

    /// The group's committed offset for `tp`, if any.
    ///
    /// # Errors
    ///
    /// `Usage` without a `group.id`; `Timeout` when no coordinator answers.
    pub fn committed(&self, tp: &TopicPartition) -> Result<Option<u64>> {
        match self.group_call(
            GroupOp::Committed {
                partitions: vec![tp.clone()],
            },
            GROUP_CALL_TIMEOUT,
        )? {
            GroupReply::Committed(c) => Ok(c.into_iter().next().and_then(|(_, o)| o)),
            _ => Ok(None),
        }
    }

    fn maybe_auto_commit(&self) -> Result<()> {
        if !self.config.enable_auto_commit || self.config.group.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        {
            let mut next = self.next_auto_commit.lock();
            if now < *next {
                return Ok(());
            }
            *next = now + self.config.auto_commit_interval;
        }
        match self.commit() {
            // A rebalance moved on, or the coordinator is moving: the next
            // interval commits again (what was not committed may be delivered
            // again), and poll goes on, as Kafka's auto commit does.
            Err(Error::IllegalGeneration { .. }) => Ok(()),
            Err(e) if e.is_retriable() => Ok(()),
            other => other,
        }
    }

    /// Leaves the group (Kafka's `close`): commits the positions of what `poll`
    /// returned when auto commit is on, calls the listener's
    /// `on_partitions_revoked` for what it owns (a last chance to commit), then
    /// tells the coordinator, so its partitions go to the other members at once
    /// rather than after `session.timeout.ms`. A static member
    /// (`group.instance.id`) keeps its assignment until its session times out, so
    /// a restart within it gets the same partitions back. Drop does the same and
    /// ignores errors.
    ///
    /// # Errors
    ///
    /// The final auto commit's error (`IllegalGeneration` if the group rebalanced
    /// since the last poll, `Timeout`, `ShuttingDown`), or `Timeout` when the
    /// coordinator cannot be reached to leave: the member is then removed when its
    /// session times out. The consumer is closed either way.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> replog::Result<()> {
    /// use replog::*;
    /// let cluster = Cluster::builder().offsets_topic_partitions(1).build()?;
    /// cluster.create_topic("t", TopicConfig::new(1, 3))?;
    /// let consumer = cluster.consumer(ConsumerConfig::new().group("g"))?;
    /// consumer.subscribe(&["t"])?;
    /// consumer.poll(std::time::Duration::from_millis(100))?;
    /// consumer.close()?;
    /// # Ok(()) }
    /// ```
    pub fn close(self) -> Result<()> {
        self.leave_group()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.leave_group();
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::Usage(format!(
        "{tp} is not assigned to this consumer: assign() or subscribe() to it first"
    ))
}
