//! A transport that injects faults: cut links, isolated nodes, and seeded random
//! drops, duplicates, delays and reordering.
//!
//! Deferred messages (delay, reorder) wait in one timer thread per fault state. The
//! thread starts the first time a message is deferred, sleeps in
//! `recv_deadline` until the next message is due, and exits when the last
//! [`FaultTransport`] clone is dropped (its channel disconnects).

use std::cmp::Ordering as CmpOrdering;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::protocol::{Envelope, Mailbox};
use crate::transport::{ChannelTransport, Transport};

/// Longest time a reordered message is held back: long enough for the messages sent
/// right after it to overtake it, short enough not to look like a dead link.
const REORDER_WINDOW: Duration = Duration::from_millis(5);

/// Longest accepted delay: longer is no longer latency but a cut link, which
/// [`FaultTransport::cut`] models better (and deadlines stay far from overflow).
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// The seed of a transport nobody seeded: runs are reproducible by default.
const DEFAULT_SEED: u64 = 0;

/// Wraps a [`Transport`] and injects faults, to test replication (and your own code)
/// under the failures a real network has.
///
/// Two families of faults, both changeable at any time from any thread:
///
/// - **Links**: [`cut`](Self::cut), [`cut_one_way`](Self::cut_one_way) and
///   [`isolate`](Self::isolate) drop every message on a link, as a network partition
///   does; [`restore`](Self::restore) and [`heal`](Self::heal) undo them. Per-kind
///   drops ([`drop_kind`](Self::drop_kind)) work the same way for one message kind.
/// - **Random faults**: [`drop_probability`](Self::drop_probability),
///   [`duplicate_probability`](Self::duplicate_probability),
///   [`reorder_probability`](Self::reorder_probability) and [`delay`](Self::delay),
///   decided per message by a generator seeded with [`seed`](Self::seed): the same
///   seed and the same sequence of sends give the same decisions.
///
/// Cloning is cheap and shares the fault state, so you can hand a clone to the
/// cluster and keep one to break the network from your test.
///
/// # Delivery-time checks
///
/// A delayed or reordered message is checked again when it is due: if its link is cut
/// (or its kind dropped) by then, it is dropped, as a packet in flight is lost when
/// the partition happens before it arrives. Random decisions are taken once, at send.
///
/// When the last clone is dropped, messages still waiting for their delay are
/// dropped (the network is gone) and the timer thread exits.
///
/// # Examples
///
/// Partition broker 1 from the rest of the cluster, then heal it:
///
/// ```
/// use replog::{BrokerId, FaultTransport, NodeId};
///
/// let net = FaultTransport::default().seed(42);
/// let handle = net.clone(); // pass `net` to the cluster, keep `handle`
///
/// let b1 = NodeId::Broker(BrokerId(1));
/// handle.isolate(b1);
/// assert!(handle.is_cut(b1, NodeId::Controller));
/// assert!(handle.is_cut(NodeId::Broker(BrokerId(2)), b1));
///
/// handle.heal();
/// assert!(!net.is_cut(b1, NodeId::Controller));
/// ```
pub struct FaultTransport<T: Transport = ChannelTransport> {
    handle: Arc<Handle<T>>,
}

/// What the clones of one [`FaultTransport`] share. Dropping it (the last clone
/// went away) drops the timer's sender, which tells the timer thread to exit.
struct Handle<T: Transport> {
    core: Arc<Core<T>>,
    /// Started on first use; a disconnected sender (thread failed to start) makes
    /// deferred messages go out at once instead.
    timer: OnceLock<Sender<Deferred>>,
}

/// What the timer thread shares with the handles: enough to deliver, and nothing
/// that keeps the handles alive.
struct Core<T> {
    inner: T,
    rules: RwLock<Rules>,
    seed: AtomicU64,
    /// Index of the next send in the decision sequence.
    next: AtomicU64,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Rules {
    /// Directed links `(from, to)` that drop everything.
    cut: HashSet<(NodeId, NodeId)>,
    /// Nodes cut from every other node, present or future.
    isolated: HashSet<NodeId>,
    dropped_kinds: Vec<&'static str>,
    random: RandomFaults,
}

#[derive(Clone, Copy, Debug, Default)]
struct RandomFaults {
    drop: f64,
    duplicate: f64,
    reorder: f64,
    /// `None` when off; `min <= max`.
    delay: Option<(Duration, Duration)>,
}

impl Rules {
    fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        // Isolation cuts a node from the others, not from itself.
        (!self.cut.is_empty() && self.cut.contains(&(from, to)))
            || (!self.isolated.is_empty()
                && from != to
                && (self.isolated.contains(&from) || self.isolated.contains(&to)))
    }

