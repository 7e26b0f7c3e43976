//! Configuration: topics, producers, consumers, fsync.

use std::time::Duration;

use crate::{Error, Result};

/// When segment files are fsynced. Writes always reach the OS at once, so a killed
/// process loses nothing acknowledged; fsync guards against losing the machine.
///
/// # Examples
///
/// ```
/// use replog::FsyncPolicy;
/// let p = FsyncPolicy::EveryBatch;
/// assert_ne!(p, FsyncPolicy::Never);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Never fsync; rely on the OS (Kafka's default, `log.flush.interval.messages` unset).
    #[default]
    Never,
    /// fsync after every write, before what it wrote is acknowledged (a write holds
    /// one batch, or the batches of one partition that arrived together).
    EveryBatch,
    /// fsync when this much time has passed since the last one (`log.flush.interval.ms`).
    Interval(Duration),
}

impl FsyncPolicy {
    /// Whether anything is fsynced: with `EveryBatch` and `Interval`, metadata files
    /// (checkpoints, indexes, directory entries) are synced whenever they change.
    pub(crate) fn syncs(self) -> bool {
        self != FsyncPolicy::Never
    }
}

/// Default `max.message.bytes`, as Kafka (1 MiB plus framing).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Default `segment.bytes`, as Kafka (1 GiB).
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;

/// A topic's settings.
///
/// # Examples
///
/// ```
/// use replog::TopicConfig;
/// let c = TopicConfig::new(6, 3).min_insync_replicas(2);
/// assert_eq!(c.partitions(), 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    pub(crate) partitions: u32,
    pub(crate) replication_factor: u32,
    pub(crate) min_insync_replicas: u32,
    pub(crate) unclean_leader_election: bool,
    pub(crate) max_message_bytes: usize,
    pub(crate) segment_bytes: u64,
    pub(crate) retention_bytes: Option<u64>,
    pub(crate) retention: Option<Duration>,
}

impl TopicConfig {
    /// `partitions` partitions, each with `replication_factor` replicas
    /// (Kafka's `num.partitions` and `replication.factor`).
    pub fn new(partitions: u32, replication_factor: u32) -> Self {
        TopicConfig {
            partitions,
            replication_factor,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention_bytes: None,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }

    /// `min.insync.replicas`: how many replicas must be in sync for an `acks=all`
    /// write to be accepted. Default 1, as Kafka.
    pub fn min_insync_replicas(mut self, n: u32) -> Self {
        self.min_insync_replicas = n;
        self
    }

    /// `unclean.leader.election.enable`: elect an out-of-sync replica when no in-sync
    /// one is alive, trading lost records for availability. Default false.
    pub fn unclean_leader_election(mut self, enabled: bool) -> Self {
        self.unclean_leader_election = enabled;
        self
    }

    /// `max.message.bytes`: the largest record batch the topic accepts.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// `segment.bytes`: a segment file is rolled once it reaches this size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// `retention.bytes`: per partition, old segments are deleted while the log is
    /// larger than this. `None` keeps everything (Kafka's -1). As in Kafka, only
    /// inactive segments wholly below the high watermark are ever deleted.
    pub fn retention_bytes(mut self, bytes: Option<u64>) -> Self {
        self.retention_bytes = bytes;
        self
    }

    /// `retention.ms`: segments whose newest record is older than this are deleted
    /// (inactive ones wholly below the high watermark). `None` keeps them forever.
    /// Default 7 days, as Kafka.
    pub fn retention(mut self, age: Option<Duration>) -> Self {
        self.retention = age;
        self
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Replicas per partition.
    pub fn replication_factor(&self) -> u32 {
        self.replication_factor
    }

    /// Checks every value against its range; `live_brokers` bounds the replication factor.
    pub(crate) fn validate(&self, live_brokers: u32) -> Result<()> {
        if self.partitions == 0 {
            return Err(Error::InvalidConfig {
                name: "num.partitions",
                reason: "a topic needs at least 1 partition".into(),
            });
        }
        if self.replication_factor == 0 {
            return Err(Error::InvalidReplicationFactor {
                replication_factor: 0,
                reason: "it must be at least 1".into(),
            });
        }
        if self.replication_factor > live_brokers {
            return Err(Error::InvalidReplicationFactor {
                replication_factor: self.replication_factor,
                reason: format!(
                    "only {live_brokers} brokers are alive; lower it or start more brokers"
                ),
            });
        }
        if self.min_insync_replicas == 0 || self.min_insync_replicas > self.replication_factor {
            return Err(Error::InvalidConfig {
                name: "min.insync.replicas",
                reason: format!(
                    "{} is outside 1..={} (the replication factor)",
                    self.min_insync_replicas, self.replication_factor
                ),
            });
        }
        if self.max_message_bytes < 64 {
            return Err(Error::InvalidConfig {
                name: "max.message.bytes",
                reason: format!("{} is below the minimum of 64", self.max_message_bytes),
            });
        }
        if self.segment_bytes < 1024 {
            return Err(Error::InvalidConfig {
                name: "segment.bytes",
                reason: format!("{} is below the minimum of 1024", self.segment_bytes),
            });
        }
        Ok(())
    }
}

/// How many replicas must have a record before the producer is told it is written.
///
/// | `Acks` | Kafka | completes when | survives |
/// | --- | --- | --- | --- |
/// | `None` | `acks=0` | handed to the broker | nothing is promised |
/// | `Leader` | `acks=1` | in the leader's log | the leader staying alive |
/// | `All` | `acks=all` | in every ISR member's log, ISR ≥ min.insync | any ISR member staying alive |
///
/// # Examples
///
/// ```
/// use replog::{Acks, ProducerConfig};
/// let c = ProducerConfig::new().acks(Acks::Leader);
/// # let _ = c;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// `acks=0`: fire and forget.
    None,
    /// `acks=1`: the leader's log.
    Leader,
    /// `acks=all`: every in-sync replica.
    #[default]
    All,
}

/// A producer's settings.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use replog::{Acks, ProducerConfig};
/// let c = ProducerConfig::new().acks(Acks::All).linger(Duration::from_millis(1));
/// # let _ = c;
/// ```
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub(crate) acks: Acks,
    pub(crate) linger: Duration,
    pub(crate) batch_size: usize,
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) idempotence: bool,
    pub(crate) buffer_memory: usize,
    pub(crate) max_in_flight: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(0),
            batch_size: 16 * 1024,
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            idempotence: true,
            buffer_memory: 32 * 1024 * 1024,
            max_in_flight: 5,
        }
    }
}

