//! A deterministic simulation of a whole cluster in one thread.
//!
//! The controller and every broker are driven through the same stepping functions
//! their threads use (`ControllerThread::step`/`tick_due`, `Broker::handle`/
//! `on_idle`), on a virtual clock that only this loop moves. The network is a
//! transport whose envelopes the loop delivers itself, after delays drawn
//! from a seeded RNG; messages are dropped, delayed, duplicated and reordered; brokers
//! are killed and restarted with and without their storage (torn tails and flipped
//! bytes at restart), isolated and healed, on a schedule drawn from the same seed.
//! Producers with `acks` 0, 1 and all and consumers run throughout. The
//! checker looks at every replica after every step and at the end.
//!
//! The same seed gives the same run, event for event ([`SimOutcome::trace_hash`]):
//! the loop picks the next event by virtual time with a sequence number breaking
//! ties, iterates nothing in hash order, and draws every random choice from one of
//! several RNG streams of the seed (shape, faults, network, clients). A failing seed replays with
//! [`SimOutcome::replay_command`].
//!
//! # Examples
//!
//! ```ignore
//! let outcome = replog::sim::run(42, &replog::sim::SimOptions::default());
//! assert!(outcome.passed(), "{}", outcome.report());
//! ```

mod checker;
mod client;
mod faults;
mod net;
mod rng;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{Broker, BrokerConfig, BrokerShared};
use crate::clock::Clock;
use crate::cluster::notify::Notify;
use crate::cluster::{ControllerThread, MetadataCell};
use crate::config::{Acks, FsyncPolicy, TopicConfig};
use crate::controller::{Controller, ControllerConfig, MetadataImage};
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxSender;
use crate::protocol::{ClientRequest, Envelope, Inbound, ProduceRequest};
use crate::transport::Transport;

pub use checker::Tally;
pub use faults::{FaultCounts, FaultKind};
pub use net::NetConfig;

use crate::group::OFFSETS_TOPIC;
use checker::{Checker, CHURN};
use client::{ClientView, Outgoing, SimCommitter, SimConsumer, SimProducer};
use faults::{Action, Damage};
use net::{Network, SimTransport};
use rng::Rng;

/// A rule of the protocol broken on purpose, to show that the checker notices.
/// Set per thread (a simulation runs in one), so other tests are not affected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BrokenRule {
    /// Nothing broken: the production rules.
    #[default]
    None,
    /// The leader takes its HW from its own log end, ignoring its followers.
    HwFromLeaderLeo,
    /// The controller elects the first live replica, in the ISR or not.
    ElectAnyLive,
    /// A compaction's snapshot of `__consumer_offsets` leaves out the commits
    /// written but not yet acknowledged (it states the older, applied values after
    /// them). Caught only with `groups`.
    SnapshotWithoutPending,
    /// A broker's StopReplica deletes the partition's replica whatever creation of
    /// the topic it holds. Caught only with `recreate`.
    StopAnyCreation,
}

impl BrokenRule {
    /// Parses `none`, `hw`, `election`, `compaction` or `topic-id`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(BrokenRule::None),
            "hw" => Some(BrokenRule::HwFromLeaderLeo),
            "election" => Some(BrokenRule::ElectAnyLive),
            "compaction" => Some(BrokenRule::SnapshotWithoutPending),
            "topic-id" => Some(BrokenRule::StopAnyCreation),
            _ => None,
        }
    }

    /// The name [`BrokenRule::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            BrokenRule::None => "none",
            BrokenRule::HwFromLeaderLeo => "hw",
            BrokenRule::ElectAnyLive => "election",
            BrokenRule::SnapshotWithoutPending => "compaction",
            BrokenRule::StopAnyCreation => "topic-id",
        }
    }
}

thread_local! {
    static BROKEN: Cell<BrokenRule> = const { Cell::new(BrokenRule::None) };
}

/// The rule broken on this thread (read by the leader and controller cores).
pub(crate) fn broken_rule() -> BrokenRule {
    BROKEN.with(|b| b.get())
}

/// Sets the broken rule for the life of the guard.
struct BrokenGuard(BrokenRule);

impl BrokenGuard {
    fn set(rule: BrokenRule) -> Self {
        BrokenGuard(BROKEN.with(|b| b.replace(rule)))
    }
}

impl Drop for BrokenGuard {
    fn drop(&mut self) {
        BROKEN.with(|b| b.set(self.0));
    }
}

/// How a run is set up; the cluster shape and fault rates come from the seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// A rule to break on purpose (tests of the checker).
    pub broken: BrokenRule,
    /// Print every event to stderr.
    pub trace: bool,
    /// Virtual time during which faults are injected and producers start batches.
    pub fault_phase: Duration,
    /// Virtual time allowed, after the faults end, for the cluster to settle.
    pub settle: Duration,
    /// Flip bytes in any segment file, not only the active one. Off by default, so
    /// that a seed replays as it always did; CI runs a share of its seeds with it
    /// (rot in an inactive segment is found by the full read that rebuilds the
    /// producer table when a broker opens its logs).
    pub flip_any_segment: bool,
    /// Also commit a consumer group's offsets throughout, to a `__consumer_offsets`
    /// of one partition that compacts at every KiB: checks that no acknowledged
    /// commit is lost across compactions, failovers and truncations. Off by default,
    /// so that a seed replays as it always did; CI runs a share of its seeds with it.
    pub groups: bool,
    /// Hand a broker the produce requests for one partition that reach it within
    /// 200 µs of each other, with nothing else due in between, as one run (as a
    /// busy broker finds them queued in its inbox and appends them in one write).
    /// Off by default, so that a seed replays as it always did; CI runs a share of
    /// its seeds with it.
    pub produce_runs: bool,
    /// Also write a second topic, `churn`, with `acks=all`, and delete it and
    /// create it again under the same name now and then during the fault phase:
    /// checks that one creation's records never pass for another's, and that each
    /// creation keeps what was acknowledged to it while it exists. Off by default,
    /// so that a seed replays as it always did; CI runs a share of its seeds with it.
    pub recreate: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            broken: BrokenRule::None,
            trace: false,
            fault_phase: Duration::from_secs(12),
            settle: Duration::from_secs(30),
            flip_any_segment: false,
            groups: false,
            produce_runs: false,
            recreate: false,
        }
    }
}