    /// Whether a deterministic fault (link or kind) drops `envelope`.
    fn blocks(&self, envelope: &Envelope) -> bool {
        self.is_cut(envelope.from(), envelope.to()) || self.dropped_kinds.contains(&envelope.kind())
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a [`FaultTransport`] did to the messages it was given, counted per copy
/// since it was created (shared by its clones).
///
/// Once nothing is in flight, `sent + duplicated == delivered + dropped`.
///
/// # Examples
///
/// ```
/// let net = replog::FaultTransport::default();
/// let stats = net.stats();
/// assert_eq!(stats.sent, 0);
/// assert_eq!(stats.sent + stats.duplicated, stats.delivered + stats.dropped);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Calls to `send`.
    pub sent: u64,
    /// Copies handed to the inner transport (which still drops those addressed to
    /// an unregistered node).
    pub delivered: u64,
    /// Copies dropped by a fault: a cut link, a dropped kind, a random drop, a link
    /// cut by the time a deferred copy was due, or the transport dropped while a copy
    /// was still deferred.
    pub dropped: u64,
    /// Extra copies made by random duplication.
    pub duplicated: u64,
    /// Copies deferred by [`FaultTransport::delay`].
    pub delayed: u64,
    /// Copies held back by [`FaultTransport::reorder_probability`] so that later
    /// messages could overtake them.
    pub reordered: u64,
}

impl<T: Transport> FaultTransport<T> {
    /// Wraps `inner`; no fault is injected until you ask for one.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{ChannelTransport, FaultTransport};
    /// let net = FaultTransport::new(ChannelTransport::new());
    /// assert_eq!(net.stats().sent, 0);
    /// ```
    pub fn new(inner: T) -> Self {
        FaultTransport {
            handle: Arc::new(Handle {
                core: Arc::new(Core {
                    inner,
                    rules: RwLock::new(Rules::default()),
                    seed: AtomicU64::new(DEFAULT_SEED),
                    next: AtomicU64::new(0),
                    stats: Counters::default(),
                }),
                timer: OnceLock::new(),
            }),
        }
    }

    /// Seeds the random fault decisions and restarts their sequence, for every clone.
    ///
    /// Decisions are a pure function of the seed and the position of the send in
    /// the sequence of sends, so a run with the same seed and the same order of sends
    /// drops, duplicates, delays and reorders the same messages. Each kind of fault
    /// draws from its own stream: turning duplication on does not change which
    /// messages are dropped. Unseeded transports use a fixed seed, so they are
    /// reproducible too; pick different seeds to explore different schedules.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::FaultTransport;
    /// let net = FaultTransport::default().seed(7);
    /// net.drop_probability(0.1)?;
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn seed(self, seed: u64) -> Self {
        self.handle.core.seed.store(seed, Ordering::Relaxed);
        self.handle.core.next.store(0, Ordering::Relaxed);
        self
    }

    /// Cuts the link between `a` and `b` in both directions: a network partition
    /// between two nodes. Messages already deferred on it are dropped when due.
    ///
    /// Cutting a leader from a follower stops the follower's fetches, so the leader
    /// drops it from the ISR after `replica.lag.time.max.ms`. Cutting a broker from
    /// the controller stops its heartbeats, so the controller fences it and moves its
    /// leaderships elsewhere.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let (b1, b2) = (NodeId::Broker(BrokerId(1)), NodeId::Broker(BrokerId(2)));
    /// let net = FaultTransport::default();
    /// net.cut(b1, b2);
    /// assert!(net.is_cut(b1, b2) && net.is_cut(b2, b1));
    /// net.restore(b1, b2);
    /// assert!(!net.is_cut(b1, b2));
    /// ```
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut rules = self.handle.core.rules.write();
        rules.cut.insert((a, b));
        rules.cut.insert((b, a));
    }

