//! The broker thread: hosts replicas of many partitions, drives the replication
//! core for those it leads, fetches for those it follows, answers clients, and
//! heartbeats to the controller. It only moves messages and calls the cores.

mod clients;
#[cfg(all(test, not(loom)))]
#[path = "tests/damage_reports.rs"]
mod damage_reports_tests;
#[cfg(all(test, not(loom)))]
#[path = "tests/fetch_answers.rs"]
mod fetch_answers_tests;
mod fetcher;
mod follower;
mod groups;
mod leader;
#[cfg(all(test, not(loom)))]
#[path = "tests/produce_runs.rs"]
mod produce_runs_tests;
#[cfg(all(test, not(loom)))]
#[path = "tests/registration.rs"]
mod registration_tests;
mod replica;
mod replica_map;
#[cfg(any(test, feature = "sim"))]
mod sim;
mod status;
#[cfg(all(test, not(loom)))]
#[path = "tests/support.rs"]
mod test_support;
#[cfg(all(test, not(loom)))]
#[path = "tests/topic_ids.rs"]
mod topic_ids_tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender};

use crate::clock::Clock;
use crate::cluster::MetadataCell;
use crate::config::FsyncPolicy;
use crate::controller::MetadataImage;
use crate::group::{Coordinator, OffsetRecord, OFFSETS_TOPIC};
use crate::hash::{FxHashMap, FxHashSet};
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxReceiver;
use crate::protocol::{
    self, ClientFetch, ClientRequest, Envelope, EpochEndOffset, FetchPartition, GroupReply,
    Inbound, Message, PartitionState, ProduceReply, ProduceResponse,
};
use crate::replication::{AckOutcome, LeaderReady};
use crate::storage::{self, Deleter};
use crate::transport::Transport;
use crate::{Error, Result};

use fetcher::Fetchers;
use replica::{Replica, Role};
pub(crate) use replica_map::ReplicaMap;
pub(crate) use status::{BrokerShared, ReplicaStatus};

/// Settings one broker thread runs with.
#[derive(Clone, Debug)]
pub(crate) struct BrokerConfig {
    pub id: BrokerId,
    pub rack: Option<String>,
    /// The broker's own directory; `None` keeps logs in memory.
    pub dir: Option<PathBuf>,
    pub replica_lag_time_max: Duration,
    pub heartbeat_interval: Duration,
    /// `replica.fetch.wait.max.ms`.
    pub replica_fetch_wait_max: Duration,
    /// `replica.fetch.max.bytes`.
    pub replica_fetch_max_bytes: usize,
    pub fsync: FsyncPolicy,
    /// Started again after a kill: with memory storage, every log is gone.
    pub restarted: bool,
}

/// Everything a broker thread owns.
pub(crate) struct Broker {
    config: BrokerConfig,
    clock: Clock,
    inbox: InboxReceiver<Inbound>,
    transport: Arc<dyn Transport>,
    killed: Arc<AtomicBool>,
    shared: Arc<BrokerShared>,
    broker_epoch: Option<u64>,
    /// The highest broker epoch this start was granted: a late answer to an
    /// earlier registration (it carries a lower one) is not taken after a fence.
    granted_epoch: u64,
    /// This start of the broker (sent with each registration).
    incarnation: u64,
    last_register: Option<Duration>,
    next_heartbeat: Duration,
    next_tick: Duration,
    next_retention: Duration,
    /// Numbers this broker's AlterPartition proposals (see `Message::AlterPartition`).
    next_alter_id: u64,
    /// Walked in partition order, so that every pass over the replicas (ticks,
    /// fetches) runs in the same order each time: a simulation seed replays
    /// exactly, and a change elsewhere keeps the seeds' paths.
    replicas: ReplicaMap,
    /// Per follower, where the partitions of its last fetch were found.
    fetch_memos: FxHashMap<BrokerId, replica_map::SlotMemo>,
    fetchers: Fetchers,
    /// No leader's next deadline (`Leader::next_deadline`) comes before this:
    /// lowered wherever a leader gets a new one (an acks=all waiter, an ISR
    /// proposal), made exact by a pass over the leaders once reached. The run
    /// loop waits on it instead of looking at every leader after each wake-up.
    leaders_due: Duration,
    /// acks=all produce requests waiting for the HW, by waiter id.
    pending_acks: FxHashMap<u64, PendingAck>,
    next_waiter: u64,
    parked_replica_fetches: Vec<ParkedReplicaFetch>,
    parked_client_fetches: Vec<ParkedClientFetch>,
    /// Partitions whose log or HW changed since parked fetches were last looked at.
    dirty: FxHashSet<TopicPartition>,
    lost_data: Vec<TopicPartition>,
    /// Followers that cut records over a bad CRC while running: reported to the
    /// controller with every heartbeat (the network may lose a report) until it
    /// acknowledges, or the replica has refetched that far.
    damaged: BTreeMap<TopicPartition, Damage>,
    /// Per partition, the last creation of its topic this broker was told to
    /// delete: a late state of it must not bring its replica back.
    deleted: BTreeMap<TopicPartition, u64>,
    /// The number of the last damage report (see [`Damage::report`]).
    last_damage_report: u64,
    /// The group coordinator for the offsets partitions this broker leads.
    coordinator: Coordinator,
    /// Offsets partitions whose records have been replayed into the coordinator.
    loaded_offsets: HashSet<u32>,
    /// Compactions of the offsets partitions this broker leads, by partition: the
    /// snapshot is written and waits to be committed before what lies below it is
    /// deleted.
    offsets_compactions: BTreeMap<u32, OffsetsCompaction>,
    /// Bytes of each offsets partition's last snapshot: the next compaction waits
    /// until the log holds twice that (and at least its `segment.bytes`).
    offsets_snapshot_bytes: BTreeMap<u32, u64>,
    /// The cluster metadata, for the partition counts the coordinator assigns from.
    metadata: Arc<MetadataCell>,
    seen_image: Option<Arc<MetadataImage>>,
    /// Removes deleted partitions' directories, and closes removed segments' files,
    /// off this thread.
    deleter: Deleter,
    /// The memory this broker's memory logs copy the batches they stamp into.
    chunks: storage::Chunks,
}