impl ProducerConfig {
    /// The defaults: `acks=all`, `linger.ms=0`, `batch.size=16384`,
    /// `delivery.timeout.ms=120000`, idempotence on, as Kafka 3.0+.
    pub fn new() -> Self {
        Self::default()
    }

    /// `acks`: see [`Acks`].
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// `linger.ms`: how long a partition's batch waits for more records before it is sent.
    ///
    /// A batch that is not full also waits while an earlier batch of the same
    /// partition awaits its answer (a group commit, at most one round trip): with
    /// many writers each awaiting one record, the records that arrive during one
    /// round trip share the next request. With nothing in flight and `linger.ms` 0
    /// a record is sent at once.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// `batch.size`: a partition's batch is sent once it holds this many bytes.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// `delivery.timeout.ms`: the time a record has, retries included, to be acknowledged.
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.delivery_timeout = d;
        self
    }

    /// `request.timeout.ms`: how long one produce request may wait for its acks.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// `enable.idempotence`: producer id and sequence numbers, so a retry never
    /// duplicates. Default true, as Kafka 3.0+. Takes effect with `acks=all`.
    pub fn idempotence(mut self, enabled: bool) -> Self {
        self.idempotence = enabled;
        self
    }

    /// `buffer.memory`: bytes of records waiting to be sent before `send` blocks.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// `max.in.flight.requests.per.connection`: unacknowledged batches per partition
    /// (at most 5 with idempotence).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::InvalidConfig {
                name: "batch.size",
                reason: "must be at least 1 byte".into(),
            });
        }
        if self.max_in_flight == 0 || (self.idempotence && self.max_in_flight > 5) {
            return Err(Error::InvalidConfig {
                name: "max.in.flight.requests.per.connection",
                reason: format!(
                    "{} is outside 1..=5 (5 is the limit with enable.idempotence)",
                    self.max_in_flight
                ),
            });
        }
        if self.delivery_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                name: "delivery.timeout.ms",
                reason: "must be above zero".into(),
            });
        }
        Ok(())
    }
}

