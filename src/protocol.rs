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
    /// No such partition (deleted).
    UnknownTopicOrPartition,
}

/// One partition's part of a replica fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FetchPartition {
    pub tp: TopicPartition,
    /// The follower's log end offset: where it wants to read from.
    pub fetch_offset: u64,
    /// The leader epoch the follower believes current (fencing, rule 7).
    pub leader_epoch: u32,
    /// The epoch of the last batch the follower holds (KIP-320 style divergence check).
    pub last_fetched_epoch: Option<u32>,
}

/// One partition's part of a fetch response.
#[derive(Clone, Debug)]
pub(crate) struct FetchPartitionResponse {
    pub tp: TopicPartition,
    pub result: Result<FetchData, FetchError>,
}

#[derive(Clone, Debug)]
pub(crate) struct FetchData {
    pub high_watermark: u64,
    pub log_start_offset: u64,
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
    /// The follower's epoch is newer than the leader's: the leader has not heard yet.
    UnknownLeaderEpoch,
    /// The follower's epoch is older: it must learn the new state from the controller.
    FencedLeaderEpoch,
    /// The fetch offset is below the leader's log start: reset to it.
    OffsetOutOfRange { log_start: u64 },
    UnknownTopicOrPartition,
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
    },
    Heartbeat {
        broker_epoch: u64,
    },
    AlterPartition {
        broker_epoch: u64,
        tp: TopicPartition,
        leader_epoch: u32,
        partition_epoch: u32,
        new_isr: Vec<BrokerId>,
    },
    // controller -> broker
    Registered {
        broker_epoch: u64,
    },
    HeartbeatReply {
        /// The controller no longer knows this broker epoch: register again.
        fenced: bool,
    },
    LeaderAndIsr {
        partitions: Vec<PartitionState>,
    },
    StopReplica {
        partitions: Vec<TopicPartition>,
        delete: bool,
    },
    AlterPartitionReply {
        tp: TopicPartition,
        result: Result<PartitionState, AlterPartitionError>,
    },
    // broker <-> broker
    Fetch {
        request_id: u64,
        replica: BrokerId,
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
    /// Placeholder until the client path lands.
    Ping(Sender<()>),
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
    pub(crate) tx: Sender<Inbound>,
}

impl Mailbox {
    /// Puts `envelope` in the node's inbox. False when the node has stopped.
    pub fn deliver(&self, envelope: Envelope) -> bool {
        self.tx.send(Inbound::Peer(envelope)).is_ok()
    }
}
