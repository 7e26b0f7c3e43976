//! The leader side of one partition: follower progress, ISR changes, the high
//! watermark, and the `acks=all` waiters it completes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::ids::BrokerId;
use crate::protocol::{AlterPartitionError, PartitionState};

/// What a follower has shown the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    /// The follower's log end offset: the offset of its last fetch.
    leo: u64,
    /// Last time the follower was caught up to the leader's log end (Kafka's
    /// `lastCaughtUpTimeMs`).
    last_caught_up: Duration,
    /// Time of the previous fetch and the leader's log end then.
    last_fetch: Duration,
    last_fetch_leader_leo: u64,
    /// Whether it has fetched from this leader at all (its LEO is known).
    fetched: bool,
    /// The broker epoch its fetches carry: a new one is a restarted follower, whose
    /// log may be shorter than what this progress says (KIP-903).
    broker_epoch: Option<u64>,
}

impl Progress {
    /// See [`Leader::incarnation`].
    fn incarnation(&mut self, broker_epoch: u64) -> bool {
        match self.broker_epoch {
            Some(e) if broker_epoch < e => false,
            Some(e) if broker_epoch == e => true,
            _ => {
                self.broker_epoch = Some(broker_epoch);
                self.leo = 0;
                self.last_fetch_leader_leo = 0;
                true
            }
        }
    }
}

/// An `acks=all` append waiting for the high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    id: u64,
    /// The HW the record needs: its last offset + 1.
    required: u64,
    deadline: Duration,
}

/// How an `acks=all` waiter ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// Committed with the ISR at or above `min.insync.replicas`.
    Committed,
    /// Committed, but the ISR had shrunk below `min.insync.replicas` (Kafka's
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    CommittedBelowMinIsr { isr: usize },
    /// The deadline passed first.
    TimedOut,
    /// Leadership moved first.
    NotLeader,
}

/// What the shell must act on after an input.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderReady {
    /// The new high watermark, when it moved.
    pub hw: Option<u64>,
    /// Waiters that ended, by id.
    pub acks: Vec<(u64, AckOutcome)>,
    /// An ISR to propose to the controller (AlterPartition).
    pub alter_isr: Option<Vec<BrokerId>>,
}

impl LeaderReady {
    /// Nothing to act on.
    pub(crate) fn is_empty(&self) -> bool {
        self.hw.is_none() && self.acks.is_empty() && self.alter_isr.is_none()
    }
}

/// The leader's replication state for one partition.
#[derive(Debug)]
pub(crate) struct Leader {
    local: BrokerId,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// An ISR proposed to the controller and not yet settled.
    pending: Option<Proposal>,
    leader_epoch: u32,
    partition_epoch: u32,
    min_insync: usize,
    lag_max: Duration,
    followers: BTreeMap<BrokerId, Progress>,
    leo: u64,
    hw: u64,
    /// Offset at which this leader's epoch starts; a follower must reach it to rejoin.
    epoch_start: u64,
    waiters: VecDeque<Waiter>,
}

/// An ISR change proposed to the controller.
#[derive(Debug)]
struct Proposal {
    isr: Vec<BrokerId>,
    /// When it was last sent (or made, before the broker sent it).
    sent: Duration,
    /// The members' broker epochs as they were when it was made: a resend carries
    /// these, not later ones (KIP-903).
    epochs: Vec<(BrokerId, u64)>,
    /// The AlterPartition request that last carried it (its first send or a
    /// resend): only a refusal of that one can settle it.
    request: Option<u64>,
}

/// How long an unanswered AlterPartition waits before it is sent again (it may have
/// been lost on the transport).
const ALTER_RETRY: Duration = Duration::from_millis(200);

impl Leader {
    /// Becomes leader of `state` with a local log ending at `leo` and a high watermark
    /// known to be at least `hw`. Followers count as caught up now, so none is dropped
    /// from the ISR before it had `lag_max` to fetch.
    pub(crate) fn new(
        local: BrokerId,
        state: &PartitionState,
        leo: u64,
        hw: u64,
        lag_max: Duration,
        now: Duration,
    ) -> Self {
        let mut leader = Leader {
            local,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            min_insync: state.config.min_insync_replicas as usize,
            lag_max,
            followers: BTreeMap::new(),
            leo,
            hw: hw.min(leo),
            epoch_start: leo,
            waiters: VecDeque::new(),
        };
        leader.sync_followers(now);
        leader
    }

