//! The messages brokers and the controller exchange through the [`Transport`],
//! and the requests clients hand to brokers directly.
//!
//! [`Transport`]: crate::Transport

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::TopicConfig;
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::record::Batch;

/// A message in flight between two nodes. Opaque: a transport moves it, clones it
/// (to duplicate), delays or drops it, but does not look inside.
///
/// # Examples
///
/// ```
/// fn route(e: &replog::Envelope) -> String {
///     format!("{} -> {}: {}", e.from(), e.to(), e.kind())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Envelope {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) message: Message,
}

impl Envelope {
    pub(crate) fn new(from: NodeId, to: NodeId, message: Message) -> Self {
        Envelope { from, to, message }
    }

    /// The sender.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// The addressee.
    pub fn to(&self) -> NodeId {
        self.to
    }

    /// The message's kind, for logs and fault filters (`"Fetch"`, `"AlterPartition"` …).
    pub fn kind(&self) -> &'static str {
        self.message.kind()
    }
}

/// A partition's state as the controller decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PartitionState {
    pub tp: TopicPartition,
    /// Which creation of the topic this is (Kafka's topic id, KIP-516): a topic
    /// deleted and created again under the same name gets a larger one, so that a
    /// late message about the deleted topic cannot act on its successor.
    pub topic_id: u64,
    pub replicas: Vec<BrokerId>,
    pub leader: Option<BrokerId>,
    pub leader_epoch: u32,
    pub isr: Vec<BrokerId>,
    /// Bumped on every change of leader or ISR (KIP-497's partition epoch).
    pub partition_epoch: u32,
    pub config: Arc<TopicConfig>,
}

/// Why the controller refused an AlterPartition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlterPartitionError {
    /// The sender is not the current leader, or its leader epoch is stale.
    FencedLeaderEpoch,
    /// The partition epoch is stale: another change won.
    InvalidUpdateVersion,
    /// The sender's broker epoch is stale (it was fenced).
    StaleBrokerEpoch,
    /// A proposed ISR member is not alive, or not a replica.
    IneligibleReplica,
    /// A member being added was seen by the leader under a broker epoch that is no
    /// longer its current one (it restarted since; KIP-903).
    StaleMemberEpoch,
    /// No such partition (deleted).
    UnknownTopicOrPartition,
}

/// One partition's part of a replica fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchPartition {
    /// Shared with the follower's replica: no allocation per partition per fetch.
    pub tp: Arc<TopicPartition>,
    /// The follower's log end offset: where it wants to read from.
    pub fetch_offset: u64,
    /// The leader epoch the follower believes current (fencing, rule 7).
    pub leader_epoch: u32,
    /// The topic id the follower's replica was created under: a replica left over
    /// from a deleted topic of the same name is not counted by the leader.
    pub topic_id: u64,
    /// The epoch of the last batch the follower holds (KIP-320 style divergence check).
    pub last_fetched_epoch: Option<u32>,
    /// The high watermark the follower knows. With its `log_start`, what lets the
    /// leader leave a partition with nothing new for it out of the answer, as
    /// Kafka's incremental fetch sessions (KIP-227) do.
    pub high_watermark: u64,
    /// The follower's log start offset.
    pub log_start: u64,
}

/// One partition's part of a fetch response.
#[derive(Clone, Debug)]
pub(crate) struct FetchPartitionResponse {
    pub tp: Arc<TopicPartition>,
    /// The partition's place in the fetch this answers: the follower finds its
    /// replica there (checking that it is the one named) without a lookup.
    pub index: u32,
    /// The topic id the partition was fetched under: a follower whose replica is
    /// of another creation of the topic by the time the answer comes ignores it.
    pub topic_id: u64,
    pub result: Result<FetchData, FetchError>,
}