/// Distinguishes coordinator incarnations (member ids must never repeat).
static INCARNATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("id", &self.config.id)
            .field("replicas", &self.replicas.len())
            .finish()
    }
}

/// A follower's cut over a bad CRC, not yet acknowledged by the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Damage {
    /// The log end before the cut: once refetched that far, nothing is missing.
    until: u64,
    /// The number of the latest cut's report: an ack names the report it answers,
    /// and only the latest one's settles it.
    report: u64,
    /// The creation of the topic whose replica was cut: a replica of another
    /// creation of the topic (it was deleted and created again) misses nothing.
    topic_id: u64,
}

/// A snapshot of an offsets partition's live offsets, written at `base..end` in
/// leader epoch `epoch`.
#[derive(Clone, Copy, Debug)]
struct OffsetsCompaction {
    base: u64,
    end: u64,
    epoch: u32,
    bytes: u64,
}

#[derive(Debug)]
struct PendingAck {
    request_id: u64,
    tp: TopicPartition,
    base_offset: u64,
    target: AckTarget,
}

/// Who waits for an `acks=all` append.
#[derive(Debug)]
enum AckTarget {
    Producer(ProduceReply),
    /// An offset commit: applied to the coordinator once committed.
    Commit {
        records: Vec<OffsetRecord>,
        reply: Sender<Result<GroupReply>>,
    },
}

impl PendingAck {
    fn answer(self, result: Result<u64>, coordinator: &mut Coordinator) {
        match self.target {
            AckTarget::Producer(reply) => {
                reply.send(ProduceResponse {
                    id: self.request_id,
                    result,
                });
            }
            AckTarget::Commit { records, reply } => {
                let result = result.map(|_| {
                    coordinator.commit_applied(&records);
                    GroupReply::Done
                });
                let _ = reply.send(result);
            }
        }
    }
}

#[derive(Debug)]
struct ParkedReplicaFetch {
    from: BrokerId,
    /// The follower's broker epoch (its incarnation).
    broker_epoch: u64,
    request_id: u64,
    max_bytes: usize,
    partitions: Vec<FetchPartition>,
    /// Where each of `partitions` was found among the replicas.
    slots: replica_map::Slots,
    deadline: Duration,
    /// Some partition's leadership was not heard of here when the fetch came:
    /// its position is recorded again once it is.
    unheard: bool,
    /// Where each partition is in `partitions`, built the first time a fetch of
    /// many partitions waits past a round (see `Broker::has_news`).
    index: Option<FxHashMap<Arc<TopicPartition>, usize>>,
}

#[derive(Debug)]
struct ParkedClientFetch {
    fetch: ClientFetch,
    deadline: Duration,
}

/// How many inbox messages are handled before parked fetches are looked at, so that
/// a burst of produce requests wakes each follower once.
const DRAIN: usize = 256;

/// Produce requests for one partition queued one behind another are appended in
/// one write of up to about this many bytes (Kafka's default `max.request.size`).
/// A write's kernel cost is mostly per call and per page-cache page: on ext4, 16 KiB
/// writes cost 60 ns per 124-byte record, 80 KiB ones 34 ns, 1 MiB ones 20 ns.
const PRODUCE_RUN_BYTES: usize = 1 << 20;

