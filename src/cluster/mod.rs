//! [`Cluster`] and [`ClusterBuilder`]: start the controller and broker threads, and
//! drive failures (kill, restart, isolate, heal).

mod controller_thread;
pub(crate) mod notify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

use crate::broker::{Broker, BrokerConfig, BrokerShared};
use crate::clock::Clock;
use crate::config::{FsyncPolicy, TopicConfig};
use crate::controller::{Controller, ControllerConfig, MetadataImage, MetadataLog};
use crate::handles::Topic;
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxSender;
use crate::protocol::{ClientRequest, Inbound, Mailbox};
use crate::storage::DirLock;
use crate::transport::{ChannelTransport, FaultTransport, Transport};
use crate::{Consumer, ConsumerConfig, Error, Producer, ProducerConfig, Result};

pub(crate) use controller_thread::ControllerThread;
pub(crate) use controller_thread::MetadataCell;
use notify::Notify;

/// How long cluster operations wait for the controller or a broker before
/// `Error::Timeout`.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `offsets.topic.segment.bytes` (see
/// [`ClusterBuilder::offsets_topic_segment_bytes`]).
const DEFAULT_OFFSETS_SEGMENT_BYTES: u64 = 1 << 20;

/// A snapshot of cluster health, as Kafka's JMX metrics of the same names.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// let cluster = replog::Cluster::builder().brokers(1).build()?;
/// let m = cluster.metrics();
/// assert_eq!(m.offline_partitions, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMetrics {
    /// Partitions whose ISR is smaller than their replica set (`UnderReplicatedPartitions`).
    pub under_replicated_partitions: usize,
    /// Partitions with no leader (`OfflinePartitionsCount`).
    pub offline_partitions: usize,
    /// ISR shrinks accepted by the controller (`IsrShrinksPerSec`, as a count).
    pub isr_shrinks: u64,
    /// ISR expansions accepted by the controller (`IsrExpandsPerSec`, as a count).
    pub isr_expands: u64,
    /// Leader elections (`LeaderElectionRateAndTimeMs`, as a count).
    pub leader_elections: u64,
    /// Unclean leader elections (`UncleanLeaderElectionsPerSec`, as a count).
    pub unclean_leader_elections: u64,
    /// Brokers whose thread is running.
    pub live_brokers: usize,
    /// Partitions, internal topics included.
    pub partitions: usize,
}

/// Builds a [`Cluster`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # fn main() -> replog::Result<()> {
/// let cluster = replog::Cluster::builder()
///     .racks(["a", "b", "c"])
///     .replica_lag_time_max(Duration::from_millis(500))
///     .build()?;
/// assert_eq!(cluster.brokers().len(), 3);
/// # Ok(()) }
/// ```
pub struct ClusterBuilder {
    brokers: u32,
    racks: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    transport: Option<Arc<dyn Transport>>,
    replica_lag_time_max: Duration,
    session_timeout: Duration,
    fsync: FsyncPolicy,
    auto_leader_rebalance: bool,
    leader_imbalance_check_interval: Duration,
    replica_fetch_wait_max: Duration,
    offsets_topic_partitions: u32,
    offsets_topic_segment_bytes: u64,
}

impl std::fmt::Debug for ClusterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBuilder")
            .field("brokers", &self.brokers)
            .field("racks", &self.racks)
            .field("data_dir", &self.data_dir)
            .field("replica_lag_time_max", &self.replica_lag_time_max)
            .field("session_timeout", &self.session_timeout)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            brokers: 3,
            racks: None,
            data_dir: None,
            transport: None,
            replica_lag_time_max: Duration::from_secs(2),
            session_timeout: Duration::from_secs(1),
            fsync: FsyncPolicy::Never,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(1),
            replica_fetch_wait_max: Duration::from_millis(500),
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: DEFAULT_OFFSETS_SEGMENT_BYTES,
        }
    }
}

impl ClusterBuilder {
    /// Number of brokers, with ids `0..count`. Default 3.
    pub fn brokers(mut self, count: u32) -> Self {
        self.brokers = count;
        self
    }

    /// One rack label per broker (`broker.rack`); sets the broker count. Replicas of a
    /// partition are spread over `min(racks, RF)` racks.
    pub fn racks<I, S>(mut self, racks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let racks: Vec<String> = racks.into_iter().map(Into::into).collect();
        self.brokers = racks.len() as u32;
        self.racks = Some(racks);
        self
    }