    fn sync_followers(&mut self, now: Duration) {
        let local = self.local;
        self.followers.retain(|b, _| *b != local);
        for &r in &self.replicas {
            if r != local {
                self.followers.entry(r).or_insert(Progress {
                    leo: 0,
                    last_caught_up: now,
                    last_fetch: now,
                    last_fetch_leader_leo: 0,
                    fetched: false,
                    broker_epoch: None,
                });
            }
        }
    }

    /// A fetch from `follower` in its incarnation `broker_epoch` arrived: a new
    /// incarnation forgets what the old one reached (a restarted follower's log may
    /// be shorter). False for a fetch of an earlier incarnation, delivered late:
    /// nothing it says holds for the follower now.
    pub(crate) fn incarnation(&mut self, follower: BrokerId, broker_epoch: u64) -> bool {
        self.followers
            .get_mut(&follower)
            .is_some_and(|p| p.incarnation(broker_epoch))
    }

    /// The broker sends a proposal of `isr` as AlterPartition `request_id` (its
    /// requests are numbered in order); returns the member epochs to send with it.
    /// When `isr` is the pending proposal (its first send or a resend), the request
    /// is noted and the epochs are those captured when it was made: a resend must
    /// not vouch for a follower's later incarnation on the strength of its earlier
    /// one. Another `isr` (a resignation) gets the current ones.
    pub(crate) fn sending_proposal(
        &mut self,
        isr: &[BrokerId],
        request_id: u64,
    ) -> Vec<(BrokerId, u64)> {
        match &mut self.pending {
            Some(p) if p.isr == isr => {
                p.request = Some(request_id);
                p.epochs.clone()
            }
            _ => self.member_epochs(isr),
        }
    }

    /// For each follower in `isr`, the broker epoch its fetches last carried (none
    /// for one not heard from in this leadership): sent with an ISR proposal so the
    /// controller can refuse a member that has restarted since (KIP-903).
    pub(crate) fn member_epochs(&self, isr: &[BrokerId]) -> Vec<(BrokerId, u64)> {
        isr.iter()
            .filter_map(|b| Some((*b, self.followers.get(b)?.broker_epoch?)))
            .collect()
    }

    /// The committed ISR (as the controller last confirmed it).
    pub(crate) fn isr(&self) -> &[BrokerId] {
        &self.isr
    }

    /// The high watermark.
    pub(crate) fn hw(&self) -> u64 {
        self.hw
    }

    /// The leader epoch this leader serves.
    pub(crate) fn leader_epoch(&self) -> u32 {
        self.leader_epoch
    }

    /// The partition epoch of the ISR this leader holds.
    pub(crate) fn partition_epoch(&self) -> u32 {
        self.partition_epoch
    }

    /// Whether an ISR change is waiting for the controller.
    #[cfg(test)]
    pub(crate) fn has_pending_isr(&self) -> bool {
        self.pending.is_some()
    }

    /// The ISR waiting for the controller, if any.
    #[cfg(test)]
    pub(crate) fn pending_isr(&self) -> Option<&[BrokerId]> {
        self.pending.as_ref().map(|p| p.isr.as_slice())
    }

    /// Rule 3: an `acks=all` append is refused before anything is written when the
    /// ISR is smaller than `min.insync.replicas`. Returns the ISR size on refusal.
    pub(crate) fn check_min_isr(&self) -> Result<(), usize> {
        if self.isr.len() < self.min_insync {
            Err(self.isr.len())
        } else {
            Ok(())
        }
    }

    /// `min.insync.replicas` of the partition.
    pub(crate) fn min_insync(&self) -> usize {
        self.min_insync
    }

    /// The local log grew to `leo`. With `waiter`, an `acks=all` append whose last
    /// offset is `leo - 1` waits for the HW until `deadline`.
    pub(crate) fn appended(
        &mut self,
        leo: u64,
        waiter: Option<(u64, Duration)>,
        now: Duration,
    ) -> LeaderReady {
        debug_assert!(leo >= self.leo, "the leader's log never shrinks");
        self.leo = leo;
        if let Some((id, deadline)) = waiter {
            self.wait_for(id, leo, deadline);
        }
        let mut ready = LeaderReady::default();
        self.advance_hw(&mut ready);
        let _ = now;
        ready
    }

    /// Adds a waiter for offset `required` (HW must reach it). Used for appends and
    /// for retried idempotent batches answered from the producer table.
    pub(crate) fn wait_for(&mut self, id: u64, required: u64, deadline: Duration) {
        let w = Waiter {
            id,
            required,
            deadline,
        };
        // Appends arrive in offset order; a retried duplicate may be older.
        let pos = self
            .waiters
            .iter()
            .rposition(|x| x.required <= required)
            .map_or(0, |p| p + 1);
        self.waiters.insert(pos, w);
    }