    /// Cuts only the direction `from → to`: an asymmetric partition, where `to` stops
    /// hearing from `from` but `from` still hears `to` (a half-broken NIC or
    /// firewall rule).
    ///
    /// Cutting follower → leader stops the fetch requests while the leader can still
    /// talk back; cutting broker → controller stops heartbeats while the broker
    /// keeps receiving metadata, the classic way to get a fenced broker that still
    /// believes it leads.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let b1 = NodeId::Broker(BrokerId(1));
    /// let net = FaultTransport::default();
    /// net.cut_one_way(b1, NodeId::Controller);
    /// assert!(net.is_cut(b1, NodeId::Controller));
    /// assert!(!net.is_cut(NodeId::Controller, b1));
    /// ```
    pub fn cut_one_way(&self, from: NodeId, to: NodeId) {
        self.handle.core.rules.write().cut.insert((from, to));
    }

    /// Restores the link between `a` and `b` in both directions, undoing
    /// [`cut`](Self::cut) and [`cut_one_way`](Self::cut_one_way). It does not undo
    /// [`isolate`](Self::isolate): use [`heal`](Self::heal) for that.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let b1 = NodeId::Broker(BrokerId(1));
    /// let net = FaultTransport::default();
    /// net.cut_one_way(NodeId::Controller, b1);
    /// net.restore(b1, NodeId::Controller);
    /// assert!(!net.is_cut(NodeId::Controller, b1));
    /// ```
    pub fn restore(&self, a: NodeId, b: NodeId) {
        let mut rules = self.handle.core.rules.write();
        rules.cut.remove(&(a, b));
        rules.cut.remove(&(b, a));
    }

    /// Cuts `node` from every other node, the controller included, and from nodes
    /// that register later: the node is alone on its side of a partition. Clients
    /// still reach it (they do not go through the transport).
    ///
    /// An isolated leader is the zombie of Kafka's failover story: the controller
    /// fences it and elects a new leader, while it keeps accepting `acks=1` writes
    /// that will be truncated when it comes back; `acks=all` writes to it time out,
    /// as no follower fetches from it.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let b1 = NodeId::Broker(BrokerId(1));
    /// let net = FaultTransport::default();
    /// net.isolate(b1);
    /// assert!(net.is_cut(b1, NodeId::Controller));
    /// assert!(net.is_cut(NodeId::Broker(BrokerId(9)), b1));
    /// net.heal();
    /// assert!(!net.is_cut(b1, NodeId::Controller));
    /// ```
    pub fn isolate(&self, node: NodeId) {
        self.handle.core.rules.write().isolated.insert(node);
    }

    /// Restores every cut link and ends every isolation: the partition heals. Random
    /// faults and dropped kinds stay (see [`clear_faults`](Self::clear_faults)).
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let (b1, b2) = (NodeId::Broker(BrokerId(1)), NodeId::Broker(BrokerId(2)));
    /// let net = FaultTransport::default();
    /// net.cut(b1, b2);
    /// net.isolate(NodeId::Controller);
    /// net.heal();
    /// assert!(!net.is_cut(b1, b2) && !net.is_cut(b1, NodeId::Controller));
    /// ```
    pub fn heal(&self) {
        let mut rules = self.handle.core.rules.write();
        rules.cut.clear();
        rules.isolated.clear();
    }