    /// Keep logs and metadata in segment files under `dir` (`log.dirs`). Omitted, all
    /// data lives in memory and a killed broker loses its logs.
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The transport between brokers and the controller. Default: [`ChannelTransport`].
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long
    /// leaves the ISR. Default 2 s (Kafka: 30 s; in-process round trips are
    /// microseconds).
    pub fn replica_lag_time_max(mut self, d: Duration) -> Self {
        self.replica_lag_time_max = d;
        self
    }

    /// `broker.session.timeout.ms`: a broker whose heartbeats stop for this long
    /// (it is isolated, not dead) is fenced and loses its leaderships. A broker
    /// whose thread exits is noticed at once. Default 1 s (Kafka: 9 s).
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
        self
    }

    /// When segment files are fsynced (`log.flush.interval.*`). Default
    /// [`FsyncPolicy::Never`]: writes reach the OS at once, so a killed process
    /// loses nothing; only losing the machine can.
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// `auto.leader.rebalance.enable`: move leadership back to the preferred replica
    /// once it is in sync again. Default true.
    pub fn auto_leader_rebalance(mut self, enabled: bool) -> Self {
        self.auto_leader_rebalance = enabled;
        self
    }

    /// `leader.imbalance.check.interval.seconds`. Default 1 s (Kafka: 300 s).
    pub fn leader_imbalance_check_interval(mut self, d: Duration) -> Self {
        self.leader_imbalance_check_interval = d;
        self
    }

    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader
    /// when there is nothing new. Default 500 ms, as Kafka.
    pub fn replica_fetch_wait_max(mut self, d: Duration) -> Self {
        self.replica_fetch_wait_max = d;
        self
    }

    /// `offsets.topic.num.partitions` of `__consumer_offsets`. Default 50, as Kafka.
    pub fn offsets_topic_partitions(mut self, n: u32) -> Self {
        self.offsets_topic_partitions = n;
        self
    }

    /// `offsets.topic.segment.bytes` of `__consumer_offsets`: a segment of an
    /// offsets partition rolls at this size, and the partition is compacted once its
    /// log holds this much (and twice its last compaction's live offsets). The
    /// coordinator then writes one record per live committed offset and deletes
    /// everything before them once they are committed, so the log stays bounded
    /// however often a group commits. Default 1 MiB; Kafka's is 100 MiB, but here
    /// the log may live in memory. At least 1024.
    ///
    /// # Examples
    ///
    /// ```
    /// let cluster = replog::Cluster::builder()
    ///     .brokers(1)
    ///     .offsets_topic_segment_bytes(64 * 1024)
    ///     .build()?;
    /// # cluster.shutdown()?;
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn offsets_topic_segment_bytes(mut self, bytes: u64) -> Self {
        self.offsets_topic_segment_bytes = bytes;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.offsets_topic_segment_bytes < 1024 {
            return Err(Error::InvalidConfig {
                name: "offsets.topic.segment.bytes",
                reason: format!(
                    "{} is below the minimum of 1024",
                    self.offsets_topic_segment_bytes
                ),
            });
        }
        if self.brokers == 0 {
            return Err(Error::InvalidConfig {
                name: "brokers",
                reason: "a cluster needs at least 1 broker".into(),
            });
        }
        if let Some(r) = &self.racks {
            if r.iter().any(|s| s.is_empty()) {
                return Err(Error::InvalidConfig {
                    name: "broker.rack",
                    reason: "rack labels must not be empty".into(),
                });
            }
        }
        for (name, d) in [
            ("replica.lag.time.max.ms", self.replica_lag_time_max),
            ("broker.session.timeout.ms", self.session_timeout),
            ("replica.fetch.wait.max.ms", self.replica_fetch_wait_max),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig {
                    name,
                    reason: "must be above zero".into(),
                });
            }
        }
        if self.offsets_topic_partitions == 0 {
            return Err(Error::InvalidConfig {
                name: "offsets.topic.num.partitions",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// Starts the controller and the brokers and waits until every broker has
    /// registered. An existing `data_dir` is reopened: topics, data and epochs come
    /// back.
    ///
    /// # Errors
    ///
    /// `DataDirLocked` when another live cluster holds `data_dir` (nothing is
    /// touched); `InvalidConfig` for bad settings; `Io`/`Corrupt` when the
    /// directory cannot be read.
    pub fn build(self) -> Result<Cluster> {
        self.validate()?;
        let lock = match &self.data_dir {
            Some(d) => Some(DirLock::acquire(d)?),
            None => None,
        };
        let ids: Vec<(BrokerId, Option<String>)> = (0..self.brokers)
            .map(|i| {
                (
                    BrokerId(i),
                    self.racks.as_ref().map(|r| r[i as usize].clone()),
                )
            })
            .collect();
        let mut core = Controller::new(
            ControllerConfig {
                session_timeout: self.session_timeout,
                auto_leader_rebalance: self.auto_leader_rebalance,
                leader_imbalance_check_interval: self.leader_imbalance_check_interval,
                leader_imbalance_per_broker_percentage: 10,
            },
            &ids,
        );
        let metadata_log = match &self.data_dir {
            Some(d) => {
                let (log, records) = MetadataLog::open(&d.join("controller"))?;
                for r in &records {
                    core.replay(r);
                }
                Some(log)
            }
            None => None,
        };
        let user: Arc<dyn Transport> = self
            .transport
            .clone()
            .unwrap_or_else(|| Arc::new(ChannelTransport::default()));
        // Isolation is a cut in this layer, whatever the user's transport does.
        let transport = FaultTransport::new(user);
        let notify = Arc::new(Notify::default());
        let metadata = Arc::new(MetadataCell::new(MetadataImage::default(), notify.clone()));
        let clock = Clock::real();
        let (ctx, crx) = crate::inbox::inbox();
        transport.register(NodeId::Controller, Mailbox { tx: ctx.clone() });
        let thread = ControllerThread {
            core,
            inbox: crx,
            transport: Arc::new(transport.clone()),
            metadata: metadata.clone(),
            log: metadata_log,
            clock: clock.clone(),
            sync_metadata: self.fsync != FsyncPolicy::Never,
        };
        let controller_join = std::thread::Builder::new()
            .name("replog-controller".into())
            .spawn(move || thread.run())
            .map_err(|e| Error::io("controller thread", e))?;
        let inner = Arc::new(ClusterInner {
            builder: Settings {
                replica_lag_time_max: self.replica_lag_time_max,
                session_timeout: self.session_timeout,
                fsync: self.fsync,
                replica_fetch_wait_max: self.replica_fetch_wait_max,
                offsets_topic_partitions: self.offsets_topic_partitions,
                offsets_topic_segment_bytes: self.offsets_topic_segment_bytes,
                data_dir: self.data_dir.clone(),
            },
            clock,
            transport,
            metadata,
            notify,
            controller_tx: ctx,
            controller_join: Mutex::new(Some(controller_join)),
            brokers: RwLock::new(
                ids.iter()
                    .map(|(id, rack)| {
                        (
                            *id,
                            BrokerSlot {
                                rack: rack.clone(),
                                tx: None,
                                killed: Arc::new(AtomicBool::new(false)),
                                join: None,
                                shared: Arc::new(BrokerShared::default()),
                            },
                        )
                    })
                    .collect(),
            ),
            lock: Mutex::new(lock),
            shut: AtomicBool::new(false),
        });
        for (id, _) in &ids {
            inner.start_broker(*id, false)?;
        }
        let cluster = Cluster { inner };
        let deadline = Instant::now() + OP_TIMEOUT;
        let all_up = cluster.inner.notify.wait_until(deadline, || {
            let image = cluster.inner.metadata.get();
            ids.iter()
                .all(|(id, _)| image.brokers.get(id).is_some_and(|b| b.alive))
        });
        if !all_up {
            return Err(Error::Timeout {
                what: "every broker to register with the controller".into(),
                after: OP_TIMEOUT,
            });
        }
        cluster.inner.wait_leaders_settled(None, deadline);
        Ok(cluster)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) replica_lag_time_max: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) replica_fetch_wait_max: Duration,
    pub(crate) offsets_topic_partitions: u32,
    pub(crate) offsets_topic_segment_bytes: u64,
    pub(crate) data_dir: Option<PathBuf>,
}

#[derive(Debug)]
struct BrokerSlot {
    rack: Option<String>,
    tx: Option<InboxSender<Inbound>>,
    killed: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
    shared: Arc<BrokerShared>,
}

/// What every handle shares.
#[derive(Debug)]
pub(crate) struct ClusterInner {
    pub(crate) builder: Settings,
    pub(crate) clock: Clock,
    transport: FaultTransport<Arc<dyn Transport>>,
    pub(crate) metadata: Arc<MetadataCell>,
    pub(crate) notify: Arc<Notify>,
    controller_tx: InboxSender<Inbound>,
    controller_join: Mutex<Option<JoinHandle<()>>>,
    brokers: RwLock<BTreeMap<BrokerId, BrokerSlot>>,
    lock: Mutex<Option<DirLock>>,
    shut: AtomicBool,
}

impl ClusterInner {
    fn broker_dir(&self, id: BrokerId) -> Option<PathBuf> {
        self.builder
            .data_dir
            .as_ref()
            .map(|d| d.join(format!("broker-{}", id.0)))
    }

    fn start_broker(&self, id: BrokerId, restarted: bool) -> Result<()> {
        let mut brokers = self.brokers.write();
        let slot = brokers
            .get_mut(&id)
            .ok_or_else(|| self.unknown_broker(id))?;
        if slot.tx.is_some() {
            return Ok(());
        }
        let (tx, rx) = crate::inbox::inbox();
        let killed = Arc::new(AtomicBool::new(false));
        slot.shared = Arc::new(BrokerShared::new(self.notify.clone()));
        let config = BrokerConfig {
            id,
            rack: slot.rack.clone(),
            dir: self.broker_dir(id),
            replica_lag_time_max: self.builder.replica_lag_time_max,
            heartbeat_interval: (self.builder.session_timeout / 4).max(Duration::from_millis(1)),
            replica_fetch_wait_max: self.builder.replica_fetch_wait_max,
            replica_fetch_max_bytes: 1 << 20,
            fsync: self.builder.fsync,
            restarted,
        };
        let transport: Arc<dyn Transport> = Arc::new(self.transport.clone());
        let broker = Broker::new(
            config,
            self.clock.clone(),
            rx,
            transport.clone(),
            killed.clone(),
            slot.shared.clone(),
            self.metadata.clone(),
            self.builder.offsets_topic_partitions,
        )?;
        transport.register(NodeId::Broker(id), Mailbox { tx: tx.clone() });
        let controller = self.controller_tx.clone();
        let join = std::thread::Builder::new()
            .name(format!("replog-broker-{}", id.0))
            .spawn(move || {
                // However the thread ends, the controller hears of it at once, as
                // it would see a broker process's connection drop.
                struct Exit(BrokerId, InboxSender<Inbound>, Arc<dyn Transport>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.2.unregister(NodeId::Broker(self.0));
                        let _ = self
                            .1
                            .send(Inbound::Client(ClientRequest::BrokerStopped(self.0)));
                    }
                }
                let _exit = Exit(id, controller, transport);
                broker.run();
            })
            .map_err(|e| Error::io(format!("broker {id} thread"), e))?;
        slot.tx = Some(tx);
        slot.killed = killed;
        slot.join = Some(join);
        Ok(())
    }

    fn stop_broker(&self, id: BrokerId, clean: bool) -> Result<()> {
        let join = {
            let mut brokers = self.brokers.write();
            let slot = brokers
                .get_mut(&id)
                .ok_or_else(|| self.unknown_broker(id))?;
            if !clean {
                slot.killed.store(true, Ordering::Release);
            }
            if let Some(tx) = slot.tx.take() {
                let _ = tx.send(Inbound::Stop { clean });
            }
            slot.join.take()
        };
        if let Some(j) = join {
            let _ = j.join();
        }
        Ok(())
    }

    fn unknown_broker(&self, id: BrokerId) -> Error {
        Error::UnknownBroker {
            broker: id,
            known: self.brokers.read().keys().copied().collect(),
        }
    }

    /// The inbox of a live broker.
    pub(crate) fn broker_tx(&self, id: BrokerId) -> Option<InboxSender<Inbound>> {
        self.brokers.read().get(&id).and_then(|s| s.tx.clone())
    }

    /// What a broker publishes about its replicas (None while it is dead).
    pub(crate) fn broker_shared(&self, id: BrokerId) -> Option<Arc<BrokerShared>> {
        let brokers = self.brokers.read();
        let slot = brokers.get(&id)?;
        slot.tx.as_ref()?;
        Some(slot.shared.clone())
    }

    pub(crate) fn is_alive(&self, id: BrokerId) -> bool {
        self.brokers.read().get(&id).is_some_and(|s| s.tx.is_some())
    }

    /// Sends a request to the controller and waits for its answer.
    pub(crate) fn ask_controller<T>(
        &self,
        make: impl FnOnce(Sender<T>) -> ClientRequest,
    ) -> Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.controller_tx
            .send(Inbound::Client(make(tx)))
            .map_err(|_| self.shut_down())?;
        rx.recv_timeout(OP_TIMEOUT).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => Error::Timeout {
                what: "the controller".into(),
                after: OP_TIMEOUT,
            },
            crossbeam_channel::RecvTimeoutError::Disconnected => self.shut_down(),
        })
    }

    pub(crate) fn shut_down(&self) -> Error {
        Error::ShuttingDown {
            what: "the cluster".into(),
        }
    }

    /// Waits (without polling) until every partition with a leader in the image — of
    /// `topic`, or of all topics — is led by a broker that has taken the role.
    pub(crate) fn wait_leaders_settled(&self, topic: Option<&str>, deadline: Instant) -> bool {
        self.notify.wait_until(deadline, || {
            let image = self.metadata.get();
            image
                .topics
                .iter()
                .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
                .flat_map(|(_, t)| t.partitions.iter())
                .all(|p| match p.leader {
                    None => true,
                    Some(l) => {
                        self.broker_shared(l).is_some_and(|s| {
                            s.get(&p.tp).is_some_and(|st| {
                                st.is_leader() && st.leader_epoch() == p.leader_epoch
                            })
                        }) || !self.is_alive(l)
                    }
                })
        })
    }

    /// Whether the cluster has been shut down: clients stop retrying then.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// Creates `__consumer_offsets` on first use: replication factor
    /// `min(3, brokers)`, min.insync `min(2, RF)`, acks=all commits,
    /// `offsets_topic_partitions` partitions.
    ///
    /// The replication factor counts every broker of the cluster, alive or not:
    /// while fewer are alive this waits for them (up to the operation timeout)
    /// rather than create the topic under-replicated for good, as Kafka refuses
    /// to create it below `offsets.topic.replication.factor`.
    pub(crate) fn ensure_offsets_topic(&self) -> Result<()> {
        use crate::group::OFFSETS_TOPIC;
        if self.metadata.get().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let brokers = self.brokers.read().len() as u32;
        let rf = brokers.clamp(1, 3);
        let live = |image: &MetadataImage| image.brokers.values().filter(|b| b.alive).count();
        let deadline = Instant::now() + OP_TIMEOUT;
        loop {
            let enough = self.notify.wait_until(deadline, || {
                let image = self.metadata.get();
                image.topics.contains_key(OFFSETS_TOPIC) || live(&image) >= rf as usize
            });
            if !enough {
                return Err(Error::Timeout {
                    what: format!(
                        "{rf} live brokers to create {OFFSETS_TOPIC} with replication factor min(3, brokers) = {rf} ({} alive)",
                        live(&self.metadata.get())
                    ),
                    after: OP_TIMEOUT,
                });
            }
            let seen = self.metadata.get();
            if seen.topics.contains_key(OFFSETS_TOPIC) {
                return Ok(());
            }
            let config = TopicConfig::new(self.builder.offsets_topic_partitions, rf)
                .min_insync_replicas(rf.min(2))
                .segment_bytes(self.builder.offsets_topic_segment_bytes)
                .retention(None);
            let created = self.ask_controller(|reply| ClientRequest::CreateTopic {
                name: OFFSETS_TOPIC.to_string(),
                config,
                reply,
            })?;
            match created {
                Ok(()) | Err(Error::TopicExists { .. }) => break,
                // The image said enough brokers were alive, the controller knew
                // better (a death not published yet): wait for the next image.
                Err(Error::InvalidReplicationFactor { .. }) if Instant::now() < deadline => {
                    self.notify
                        .wait_until(deadline, || !Arc::ptr_eq(&self.metadata.get(), &seen));
                }
                Err(e) => return Err(e),
            }
        }
        self.wait_leaders_settled(Some(OFFSETS_TOPIC), Instant::now() + OP_TIMEOUT);
        Ok(())
    }

    fn shutdown_all(&self) {
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        let ids: Vec<BrokerId> = self.brokers.read().keys().copied().collect();
        for id in ids {
            let _ = self.stop_broker(id, true);
        }
        let _ = self.controller_tx.send(Inbound::Stop { clean: true });
        if let Some(j) = self.controller_join.lock().take() {
            let _ = j.join();
        }
        self.lock.lock().take();
    }
}