#[derive(Clone, Debug)]
pub(crate) struct FetchData {
    pub high_watermark: u64,
    /// The leader's log start offset: a follower deletes what lies below it, up to
    /// its own high watermark (as Kafka's fetch response carries `log_start_offset`).
    pub log_start: u64,
    pub leader_epoch: u32,
    /// Set when the follower's log diverges: truncate to the smaller of `end_offset`
    /// and the own end offset of `epoch`, then fetch again (OffsetForLeaderEpoch).
    pub diverging: Option<EpochEndOffset>,
    pub batches: Vec<Batch>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochEndOffset {
    pub epoch: u32,
    pub end_offset: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FetchError {
    NotLeader,
    /// The follower's epoch is older: it must learn the new state from the controller.
    FencedLeaderEpoch,
    /// The fetch offset is below the leader's log start: reset to it.
    OffsetOutOfRange {
        log_start: u64,
    },
}

/// Messages between nodes.
#[derive(Clone, Debug)]
pub(crate) enum Message {
    // broker -> controller
    RegisterBroker {
        broker: BrokerId,
        rack: Option<String>,
        /// Partitions whose local log came back without its data (memory storage after
        /// a restart, lost or corrupt files): not eligible for a clean election until
        /// they rejoin the ISR (KIP-966).
        lost_data: Vec<TopicPartition>,
        /// True when the broker lost every log (memory storage restarted).
        lost_all: bool,
        /// Distinguishes this start of the broker from earlier ones (KIP-631's
        /// incarnation id), larger for later starts: a retried or duplicated
        /// registration of the incarnation the controller already knows is answered
        /// again and changes nothing; one from an earlier incarnation is stale.
        incarnation: u64,
    },
    Heartbeat {
        broker_epoch: u64,
        /// A digest of the (leader epoch, partition epoch) of every partition the broker
        /// hosts: when it differs from the controller's, the controller sends the
        /// broker's whole state again (a LeaderAndIsr may have been lost).
        state_digest: u64,
    },
    /// A follower cut committed records from its log (a bad CRC): it must not be
    /// elected until it has refetched them and rejoined the ISR (rule 9).
    ReplicaDamaged {
        broker_epoch: u64,
        tp: TopicPartition,
        /// The creation of the topic whose replica was cut (a late report of a
        /// deleted topic's says nothing about the topic created again).
        topic_id: u64,
        /// The broker's number for this cut; its repeats carry the same.
        report: u64,
    },
    /// The controller has considered a [`Message::ReplicaDamaged`] report: the
    /// follower stops repeating it, unless it has cut again since (a later
    /// `report` number), for which this late ack says nothing.
    ReplicaDamagedAck { tp: TopicPartition, report: u64 },
    AlterPartition {
        broker_epoch: u64,
        tp: TopicPartition,
        /// The creation of the topic the leader leads (see [`PartitionState::topic_id`]).
        topic_id: u64,
        leader_epoch: u32,
        partition_epoch: u32,
        new_isr: Vec<BrokerId>,
        /// For each follower in `new_isr`, the broker epoch its fetches carried when
        /// the leader last heard from it. The controller refuses to add a member
        /// whose epoch is no longer current: the leader's view of it predates a
        /// restart (KIP-903).
        member_epochs: Vec<(BrokerId, u64)>,
        /// Orders the proposals of one broker epoch: the controller refuses one that is
        /// not newer than the last it processed for the partition, so a delayed or
        /// duplicated proposal cannot be applied after the facts behind it changed.
        request_id: u64,
    },
    // controller -> broker
    Registered {
        broker_epoch: u64,
        /// The `incarnation` of the registration answered: a broker takes only
        /// an answer to its own start (rule 7), not a late one to a start a
        /// restart replaced.
        incarnation: u64,
    },
    HeartbeatReply {
        /// The broker epoch of the heartbeat answered: a late answer to an epoch
        /// the broker has since left says nothing of its current one.
        broker_epoch: u64,
        /// The controller no longer knows this broker epoch: register again.
        fenced: bool,
    },
    LeaderAndIsr {
        partitions: Vec<PartitionState>,
        /// `Some(n)` when `partitions` is every partition the broker hosts as of
        /// the controller's `n`th topic creation (Kafka's FULL LeaderAndIsr,
        /// KIP-516): a replica of an earlier creation that is not listed belongs
        /// to a topic deleted since, whose StopReplica was lost or came while the
        /// broker was down, and the broker removes it. `None` for a change.
        complete_as_of: Option<u64>,
    },
    StopReplica {
        /// Each partition with the topic id it was created under: a replica of a
        /// later creation of the same name is left alone.
        partitions: Vec<(TopicPartition, u64)>,
        delete: bool,
    },
    AlterPartitionReply {
        tp: TopicPartition,
        /// The `request_id` of the AlterPartition answered: a leader must tell an
        /// answer to its latest proposal from a delayed or duplicated earlier one.
        request_id: u64,
        result: Result<PartitionState, AlterPartitionError>,
    },
    // broker <-> broker
    Fetch {
        request_id: u64,
        replica: BrokerId,
        /// The follower's broker epoch: its progress counts per incarnation.
        broker_epoch: u64,
        max_wait_ms: u64,
        max_bytes: usize,
        partitions: Vec<FetchPartition>,
    },
    FetchReply {
        request_id: u64,
        partitions: Vec<FetchPartitionResponse>,
    },
}

impl Message {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Message::RegisterBroker { .. } => "RegisterBroker",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::AlterPartition { .. } => "AlterPartition",
            Message::ReplicaDamaged { .. } => "ReplicaDamaged",
            Message::ReplicaDamagedAck { .. } => "ReplicaDamagedAck",
            Message::Registered { .. } => "Registered",
            Message::HeartbeatReply { .. } => "HeartbeatReply",
            Message::LeaderAndIsr { .. } => "LeaderAndIsr",
            Message::StopReplica { .. } => "StopReplica",
            Message::AlterPartitionReply { .. } => "AlterPartitionReply",
            Message::Fetch { .. } => "Fetch",
            Message::FetchReply { .. } => "FetchReply",
        }
    }
}