/// What one seed did and found.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// The seed.
    pub seed: u64,
    /// The rule broken on purpose, if any.
    pub broken: BrokenRule,
    /// Whether bytes were flipped in any segment, not only the active one.
    pub flip_any_segment: bool,
    /// The fault phase the seed ran with.
    pub fault_phase: Duration,
    /// Whether a group committed offsets.
    pub groups: bool,
    /// Every breach of an invariant (empty: the seed passed).
    pub violations: Vec<String>,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// A hash of every event in order: equal for equal seeds.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Whether produce requests reached brokers in runs (see [`SimOptions`]).
    pub produce_runs: bool,
    /// Whether a second topic was deleted and created again (see [`SimOptions`]).
    pub recreate: bool,
    /// Times that topic was created again after a deletion.
    pub recreated: u64,
    /// Produce requests that reached a broker right behind another for the same
    /// partition and were handled with it as one run.
    pub requests_in_runs: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// Records acknowledged, lost, consumed.
    pub tally: Tally,
    /// A one-line description of the cluster the seed drew.
    pub shape: String,
}

impl SimOutcome {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this seed exactly, with a trace.
    pub fn replay_command(&self) -> String {
        let broken = match self.broken {
            BrokenRule::None => String::new(),
            b => format!(" --broken {}", b.name()),
        };
        let flip = if self.flip_any_segment {
            " --flip-any-segment"
        } else {
            ""
        };
        // Only when not the default, so that most replays stay short.
        let phase = if self.fault_phase == SimOptions::default().fault_phase {
            String::new()
        } else {
            format!(" --fault-phase {}", self.fault_phase.as_secs())
        };
        let groups = if self.groups { " --groups" } else { "" };
        let runs = if self.produce_runs {
            " --produce-runs"
        } else {
            ""
        };
        let recreate = if self.recreate { " --recreate" } else { "" };
        format!(
            "cargo run --release --features sim --example sim -- --seed {}{broken}{flip}{groups}{runs}{recreate}{phase} --trace",
            self.seed
        )
    }

    /// A multi-line report: shape, counts, violations, and the replay command on failure.
    pub fn report(&self) -> String {
        let t = &self.tally;
        let mut s = format!(
            "seed {}: {} ({}), {} events, {:.1}s virtual, trace {:016x}\n  faults: {}\n  acks=all {} acked; acks=1 {} acked, {} lost; acks=0 {} sent, {} lost; {} consumed\n",
            self.seed,
            if self.passed() { "passed" } else { "FAILED" },
            self.shape,
            self.events,
            self.virtual_time.as_secs_f64(),
            self.trace_hash,
            self.faults,
            t.acked_all,
            t.acked_one,
            t.lost_one,
            t.sent_zero,
            t.lost_zero,
            t.consumed,
        );
        if self.groups {
            let _ = writeln!(
                s,
                "  offset commits: {} acknowledged, offsets log compacted: {}",
                t.commits_acked,
                t.offsets_compacted > 0
            );
        }
        for v in &self.violations {
            let _ = writeln!(s, "  VIOLATION {v}");
        }
        if !self.passed() {
            let _ = writeln!(s, "  replay: {}", self.replay_command());
        }
        s
    }
}

/// Runs one seed.
pub fn run(seed: u64, options: &SimOptions) -> SimOutcome {
    let _broken = BrokenGuard::set(options.broken);
    let dir = TempDir::new(seed);
    let mut sim = Sim::new(seed, options, dir.path());
    sim.run();
    sim.outcome()
}

/// A per-run directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(seed: u64) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("replog-sim-{}-{seed}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The topic every client uses.
const TOPIC: &str = "sim";

/// Timing of the simulated cluster (short, so a run covers many failovers).
const SESSION_TIMEOUT: Duration = Duration::from_millis(1_000);
const LAG_TIME_MAX: Duration = Duration::from_millis(1_000);
const FETCH_WAIT_MAX: Duration = Duration::from_millis(200);
/// How often the settle phase checks whether the cluster has converged.
const CONVERGE_CHECK: Duration = Duration::from_millis(250);
/// Produce requests for one partition that reach a broker within this of each
/// other, with nothing else in between, are handled as one run.
const PRODUCE_RUN_WINDOW: Duration = Duration::from_micros(200);
/// Steps at one virtual instant after which the run counts as stuck.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 200_000;

#[derive(Debug)]
enum Event {
    /// An envelope arrives; `incarnation` is the addressee's at send time (a message
    /// to an earlier incarnation of a broker is lost with its connection).
    Deliver { env: Envelope, incarnation: u64 },
    /// A client request reaches a broker.
    Client {
        broker: BrokerId,
        incarnation: u64,
        request: ClientRequest,
    },
    /// The controller learns that a broker's process ended.
    BrokerStopped(BrokerId),
    /// Creates the topic (retried until the brokers are up).
    CreateTopic,
    /// A scheduled fault.
    Fault(Action),
    /// The end of a storm.
    StormEnd,
    /// Faults end: heal, restart, stop producing.
    EndFaults,
    /// The settle phase looks whether the cluster has converged.
    CheckConverged,
    /// The churning topic is deleted, or created again (with `recreate`).
    Churn,
}

impl Event {
    fn tag(&self) -> u8 {
        match self {
            Event::Deliver { .. } => 1,
            Event::Client { .. } => 2,
            Event::BrokerStopped(_) => 3,
            Event::CreateTopic => 4,
            Event::Fault(_) => 5,
            Event::StormEnd => 6,
            Event::EndFaults => 7,
            Event::CheckConverged => 8,
            Event::Churn => 9,
        }
    }
}