/// Where a consumer starts when it has no valid position (`auto.offset.reset`).
///
/// # Examples
///
/// ```
/// use replog::{ConsumerConfig, OffsetReset};
/// let c = ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest);
/// # let _ = c;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only new records. Kafka's default.
    #[default]
    Latest,
}

/// How a group spreads partitions over its members (`partition.assignment.strategy`).
///
/// # Examples
///
/// ```
/// use replog::{AssignmentStrategy, ConsumerConfig};
/// let c = ConsumerConfig::new().group("g").assignment_strategy(AssignmentStrategy::Range);
/// # let _ = c;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AssignmentStrategy {
    /// Kafka's `RangeAssignor`: contiguous ranges per topic; eager rebalancing
    /// (every member gives up everything on each rebalance).
    Range,
    /// Kafka's `RoundRobinAssignor`; eager rebalancing.
    RoundRobin,
    /// Kafka's `CooperativeStickyAssignor` (KIP-429): balanced and sticky; a
    /// rebalance revokes only the partitions that move. The default.
    #[default]
    CooperativeSticky,
}

/// A consumer's settings.
///
/// # Examples
///
/// ```
/// use replog::ConsumerConfig;
/// let c = ConsumerConfig::new().group("billing").max_poll_records(100);
/// # let _ = c;
/// ```
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    pub(crate) group: Option<String>,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) auto_offset_reset: OffsetReset,
    pub(crate) enable_auto_commit: bool,
    pub(crate) auto_commit_interval: Duration,
    pub(crate) max_poll_records: usize,
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) fetch_max_bytes: usize,
    pub(crate) assignment_strategy: AssignmentStrategy,
    pub(crate) client_id: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            max_poll_records: 500,
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            fetch_max_bytes: 1 << 20,
            assignment_strategy: AssignmentStrategy::CooperativeSticky,
            client_id: "consumer".into(),
        }
    }
}

impl ConsumerConfig {
    /// The defaults: no group, `auto.offset.reset=latest`, auto commit every 5 s,
    /// `max.poll.records=500`, as Kafka.
    pub fn new() -> Self {
        Self::default()
    }

    /// `group.id`: the consumer group, needed for `subscribe` and for commits.
    pub fn group(mut self, id: impl Into<String>) -> Self {
        self.group = Some(id.into());
        self
    }

    /// `group.instance.id`: static membership, so a restarted member keeps its
    /// partitions without a rebalance.
    pub fn group_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group_instance_id = Some(id.into());
        self
    }

    /// `auto.offset.reset`: see [`OffsetReset`].
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// `enable.auto.commit`: commit the positions of what `poll` returned, on an interval.
    pub fn enable_auto_commit(mut self, enabled: bool) -> Self {
        self.enable_auto_commit = enabled;
        self
    }

    /// `auto.commit.interval.ms`.
    pub fn auto_commit_interval(mut self, d: Duration) -> Self {
        self.auto_commit_interval = d;
        self
    }

    /// `max.poll.records`: the most records one `poll` returns.
    pub fn max_poll_records(mut self, n: usize) -> Self {
        self.max_poll_records = n;
        self
    }

    /// `session.timeout.ms`: a member not heard from for this long leaves the group.
    /// Heartbeats are sent from `poll`, so poll at least this often. Setting it also
    /// sets `heartbeat.interval.ms` to a third of it.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
        self.heartbeat_interval = d / 3;
        self
    }

    /// `heartbeat.interval.ms`: how often `poll` reports to the group coordinator.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }

    /// `partition.assignment.strategy`: see [`AssignmentStrategy`].
    pub fn assignment_strategy(mut self, s: AssignmentStrategy) -> Self {
        self.assignment_strategy = s;
        self
    }

    /// `client.id`: the prefix of this consumer's member id.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.heartbeat_interval >= self.session_timeout {
            return Err(Error::InvalidConfig {
                name: "heartbeat.interval.ms",
                reason: format!(
                    "{:?} must be below session.timeout.ms ({:?})",
                    self.heartbeat_interval, self.session_timeout
                ),
            });
        }
        if self.max_poll_records == 0 {
            return Err(Error::InvalidConfig {
                name: "max.poll.records",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(g) = &self.group {
            if g.is_empty() {
                return Err(Error::InvalidConfig {
                    name: "group.id",
                    reason: "must not be empty".into(),
                });
            }
        }
        Ok(())
    }
}