    /// Whether messages from `from` to `to` are dropped by a cut link or an
    /// isolation right now. A node is never isolated from itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let net = FaultTransport::default();
    /// assert!(!net.is_cut(NodeId::Broker(BrokerId(1)), NodeId::Controller));
    /// ```
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.handle.core.rules.read().is_cut(from, to)
    }

    /// Drops each message with probability `p`: a lossy network. Kafka's protocol
    /// survives it by retrying: followers fetch again, brokers heartbeat again, the
    /// controller resends what was not acknowledged.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `drop_probability` when `p` is not in
    /// `0.0..=1.0`; the setting is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default().seed(1);
    /// net.drop_probability(0.05)?;
    /// assert!(net.drop_probability(1.5).is_err());
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn drop_probability(&self, p: f64) -> Result<()> {
        let p = probability("drop_probability", p)?;
        self.handle.core.rules.write().random.drop = p;
        Ok(())
    }

    /// Delivers each message twice with probability `p`: a retried request whose
    /// first attempt did arrive. Handlers must be idempotent: a duplicated fetch
    /// must not advance a follower twice, a duplicated AlterPartition must be
    /// refused by its stale partition epoch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `duplicate_probability` when `p` is not in
    /// `0.0..=1.0`; the setting is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default();
    /// net.duplicate_probability(0.1)?;
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn duplicate_probability(&self, p: f64) -> Result<()> {
        let p = probability("duplicate_probability", p)?;
        self.handle.core.rules.write().random.duplicate = p;
        Ok(())
    }

    /// Holds each message back, with probability `p`, for a random time of up to a
    /// few milliseconds, so that messages sent after it on the same link overtake
    /// it. This is what stale responses do after a reconnect: leader epochs and
    /// request ids must fence them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `reorder_probability` when `p` is not in
    /// `0.0..=1.0`; the setting is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default();
    /// net.reorder_probability(0.2)?;
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn reorder_probability(&self, p: f64) -> Result<()> {
        let p = probability("reorder_probability", p)?;
        self.handle.core.rules.write().random.reorder = p;
        Ok(())
    }

    /// Delays every message by a time drawn uniformly from `min..=max`: network
    /// latency, or a slow follower whose fetches arrive late. A range wider than the
    /// gap between two messages also reorders them; use `min == max` for pure
    /// latency. `delay(Duration::ZERO, Duration::ZERO)` turns delay off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `delay` when `min > max` or `max` is over an
    /// hour (cut the link instead); the setting is then unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let net = replog::FaultTransport::default();
    /// net.delay(Duration::from_millis(1), Duration::from_millis(5))?;
    /// assert!(net.delay(Duration::from_millis(5), Duration::from_millis(1)).is_err());
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn delay(&self, min: Duration, max: Duration) -> Result<()> {
        if min > max {
            return Err(Error::InvalidConfig {
                name: "delay",
                reason: format!(
                    "min {min:?} is greater than max {max:?}; pass min <= max, \
                     or Duration::ZERO twice to turn delay off"
                ),
            });
        }
        if max > MAX_DELAY {
            return Err(Error::InvalidConfig {
                name: "delay",
                reason: format!(
                    "max {max:?} is over the limit of {MAX_DELAY:?}; for a link that \
                     never delivers, use FaultTransport::cut"
                ),
            });
        }
        let delay = (max > Duration::ZERO).then_some((min, max));
        self.handle.core.rules.write().random.delay = delay;
        Ok(())
    }

    /// Turns off every random fault (drop, duplicate, reorder, delay) and every
    /// dropped kind. Cut links and isolations stay (see [`heal`](Self::heal)).
    /// Messages already deferred are still delivered when due.
    ///
    /// # Examples
    ///
    /// ```
    /// use replog::{BrokerId, FaultTransport, NodeId};
    /// let net = FaultTransport::default();
    /// net.drop_probability(1.0)?;
    /// net.isolate(NodeId::Controller);
    /// net.clear_faults();
    /// assert!(net.is_cut(NodeId::Controller, NodeId::Broker(BrokerId(1))));
    /// # Ok::<(), replog::Error>(())
    /// ```
    pub fn clear_faults(&self) {
        let mut rules = self.handle.core.rules.write();
        rules.random = RandomFaults::default();
        rules.dropped_kinds.clear();
    }

    /// Drops every message whose [`Envelope::kind`] is `kind` (such as `"Fetch"`
    /// or `"Heartbeat"`), on every link, until [`allow_kind`](Self::allow_kind).
    ///
    /// Dropping `"Fetch"` stalls every follower while heartbeats still flow: the
    /// brokers stay alive to the controller but fall out of the ISR, the case
    /// `replica.lag.time.max.ms` exists for. Kinds are matched exactly (case
    /// included); a kind no message has drops nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default();
    /// net.drop_kind("Fetch");
    /// net.allow_kind("Fetch");
    /// ```
    pub fn drop_kind(&self, kind: &'static str) {
        let mut rules = self.handle.core.rules.write();
        if !rules.dropped_kinds.contains(&kind) {
            rules.dropped_kinds.push(kind);
        }
    }

    /// Lets messages of `kind` through again after [`drop_kind`](Self::drop_kind).
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default();
    /// net.drop_kind("Heartbeat");
    /// net.allow_kind("Heartbeat");
    /// ```
    pub fn allow_kind(&self, kind: &'static str) {
        self.handle
            .core
            .rules
            .write()
            .dropped_kinds
            .retain(|k| *k != kind);
    }

    /// A snapshot of what the transport did so far, shared by all clones.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::FaultTransport::default();
    /// assert_eq!(net.stats().dropped, 0);
    /// ```
    pub fn stats(&self) -> FaultStats {
        let s = &self.handle.core.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultStats {
            sent: get(&s.sent),
            delivered: get(&s.delivered),
            dropped: get(&s.dropped),
            duplicated: get(&s.duplicated),
            delayed: get(&s.delayed),
            reordered: get(&s.reordered),
        }
    }

    /// Sends one copy now or defers it, as delay and reorder decide.
    fn forward(&self, envelope: Envelope, draws: Draws, copy: u64, random: RandomFaults) {
        let core = &self.handle.core;
        let mut hold = None;
        if let Some((min, max)) = random.delay {
            hold = Some(draws.within(Stream::Delay as u64 + copy, min, max));
            bump(&core.stats.delayed);
        }
        if draws.chance(Stream::Reorder as u64 + copy, random.reorder) {
            let back = draws.within(
                Stream::ReorderHold as u64 + copy,
                Duration::ZERO,
                REORDER_WINDOW,
            );
            hold = Some(hold.unwrap_or_default() + back);
            bump(&core.stats.reordered);
        }
        match hold {
            None => core.deliver(envelope),
            Some(hold) => self.defer(Deferred {
                at: Instant::now() + hold,
                envelope,
            }),
        }
    }

    fn defer(&self, deferred: Deferred) {
        let timer = self
            .handle
            .timer
            .get_or_init(|| start_timer(Arc::clone(&self.handle.core)));
        if let Err(unsent) = timer.send(deferred) {
            // The timer thread is gone (it could not start, or the inner transport
            // panicked on it): deliver now rather than lose every deferred message.
            self.handle.core.deliver(unsent.into_inner().envelope);
        }
    }
}