impl Broker {
    /// Opens the broker's logs (recovering them from its directory) and prepares the
    /// thread state. Nothing runs until [`Broker::run`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: BrokerConfig,
        clock: Clock,
        inbox: InboxReceiver<Inbound>,
        transport: Arc<dyn Transport>,
        killed: Arc<AtomicBool>,
        shared: Arc<BrokerShared>,
        metadata: Arc<MetadataCell>,
        offsets_partitions: u32,
    ) -> Result<Self> {
        let incarnation = INCARNATION.fetch_add(1, Ordering::Relaxed);
        let mut broker = Broker {
            coordinator: Coordinator::new(
                format!("b{}i{incarnation}", config.id.0),
                offsets_partitions,
            ),
            loaded_offsets: HashSet::new(),
            offsets_compactions: BTreeMap::new(),
            offsets_snapshot_bytes: BTreeMap::new(),
            metadata,
            seen_image: None,
            deleter: Deleter::new(format!("replog-deleter-{}", config.id.0)),
            chunks: storage::Chunks::default(),
            fetchers: Fetchers::new(config.replica_fetch_wait_max),
            config,
            clock,
            inbox,
            transport,
            killed,
            shared,
            broker_epoch: None,
            granted_epoch: 0,
            incarnation,
            last_register: None,
            next_heartbeat: Duration::ZERO,
            next_tick: Duration::ZERO,
            next_retention: RETENTION_CHECK,
            next_alter_id: 0,
            replicas: ReplicaMap::default(),
            fetch_memos: FxHashMap::default(),
            leaders_due: Duration::ZERO,
            pending_acks: FxHashMap::default(),
            next_waiter: 0,
            parked_replica_fetches: Vec::new(),
            parked_client_fetches: Vec::new(),
            dirty: FxHashSet::default(),
            lost_data: Vec::new(),
            damaged: BTreeMap::new(),
            deleted: BTreeMap::new(),
            last_damage_report: 0,
        };
        broker.shared.clear();
        broker.open_existing_logs()?;
        Ok(broker)
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn me(&self) -> NodeId {
        NodeId::Broker(self.config.id)
    }

    /// Recovers every partition directory found under the broker's directory.
    fn open_existing_logs(&mut self) -> Result<()> {
        let Some(dir) = self.config.dir.clone() else {
            return Ok(());
        };
        self.deleter.delete_leftovers(&dir);
        for (tp, path) in replica::partition_dirs(&dir)? {
            let (replica, lost) = Replica::open_disk(
                tp.clone(),
                &path,
                self.config.fsync,
                self.shared.status(&tp),
            )?;
            if lost {
                self.lost_data.push(tp.clone());
            }
            self.replicas.insert(tp, replica);
        }
        Ok(())
    }

    /// The thread body: runs until killed, stopped, or the inbox closes.
    pub(crate) fn run(mut self) {
        self.serve();
        if self.killed.load(Ordering::Acquire) {
            // A crash does not wait for deletions: what the deleter has queued goes
            // on without this broker, and a restart removes what it leaves.
            self.deleter.detach();
        }
    }

    fn serve(&mut self) {
        self.register();
        loop {
            let now = self.now();
            let deadline = self.next_deadline(now);
            let first = match self.inbox.recv_timeout(deadline.saturating_sub(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut next = first;
            let mut handled = 0;
            while let Some(m) = next.take() {
                if !self.handle_run(m, &mut next, &mut handled) {
                    return;
                }
                if self.killed.load(Ordering::Acquire) {
                    return;
                }
                if handled > DRAIN {
                    break;
                }
                if next.is_none() {
                    next = self.inbox.try_recv().ok();
                }
            }
            if let Some(m) = next {
                // Read, but over the drain's budget: handled before waiting again.
                if !self.handle(m) {
                    return;
                }
            }
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            self.on_idle();
        }
    }

    pub(crate) fn next_deadline(&self, now: Duration) -> Duration {
        let mut d = self.next_heartbeat.min(self.next_tick);
        if self.broker_epoch.is_none() {
            d = d.min(self.last_register.map_or(now, |t| t + REGISTER_RETRY));
        }
        for p in &self.parked_replica_fetches {
            d = d.min(p.deadline);
        }
        for p in &self.parked_client_fetches {
            d = d.min(p.deadline);
        }
        if let Some(c) = self.coordinator.next_deadline() {
            d = d.min(c);
        }
        if self.broker_epoch.is_some() {
            if let Some(f) = self.fetchers.next_deadline() {
                d = d.min(f);
            }
        }
        d.min(self.leaders_due).max(now)
    }

    /// Handles `m`, and with a produce request for a partition whose log writes
    /// runs at once (on disk) the ones queued right behind it for the same
    /// partition: they are appended in one write ([`produce_run`](Self::produce_run)).
    /// The first message read that does not belong to the run is left in `next`.
    /// `handled` counts messages; false ends the thread.
    fn handle_run(&mut self, m: Inbound, next: &mut Option<Inbound>, handled: &mut usize) -> bool {
        *handled += 1;
        let first = match m {
            Inbound::Client(ClientRequest::Produce(p))
                if self
                    .replicas
                    .get(&p.tp)
                    .is_some_and(|r| r.log.writes_runs_at_once()) =>
            {
                p
            }
            m => return self.handle(m),
        };
        let mut run = vec![first];
        let mut bytes = run[0].batch.len();
        while *handled <= DRAIN && bytes < PRODUCE_RUN_BYTES {
            match self.inbox.try_recv() {
                Ok(Inbound::Client(ClientRequest::Produce(p))) if p.tp == run[0].tp => {
                    *handled += 1;
                    bytes += p.batch.len();
                    run.push(p);
                }
                Ok(other) => {
                    *next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        self.produce_run(run);
        true
    }

    /// Handles one inbox message; false ends the thread.
    pub(crate) fn handle(&mut self, m: Inbound) -> bool {
        match m {
            Inbound::Stop { clean } => {
                if clean {
                    for r in self.replicas.values_mut() {
                        let _ = r.log.flush();
                    }
                }
                false
            }
            Inbound::Client(req) => {
                self.handle_client(req);
                true
            }
            Inbound::Peer(env) => {
                self.handle_peer(env);
                true
            }
        }
    }

    fn send(&self, to: NodeId, message: Message) {
        self.transport.send(Envelope::new(self.me(), to, message));
    }

    pub(crate) fn register(&mut self) {
        let now = self.now();
        self.last_register = Some(now);
        let lost_all = self.config.restarted && self.config.dir.is_none();
        self.send(
            NodeId::Controller,
            Message::RegisterBroker {
                broker: self.config.id,
                rack: self.config.rack.clone(),
                lost_data: self.lost_data.clone(),
                lost_all,
                incarnation: self.incarnation,
            },
        );
    }

    // ---- periodic work -------------------------------------------------------

    /// Periodic work after a burst of messages or a deadline: ticks, heartbeats,
    /// parked fetches, follower fetches.
    pub(crate) fn on_idle(&mut self) {
        let now = self.now();
        if self.broker_epoch.is_none()
            && self.last_register.is_none_or(|t| now >= t + REGISTER_RETRY)
        {
            self.register();
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            if let Some(broker_epoch) = self.broker_epoch {
                let state_digest = self.state_digest();
                self.send(
                    NodeId::Controller,
                    Message::Heartbeat {
                        broker_epoch,
                        state_digest,
                    },
                );
                self.report_damage(broker_epoch);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + (self.config.replica_lag_time_max / 4).max(MIN_TICK);
            self.tick_leaders(now);
        } else {
            // Waiter deadlines and AlterPartition retries may be due before the ISR check.
            self.tick_due_leaders(now);
        }
        if now >= self.next_retention {
            self.next_retention = now + RETENTION_CHECK;
            self.apply_retention();
            self.compact_offsets(now);
            self.chunks.tick();
        }
        self.tick_coordinator(now);
        self.serve_parked(now);
        self.send_fetches(now);
    }

    /// `retention.bytes` and `retention.ms`: whole old segments go, the log start
    /// offset moves up (`log.retention.check.interval.ms`). A follower whose fetch
    /// position falls below its leader's log start restarts its log there.
    fn apply_retention(&mut self) {
        let now_ms = crate::wall_clock::now_ms();
        for r in self.replicas.values_mut() {
            let limits = r
                .state
                .as_ref()
                .map(|st| (st.config.retention_bytes, st.config.retention));
            if let Some((bytes, age)) = limits.filter(|(b, a)| b.is_some() || a.is_some()) {
                let before = r.log.log_start_offset();
                if r.log
                    .apply_retention(bytes, age, now_ms, r.high_watermark())
                    .is_ok_and(|s| s != before)
                {
                    r.publish();
                }
            }
            // The files of segments removed now or by a truncation since the last
            // pass are closed off this thread (see `Deleter`).
            self.deleter.close(r.log.take_retired());
        }
    }

    fn tick_leaders(&mut self, now: Duration) {
        let tps: Vec<TopicPartition> = self
            .replicas
            .iter()
            .filter(|(_, r)| matches!(r.role, Role::Leader(_)))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in tps {
            self.tick_leader(&tp, now);
        }
        self.leaders_due = self.earliest_leader_deadline();
    }

    fn tick_due_leaders(&mut self, now: Duration) {
        #[cfg(any(debug_assertions, feature = "sim"))]
        self.check_leaders_due();
        if now < self.leaders_due {
            return;
        }
        let tps: Vec<TopicPartition> = self
            .replicas
            .iter()
            .filter(|(_, r)| match &r.role {
                Role::Leader(l) => l.next_deadline().is_some_and(|d| d <= now),
                _ => false,
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in tps {
            self.tick_leader(&tp, now);
        }
        self.leaders_due = self.earliest_leader_deadline();
    }

    /// The earliest of the leaders' next deadlines, exactly.
    fn earliest_leader_deadline(&self) -> Duration {
        self.replicas
            .values()
            .filter_map(|r| match &r.role {
                Role::Leader(l) => l.next_deadline(),
                _ => None,
            })
            .min()
            .unwrap_or(Duration::MAX)
    }

    /// `leaders_due` is a lower bound: a leader deadline set without lowering it
    /// would be acted on late.
    #[cfg(any(debug_assertions, feature = "sim"))]
    fn check_leaders_due(&self) {
        let earliest = self.earliest_leader_deadline();
        assert!(
            earliest >= self.leaders_due,
            "broker {}: a leader deadline {earliest:?} came before leaders_due {:?}",
            self.config.id,
            self.leaders_due
        );
    }

    fn tick_leader(&mut self, tp: &TopicPartition, now: Duration) {
        let Some(r) = self.replicas.get_mut(tp) else {
            return;
        };
        let Role::Leader(l) = &mut r.role else {
            return;
        };
        let ready = l.tick(now);
        self.apply_ready(tp, ready);
    }

    /// Acts on what the leader core decided: publish the HW, answer finished acks,
    /// propose an ISR change.
    fn apply_ready(&mut self, tp: &TopicPartition, ready: LeaderReady) {
        let Some(r) = self.replicas.get_mut(tp) else {
            return;
        };
        let Role::Leader(l) = &r.role else {
            return;
        };
        if let Some(hw) = ready.hw {
            r.status.set_hw(hw);
            mark_dirty(&mut self.dirty, tp);
        }
        let isr_len = l.isr().len();
        let min_isr = l.min_insync();
        let epochs = (l.leader_epoch(), l.partition_epoch());
        if let Some(isr) = ready.alter_isr {
            // The proposal is answered or sent again by a deadline.
            if let Some(due) = l.next_deadline() {
                self.leaders_due = self.leaders_due.min(due);
            }
            trace!("broker {}: {tp} proposes ISR {isr:?}", self.config.id);
            self.propose_isr(tp, epochs, isr);
        }
        for (id, outcome) in ready.acks {
            let Some(p) = self.pending_acks.remove(&id) else {
                continue;
            };
            let me = self.config.id;
            let result = match outcome {
                AckOutcome::Committed => Ok(p.base_offset),
                AckOutcome::CommittedBelowMinIsr { isr } => {
                    Err(Error::NotEnoughReplicasAfterAppend {
                        topic: p.tp.topic.clone(),
                        partition: p.tp.partition,
                        isr,
                        required: min_isr,
                    })
                }
                AckOutcome::TimedOut => Err(Error::Timeout {
                    what: format!("acks=all on {} (ISR of {isr_len})", p.tp),
                    after: Duration::ZERO,
                }),
                AckOutcome::NotLeader => Err(Error::NotLeader {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    broker: me,
                }),
            };
            p.answer(result, &mut self.coordinator);
        }
    }

    /// Sends an AlterPartition for `tp` as its leader at `(leader epoch, partition
    /// epoch)`, numbered so the controller can refuse a delayed copy.
    fn propose_isr(&mut self, tp: &TopicPartition, epochs: (u32, u32), new_isr: Vec<BrokerId>) {
        self.next_alter_id += 1;
        let request_id = self.next_alter_id;
        let Some(r) = self.replicas.get_mut(tp) else {
            return;
        };
        let topic_id = r.topic_id.unwrap_or(0);
        let member_epochs = match &mut r.role {
            Role::Leader(l) => l.sending_proposal(&new_isr, request_id),
            _ => Vec::new(),
        };
        let message = Message::AlterPartition {
            member_epochs,
            request_id,
            broker_epoch: self.broker_epoch.unwrap_or(0),
            tp: tp.clone(),
            topic_id,
            leader_epoch: epochs.0,
            partition_epoch: epochs.1,
            new_isr,
        };
        self.send(NodeId::Controller, message);
    }

    // ---- messages from peers -------------------------------------------------

    fn handle_peer(&mut self, env: Envelope) {
        let now = self.now();
        let from = env.from;
        match env.message {
            Message::Registered {
                broker_epoch,
                incarnation,
            } => {
                // Only an answer to this start's latest registration: a late one
                // to a start a restart replaced, or to a registration before a
                // fence, must neither grant a stale epoch nor clear the loss
                // markers the controller has not yet been told of (rule 5).
                if self.broker_epoch.is_none()
                    && incarnation == self.incarnation
                    && broker_epoch > self.granted_epoch
                {
                    self.broker_epoch = Some(broker_epoch);
                    self.granted_epoch = broker_epoch;
                    // What was lost is reported once; after that the controller knows
                    // (and keeps it in its metadata). A later registration (after a
                    // fence) must not claim the logs it has since rebuilt are gone.
                    for tp in std::mem::take(&mut self.lost_data) {
                        self.clear_loss_marker(&tp);
                    }
                    self.config.restarted = false;
                }
            }
            Message::ReplicaDamagedAck { tp, report } => {
                // The controller keeps the replica ineligible in its metadata
                // until it is back in the ISR: nothing left to report or to keep.
                // A late ack of an earlier cut (the replica has since rejoined
                // and cut again) says nothing of the latest one.
                if self.damaged.get(&tp).is_some_and(|d| d.report == report) {
                    self.damaged.remove(&tp);
                    self.clear_loss_marker(&tp);
                }
            }
            Message::HeartbeatReply {
                broker_epoch,
                fenced,
            } => {
                // A late answer to a heartbeat of an epoch since left (fenced,
                // registered again) does not fence the current one.
                if fenced && self.broker_epoch == Some(broker_epoch) {
                    self.broker_epoch = None;
                    self.last_register = None;
                }
            }
            // The fetch sessions are refreshed once per message, not once per
            // partition: each refresh passes over every replica, so a topic of n
            // partitions would cost n² to create or delete.
            Message::LeaderAndIsr {
                partitions,
                complete_as_of,
            } => {
                let listed: Option<BTreeSet<TopicPartition>> =
                    complete_as_of.map(|_| partitions.iter().map(|st| st.tp.clone()).collect());
                let mut changed = false;
                for st in partitions {
                    changed |= self.apply_one_state(st, now);
                }
                if let (Some(created), Some(listed)) = (complete_as_of, listed) {
                    changed |= self.remove_strays(created, &listed);
                }
                if changed {
                    self.states_changed();
                }
            }
            Message::StopReplica { partitions, delete } => {
                let mut stopped = false;
                for (tp, topic_id) in partitions {
                    if delete {
                        self.remember_deleted(&tp, topic_id);
                    }
                    // A late StopReplica of a deleted topic must spare the topic
                    // created again under its name.
                    let later = self.replicas.get(&tp).and_then(|r| r.topic_id);
                    // The simulation's checker must catch a StopReplica that ignores
                    // which creation it is about.
                    #[cfg(any(test, feature = "sim"))]
                    let later = later.filter(|_| {
                        crate::sim::broken_rule() != crate::sim::BrokenRule::StopAnyCreation
                    });
                    if later.is_none_or(|id| id <= topic_id) {
                        stopped |= self.stop_replica(&tp, delete);
                    }
                }
                if stopped {
                    self.fetchers.refresh(&self.replicas);
                }
            }
            Message::AlterPartitionReply {
                tp,
                request_id,
                result,
            } => {
                trace!(
                    "broker {}: {tp} AlterPartition answered {result:?}",
                    self.config.id
                );
                match result {
                    Ok(st) => self.apply_partition_state(st, now),
                    Err(e) => {
                        if let Some(Replica {
                            role: Role::Leader(l),
                            ..
                        }) = self.replicas.get_mut(&tp)
                        {
                            l.alter_refused(request_id, e);
                        }
                    }
                }
            }
            Message::Fetch {
                request_id,
                replica,
                broker_epoch,
                max_wait_ms,
                max_bytes,
                partitions,
            } => {
                let _ = from;
                self.handle_replica_fetch(
                    (replica, broker_epoch),
                    request_id,
                    max_bytes,
                    partitions,
                    now + Duration::from_millis(max_wait_ms),
                    now,
                );
            }
            Message::FetchReply {
                request_id,
                partitions,
            } => {
                if let NodeId::Broker(leader) = from {
                    if self.fetchers.complete(leader, request_id) {
                        for p in partitions {
                            self.handle_fetch_response(leader, p, now);
                        }
                    }
                }
            }
            // Controller-bound messages never reach a broker.
            Message::RegisterBroker { .. }
            | Message::Heartbeat { .. }
            | Message::AlterPartition { .. }
            | Message::ReplicaDamaged { .. } => {}
        }
    }

    /// The digest of what this broker hosts, for its heartbeat: the state of each
    /// replica, and each replica of a known creation that has no state (left by a
    /// deleted topic, or its state lost), so that the controller's complete answer
    /// removes or updates it.
    fn state_digest(&self) -> u64 {
        let states = self.replicas.values().filter_map(|r| r.state.as_ref());
        let stateless = self
            .replicas
            .iter()
            .filter(|(_, r)| r.state.is_none())
            .filter_map(|(tp, r)| r.topic_id.map(|id| (tp, id)));
        protocol::state_digest(states).wrapping_add(protocol::stateless_digest(stateless))
    }

    /// Remembers that the creation `topic_id` of `tp`'s topic was deleted, so that
    /// a late state of it (or of an earlier one) is ignored.
    fn remember_deleted(&mut self, tp: &TopicPartition, topic_id: u64) {
        let last = self.deleted.entry(tp.clone()).or_insert(topic_id);
        *last = (*last).max(topic_id);
    }

    /// Removes the replicas a complete LeaderAndIsr as of the controller's
    /// `created`th topic creation does not list: those of earlier creations are
    /// left by topics deleted since (their StopReplica lost, or sent while this
    /// broker was down). A replica of a later creation is newer than the list and
    /// stays, as does one whose creation is unknown (its `topic.id` unreadable): it
    /// may hold the only copy of acknowledged records. Whether any was removed.
    fn remove_strays(&mut self, created: u64, listed: &BTreeSet<TopicPartition>) -> bool {
        let strays: Vec<(TopicPartition, u64)> = self
            .replicas
            .iter()
            .filter(|(tp, _)| !listed.contains(*tp))
            .filter_map(|(tp, r)| {
                r.topic_id
                    .filter(|id| *id <= created)
                    .map(|id| (tp.clone(), id))
            })
            .collect();
        for (tp, topic_id) in &strays {
            trace!(
                "broker {}: {tp} of deleted topic id {topic_id} removed",
                self.config.id
            );
            self.remember_deleted(tp, *topic_id);
            self.stop_replica(tp, true);
        }
        !strays.is_empty()
    }

    /// Applies a LeaderAndIsr (or an accepted AlterPartition) for one partition.
    fn apply_partition_state(&mut self, st: PartitionState, now: Duration) {
        if self.apply_one_state(st, now) {
            self.states_changed();
        }
    }

    /// What follows applied partition states: fetch sessions for exactly the
    /// leaders followed now, and the handles told.
    fn states_changed(&mut self) {
        self.fetchers.refresh(&self.replicas);
        self.shared.changed();
    }

    /// [`apply_partition_state`](Self::apply_partition_state) without what
    /// [`states_changed`](Self::states_changed) does; whether the state was applied
    /// (not stale, not already applied, not for another broker).
    fn apply_one_state(&mut self, st: PartitionState, now: Duration) -> bool {
        let me = self.config.id;
        trace!(
            "broker {me}: {} leader {:?} epoch {} isr {:?} pe {}",
            st.tp,
            st.leader,
            st.leader_epoch,
            st.isr,
            st.partition_epoch
        );
        if !st.replicas.contains(&me) {
            return false;
        }
        if self.deleted.get(&st.tp).is_some_and(|d| st.topic_id <= *d) {
            return false; // late word of a creation deleted since
        }
        if !self.host(&st.tp) {
            return false;
        }
        match self.replicas.get(&st.tp).and_then(|r| r.topic_id) {
            // Late word of a deleted topic: this replica belongs to its successor.
            Some(id) if id > st.topic_id => return false,
            // What is left of a deleted topic whose StopReplica never came (or
            // came while this broker was down): its records must not pass for the
            // new topic's.
            Some(id) if id < st.topic_id => {
                self.stop_replica(&st.tp, true);
                if !self.host(&st.tp) {
                    return false;
                }
            }
            _ => {}
        }
        let lag = self.config.replica_lag_time_max;
        let dir = self.partition_dir(&st.tp);
        let r = self.replicas.get_mut(&st.tp).expect("inserted above");
        if !r.is_of(st.topic_id) {
            r.topic_id = Some(st.topic_id);
            if let Some(dir) = dir {
                // Not written: a restart finds no id and takes the next state's,
                // as before topic ids (only a deletion it missed goes unnoticed).
                let _ = storage::write_topic_id(&dir, st.topic_id, self.config.fsync);
            }
        }
        if let Some(cur) = &r.state {
            if st.leader_epoch < cur.leader_epoch
                || (st.leader_epoch == cur.leader_epoch
                    && st.partition_epoch <= cur.partition_epoch
                    && r.role.matches(&st, me))
            {
                return false; // stale or already applied
            }
        }
        let tp = st.tp.clone();
        let (resigned, isr_ready) = r.apply_state(st, me, lag, now);
        for id in resigned {
            if let Some(p) = self.pending_acks.remove(&id) {
                let e = Error::NotLeader {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    broker: me,
                };
                p.answer(Err(e), &mut self.coordinator);
            }
        }
        mark_dirty(&mut self.dirty, &tp);
        // A new ISR may let the HW move right away (e.g. a dead follower removed).
        self.apply_ready(&tp, isr_ready);
        if tp.topic == OFFSETS_TOPIC {
            self.sync_offsets_partition(&tp);
        }
        true
    }

    /// Where the replica of `tp` keeps its files, when this broker has a data dir.
    pub(super) fn partition_dir(&self, tp: &TopicPartition) -> Option<PathBuf> {
        self.config
            .dir
            .as_ref()
            .map(|d| d.join(replica::dir_name(tp)))
    }

    /// The loss the replica of `tp` reported needs reporting no more (the
    /// controller heard it, or the replica holds the records again): its marker
    /// goes. A marker left by a failed removal only makes a later start report the
    /// loss again: ineligible for longer, never unsafe.
    pub(super) fn clear_loss_marker(&self, tp: &TopicPartition) {
        if let Some(path) = self.partition_dir(tp) {
            let _ = storage::loss_reported(&path);
        }
    }

    /// Hosts a replica of `tp` unless it does already (its files opened, or an
    /// empty log in memory). False if its files could not be opened.
    fn host(&mut self, tp: &TopicPartition) -> bool {
        if self.replicas.contains_key(tp) {
            return true;
        }
        match self.create_replica(tp) {
            Ok(r) => {
                self.replicas.insert(tp.clone(), r);
                true
            }
            Err(_) => false,
        }
    }

    fn create_replica(&mut self, tp: &TopicPartition) -> Result<Replica> {
        let status = self.shared.status(tp);
        match self.partition_dir(tp) {
            None => Ok(Replica::memory(tp.clone(), status, self.chunks.clone())),
            Some(path) => {
                let (r, _) = Replica::open_disk(tp.clone(), &path, self.config.fsync, status)?;
                Ok(r)
            }
        }
    }

    /// Stops (and with `delete` removes) the replica of `tp`; whether there was one.
    /// The caller refreshes the fetch sessions.
    fn stop_replica(&mut self, tp: &TopicPartition, delete: bool) -> bool {
        let Some(mut r) = self.replicas.remove(tp) else {
            return false;
        };
        let ids = r.resign();
        for id in ids {
            if let Some(p) = self.pending_acks.remove(&id) {
                let e = Error::UnknownTopic {
                    topic: p.tp.topic.clone(),
                };
                p.answer(Err(e), &mut self.coordinator);
            }
        }
        if tp.topic == OFFSETS_TOPIC && self.loaded_offsets.remove(&tp.partition) {
            self.coordinator.unload(tp.partition);
        }
        self.shared.remove(tp);
        // A memory log's batches are gone with it: their chunks can be reused.
        self.chunks.released();
        if delete {
            if let Some(path) = self.partition_dir(tp) {
                // The log goes with its directory: its files' last close may
                // take long (see `Deleter`).
                self.deleter.delete(&path, Some(r.log));
            }
        }
        true
    }
}

/// Marks `tp` in `dirty` for the parked fetches to look at. Looked up first: on
/// the produce path the partition is mostly marked already, and its name is then
/// not copied.
fn mark_dirty(dirty: &mut FxHashSet<TopicPartition>, tp: &TopicPartition) {
    if !dirty.contains(tp) {
        dirty.insert(tp.clone());
    }
}

/// Retry interval for an unanswered RegisterBroker.
const REGISTER_RETRY: Duration = Duration::from_millis(100);
/// `log.retention.check.interval.ms` (Kafka: 5 minutes; a check here is cheap).
const RETENTION_CHECK: Duration = Duration::from_secs(1);
/// How often a corrupt leader repeats its resignation if no answer came.
const RESIGN_RETRY: Duration = Duration::from_millis(100);
/// The shortest interval between ISR checks.
const MIN_TICK: Duration = Duration::from_millis(5);

/// [`diverging`] on the leader of `leader_epoch`, without a look at its epochs when
/// the follower's last batch is of that epoch: only this leader writes batches of
/// its epoch, and a leader never cuts its own log, so the follower's log is a
/// prefix of this one. Checked for every partition of every fetch.
fn diverging_from_leader(
    r: &Replica,
    leader_epoch: u32,
    last_epoch: u32,
    fetch_offset: u64,
) -> Option<EpochEndOffset> {
    if last_epoch == leader_epoch && fetch_offset <= r.log.log_end_offset() {
        return None;
    }
    diverging(r, last_epoch, fetch_offset)
}

/// OffsetForLeaderEpoch on the leader (KIP-101, KIP-279): the follower's log, whose
/// last batch has `last_epoch` and which ends at `fetch_offset`, diverges from ours
/// when our log has no such epoch or ends that epoch earlier.
fn diverging(r: &Replica, last_epoch: u32, fetch_offset: u64) -> Option<EpochEndOffset> {
    if r.log.log_start_offset() > 0 && r.log.earliest_epoch().is_some_and(|e| last_epoch < e) {
        // Older than every epoch this log still knows, and records were deleted
        // below its start (retention, compaction, a reset): the first epoch's entry
        // was moved up to the log start, so where the follower's epoch really ended
        // went with them, and none of its records can be vouched for. It cuts them
        // all and starts again at this log's start (they lie below it anyway).
        return Some(EpochEndOffset {
            epoch: last_epoch,
            end_offset: 0,
        });
    }
    match r.log.end_offset_for_epoch(last_epoch) {
        Some((epoch, end)) if epoch == last_epoch && end >= fetch_offset => None,
        Some((epoch, end)) => Some(EpochEndOffset {
            epoch,
            end_offset: end,
        }),
        None => Some(EpochEndOffset {
            epoch: last_epoch,
            end_offset: r.log.log_start_offset(),
        }),
    }
}