#[derive(Debug)]
struct Queued {
    at: Duration,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed: the heap pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One broker slot: the running broker, if any, and what survives it.
struct Node {
    broker: Option<Broker>,
    /// `Some`: segment files here; `None`: memory logs.
    dir: Option<PathBuf>,
    incarnation: u64,
    /// Kept so the broker's (unused) inbox stays open.
    _inbox: Option<InboxSender<Inbound>>,
    isolations: u32,
}

/// FNV-1a over the event stream.
#[derive(Debug)]
struct TraceHash(u64);

impl TraceHash {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn add_u64(&mut self, x: u64) {
        self.add(&x.to_le_bytes());
    }
}

fn node_code(n: NodeId) -> u64 {
    match n {
        NodeId::Controller => u64::MAX,
        NodeId::Broker(b) => u64::from(b.0),
    }
}

struct Sim {
    seed: u64,
    trace: bool,
    flip_any_segment: bool,
    fault_phase: Duration,
    clock: Clock,
    now: Duration,
    queue: BinaryHeap<Queued>,
    next_seq: u64,
    controller: ControllerThread,
    metadata: Arc<MetadataCell>,
    transport: SimTransport,
    /// Keeps the controller's inbox open (it is stepped directly, not read).
    _controller_tx: InboxSender<Inbound>,
    nodes: BTreeMap<BrokerId, Node>,
    network: Network,
    net_rng: Rng,
    client_rng: Rng,
    fault_rng: Rng,
    producers: Vec<SimProducer>,
    consumers: Vec<SimConsumer>,
    committers: Vec<SimCommitter>,
    /// Draws for the committers only, so that seeds without them replay as before.
    commit_rng: Rng,
    groups: bool,
    offsets_created: bool,
    checker: Checker,
    faults: FaultCounts,
    hash: TraceHash,
    events: u64,
    /// Whether produce requests reach brokers in runs.
    produce_runs: bool,
    /// Produce requests a broker took behind another as one run.
    requests_in_runs: u64,
    topic: TopicConfig,
    topic_created: bool,
    /// Whether the churning topic is deleted and created again.
    recreate: bool,
    /// Whether a creation of the churning topic exists now.
    churn_exists: bool,
    /// Whether it was ever created, and the times it was created again since.
    churn_created: bool,
    recreated: u64,
    /// Draws the churning topic's schedule (its own stream: other seeds' draws
    /// stay as they were without `recreate`).
    churn_rng: Rng,
    faults_over: bool,
    end: Duration,
    converged: bool,
    stuck: (Duration, u64),
    shape: String,
    tally: Tally,
}

impl Sim {
    fn new(seed: u64, options: &SimOptions, dir: &Path) -> Self {
        let mut shape_rng = Rng::new(seed, 0);
        let mut fault_rng = Rng::new(seed, 1);
        let net_rng = Rng::new(seed, 2);
        let mut client_rng = Rng::new(seed, 3);

        let broker_count = shape_rng.range(3, 5) as u32;
        let partitions = shape_rng.range(1, 3) as u32;
        let storage = shape_rng.pick(&["memory", "disk", "mixed"]);
        let segment_bytes = shape_rng.pick(&[1 << 20, 16 * 1024, 4 * 1024]);
        let net = NetConfig::draw(&mut shape_rng);
        let gap_ms = shape_rng.pick(&[800, 1_500, 3_000]);
        let topic = TopicConfig::new(partitions, 3)
            .min_insync_replicas(2)
            .unclean_leader_election(false)
            .segment_bytes(segment_bytes)
            .retention(None);

        let clock = Clock::virtual_clock();
        let transport = SimTransport::default();
        let ids: Vec<(BrokerId, Option<String>)> =
            (0..broker_count).map(|i| (BrokerId(i), None)).collect();
        let core = Controller::new(
            ControllerConfig {
                session_timeout: SESSION_TIMEOUT,
                auto_leader_rebalance: true,
                leader_imbalance_check_interval: Duration::from_secs(2),
                leader_imbalance_per_broker_percentage: 10,
            },
            &ids,
        );
        let metadata = Arc::new(MetadataCell::new(
            MetadataImage::default(),
            Arc::new(Notify::default()),
        ));
        let (controller_tx, controller_rx) = crate::inbox::inbox();
        let controller = ControllerThread {
            core,
            inbox: controller_rx,
            transport: Arc::new(transport.clone()),
            metadata: metadata.clone(),
            log: None,
            clock: clock.clone(),
            sync_metadata: false,
        };
        controller.publish();

        let mut kinds = Vec::new();
        let nodes = ids
            .iter()
            .map(|(id, _)| {
                let disk = match storage {
                    "memory" => false,
                    "disk" => true,
                    _ => shape_rng.chance(0.5),
                };
                kinds.push(if disk { 'd' } else { 'm' });
                let node = Node {
                    broker: None,
                    dir: disk.then(|| dir.join(format!("broker-{}", id.0))),
                    incarnation: 0,
                    _inbox: None,
                    isolations: 0,
                };
                (*id, node)
            })
            .collect();
        let shape = format!(
            "{broker_count} brokers [{}], {partitions} partitions RF 3 min.insync 2, segment {segment_bytes} B, net drop {} dup {} delay {}, a fault every ~{gap_ms} ms",
            kinds.iter().collect::<String>(),
            net.drop,
            net.duplicate,
            net.delay,
        );

        let broker_ids: Vec<BrokerId> = ids.iter().map(|(b, _)| *b).collect();
        let schedule = faults::schedule(&mut fault_rng, &broker_ids, options.fault_phase, gap_ms);

        let mut sim = Sim {
            seed,
            trace: options.trace,
            flip_any_segment: options.flip_any_segment,
            fault_phase: options.fault_phase,
            clock,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            next_seq: 0,
            controller,
            metadata,
            transport,
            _controller_tx: controller_tx,
            nodes,
            network: Network::new(net),
            net_rng,
            client_rng: Rng::new(seed, 4),
            fault_rng,
            producers: Vec::new(),
            consumers: Vec::new(),
            committers: Vec::new(),
            commit_rng: Rng::new(seed, 5),
            groups: options.groups,
            offsets_created: false,
            checker: Checker::default(),
            faults: FaultCounts::default(),
            hash: TraceHash(0xcbf2_9ce4_8422_2325),
            events: 0,
            produce_runs: options.produce_runs,
            requests_in_runs: 0,
            topic,
            topic_created: false,
            recreate: options.recreate,
            churn_exists: false,
            churn_created: false,
            recreated: 0,
            churn_rng: Rng::new(seed, 9),
            faults_over: false,
            end: options.fault_phase + options.settle,
            converged: false,
            stuck: (Duration::ZERO, 0),
            shape,
            tally: Tally::default(),
        };

        // Clients: idempotent acks=all producers, plain acks=1 and acks=0 ones, and
        // consumers, starting once the topic exists.
        let start = Duration::from_millis(400);
        for (index, acks) in [Acks::All, Acks::All, Acks::Leader, Acks::None]
            .into_iter()
            .enumerate()
        {
            let producer_id = (acks == Acks::All).then(|| sim.allocate_producer_id());
            let interval = (client_rng.range(5, 20), client_rng.range(30, 80));
            sim.producers.push(SimProducer::new(
                index,
                acks,
                producer_id,
                TOPIC,
                partitions,
                interval,
                start,
            ));
        }
        for _ in 0..2 {
            let interval = (client_rng.range(5, 20), client_rng.range(30, 100));
            sim.consumers
                .push(SimConsumer::new(TOPIC, partitions, interval, start));
        }

        if options.groups {
            let interval = (sim.commit_rng.range(5, 20), sim.commit_rng.range(30, 80));
            sim.committers.push(SimCommitter::new(
                "g", 0, TOPIC, partitions, interval, start,
            ));
        }
        if options.recreate {
            let interval = (sim.churn_rng.range(5, 20), sim.churn_rng.range(30, 80));
            let producer = SimProducer::new(
                sim.producers.len(),
                Acks::All,
                None,
                CHURN,
                partitions,
                interval,
                start,
            );
            sim.producers.push(producer.of_churning_topic('c'));
            sim.push(Duration::from_millis(300), Event::Churn);
        }
        for id in broker_ids {
            sim.start_broker(id, false);
        }
        sim.push(Duration::from_millis(200), Event::CreateTopic);
        for (at, action) in schedule {
            sim.push(at, Event::Fault(action));
        }
        sim.push(options.fault_phase, Event::EndFaults);
        sim
    }

