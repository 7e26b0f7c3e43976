//! The simulated network: [`SimTransport`] hands every envelope to the simulation,
//! and [`Network`] decides, from the seeded RNG, when (and whether, and how often)
//! each one arrives: drops, duplicates, delays (which reorder), cut links, isolation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::ids::NodeId;
use crate::protocol::{Envelope, Mailbox};
use crate::transport::Transport;

use super::faults::{FaultCounts, FaultKind};
use super::rng::Rng;

/// A [`Transport`] that queues every envelope for the simulation to route: nodes call
/// `send` while the simulation steps them, and the simulation drains the queue after
/// each step, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct SimTransport {
    outbox: Arc<Mutex<Vec<Envelope>>>,
}

impl SimTransport {
    /// Everything sent since the last call, in send order.
    pub(crate) fn drain(&self) -> Vec<Envelope> {
        std::mem::take(&mut *self.outbox.lock())
    }
}

impl Transport for SimTransport {
    fn register(&self, _node: NodeId, _mailbox: Mailbox) {
        // The simulation knows which nodes run; it delivers by calling them.
    }

    fn unregister(&self, _node: NodeId) {}

    fn send(&self, envelope: Envelope) {
        self.outbox.lock().push(envelope);
    }
}

/// Message-level fault rates of one run, drawn from its seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetConfig {
    /// Probability that a message is dropped.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message is held back for a long delay (which reorders it).
    pub delay: f64,
    /// Normal one-way latency range, in microseconds.
    pub latency_us: (u64, u64),
    /// Long-delay range, in milliseconds.
    pub long_delay_ms: (u64, u64),
}

impl NetConfig {
    /// A network that never misbehaves (the settling phase at the end of a run).
    pub fn calm() -> Self {
        NetConfig {
            drop: 0.0,
            duplicate: 0.0,
            delay: 0.0,
            latency_us: (100, 1000),
            long_delay_ms: (0, 0),
        }
    }

    /// Rates drawn from `rng`: some runs calm, some lossy, some stormy.
    pub(crate) fn draw(rng: &mut Rng) -> Self {
        NetConfig {
            drop: rng.pick(&[0.0, 0.0, 0.005, 0.02, 0.05]),
            duplicate: rng.pick(&[0.0, 0.0, 0.005, 0.02]),
            delay: rng.pick(&[0.0, 0.01, 0.03]),
            latency_us: (50, rng.pick(&[500, 2_000, 10_000])),
            long_delay_ms: (5, rng.pick(&[50, 300, 1_500])),
        }
    }
}

/// Where messages may go, and the per-link state needed to count reorders.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) config: NetConfig,
    /// Directed links that drop everything (isolation cuts both ways of every link
    /// of a node; a partition cuts one pair).
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    /// A drop storm: this drop probability until the given time.
    storm: Option<(f64, Duration)>,
    /// Latest delivery time scheduled per directed link.
    last_delivery: BTreeMap<(NodeId, NodeId), Duration>,
}

impl Network {
    pub(crate) fn new(config: NetConfig) -> Self {
        Network {
            config,
            cuts: BTreeMap::new(),
            storm: None,
            last_delivery: BTreeMap::new(),
        }
    }

    /// Cuts both directions between `a` and `b` (counted: overlapping cuts nest).
    pub(crate) fn cut(&mut self, a: NodeId, b: NodeId) {
        *self.cuts.entry((a, b)).or_default() += 1;
        *self.cuts.entry((b, a)).or_default() += 1;
    }

    /// Undoes one [`Network::cut`] of `a`–`b`.
    pub(crate) fn mend(&mut self, a: NodeId, b: NodeId) {
        for key in [(a, b), (b, a)] {
            if let Some(n) = self.cuts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.cuts.remove(&key);
                }
            }
        }
    }

    /// Removes every cut and storm (the end of the fault phase).
    pub(crate) fn heal_all(&mut self) {
        self.cuts.clear();
        self.storm = None;
        self.config = NetConfig::calm();
    }

    /// Drops with probability `p` until `until`.
    pub(crate) fn storm(&mut self, p: f64, until: Duration) {
        self.storm = Some((p, until));
    }

    /// Whether `from` can reach `to` now.
    pub(crate) fn connected(&self, from: NodeId, to: NodeId) -> bool {
        !self.cuts.contains_key(&(from, to))
    }

    /// The nodes cut off from `node`, for the trace.
    #[allow(dead_code)] // Debugging aid.
    pub(crate) fn cut_from(&self, node: NodeId) -> BTreeSet<NodeId> {
        self.cuts
            .keys()
            .filter(|(a, _)| *a == node)
            .map(|(_, b)| *b)
            .collect()
    }

    /// Decides the fate of one envelope sent at `now`: the delivery times of its
    /// copies (none when dropped).
    pub(crate) fn route(
        &mut self,
        env: &Envelope,
        now: Duration,
        rng: &mut Rng,
        counts: &mut FaultCounts,
    ) -> Vec<Duration> {
        let link = (env.from(), env.to());
        if !self.connected(link.0, link.1) {
            return Vec::new();
        }
        let drop = match self.storm {
            Some((p, until)) if now < until => p,
            _ => self.config.drop,
        };
        if rng.chance(drop) {
            counts.add(FaultKind::Drop);
            return Vec::new();
        }
        let copies = if rng.chance(self.config.duplicate) {
            counts.add(FaultKind::Duplicate);
            2
        } else {
            1
        };
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let (lo, hi) = self.config.latency_us;
            let mut at = now + rng.micros(lo, hi);
            if rng.chance(self.config.delay) {
                counts.add(FaultKind::Delay);
                let (lo, hi) = self.config.long_delay_ms;
                at += rng.millis(lo, hi);
            }
            let last = self.last_delivery.entry(link).or_default();
            if at < *last {
                counts.add(FaultKind::Reorder);
            } else {
                *last = at;
            }
            out.push(at);
        }
        out
    }
}