impl Default for FaultTransport<ChannelTransport> {
    /// A fault transport over a fresh [`ChannelTransport`].
    fn default() -> Self {
        Self::new(ChannelTransport::new())
    }
}

impl<T: Transport> Clone for FaultTransport<T> {
    /// Another handle on the same fault state, stats and inner transport.
    fn clone(&self) -> Self {
        FaultTransport {
            handle: Arc::clone(&self.handle),
        }
    }
}

impl<T: Transport> fmt::Debug for FaultTransport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultTransport")
            .field("rules", &*self.handle.core.rules.read())
            .field("stats", &self.stats())
            .field("timer_started", &self.handle.timer.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Transport for FaultTransport<T> {
    fn register(&self, node: NodeId, mailbox: Mailbox) {
        self.handle.core.inner.register(node, mailbox)
    }

    fn unregister(&self, node: NodeId) {
        self.handle.core.inner.unregister(node)
    }

    /// Cut link or dropped kind ⇒ drop; random drop ⇒ drop; random duplicate ⇒ a
    /// second copy; delay or reorder ⇒ defer; otherwise pass to the inner transport.
    fn send(&self, envelope: Envelope) {
        let core = &self.handle.core;
        bump(&core.stats.sent);
        let draws = core.draws();
        let random = {
            let rules = core.rules.read();
            if rules.blocks(&envelope) {
                bump(&core.stats.dropped);
                return;
            }
            rules.random
        };
        if draws.chance(Stream::Drop as u64, random.drop) {
            bump(&core.stats.dropped);
            return;
        }
        let duplicate = draws
            .chance(Stream::Duplicate as u64, random.duplicate)
            .then(|| envelope.clone());
        self.forward(envelope, draws, 0, random);
        if let Some(copy) = duplicate {
            bump(&core.stats.duplicated);
            self.forward(copy, draws, 1, random);
        }
    }
}

impl<T: Transport> Core<T> {
    fn deliver(&self, envelope: Envelope) {
        bump(&self.stats.delivered);
        self.inner.send(envelope);
    }

    /// The decisions for the next send in the sequence.
    fn draws(&self) -> Draws {
        Draws {
            seed: self.seed.load(Ordering::Relaxed),
            index: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Which decision a draw is for. Each has its own stream so that turning one fault
/// on does not shift the decisions of another. Per-copy decisions use `+ copy`.
#[derive(Clone, Copy)]
enum Stream {
    Drop = 0,
    Duplicate = 1,
    Reorder = 2,
    ReorderHold = 4,
    Delay = 6,
}

/// Number of stream slots per send (the last per-copy slot is `Delay + 1`).
const STREAMS: u64 = 8;

/// The random decisions of one send: outputs of a SplitMix64 generator seeded with
/// `seed`, read at positions `index * STREAMS + stream`. Being addressed by
/// position, it needs no lock and no state beyond the send counter.
#[derive(Clone, Copy)]
struct Draws {
    seed: u64,
    index: u64,
}

impl Draws {
    fn u64(self, stream: u64) -> u64 {
        let position = self.index.wrapping_mul(STREAMS).wrapping_add(stream);
        splitmix64(self.seed, position)
    }

    /// True with probability `p`; never draws when `p` is zero.
    fn chance(self, stream: u64, p: f64) -> bool {
        // The top 53 bits as a float in 0.0..1.0, so `p = 1.0` is always true.
        let unit = (self.u64(stream) >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && unit < p
    }

    /// A duration drawn uniformly from `min..=max`.
    fn within(self, stream: u64, min: Duration, max: Duration) -> Duration {
        let span = u64::try_from((max - min).as_nanos()).unwrap_or(u64::MAX);
        // Multiply-shift maps a uniform u64 onto 0..=span without a division.
        let offset = (u128::from(self.u64(stream)) * (u128::from(span) + 1)) >> 64;
        min + Duration::from_nanos(offset as u64)
    }
}

/// The `position`-th output (from 0) of SplitMix64 seeded with `seed`.
fn splitmix64(seed: u64, position: u64) -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut z = seed.wrapping_add(position.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn probability(name: &'static str, p: f64) -> Result<f64> {
    // `contains` is false for NaN too.
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(Error::InvalidConfig {
            name,
            reason: format!(
                "{p} is not a probability; use a value from 0.0 (no message) to 1.0 (every message)"
            ),
        })
    }
}

/// A message waiting for its time, on its way to the timer thread.
struct Deferred {
    at: Instant,
    envelope: Envelope,
}

/// A message in the timer's heap. Ordered by due time, then arrival, reversed so
/// that the max-heap `BinaryHeap` pops the earliest first (ties in send order).
struct Queued {
    at: Instant,
    seq: u64,
    envelope: Envelope,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

/// Starts the timer thread and returns its inbox. If the thread cannot start, the
/// receiver is dropped with the closure, and sends to the inbox fail.
fn start_timer<T: Transport>(core: Arc<Core<T>>) -> Sender<Deferred> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let _detached = std::thread::Builder::new()
        .name("replog-fault-timer".into())
        .spawn(move || run_timer(&core, &rx));
    tx
}

/// Delivers deferred messages when due. Sleeps in `recv`/`recv_deadline` (never
/// polls) and returns when every handle is gone, dropping what is still pending.
fn run_timer<T: Transport>(core: &Core<T>, inbox: &Receiver<Deferred>) {
    let mut pending = BinaryHeap::<Queued>::new();
    let mut seq = 0u64;
    loop {
        let next = match pending.peek() {
            Some(first) => inbox.recv_deadline(first.at),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Deferred { at, envelope }) => {
                pending.push(Queued { at, seq, envelope });
                seq += 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        while let Some(first) = pending.peek_mut() {
            if first.at > now {
                break;
            }
            let due = PeekMut::pop(first).envelope;
            // The link is checked again: a partition that started while the message
            // was in flight loses it.
            if core.rules.read().blocks(&due) {
                bump(&core.stats.dropped);
            } else {
                core.deliver(due);
            }
        }
    }
    core.stats
        .dropped
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
}