/// What arrives in a node's inbox.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// From another node, through the transport.
    Peer(Envelope),
    /// From a client handle, directly (isolation does not cut clients off).
    Client(ClientRequest),
    /// Stop the thread now (kill) or cleanly (shutdown).
    Stop { clean: bool },
}

/// Requests from clients and handles, answered on the enclosed channel.
#[derive(Debug)]
pub(crate) enum ClientRequest {
    // to a broker
    Produce(ProduceRequest),
    Fetch(ClientFetch),
    ListOffsets {
        tp: TopicPartition,
        /// The creation of the topic the reader routed by (as in [`ClientFetch`]).
        topic_id: u64,
        reply: Sender<crate::Result<OffsetsInfo>>,
    },
    /// To the coordinator of a consumer group (the leader of its offsets partition).
    Group(GroupRequest),
    // to the controller
    CreateTopic {
        name: String,
        config: TopicConfig,
        reply: Sender<crate::Result<()>>,
    },
    DeleteTopic {
        name: String,
        reply: Sender<crate::Result<()>>,
    },
    ElectPreferredLeaders {
        reply: Sender<()>,
    },
    AllocateProducerId {
        reply: Sender<u64>,
    },
    /// A broker's thread exited: the controller learns it at once.
    BrokerStopped(BrokerId),
}

/// A consumer-group request.
#[derive(Debug)]
pub(crate) struct GroupRequest {
    pub group: String,
    pub op: GroupOp,
    pub reply: Sender<crate::Result<GroupReply>>,
}

/// What a consumer asks its group coordinator.
#[derive(Clone, Debug)]
pub(crate) enum GroupOp {
    Join(crate::group::JoinRequest),
    Heartbeat {
        member_id: String,
        generation: u32,
        owned: Vec<TopicPartition>,
    },
    Leave {
        member_id: String,
    },
    /// `member`: (member id, generation); `None` for a standalone consumer.
    Commit {
        member: Option<(String, u32)>,
        offsets: Vec<(TopicPartition, u64)>,
        timeout: std::time::Duration,
    },
    Committed {
        partitions: Vec<TopicPartition>,
    },
}

/// The coordinator's answer.
#[derive(Debug)]
pub(crate) enum GroupReply {
    Member(crate::group::MemberState),
    Done,
    Committed(Vec<(TopicPartition, Option<u64>)>),
}

/// A batch for a partition leader.
#[derive(Debug)]
pub(crate) struct ProduceRequest {
    pub id: u64,
    pub tp: TopicPartition,
    /// The creation of the topic the producer routed the batch by: a leader still
    /// hosting a deleted topic of the same name refuses it as not its leader.
    pub topic_id: u64,
    pub acks: crate::Acks,
    pub batch: Batch,
    /// How long the leader may hold an `acks=all` request (request.timeout.ms).
    pub timeout: std::time::Duration,
    pub reply: ProduceReply,
}

/// Where a leader answers a produce request. On success it also completes the
/// batch's deliveries itself, so a waiting caller wakes without a hop through the
/// producer's sender thread; the producer still gets the answer, for its
/// bookkeeping ([`ReplyTo`]).
#[derive(Clone, Debug)]
pub(crate) struct ProduceReply {
    pub to: ReplyTo,
    pub slot: Option<crate::producer::SlotRef>,
}