    fn allocate_producer_id(&mut self) -> u64 {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.controller
            .step(Inbound::Client(ClientRequest::AllocateProducerId {
                reply: tx,
            }));
        rx.try_recv().expect("the controller answers at once")
    }

    fn push(&mut self, at: Duration, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Queued { at, seq, event });
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>12.6} {}", self.now.as_secs_f64(), what());
        }
    }

    // ---- the loop ----------------------------------------------------------------

    fn run(&mut self) {
        loop {
            if !self.checker.violations().is_empty() || self.converged {
                break;
            }
            let Some((at, who)) = self.next_step() else {
                break;
            };
            if at > self.end {
                break;
            }
            let at = at.max(self.now);
            if at == self.stuck.0 {
                self.stuck.1 += 1;
                if self.stuck.1 > MAX_STEPS_AT_ONE_INSTANT {
                    self.checker.violation(
                        at,
                        format!("no progress: {MAX_STEPS_AT_ONE_INSTANT} steps at one instant (last: {who:?})"),
                    );
                    break;
                }
            } else {
                self.stuck = (at, 0);
            }
            self.now = at;
            self.clock.advance_to(at);
            self.events += 1;
            self.hash.add_u64(at.as_nanos() as u64);
            match who {
                Step::Event => {
                    let q = self.queue.pop().expect("peeked");
                    self.hash.add(&[q.event.tag()]);
                    self.dispatch(q.event);
                }
                Step::Controller => {
                    self.hash.add(b"C");
                    self.controller.tick_due();
                }
                Step::Broker(b) => {
                    self.hash.add(b"B");
                    self.hash.add_u64(u64::from(b.0));
                    if let Some(broker) = self.nodes.get_mut(&b).and_then(|n| n.broker.as_mut()) {
                        broker.on_idle();
                    }
                }
                Step::Producer(i) => {
                    self.hash.add(b"P");
                    self.hash.add_u64(i as u64);
                    self.wake_client(Step::Producer(i));
                }
                Step::Consumer(i) => {
                    self.hash.add(b"Q");
                    self.hash.add_u64(i as u64);
                    self.wake_client(Step::Consumer(i));
                }
                Step::Committer(i) => {
                    self.hash.add(b"K");
                    self.hash.add_u64(i as u64);
                    self.wake_client(Step::Committer(i));
                }
            }
            self.after_step();
        }
        if !self.converged && self.checker.violations().is_empty() {
            self.checker.violation(
                self.now,
                format!(
                    "the cluster did not settle within the run: {}",
                    self.unsettled()
                ),
            );
        }
        if self.checker.violations().is_empty() {
            self.final_check();
        } else {
            self.tally = self.checker.counts();
        }
    }

    /// The earliest thing due: a queued event, the controller's timers, a broker's
    /// deadline, a client's. Ties go in that order, brokers and clients by index.
    fn next_step(&self) -> Option<(Duration, Step)> {
        let mut best: Option<(Duration, Step)> = None;
        let mut consider = |at: Duration, step: Step| {
            if best.as_ref().is_none_or(|(t, _)| at < *t) {
                best = Some((at, step));
            }
        };
        if let Some(q) = self.queue.peek() {
            consider(q.at, Step::Event);
        }
        if let Some(d) = self.controller.core.next_deadline() {
            consider(d, Step::Controller);
        }
        for (id, node) in &self.nodes {
            if let Some(b) = &node.broker {
                consider(b.next_deadline(self.now), Step::Broker(*id));
            }
        }
        if self.topic_created {
            for (i, p) in self.producers.iter().enumerate() {
                if let Some(d) = p.next_deadline() {
                    consider(d, Step::Producer(i));
                }
            }
            for (i, c) in self.consumers.iter().enumerate() {
                consider(c.next_deadline(), Step::Consumer(i));
            }
            for (i, c) in self.committers.iter().enumerate() {
                if let Some(d) = c.next_deadline() {
                    consider(d, Step::Committer(i));
                }
            }
        }
        best
    }

    /// After every step: route what was sent, check the invariants, then hand the
    /// clients their answers (acknowledgements are checked against what was seen
    /// committed).
    fn after_step(&mut self) {
        for env in self.transport.drain() {
            self.route(env);
        }
        let now = self.now;
        self.checker
            .observe(now, self.nodes.values().filter_map(|n| n.broker.as_ref()));
        for p in &mut self.producers {
            p.poll(now, &mut self.checker);
        }
        for c in &mut self.consumers {
            c.poll(now, &mut self.checker);
        }
        for c in &mut self.committers {
            c.poll(now, &mut self.checker);
        }
    }

    fn route(&mut self, env: Envelope) {
        let incarnation = match env.to() {
            NodeId::Controller => 0,
            NodeId::Broker(b) => match self.nodes.get(&b) {
                Some(n) if n.broker.is_some() => n.incarnation,
                _ => return, // nobody listens
            },
        };
        let times = self
            .network
            .route(&env, self.now, &mut self.net_rng, &mut self.faults);
        for at in times {
            let env = env.clone();
            self.push(at, Event::Deliver { env, incarnation });
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { env, incarnation } => self.deliver(env, incarnation),
            Event::Client {
                broker,
                incarnation,
                request,
            } => {
                let request = match request {
                    ClientRequest::Produce(p) if self.produce_runs => {
                        Ok(self.produce_run(p, broker, incarnation))
                    }
                    other => Err(other),
                };
                if let Some(node) = self.nodes.get_mut(&broker) {
                    if node.incarnation == incarnation {
                        if let Some(b) = node.broker.as_mut() {
                            match request {
                                Ok(run) => b.produce_run(run),
                                Err(request) => {
                                    b.handle(Inbound::Client(request));
                                }
                            }
                            b.on_idle();
                        }
                    }
                }
            }
            Event::BrokerStopped(b) => {
                self.log(|| format!("controller learns broker {b} stopped"));
                self.controller
                    .step(Inbound::Client(ClientRequest::BrokerStopped(b)));
                self.controller.tick_due();
            }
            Event::CreateTopic => self.create_topic(),
            Event::Fault(action) => {
                if !self.faults_over {
                    self.fault(action);
                }
            }
            Event::StormEnd => self.log(|| "storm ends".into()),
            Event::EndFaults => self.end_faults(),
            Event::Churn => self.churn(),
            Event::CheckConverged => {
                if self.settled() {
                    self.log(|| "converged".into());
                    self.converged = true;
                } else {
                    self.push(self.now + CONVERGE_CHECK, Event::CheckConverged);
                }
            }
        }
    }

    fn deliver(&mut self, env: Envelope, incarnation: u64) {
        let (from, to) = (env.from(), env.to());
        self.hash.add_u64(node_code(from));
        self.hash.add_u64(node_code(to));
        self.hash.add(env.kind().as_bytes());
        if !self.network.connected(from, to) {
            self.log(|| format!("cut: {from} -> {to} {}", env.kind()));
            return;
        }
        match to {
            NodeId::Controller => {
                self.log(|| format!("{from} -> controller {:?}", env.message));
                self.controller.step(Inbound::Peer(env));
                self.controller.tick_due();
            }
            NodeId::Broker(b) => {
                let trace = self.trace;
                let Some(node) = self.nodes.get_mut(&b) else {
                    return;
                };
                if node.incarnation != incarnation {
                    return;
                }
                let Some(broker) = node.broker.as_mut() else {
                    return;
                };
                if trace {
                    eprintln!(
                        "{:>12.6} {from} -> {to} {}",
                        self.now.as_secs_f64(),
                        describe(&env)
                    );
                }
                broker.handle(Inbound::Peer(env));
                broker.on_idle();
            }
        }
    }

    fn create_topic(&mut self) {
        if self.groups && !self.offsets_created {
            // One partition, so the group's coordinator is its leader; segments of
            // 1 KiB, so it compacts every dozen commits or so.
            let config = TopicConfig::new(1, 3)
                .min_insync_replicas(2)
                .unclean_leader_election(false)
                .segment_bytes(1024)
                .retention(None);
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.controller
                .step(Inbound::Client(ClientRequest::CreateTopic {
                    name: OFFSETS_TOPIC.to_string(),
                    config,
                    reply: tx,
                }));
            if let Ok(Ok(())) = rx.try_recv() {
                self.log(|| "offsets topic created".into());
                self.offsets_created = true;
            } else {
                self.push(self.now + Duration::from_millis(100), Event::CreateTopic);
                return;
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.controller
            .step(Inbound::Client(ClientRequest::CreateTopic {
                name: TOPIC.to_string(),
                config: self.topic.clone(),
                reply: tx,
            }));
        match rx.try_recv() {
            Ok(Ok(())) => {
                self.log(|| "topic created".into());
                self.topic_created = true;
            }
            other => {
                self.log(|| format!("create topic: {other:?}; retrying"));
                self.push(self.now + Duration::from_millis(100), Event::CreateTopic);
            }
        }
    }

    /// Deletes the churning topic, or creates it again: a creation lives for 0.5
    /// to 4 s of the fault phase, the gap to the next is 0 to 300 ms (messages
    /// about the deleted creation are still on their way). After the faults it
    /// is created once more, if it is missing, and left alone.
    fn churn(&mut self) {
        if self.churn_exists && self.faults_over {
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let request = if self.churn_exists {
            ClientRequest::DeleteTopic {
                name: CHURN.to_string(),
                reply: tx,
            }
        } else {
            ClientRequest::CreateTopic {
                name: CHURN.to_string(),
                config: self.topic.clone(),
                reply: tx,
            }
        };
        self.controller.step(Inbound::Client(request));
        let next = match rx.try_recv() {
            Ok(Ok(())) => {
                self.churn_exists = !self.churn_exists;
                let exists = self.churn_exists;
                if exists {
                    // The first creation is not a re-creation.
                    self.recreated += u64::from(self.churn_created);
                    self.churn_created = true;
                }
                self.log(|| format!("{CHURN} {}", if exists { "created" } else { "deleted" }));
                if exists {
                    self.churn_rng.range(500, 4000)
                } else {
                    self.churn_rng.range(0, 300)
                }
            }
            // Creation needs as many live brokers as replicas: try again soon.
            other => {
                self.log(|| format!("{CHURN}: {other:?}; retrying"));
                100
            }
        };
        self.push(self.now + Duration::from_millis(next), Event::Churn);
    }

    /// Wakes producer, consumer or committer `step` with the clients' view of the
    /// cluster, and sends what it wants sent.
    fn wake_client(&mut self, step: Step) {
        let image = self.metadata.get();
        let nodes = &self.nodes;
        let running = |b: BrokerId| nodes.get(&b).is_some_and(|n| n.broker.is_some());
        let view = ClientView {
            image: &image,
            running: &running,
        };
        let (now, mut out) = (self.now, Outgoing::new());
        match step {
            Step::Producer(i) => self.producers[i].wake(
                now,
                &view,
                &mut self.client_rng,
                &mut self.checker,
                &mut out,
            ),
            Step::Consumer(i) => {
                self.consumers[i].wake(now, &view, &mut self.client_rng, &mut out);
            }
            Step::Committer(i) => {
                self.committers[i].wake(now, &view, &mut self.commit_rng, &mut out);
            }
            Step::Event | Step::Controller | Step::Broker(_) => {
                unreachable!("{step:?} is not a client")
            }
        }
        self.send_client(out);
    }

    /// `first` and the produce requests for the same broker and partition next in
    /// line behind it, due within [`PRODUCE_RUN_WINDOW`] with nothing else due
    /// before them: they reach the broker together, as a busy broker finds them
    /// queued in its inbox, and it appends them as one run.
    fn produce_run(
        &mut self,
        first: ProduceRequest,
        broker: BrokerId,
        incarnation: u64,
    ) -> Vec<ProduceRequest> {
        let mut run = vec![first];
        while let Some((at, Step::Event)) = self.next_step() {
            let follows = at <= self.now + PRODUCE_RUN_WINDOW
                && self.queue.peek().is_some_and(|q| {
                    matches!(&q.event, Event::Client {
                        broker: b,
                        incarnation: i,
                        request: ClientRequest::Produce(p),
                    } if *b == broker && *i == incarnation && p.tp == run[0].tp)
                });
            if !follows {
                break;
            }
            let q = self.queue.pop().expect("peeked");
            let Event::Client {
                request: ClientRequest::Produce(p),
                ..
            } = q.event
            else {
                unreachable!("peeked a produce request")
            };
            self.events += 1;
            self.hash.add_u64(q.at.as_nanos() as u64);
            self.requests_in_runs += 1;
            run.push(p);
        }
        run
    }

    /// Client requests reach brokers directly (isolation does not cut clients off),
    /// after a short latency.
    fn send_client(&mut self, out: Outgoing) {
        for (broker, request) in out {
            let incarnation = self.nodes.get(&broker).map_or(0, |n| n.incarnation);
            let at = self.now + self.client_rng.micros(20, 500);
            self.push(
                at,
                Event::Client {
                    broker,
                    incarnation,
                    request,
                },
            );
        }
    }

    // ---- brokers -------------------------------------------------------------------

    fn start_broker(&mut self, id: BrokerId, restarted: bool) {
        let node = self.nodes.get_mut(&id).expect("known broker");
        node.incarnation += 1;
        let (tx, rx) = crate::inbox::inbox();
        let config = BrokerConfig {
            id,
            rack: None,
            dir: node.dir.clone(),
            replica_lag_time_max: LAG_TIME_MAX,
            heartbeat_interval: SESSION_TIMEOUT / 4,
            replica_fetch_wait_max: FETCH_WAIT_MAX,
            replica_fetch_max_bytes: 64 * 1024,
            fsync: FsyncPolicy::Never,
            restarted,
        };
        let transport: Arc<dyn Transport> = Arc::new(self.transport.clone());
        match Broker::new(
            config,
            self.clock.clone(),
            rx,
            transport,
            Arc::new(AtomicBool::new(false)),
            Arc::new(BrokerShared::default()),
            self.metadata.clone(),
            1,
        ) {
            Ok(mut broker) => {
                broker.register();
                node.broker = Some(broker);
                node._inbox = Some(tx);
                self.checker.restarted(id);
            }
            Err(e) => {
                let now = self.now;
                self.checker
                    .violation(now, format!("broker {id} failed to start: {e}"));
            }
        }
    }

    fn kill_broker(&mut self, id: BrokerId) {
        let node = self.nodes.get_mut(&id).expect("known broker");
        node.broker = None;
        node._inbox = None;
        let at = self.now + self.net_rng.micros(10, 1_000);
        self.push(at, Event::BrokerStopped(id));
    }

    fn running(&self, id: BrokerId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.broker.is_some())
    }

    /// Whether `b` may lose its data: every partition it hosts has another running
    /// in-sync replica whose log holds every record known to be committed. Losing
    /// every copy is outside what replication promises, so the schedule does not go
    /// there.
    ///
    /// The log is looked at, not only the ISR: an in-sync replica that restarted
    /// without its data stays in the ISR when it is the last member (rule 5 keeps it
    /// from leading), and membership alone let the schedule kill the one replica
    /// still holding the records.
    fn may_lose_data(&self, b: BrokerId) -> bool {
        let image = self.metadata.get();
        image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replicas.contains(&b))
            .all(|p| {
                p.isr.iter().any(|x| {
                    *x != b
                        && image.is_alive(*x)
                        && self
                            .nodes
                            .get(x)
                            .and_then(|n| n.broker.as_ref())
                            .and_then(|broker| broker.replica_view(&p.tp))
                            .is_some_and(|v| {
                                // A replica of another creation holds none of this
                                // one's records.
                                (p.tp.topic != CHURN || v.topic_id == Some(p.topic_id))
                                    && self.checker.holds_committed(&p.tp, v.topic_id, v.log)
                            })
                })
            })
    }

    fn fault(&mut self, action: Action) {
        self.hash.add(format!("{action:?}").as_bytes());
        match action {
            Action::Kill(b) => {
                if !self.running(b) {
                    return;
                }
                let memory = self.nodes[&b].dir.is_none();
                // A dead broker beyond all but one leaves nothing to fail over to.
                let running = self.nodes.values().filter(|n| n.broker.is_some()).count();
                if running <= 1 || (memory && !self.may_lose_data(b)) {
                    self.log(|| format!("fault: kill {b} guarded"));
                    self.faults.add(FaultKind::Guarded);
                    return;
                }
                self.log(|| format!("fault: kill broker {b}"));
                self.faults.add(FaultKind::Kill);
                self.kill_broker(b);
            }
            Action::Restart(b, damage) => {
                if self.running(b) {
                    return;
                }
                self.restart(b, damage);
            }
            Action::Isolate(b) => {
                if !self.running(b) {
                    return;
                }
                self.log(|| format!("fault: isolate broker {b}"));
                self.faults.add(FaultKind::Isolate);
                self.set_isolated(b, true);
            }
            Action::Rejoin(b) => {
                if self.nodes[&b].isolations > 0 {
                    self.log(|| format!("heal broker {b}"));
                    self.set_isolated(b, false);
                }
            }
            Action::Cut(a, c) => {
                self.log(|| format!("fault: cut {a} <-> {c}"));
                self.faults.add(FaultKind::CutLink);
                self.network.cut(a, c);
            }
            Action::Mend(a, c) => {
                self.log(|| format!("mend {a} <-> {c}"));
                self.network.mend(a, c);
            }
            Action::Storm { drop, length } => {
                self.log(|| format!("fault: storm drop {drop} for {length:?}"));
                self.faults.add(FaultKind::Storm);
                self.network.storm(drop, self.now + length);
                self.push(self.now + length, Event::StormEnd);
            }
        }
    }

    fn set_isolated(&mut self, b: BrokerId, isolated: bool) {
        let me = NodeId::Broker(b);
        let others: Vec<NodeId> = self
            .nodes
            .keys()
            .filter(|x| **x != b)
            .map(|x| NodeId::Broker(*x))
            .chain([NodeId::Controller])
            .collect();
        let node = self.nodes.get_mut(&b).expect("known broker");
        if isolated {
            node.isolations += 1;
        } else {
            node.isolations -= 1;
        }
        for o in others {
            if isolated {
                self.network.cut(me, o);
            } else {
                self.network.mend(me, o);
            }
        }
    }

    fn restart(&mut self, b: BrokerId, damage: Damage) {
        let dir = self.nodes[&b].dir.clone();
        let kind = match (&dir, damage) {
            (None, _) => FaultKind::RestartWithoutStorage,
            (Some(_), Damage::None) => FaultKind::RestartWithStorage,
            (Some(dir), damage) => {
                if self.may_lose_data(b) {
                    let done = match damage {
                        Damage::TornTail => faults::tear_tail(dir, &mut self.fault_rng),
                        _ => faults::flip_byte(dir, &mut self.fault_rng, self.flip_any_segment),
                    };
                    match done {
                        Ok(true) if damage == Damage::TornTail => FaultKind::TornTail,
                        Ok(true) => FaultKind::FlippedByte,
                        Ok(false) => FaultKind::RestartWithStorage,
                        Err(e) => {
                            let now = self.now;
                            self.checker
                                .violation(now, format!("storage fault on broker {b} failed: {e}"));
                            return;
                        }
                    }
                } else {
                    self.faults.add(FaultKind::Guarded);
                    FaultKind::RestartWithStorage
                }
            }
        };
        self.log(|| format!("fault: restart broker {b}: {}", kind.name()));
        self.faults.add(kind);
        self.start_broker(b, true);
    }

    /// The faults end: every cut heals, every dead broker restarts with its storage,
    /// producers finish what they began, and the settle phase starts.
    fn end_faults(&mut self) {
        self.log(|| "faults end: heal everything, restart the dead".into());
        self.faults_over = true;
        self.network.heal_all();
        for n in self.nodes.values_mut() {
            n.isolations = 0;
        }
        let dead: Vec<BrokerId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.broker.is_none())
            .map(|(b, _)| *b)
            .collect();
        for b in dead {
            self.restart(b, Damage::None);
        }
        for p in &mut self.producers {
            p.stop();
        }
        for c in &mut self.committers {
            c.stop();
        }
        if self.recreate && !self.churn_exists {
            self.push(self.now, Event::Churn);
        }
        self.push(self.now + CONVERGE_CHECK, Event::CheckConverged);
    }

    /// Whether the cluster has converged: producers done, every partition led by a
    /// running broker with every replica in the ISR at the leader's log end and HW,
    /// consumers caught up.
    fn settled(&self) -> bool {
        self.unsettled().is_empty()
    }

    /// What is not settled yet (empty when settled).
    fn unsettled(&self) -> String {
        let mut s = String::new();
        let image = self.metadata.get();
        // Offline as rule 5 requires (every in-sync replica lost its data): not
        // expected to settle; the checker demands durability of it instead.
        let offline: Vec<&TopicPartition> = image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| image.offline_by_rule5(p))
            .map(|p| &p.tp)
            .collect();
        // Each producer writes one topic.
        let offline_of = |topic: &str| -> Vec<u32> {
            offline
                .iter()
                .filter(|tp| tp.topic == topic)
                .map(|tp| tp.partition)
                .collect()
        };
        let pending: usize = self
            .producers
            .iter()
            .map(|p| p.pending_except(&offline_of(p.topic())))
            .sum();
        if pending > 0 {
            let _ = write!(s, "{pending} producer batches unacknowledged; ");
        }
        if !self.topic_created {
            s.push_str("topic never created; ");
        }
        if self.committers.iter().any(SimCommitter::busy) {
            s.push_str("an offset commit unanswered; ");
        }
        // Each broker holds exactly the replicas assigned to it: what is left of a
        // deleted topic (its StopReplica lost) must go too.
        for (b, node) in &self.nodes {
            let Some(broker) = &node.broker else { continue };
            for tp in broker.hosted() {
                let topic_id = broker.replica_view(&tp).and_then(|v| v.topic_id);
                let assigned = image.topics.get(&tp.topic).is_some_and(|t| {
                    t.partitions.iter().any(|p| {
                        p.tp == tp && p.replicas.contains(b) && Some(p.topic_id) == topic_id
                    })
                });
                if !assigned {
                    let _ = write!(s, "broker {b} holds {tp} of topic id {topic_id:?}; ");
                }
            }
        }
        for p in image.topics.values().flat_map(|t| t.partitions.iter()) {
            if offline.contains(&&p.tp) {
                continue;
            }
            let Some(l) = p.leader else {
                let _ = write!(s, "{} offline (ISR {:?}); ", p.tp, p.isr);
                continue;
            };
            if p.isr.len() != p.replicas.len() {
                let _ = write!(s, "{} ISR {:?} of {:?}; ", p.tp, p.isr, p.replicas);
                continue;
            }
            let Some(view) = self.broker(l).and_then(|b| b.replica_view(&p.tp)) else {
                let _ = write!(s, "{} leader {l} not running; ", p.tp);
                continue;
            };
            let Some((_, hw)) = view.leader else {
                let _ = write!(s, "{} leader {l} has not taken over; ", p.tp);
                continue;
            };
            let leo = view.log.log_end_offset();
            if hw != leo {
                let _ = write!(s, "{} HW {hw} < LEO {leo}; ", p.tp);
                continue;
            }
            for r in &p.replicas {
                let r_leo = self
                    .broker(*r)
                    .and_then(|b| b.replica_view(&p.tp))
                    .map(|v| v.log.log_end_offset());
                if r_leo != Some(leo) {
                    let _ = write!(s, "{} replica {r} at {r_leo:?} of {leo}; ", p.tp);
                }
            }
            for (i, c) in self.consumers.iter().enumerate() {
                if p.tp.topic == TOPIC && c.position(p.tp.partition) != hw {
                    let _ = write!(
                        s,
                        "{} consumer {i} at {} of {hw}; ",
                        p.tp,
                        c.position(p.tp.partition)
                    );
                }
            }
        }
        s
    }

    fn broker(&self, b: BrokerId) -> Option<&Broker> {
        self.nodes.get(&b).and_then(|n| n.broker.as_ref())
    }

    fn final_check(&mut self) {
        let image = self.metadata.get();
        let nodes = &self.nodes;
        let now = self.now;
        self.tally = self.checker.finish(now, &image, |b| {
            nodes.get(&b).and_then(|n| n.broker.as_ref())
        });
    }

    fn outcome(&mut self) -> SimOutcome {
        let t = &self.tally;
        for x in [
            t.acked_all,
            t.acked_one,
            t.lost_one,
            t.sent_zero,
            t.lost_zero,
            t.consumed,
        ] {
            self.hash.add_u64(x);
        }
        SimOutcome {
            seed: self.seed,
            broken: broken_rule(),
            flip_any_segment: self.flip_any_segment,
            fault_phase: self.fault_phase,
            groups: self.groups,
            violations: self.checker.violations().to_vec(),
            faults: self.faults.clone(),
            trace_hash: self.hash.0,
            events: self.events,
            produce_runs: self.produce_runs,
            recreate: self.recreate,
            recreated: self.recreated,
            requests_in_runs: self.requests_in_runs,
            virtual_time: self.now,
            tally: self.tally.clone(),
            shape: self.shape.clone(),
        }
    }
}