impl Drop for ClusterInner {
    fn drop(&mut self) {
        self.shutdown_all();
    }
}

/// An embedded Kafka-style cluster: a controller and broker threads.
///
/// A cheap `Clone`; dropping the last handle (producers and consumers included)
/// shuts everything down cleanly.
///
/// # Examples
///
/// ```
/// use replog::{Acks, Cluster, ProducerConfig, Record, TopicConfig};
/// # fn main() -> replog::Result<()> {
/// let cluster = Cluster::builder().brokers(3).build()?;
/// cluster.create_topic("orders", TopicConfig::new(3, 3).min_insync_replicas(2))?;
/// let producer = cluster.producer(ProducerConfig::new().acks(Acks::All))?;
/// let meta = producer.send("orders", Record::new("hello").key("k")).wait()?;
/// assert_eq!(meta.topic, "orders");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cluster {
    pub(crate) inner: Arc<ClusterInner>,
}

impl Cluster {
    /// A builder with the defaults: 3 brokers, memory storage, the channel transport.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Creates a topic. Replicas are assigned rack-aware over the live brokers; the
    /// first replica of each partition is its preferred leader and leads at once.
    /// Returns when every partition has its leader in place.
    ///
    /// # Errors
    ///
    /// `InvalidTopicName`, `TopicExists`, `InvalidReplicationFactor` (more replicas
    /// than live brokers), `InvalidConfig` (e.g. `min.insync.replicas` above the
    /// replication factor).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> replog::Result<()> {
    /// let cluster = replog::Cluster::builder().build()?;
    /// let topic = cluster.create_topic("events", replog::TopicConfig::new(6, 3))?;
    /// assert_eq!(topic.partition_count(), 6);
    /// # Ok(()) }
    /// ```
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Topic> {
        self.inner
            .ask_controller(|reply| ClientRequest::CreateTopic {
                name: name.to_string(),
                config,
                reply,
            })??;
        self.inner
            .wait_leaders_settled(Some(name), Instant::now() + OP_TIMEOUT);
        self.topic(name)
    }