    /// A follower fetched from `fetch_offset` (its log end offset) at `now`, in its
    /// incarnation `broker_epoch`.
    pub(crate) fn fetched(
        &mut self,
        follower: BrokerId,
        broker_epoch: u64,
        fetch_offset: u64,
        now: Duration,
    ) -> LeaderReady {
        let mut ready = LeaderReady::default();
        let leo = self.leo;
        let Some(p) = self.followers.get_mut(&follower) else {
            return ready;
        };
        if !p.incarnation(broker_epoch) {
            return ready;
        }
        // Kafka's rule: caught up now if at the leader's end; caught up as of the
        // previous fetch if it reached what the leader had then.
        if fetch_offset >= leo {
            p.last_caught_up = now;
        } else if fetch_offset >= p.last_fetch_leader_leo {
            p.last_caught_up = p.last_caught_up.max(p.last_fetch);
        }
        p.leo = fetch_offset.min(leo);
        p.fetched = true;
        p.last_fetch = now;
        p.last_fetch_leader_leo = leo;
        self.propose_expansion(now, &mut ready);
        self.advance_hw(&mut ready);
        ready
    }

    /// Rule 4: a follower rejoins once it reaches the HW (and this epoch's start,
    /// so it has truncated any divergent tail). Every such follower is proposed in
    /// one change.
    fn propose_expansion(&mut self, now: Duration, ready: &mut LeaderReady) {
        // Checked on every fetch of every partition: when every replica is in the
        // ISR, the usual case, nothing can join and the followers go unread.
        if self.pending.is_some() || self.replicas.iter().all(|b| self.isr.contains(b)) {
            return;
        }
        let joining: Vec<BrokerId> = self
            .followers
            .iter()
            .filter(|(b, p)| {
                p.fetched
                    && now.saturating_sub(p.last_fetch) <= self.lag_max
                    && !self.isr.contains(b)
                    && p.leo >= self.hw
                    && p.leo >= self.epoch_start
            })
            .map(|(b, _)| *b)
            .collect();
        if joining.is_empty() {
            return;
        }
        trace!(
            "leader {}: epoch {} expands ISR {:?} with {joining:?}: hw {} leo {} epoch_start {} progress {:?}",
            self.local, self.leader_epoch, self.isr, self.hw, self.leo, self.epoch_start, self.followers
        );
        let isr: Vec<BrokerId> = self
            .replicas
            .iter()
            .filter(|b| self.isr.contains(b) || joining.contains(b))
            .copied()
            .collect();
        self.propose(isr, now, ready);
    }

    /// Periodic work: ISR shrink for lagging followers, expiry of waiters, resending
    /// an unanswered AlterPartition.
    pub(crate) fn tick(&mut self, now: Duration) -> LeaderReady {
        let mut ready = LeaderReady::default();
        if let Some(p) = &mut self.pending {
            if now.saturating_sub(p.sent) >= ALTER_RETRY {
                ready.alter_isr = Some(p.isr.clone());
                p.sent = now;
            }
        } else {
            let lagging: BTreeSet<BrokerId> = self
                .isr
                .iter()
                .filter(|b| **b != self.local)
                .filter(|b| {
                    self.followers.get(b).is_some_and(|p| {
                        p.leo < self.leo && now.saturating_sub(p.last_caught_up) > self.lag_max
                    })
                })
                .copied()
                .collect();
            if !lagging.is_empty() {
                let isr: Vec<BrokerId> = self
                    .isr
                    .iter()
                    .filter(|b| !lagging.contains(b))
                    .copied()
                    .collect();
                self.propose(isr, now, &mut ready);
            }
        }
        while let Some(pos) = self.waiters.iter().position(|w| w.deadline <= now) {
            let w = self.waiters.remove(pos).expect("position is in range");
            ready.acks.push((w.id, AckOutcome::TimedOut));
        }
        ready
    }