/// What the loop steps next.
#[derive(Clone, Copy, Debug)]
enum Step {
    Event,
    Controller,
    Broker(BrokerId),
    Producer(usize),
    Consumer(usize),
    Committer(usize),
}

/// A short description of an envelope for the trace (fetches without their bytes).
fn describe(env: &Envelope) -> String {
    use crate::protocol::Message;
    match &env.message {
        Message::Fetch {
            request_id,
            partitions,
            ..
        } => {
            let parts: Vec<String> = partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}@{} e{} last{:?}",
                        p.tp, p.fetch_offset, p.leader_epoch, p.last_fetched_epoch
                    )
                })
                .collect();
            format!("Fetch #{request_id} [{}]", parts.join(", "))
        }
        Message::FetchReply {
            request_id,
            partitions,
        } => {
            let parts: Vec<String> = partitions
                .iter()
                .map(|p| match &p.result {
                    Ok(d) => format!(
                        "{} hw {} e{} div {:?} batches {:?}",
                        p.tp,
                        d.high_watermark,
                        d.leader_epoch,
                        d.diverging,
                        d.batches
                            .iter()
                            .map(|b| (b.base_offset(), b.record_count(), b.leader_epoch()))
                            .collect::<Vec<_>>()
                    ),
                    Err(e) => format!("{} {e:?}", p.tp),
                })
                .collect();
            format!("FetchReply #{request_id} [{}]", parts.join(", "))
        }
        m => format!("{m:?}"),
    }
}

