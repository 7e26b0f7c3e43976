//! The consumer's side of a consumer group: joining, heartbeats driven by `poll`,
//! applying the coordinator's assignment, and offset commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::AssignmentStrategy;
use crate::group::{partition_for, AssignorKind, JoinRequest, MemberState, OFFSETS_TOPIC};
use crate::ids::TopicPartition;
use crate::protocol::{ClientRequest, GroupOp, GroupReply, GroupRequest, Inbound};
use crate::{Error, Result};

use super::Consumer;

/// How long a group call keeps retrying while the coordinator moves.
pub(super) const GROUP_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long closing a consumer waits for its final commit and its leave request.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Between heartbeats while a rebalance is converging.
const REBALANCE_HEARTBEAT: Duration = Duration::from_millis(20);

/// Called when the group moves partitions to or from this consumer, from inside
/// `poll` (Kafka's `ConsumerRebalanceListener`). The consumer may be used from the
/// callbacks, e.g. to commit before a partition is lost.
///
/// # Examples
///
/// ```
/// use replog::{Consumer, RebalanceListener, TopicPartition};
///
/// #[derive(Debug)]
/// struct CommitOnRevoke;
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_partitions_revoked(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
///         let offsets: Vec<_> = partitions
///             .iter()
///             .filter_map(|tp| Some((tp.clone(), consumer.position(tp).ok()?)))
///             .collect();
///         let _ = consumer.commit_offsets(&offsets);
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync + std::fmt::Debug {
    /// These partitions are about to go to another member: commit what was
    /// processed. They are still assigned during the call.
    fn on_partitions_revoked(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// These partitions are now this consumer's.
    fn on_partitions_assigned(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }

    /// Membership was lost (session timeout, fenced): these partitions already
    /// belong to others, and committing them would be refused.
    fn on_partitions_lost(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
}

/// Membership in a group, when subscribed.
#[derive(Debug, Default)]
pub(super) struct Membership {
    pub(super) topics: Vec<String>,
    pub(super) member_id: Option<String>,
    pub(super) generation: u32,
    pub(super) next_heartbeat: Option<Instant>,
    pub(super) listener: Option<Arc<dyn RebalanceListener>>,
}

fn assignor(s: AssignmentStrategy) -> AssignorKind {
    match s {
        AssignmentStrategy::Range => AssignorKind::Range,
        AssignmentStrategy::RoundRobin => AssignorKind::RoundRobin,
        AssignmentStrategy::CooperativeSticky => AssignorKind::CooperativeSticky,
    }
}

impl Consumer {
    pub(super) fn group_id(&self, what: &str) -> Result<String> {
        self.config.group.clone().ok_or_else(|| {
            Error::Usage(format!(
                "Consumer::{what} needs a consumer group: set ConsumerConfig::group(\"...\")"
            ))
        })
    }

    /// Sends a request to the group's coordinator, following it as it moves.
    pub(super) fn group_call(&self, op: GroupOp, timeout: Duration) -> Result<GroupReply> {
        let group = self.group_id("group_call")?;
        self.cluster.ensure_offsets_topic()?;
        let deadline = Instant::now() + timeout;
        loop {
            let image = self.cluster.metadata.get();
            let n = image
                .topics
                .get(OFFSETS_TOPIC)
                .map_or(1, |t| t.partitions.len() as u32);
            let p = partition_for(&group, n);
            let leader = image
                .topics
                .get(OFFSETS_TOPIC)
                .and_then(|t| t.partitions.get(p as usize))
                .and_then(|s| s.leader);
            let result = match leader.and_then(|l| self.cluster.broker_tx(l)) {
                None => Err(Error::LeaderNotAvailable {
                    topic: OFFSETS_TOPIC.into(),
                    partition: p,
                }),
                Some(tx) => {
                    let (reply, rx) = crossbeam_channel::bounded(1);
                    let req = GroupRequest {
                        group: group.clone(),
                        op: op.clone(),
                        reply,
                    };
                    match tx.send(Inbound::Client(ClientRequest::Group(req))) {
                        Err(_) => Err(Error::LeaderNotAvailable {
                            topic: OFFSETS_TOPIC.into(),
                            partition: p,
                        }),
                        Ok(()) => match rx
                            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        {
                            Ok(r) => r,
                            Err(_) => Err(Error::Timeout {
                                what: format!("the coordinator of group `{group}`"),
                                after: timeout,
                            }),
                        },
                    }
                }
            };
            match result {
                Err(e) if e.is_retriable() && self.cluster.is_shut_down() => {
                    let _ = e;
                    return Err(self.cluster.shut_down());
                }
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    // The coordinator is moving: wait for metadata to change.
                    let wait = Duration::from_millis(20)
                        .min(deadline.saturating_duration_since(Instant::now()));
                    let _ = self.metadata.recv_timeout(wait);
                }
                other => return other,
            }
        }
    }

    /// Joins or heartbeats when due, applies what the coordinator answers, and
    /// runs the rebalance callbacks (with no lock held).
    pub(super) fn drive_membership(&self) -> Result<()> {
        loop {
            let (op, listener) = {
                let mut g = self.group.lock();
                let Some(m) = g.as_mut() else {
                    return Ok(());
                };
                let now = Instant::now();
                if m.member_id.is_some() && m.next_heartbeat.is_some_and(|t| now < t) {
                    return Ok(());
                }
                let op = match &m.member_id {
                    None => GroupOp::Join(JoinRequest {
                        group: self.group_id("subscribe")?,
                        member_id: None,
                        instance_id: self.config.group_instance_id.clone(),
                        client_id: self.config.client_id.clone(),
                        topics: m.topics.clone(),
                        assignor: assignor(self.config.assignment_strategy),
                        session_timeout: self.config.session_timeout,
                    }),
                    Some(id) => GroupOp::Heartbeat {
                        member_id: id.clone(),
                        generation: m.generation,
                        owned: self.state.lock().assignment.clone(),
                    },
                };
                (op, m.listener.clone())
            };
            let state = match self.group_call(op, GROUP_CALL_TIMEOUT) {
                Ok(GroupReply::Member(s)) => s,
                Ok(_) => return Ok(()),
                Err(Error::IllegalGeneration { .. }) => {
                    // Not a member any more: the partitions are someone else's.
                    let lost = self.take_assignment();
                    if let Some(l) = &listener {
                        l.on_partitions_lost(self, &lost);
                    }
                    if let Some(m) = self.group.lock().as_mut() {
                        m.member_id = None;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let again = state.rebalance_in_progress;
            self.apply_member_state(state, listener.as_deref());
            if !again {
                return Ok(());
            }
            // Converging: report back soon, without blocking poll for long.
            if let Some(m) = self.group.lock().as_mut() {
                m.next_heartbeat = Some(Instant::now() + REBALANCE_HEARTBEAT);
            }
            return Ok(());
        }
    }

    /// When `poll` must next drive the group (a heartbeat, a join, or an auto
    /// commit), even in the middle of a long poll; `None` without a group.
    pub(super) fn next_group_work(&self) -> Option<Instant> {
        let heartbeat = self.group.lock().as_ref().map(|m| match m.member_id {
            // Not a member: join at once.
            None => Instant::now(),
            Some(_) => m.next_heartbeat.unwrap_or_else(Instant::now),
        });
        let commit = (self.config.enable_auto_commit && self.config.group.is_some())
            .then(|| *self.next_auto_commit.lock());
        heartbeat.into_iter().chain(commit).min()
    }

    fn take_assignment(&self) -> Vec<TopicPartition> {
        let mut s = self.state.lock();
        let lost = std::mem::take(&mut s.assignment);
        s.positions.clear();
        s.buffer.clear();
        lost
    }

    fn apply_member_state(&self, st: MemberState, listener: Option<&dyn RebalanceListener>) {
        // The new generation first: commits made from the revoke callback carry it
        // (with the old one the coordinator would refuse them).
        if let Some(m) = self.group.lock().as_mut() {
            m.member_id = Some(st.member_id.clone());
            m.generation = st.generation;
            m.next_heartbeat = Some(Instant::now() + self.config.heartbeat_interval);
        }
        if !st.revoke.is_empty() {
            // Commit what was consumed before the partitions move, so the next owner
            // starts where this one stopped. Best effort, as Kafka's: the partitions
            // go either way, and what was not committed is delivered again.
            if self.config.enable_auto_commit {
                let offsets = self.consumed_positions(&st.revoke);
                let _ = self.commit_as_member(&st.member_id, st.generation, &offsets);
            }
            if let Some(l) = listener {
                l.on_partitions_revoked(self, &st.revoke);
            }
        }
        let added = {
            let mut s = self.state.lock();
            let old = std::mem::take(&mut s.assignment);
            let added: Vec<TopicPartition> = st
                .assigned
                .iter()
                .filter(|tp| !old.contains(tp))
                .cloned()
                .collect();
            s.assignment = st.assigned.clone();
            let keep = s.assignment.clone();
            s.positions.retain(|tp, _| keep.contains(tp));
            s.buffer.retain(|r| {
                keep.iter()
                    .any(|tp| tp.topic == r.topic && tp.partition == r.partition)
            });
            added
        };
        if !added.is_empty() {
            // New partitions start from the group's committed offsets.
            if let Ok(GroupReply::Committed(c)) = self.group_call(
                GroupOp::Committed {
                    partitions: added.clone(),
                },
                GROUP_CALL_TIMEOUT,
            ) {
                let mut s = self.state.lock();
                for (tp, o) in c {
                    if let Some(o) = o {
                        s.positions.insert(tp, o);
                    }
                }
            }
            if let Some(l) = listener {
                l.on_partitions_assigned(self, &added);
            }
        }
    }

    /// Positions of what `poll` has returned, for these partitions.
    pub(super) fn consumed_positions(&self, tps: &[TopicPartition]) -> Vec<(TopicPartition, u64)> {
        let s = self.state.lock();
        tps.iter()
            .filter_map(|tp| {
                let buffered = s
                    .buffer
                    .iter()
                    .find(|r| r.topic == tp.topic && r.partition == tp.partition)
                    .map(|r| r.offset);
                let p = buffered.or_else(|| s.positions.get(tp).copied())?;
                Some((tp.clone(), p))
            })
            .collect()
    }

    fn commit_as_member(
        &self,
        member_id: &str,
        generation: u32,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let result = self.group_call(
            GroupOp::Commit {
                member: Some((member_id.to_string(), generation)),
                offsets: offsets.to_vec(),
                timeout: GROUP_CALL_TIMEOUT,
            },
            GROUP_CALL_TIMEOUT,
        );
        if let Err(Error::IllegalGeneration { .. }) = &result {
            // The group rebalanced since the last heartbeat: the next poll
            // heartbeats at once rather than after heartbeat.interval.ms, so a
            // commit retried after it carries the new generation.
            if let Some(m) = self.group.lock().as_mut() {
                if m.member_id.as_deref() == Some(member_id) {
                    m.next_heartbeat = Some(Instant::now());
                }
            }
        }
        result.map(|_| ())
    }

    /// Commits as a member when subscribed, else as a standalone consumer.
    pub(super) fn commit_now(&self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.group_id("commit")?;
        // Subscribed but not (or no longer) a member: commit with no member id, so
        // the coordinator refuses it with the group's generation, rather than
        // taking it as a standalone consumer's.
        let member = self
            .group
            .lock()
            .as_ref()
            .map(|m| (m.member_id.clone().unwrap_or_default(), m.generation));
        match member {
            Some((id, generation)) => self.commit_as_member(&id, generation, offsets),
            None => {
                if offsets.is_empty() {
                    return Ok(());
                }
                self.group_call(
                    GroupOp::Commit {
                        member: None,
                        offsets: offsets.to_vec(),
                        timeout: GROUP_CALL_TIMEOUT,
                    },
                    GROUP_CALL_TIMEOUT,
                )
                .map(|_| ())
            }
        }
    }

    /// Leaves the group (close and Drop): commits what `poll` returned when auto
    /// commit is on, runs the revoke callback (which may commit too), then tells
    /// the coordinator. Returns the first error; leaves even if a commit failed.
    pub(super) fn leave_group(&self) -> Result<()> {
        let (member_id, generation, listener) = {
            let g = self.group.lock();
            match g.as_ref() {
                Some(Membership {
                    member_id: Some(id),
                    generation,
                    listener,
                    ..
                }) => (id.clone(), *generation, listener.clone()),
                _ => return Ok(()),
            }
        };
        let assignment = self.state.lock().assignment.clone();
        let mut result = Ok(());
        if self.config.enable_auto_commit {
            let offsets = self.consumed_positions(&assignment);
            if !offsets.is_empty() {
                let commit = GroupOp::Commit {
                    member: Some((member_id.clone(), generation)),
                    offsets,
                    timeout: LEAVE_TIMEOUT,
                };
                result = self.group_call(commit, LEAVE_TIMEOUT).map(|_| ());
            }
        }
        if let Some(l) = &listener {
            if !assignment.is_empty() {
                l.on_partitions_revoked(self, &assignment);
            }
        }
        if let Some(m) = self.group.lock().as_mut() {
            m.member_id = None;
        }
        self.take_assignment();
        let left = self.group_call(GroupOp::Leave { member_id }, LEAVE_TIMEOUT);
        result.and(left.map(|_| ()))
    }
}