/// Who takes a produce answer.
#[derive(Clone, Debug)]
pub(crate) enum ReplyTo {
    /// A client that reads its answers from a channel (the simulation's).
    #[cfg(any(test, feature = "sim"))]
    Channel(Sender<ProduceResponse>),
    /// A [`crate::Producer`]: queued without waking its sender thread unless needed.
    Producer(std::sync::Arc<crate::producer::LeaderAnswers>),
}

impl ProduceReply {
    /// Hands the answer over, then completes the deliveries on success. In that
    /// order, so that a caller woken by its delivery finds the answer already
    /// there when it sends its next record.
    pub(crate) fn send(&self, response: ProduceResponse) {
        let base = response.result.as_ref().ok().copied();
        match &self.to {
            // A client that went away needs no answer.
            #[cfg(any(test, feature = "sim"))]
            ReplyTo::Channel(tx) => drop(tx.send(response)),
            ReplyTo::Producer(answers) => answers.push(response, base.is_none()),
        }
        if let (Some(slot), Some(base)) = (&self.slot, base) {
            slot.complete(Ok(Some(base)));
        }
    }
}

/// The leader's answer: the base offset given to the batch.
#[derive(Debug)]
pub(crate) struct ProduceResponse {
    pub id: u64,
    pub result: crate::Result<u64>,
}

/// How far a client fetch may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadLimit {
    /// A consumer: only the leader answers, and only below the high watermark.
    HighWatermark,
    /// `Replica::read`: this replica's own log, whatever its role.
    LogEnd,
}

/// A consumer fetch (long-poll) or a local read.
#[derive(Debug)]
pub(crate) struct ClientFetch {
    /// Each partition with the offset to read from and, for a read of the leader's
    /// log, the creation of the topic the reader routed by: a broker still hosting
    /// a deleted topic of the same name does not serve its records for it.
    pub partitions: Vec<(TopicPartition, u64, Option<u64>)>,
    pub max_wait: std::time::Duration,
    pub max_bytes: usize,
    pub limit: ReadLimit,
    pub reply: Sender<ClientFetchResponse>,
}

/// Per partition: batches from the offset asked (possibly holding earlier records of
/// the first batch, and records at or past `hw` that the reader must skip).
#[derive(Debug)]
pub(crate) struct ClientFetchResponse {
    pub partitions: Vec<(TopicPartition, crate::Result<ClientFetchData>)>,
}

/// One partition's fetched data.
#[derive(Debug)]
pub(crate) struct ClientFetchData {
    pub batches: Vec<Batch>,
    /// Records at or past this offset must not be returned.
    pub upto: u64,
}

/// A partition's offsets as its leader sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetsInfo {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
}

/// Where the transport delivers a node's messages.
///
/// # Examples
///
/// ```
/// fn deliver(m: &replog::Mailbox, e: replog::Envelope) -> bool {
///     m.deliver(e)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Mailbox {
    pub(crate) tx: crate::inbox::InboxSender<Inbound>,
}

impl Mailbox {
    /// Puts `envelope` in the node's inbox. False when the node has stopped.
    pub fn deliver(&self, envelope: Envelope) -> bool {
        self.tx.send(Inbound::Peer(envelope)).is_ok()
    }
}

/// The digest a broker reports in its heartbeat and the controller recomputes: an
/// order-independent sum over the partitions of one broker.
pub(crate) fn state_digest<'a>(states: impl Iterator<Item = &'a PartitionState>) -> u64 {
    // The topic id too: a replica of a deleted topic's partition may carry the
    // same epochs as the same partition of its successor.
    states
        .map(|s| hash_of((&s.tp, s.topic_id, s.leader_epoch, s.partition_epoch)))
        .fold(0, u64::wrapping_add)
}

/// What a broker adds to its [`state_digest`] for replicas it hosts without a
/// state, each with its topic id: never 0 for one, so that the controller, which
/// knows no such replica, sees a difference.
pub(crate) fn stateless_digest<'a>(
    replicas: impl Iterator<Item = (&'a TopicPartition, u64)>,
) -> u64 {
    replicas
        .map(|(tp, topic_id)| hash_of(("no state", tp, topic_id)) | 1)
        .fold(0, u64::wrapping_add)
}

/// One item's term in a digest.
fn hash_of(item: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    item.hash(&mut h);
    h.finish()
}