/// Runs `seeds` on `threads` threads; `progress` is called after each seed with its
/// outcome. Returns the outcomes in seed order.
pub fn run_many(
    seeds: &[u64],
    options: &SimOptions,
    threads: usize,
    progress: &(dyn Fn(&SimOutcome) + Sync),
) -> Vec<SimOutcome> {
    let next = AtomicU64::new(0);
    let results = parking_lot::Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(i) else {
                    break;
                };
                let outcome = run(seed, options);
                progress(&outcome);
                results.lock().push((i, outcome));
            });
        }
    });
    let mut results = results.into_inner();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

/// Totals over many outcomes, for a soak's summary line.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that failed.
    pub failed: Vec<u64>,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated.
    pub virtual_time: Duration,
    /// Records acknowledged, lost, consumed.
    pub tally: Tally,
}

impl Summary {
    /// Adds one outcome.
    pub fn add(&mut self, o: &SimOutcome) {
        self.seeds += 1;
        if !o.passed() {
            self.failed.push(o.seed);
        }
        self.faults.merge(&o.faults);
        self.events += o.events;
        self.virtual_time += o.virtual_time;
        let (t, u) = (&mut self.tally, &o.tally);
        t.acked_all += u.acked_all;
        t.acked_one += u.acked_one;
        t.lost_one += u.lost_one;
        t.sent_zero += u.sent_zero;
        t.lost_zero += u.lost_zero;
        t.consumed += u.consumed;
        t.committed += u.committed;
        t.offline_by_rule5 += u.offline_by_rule5;
        t.commits_acked += u.commits_acked;
        t.offsets_compacted += u.offsets_compacted;
    }

