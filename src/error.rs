//! The crate's one error type.

use std::path::PathBuf;

use crate::BrokerId;

/// Result alias used throughout replog.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in replog.
///
/// Every message names the thing at fault and what would fix it. Variants that a
/// producer may safely retry report `true` from [`Error::is_retriable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topic does not exist.
    #[error("unknown topic `{topic}`: create it with Cluster::create_topic first")]
    UnknownTopic {
        /// The topic asked for.
        topic: String,
    },
    /// A topic of that name exists already.
    #[error("topic `{topic}` already exists: pick another name or delete it first")]
    TopicExists {
        /// The topic name.
        topic: String,
    },
    /// The topic name breaks Kafka's naming rules.
    #[error("invalid topic name `{name}`: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Which rule it breaks and how to fix it.
        reason: String,
    },
    /// The partition does not exist in the topic.
    #[error("unknown partition {partition} of topic `{topic}`: it has {partitions} partitions (0..{partitions})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// The replication factor cannot be met.
    #[error("invalid replication factor {replication_factor}: {reason}")]
    InvalidReplicationFactor {
        /// The replication factor asked for.
        replication_factor: u32,
        /// Why it cannot be met and how to fix it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid config `{name}`: {reason}")]
    InvalidConfig {
        /// The setting, by its Kafka name where it has one.
        name: &'static str,
        /// What is wrong and the accepted range.
        reason: String,
    },
    /// `acks=all` was refused because the ISR is smaller than `min.insync.replicas`.
    /// Nothing was written.
    #[error("not enough in-sync replicas for {topic}-{partition}: ISR has {isr} of the {required} that min.insync.replicas requires; nothing was written. Wait for replicas to catch up, restart dead brokers, or lower min.insync.replicas")]
    NotEnoughReplicas {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Size of the ISR at the time of the append.
        isr: usize,
        /// `min.insync.replicas` of the topic.
        required: usize,
    },
    /// The record was written, but the ISR fell below `min.insync.replicas` before it
    /// was committed. A retry may duplicate it unless the producer is idempotent.
    #[error("{topic}-{partition}: the record was written but the ISR shrank to {isr}, below min.insync.replicas={required}, before it committed; retry with an idempotent producer to avoid a duplicate")]
    NotEnoughReplicasAfterAppend {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Size of the ISR when the record committed.
        isr: usize,
        /// `min.insync.replicas` of the topic.
        required: usize,
    },
    /// A record exceeds the topic's `max.message.bytes`.
    #[error("record of {size} bytes exceeds max.message.bytes={max} of topic `{topic}`: send a smaller record or raise TopicConfig::max_message_bytes")]
    RecordTooLarge {
        /// The topic.
        topic: String,
        /// Encoded size of the record.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An operation did not finish in time.
    #[error("timed out after {after:?} waiting for {what}: check that the brokers it needs are alive, or raise the timeout")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long was waited.
        after: std::time::Duration,
    },
    /// The partition has no leader right now (it is offline, or an election is in progress).
    #[error("no leader available for {topic}-{partition}: restart a broker that holds an in-sync replica, or enable unclean.leader.election.enable to accept data loss")]
    LeaderNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The request reached a broker that does not lead the partition (any more).
    #[error(
        "broker {broker} is not the leader of {topic}-{partition}: refresh metadata and retry"
    )]
    NotLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The broker that refused.
        broker: BrokerId,
    },
    /// The offset lies outside the partition's log.
    #[error("offset {offset} is out of range for {topic}-{partition}: valid offsets are {log_start}..={log_end}; seek inside that range or set auto.offset.reset")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// First offset still in the log.
        log_start: u64,
        /// Offset the next record will get.
        log_end: u64,
    },
    /// No broker has that id.
    #[error("unknown broker {broker}: the cluster has brokers {known:?}")]
    UnknownBroker {
        /// The id asked for.
        broker: BrokerId,
        /// The ids that exist.
        known: Vec<BrokerId>,
    },
    /// Another live process or `Cluster` holds the data directory.
    #[error("data directory {} is locked by another live cluster: shut that one down or use another directory", path.display())]
    DataDirLocked {
        /// The directory.
        path: PathBuf,
    },
    /// Stored or received bytes failed validation (length, CRC32, or structure).
    #[error("corrupt data in {location}: {reason}; the replica truncates there and refetches from its leader")]
    Corrupt {
        /// Where the bad bytes were found (file and position, or "batch").
        location: String,
        /// The offset of the first corrupt batch, where known: the log is good below it.
        offset: Option<u64>,
        /// What check failed.
        reason: String,
    },
    /// An operating-system I/O error.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster (or the broker addressed) is shutting down or dead.
    #[error("{what} is shut down: build a new Cluster, or restart the broker")]
    ShuttingDown {
        /// What is gone.
        what: String,
    },
    /// An idempotent producer's sequence has a gap the broker cannot accept.
    #[error("out-of-order sequence for producer {producer_id} on {topic}-{partition}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: u64,
        /// The sequence the broker expected next.
        expected: i64,
        /// The sequence received.
        got: i64,
    },
    /// An offset commit carried a generation the group has moved past.
    #[error("group `{group}`: commit from generation {generation} refused, the group is at generation {current}; rejoin (poll) and commit again")]
    IllegalGeneration {
        /// The group id.
        group: String,
        /// The generation the commit carried.
        generation: u32,
        /// The group's current generation.
        current: u32,
    },
    /// The operation needs something the consumer or producer was not configured with.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether a producer may retry the operation that failed with this error.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::Error;
    /// let e = Error::LeaderNotAvailable { topic: "t".into(), partition: 0 };
    /// assert!(e.is_retriable());
    /// ```
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::NotEnoughReplicas { .. }
                | Error::NotEnoughReplicasAfterAppend { .. }
                | Error::Timeout { .. }
                | Error::LeaderNotAvailable { .. }
                | Error::NotLeader { .. }
        )
    }

    /// A copy of the error, for reporting one failure to every record of a batch
    /// (`std::io::Error` is not `Clone`; its kind and message are kept).
    pub(crate) fn duplicate(&self) -> Error {
        use Error::*;
        match self {
            UnknownTopic { topic } => UnknownTopic {
                topic: topic.clone(),
            },
            TopicExists { topic } => TopicExists {
                topic: topic.clone(),
            },
            InvalidTopicName { name, reason } => InvalidTopicName {
                name: name.clone(),
                reason: reason.clone(),
            },
            UnknownPartition {
                topic,
                partition,
                partitions,
            } => UnknownPartition {
                topic: topic.clone(),
                partition: *partition,
                partitions: *partitions,
            },
            InvalidReplicationFactor {
                replication_factor,
                reason,
            } => InvalidReplicationFactor {
                replication_factor: *replication_factor,
                reason: reason.clone(),
            },
            InvalidConfig { name, reason } => InvalidConfig {
                name,
                reason: reason.clone(),
            },
            NotEnoughReplicas {
                topic,
                partition,
                isr,
                required,
            } => NotEnoughReplicas {
                topic: topic.clone(),
                partition: *partition,
                isr: *isr,
                required: *required,
            },
            NotEnoughReplicasAfterAppend {
                topic,
                partition,
                isr,
                required,
            } => NotEnoughReplicasAfterAppend {
                topic: topic.clone(),
                partition: *partition,
                isr: *isr,
                required: *required,
            },
            RecordTooLarge { topic, size, max } => RecordTooLarge {
                topic: topic.clone(),
                size: *size,
                max: *max,
            },
            Timeout { what, after } => Timeout {
                what: what.clone(),
                after: *after,
            },
            LeaderNotAvailable { topic, partition } => LeaderNotAvailable {
                topic: topic.clone(),
                partition: *partition,
            },
            NotLeader {
                topic,
                partition,
                broker,
            } => NotLeader {
                topic: topic.clone(),
                partition: *partition,
                broker: *broker,
            },
            OffsetOutOfRange {
                topic,
                partition,
                offset,
                log_start,
                log_end,
            } => OffsetOutOfRange {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                log_start: *log_start,
                log_end: *log_end,
            },
            UnknownBroker { broker, known } => UnknownBroker {
                broker: *broker,
                known: known.clone(),
            },
            DataDirLocked { path } => DataDirLocked { path: path.clone() },
            Corrupt {
                location,
                offset,
                reason,
            } => Corrupt {
                location: location.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Io { path, source } => Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ShuttingDown { what } => ShuttingDown { what: what.clone() },
            OutOfOrderSequence {
                topic,
                partition,
                producer_id,
                expected,
                got,
            } => OutOfOrderSequence {
                topic: topic.clone(),
                partition: *partition,
                producer_id: *producer_id,
                expected: *expected,
                got: *got,
            },
            IllegalGeneration {
                group,
                generation,
                current,
            } => IllegalGeneration {
                group: group.clone(),
                generation: *generation,
                current: *current,
            },
            Usage(s) => Usage(s.clone()),
        }
    }

    /// Builds an [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub(crate) fn corrupt(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            location: location.into(),
            offset: None,
            reason: reason.into(),
        }
    }
}