    /// The earliest time `tick` may have something to do.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let waiter = self.waiters.iter().map(|w| w.deadline).min();
        let alter = self.pending.as_ref().map(|p| p.sent + ALTER_RETRY);
        [waiter, alter].into_iter().flatten().min()
    }

    /// The controller accepted a change (or sent a newer state with the same leader
    /// epoch): adopt its ISR and partition epoch.
    pub(crate) fn isr_updated(&mut self, state: &PartitionState, now: Duration) -> LeaderReady {
        let mut ready = LeaderReady::default();
        if state.leader_epoch != self.leader_epoch || state.partition_epoch < self.partition_epoch {
            return ready;
        }
        if state.partition_epoch == self.partition_epoch && self.pending.is_some() {
            // The state the pending proposal was made on, again (a duplicate, a
            // resend): it says nothing of whether the proposal was applied.
            return ready;
        }
        // A follower the controller removed (dead, fenced) must fetch again before
        // it can be proposed back.
        for (b, p) in self.followers.iter_mut() {
            if self.isr.contains(b) && !state.isr.contains(b) {
                p.fetched = false;
            }
        }
        self.isr = state.isr.clone();
        self.replicas = state.replicas.clone();
        self.partition_epoch = state.partition_epoch;
        self.min_insync = state.config.min_insync_replicas as usize;
        self.pending = None;
        self.sync_followers(now);
        self.advance_hw(&mut ready);
        // Another follower may have caught up while this change was pending.
        self.propose_expansion(now, &mut ready);
        ready
    }

    /// The controller refused AlterPartition `request_id`. A refusal that proves
    /// nothing of the proposal was applied (the controller checked the partition
    /// epoch and the request's number before it found a member ineligible) drops it:
    /// the next fetch or tick proposes again from the current facts. That holds only
    /// for the refusal of the proposal's latest send: the controller refuses every
    /// copy numbered up to one it has answered, but a later send may still pass, and
    /// the transport may deliver an answer to an earlier send (or to an earlier
    /// proposal) late or twice. After the other refusals (a stale broker, leader or
    /// partition epoch) an earlier copy may have been applied with its answer lost,
    /// as KIP-497's leader allows for: the proposal stays pending, its members keep
    /// bounding the HW, and it is sent again until an answer or the controller's
    /// next state settles it (a copy of an applied proposal is answered with the
    /// current state). Dropping it would let the HW pass a follower the controller
    /// may already count in the ISR.
    pub(crate) fn alter_refused(&mut self, request_id: u64, error: AlterPartitionError) {
        match error {
            AlterPartitionError::IneligibleReplica
            | AlterPartitionError::StaleMemberEpoch
            | AlterPartitionError::UnknownTopicOrPartition => {
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.request == Some(request_id))
                {
                    self.pending = None;
                }
            }
            AlterPartitionError::StaleBrokerEpoch
            | AlterPartitionError::FencedLeaderEpoch
            | AlterPartitionError::InvalidUpdateVersion => {}
        }
    }

    /// Leadership is gone: every waiter ends with `NotLeader`.
    pub(crate) fn resign(&mut self) -> Vec<(u64, AckOutcome)> {
        self.waiters
            .drain(..)
            .map(|w| (w.id, AckOutcome::NotLeader))
            .collect()
    }

    fn propose(&mut self, isr: Vec<BrokerId>, now: Duration, ready: &mut LeaderReady) {
        // Rule 4: the ISR never becomes empty, and always holds the leader.
        debug_assert!(isr.contains(&self.local));
        if isr == self.isr {
            return;
        }
        ready.alter_isr = Some(isr.clone());
        self.pending = Some(Proposal {
            epochs: self.member_epochs(&isr),
            isr,
            sent: now,
            request: None,
        });
    }

    /// Rule 2: HW = min LEO over the ISR, taken over the larger of the committed and
    /// the pending ISR (KIP-497), and never decreasing.
    fn advance_hw(&mut self, ready: &mut LeaderReady) {
        let mut min = self.leo;
        let members = self
            .isr
            .iter()
            .chain(self.pending.iter().flat_map(|p| p.isr.iter()));
        for b in members {
            if *b == self.local {
                continue;
            }
            let leo = self.followers.get(b).map_or(0, |p| p.leo);
            min = min.min(leo);
        }
        // The simulation's checker must catch a broken rule: HW from the leader alone.
        #[cfg(any(test, feature = "sim"))]
        if crate::sim::broken_rule() == crate::sim::BrokenRule::HwFromLeaderLeo {
            min = self.leo;
        }
        if min > self.hw {
            self.hw = min;
            ready.hw = Some(min);
        }
        let isr = self.isr.len();
        while self.waiters.front().is_some_and(|w| w.required <= self.hw) {
            let w = self.waiters.pop_front().expect("front exists");
            let outcome = if isr < self.min_insync {
                AckOutcome::CommittedBelowMinIsr { isr }
            } else {
                AckOutcome::Committed
            };
            ready.acks.push((w.id, outcome));
        }
    }
}