    /// The summary as printed by the soak runner.
    pub fn report(&self, elapsed: Duration) -> String {
        let t = &self.tally;
        format!(
            "{} seeds, {} failed{}, in {:.1}s wall ({:.0}s virtual, {} events)\nfaults injected: {} total: {}\nrecords: acks=all {} acknowledged, 0 lost allowed; acks=1 {} acknowledged, {} lost; acks=0 {} sent, {} lost; {} consumed; {} partitions left offline as rule 5 requires (data kept on an out-of-sync replica){}",
            self.seeds,
            self.failed.len(),
            if self.failed.is_empty() {
                String::new()
            } else {
                let mut failed = self.failed.clone();
                failed.sort_unstable();
                failed.truncate(20);
                format!(" {failed:?}")
            },
            elapsed.as_secs_f64(),
            self.virtual_time.as_secs_f64(),
            self.events,
            self.faults.total(),
            self.faults,
            t.acked_all,
            t.acked_one,
            t.lost_one,
            t.sent_zero,
            t.lost_zero,
            t.consumed,
            t.offline_by_rule5,
            if t.commits_acked > 0 {
                format!(
                    "\noffset commits: {} acknowledged, 0 lost allowed; offsets log compacted in {} seeds",
                    t.commits_acked, t.offsets_compacted
                )
            } else {
                String::new()
            },
        )
    }
}

/// Wall-clock time of a closure, for runners.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}