    /// Deletes a topic and its data on every replica.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.inner
            .ask_controller(|reply| ClientRequest::DeleteTopic {
                name: name.to_string(),
                reply,
            })?
    }

    /// A live view of a topic.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`.
    pub fn topic(&self, name: &str) -> Result<Topic> {
        if self.inner.metadata.get().topics.contains_key(name) {
            Ok(Topic::new(self.inner.clone(), name.to_string()))
        } else {
            Err(Error::UnknownTopic {
                topic: name.to_string(),
            })
        }
    }

    /// User topics, sorted (internal topics such as `__consumer_offsets` are hidden).
    pub fn topics(&self) -> Vec<String> {
        self.inner
            .metadata
            .get()
            .topics
            .keys()
            .filter(|n| !n.starts_with("__"))
            .cloned()
            .collect()
    }

    /// Every broker id, alive or not.
    pub fn brokers(&self) -> Vec<BrokerId> {
        self.inner.brokers.read().keys().copied().collect()
    }

    /// Whether the broker's thread is running (it may still be isolated).
    pub fn is_alive(&self, broker: BrokerId) -> bool {
        self.inner.is_alive(broker)
    }

    /// Crashes a broker: its thread stops at once, nothing is flushed or handed over.
    /// With memory storage its logs are gone. The controller notices at once and
    /// elects new leaders from the ISR. Killing a dead broker does nothing.
    ///
    /// # Errors
    ///
    /// `UnknownBroker`.
    pub fn kill_broker(&self, broker: BrokerId) -> Result<()> {
        self.inner.stop_broker(broker, false)
    }

    /// Starts a dead broker again (a live one is killed first): it recovers its logs
    /// from its directory, registers, follows its leaders, truncates divergent tails
    /// by leader epoch and catches up. Returns once the controller has it back.
    ///
    /// # Errors
    ///
    /// `UnknownBroker`; `Io`/`Corrupt` if its directory cannot be opened;
    /// `Timeout` if it could not register.
    pub fn restart_broker(&self, broker: BrokerId) -> Result<()> {
        if self.inner.is_alive(broker) {
            self.inner.stop_broker(broker, false)?;
        }
        let before = self
            .inner
            .metadata
            .get()
            .brokers
            .get(&broker)
            .map(|b| b.broker_epoch);
        self.inner.start_broker(broker, true)?;
        let deadline = Instant::now() + OP_TIMEOUT;
        let ok = self.inner.notify.wait_until(deadline, || {
            let image = self.inner.metadata.get();
            image
                .brokers
                .get(&broker)
                .is_some_and(|b| b.alive && Some(b.broker_epoch) != before)
        });
        if !ok {
            return Err(Error::Timeout {
                what: format!("broker {broker} to register after restart"),
                after: OP_TIMEOUT,
            });
        }
        Ok(())
    }

    /// Cuts a broker off from every other broker and the controller; clients still
    /// reach it (the zombie-leader case). After `session_timeout` without heartbeats
    /// the controller fences it and moves its leaderships.
    ///
    /// # Errors
    ///
    /// `UnknownBroker`.
    pub fn isolate_broker(&self, broker: BrokerId) -> Result<()> {
        if !self.inner.brokers.read().contains_key(&broker) {
            return Err(self.inner.unknown_broker(broker));
        }
        self.inner.transport.isolate(NodeId::Broker(broker));
        Ok(())
    }

    /// Restores every link cut by [`Cluster::isolate_broker`].
    pub fn heal(&self) {
        self.inner.transport.heal();
    }

    /// Moves leadership back to each partition's preferred (first) replica wherever it
    /// is alive and in sync (`kafka-leader-election --election-type PREFERRED`).
    pub fn elect_preferred_leaders(&self) -> Result<()> {
        self.inner
            .ask_controller(|reply| ClientRequest::ElectPreferredLeaders { reply })?;
        self.inner
            .wait_leaders_settled(None, Instant::now() + OP_TIMEOUT);
        Ok(())
    }

    /// A producer (see [`Producer`]).
    ///
    /// # Errors
    ///
    /// `InvalidConfig` for bad settings.
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.inner.clone(), config)
    }

    /// A consumer (see [`Consumer`]).
    ///
    /// # Errors
    ///
    /// `InvalidConfig` for bad settings.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self.inner.clone(), config)
    }

    /// A snapshot of the cluster's health counters.
    pub fn metrics(&self) -> ClusterMetrics {
        let image = self.inner.metadata.get();
        ClusterMetrics {
            isr_shrinks: image.counters.isr_shrinks,
            isr_expands: image.counters.isr_expands,
            leader_elections: image.counters.leader_elections,
            unclean_leader_elections: image.counters.unclean_leader_elections,
            live_brokers: self
                .inner
                .brokers
                .read()
                .values()
                .filter(|s| s.tx.is_some())
                .count(),
            under_replicated_partitions: image.under_replicated_partitions(),
            offline_partitions: image.offline_partitions(),
            partitions: image.partition_count(),
        }
    }

    /// The fault-injecting layer every message between nodes passes through; a test
    /// can cut single links, drop or delay messages with it.
    pub fn faults(&self) -> &FaultTransport<Arc<dyn Transport>> {
        &self.inner.transport
    }

    /// Stops every broker cleanly (logs flushed) and the controller, and releases the
    /// data directory.
    pub fn shutdown(self) -> Result<()> {
        self.inner.shutdown_all();
        Ok(())
    }

    /// Where a partition's replicas live right now, for tests and tools.
    #[doc(hidden)]
    pub fn partition_state(&self, tp: &TopicPartition) -> Option<(Option<BrokerId>, u32)> {
        let image = self.inner.metadata.get();
        let p = image
            .topics
            .get(&tp.topic)?
            .partitions
            .get(tp.partition as usize)?;
        Some((p.leader, p.leader_epoch))
    }
}
