//! One group's state: members, generation, target assignment, and the per-member
//! reconciliation that turns the target into safe hand-overs.
//!
//! The coordinator never hands a partition to a member while another member may
//! still own it. `Member::owned` is what the coordinator has granted to a member and
//! not yet seen it give up: a heartbeat can only shrink it (a member acknowledges a
//! revocation by no longer listing the partition), and only the coordinator grows it,
//! when it grants a target partition that no other member owns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ids::TopicPartition;

use super::assignor::{assign, AssignorKind, MemberSubscription};
use super::MemberState;

/// One member of a group.
#[derive(Clone, Debug)]
pub(super) struct Member {
    /// `group.instance.id` of a static member.
    pub(super) instance_id: Option<String>,
    /// Subscribed topics.
    pub(super) topics: BTreeSet<String>,
    /// `session.timeout.ms`: removed when not heard from for this long.
    pub(super) session_timeout: Duration,
    /// When the member was last heard from (join or heartbeat).
    pub(super) last_heard: Duration,
    /// What the assignor wants this member to own in the current generation.
    pub(super) target: BTreeSet<TopicPartition>,
    /// Granted and not yet seen given up; see the module docs.
    pub(super) owned: BTreeSet<TopicPartition>,
    /// Eager protocol: the member must give up everything before anyone in the group
    /// gets a new assignment.
    pub(super) revoking_all: bool,
}

impl Member {
    /// When the member's session expires.
    pub(super) fn deadline(&self) -> Duration {
        self.last_heard.saturating_add(self.session_timeout)
    }

    /// Whether the member's session has expired at `now`.
    pub(super) fn expired(&self, now: Duration) -> bool {
        now >= self.deadline()
    }
}

/// One consumer group.
#[derive(Clone, Debug, Default)]
pub(super) struct Group {
    /// Bumped on every membership or subscribed-metadata change (a rebalance);
    /// offset commits must carry the current one. 0 until the first member joins.
    pub(super) generation: u32,
    /// The assignor (and so the protocol) every member agreed on; reset when the
    /// group empties.
    pub(super) assignor: AssignorKind,
    /// Members by member id.
    pub(super) members: BTreeMap<String, Member>,
    /// Static members replaced by a newer member with the same `group.instance.id`:
    /// instance id → the replaced member id, so the old one is told it is fenced.
    pub(super) fenced: BTreeMap<String, String>,
    /// Committed offsets, as written to `__consumer_offsets`.
    pub(super) offsets: BTreeMap<TopicPartition, u64>,
}

impl Group {
    /// The member id of the static member with `instance_id`, if any.
    pub(super) fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id.as_str())
    }

    /// Whether any member subscribes to `topic`.
    pub(super) fn subscribes(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.topics.contains(topic))
    }

    /// Starts a rebalance: a new generation and a new target for every member. Under
    /// the eager protocol every member that owns something must first give it all up.
    pub(super) fn rebalance(&mut self, partitions: &BTreeMap<String, u32>) {
        self.generation = self.generation.wrapping_add(1);
        let subscriptions: BTreeMap<String, MemberSubscription> = self
            .members
            .iter()
            .map(|(id, m)| {
                let sub = MemberSubscription {
                    instance_id: m.instance_id.clone(),
                    topics: m.topics.clone(),
                    current: m.target.clone(),
                };
                (id.clone(), sub)
            })
            .collect();
        let targets = assign(self.assignor, &subscriptions, partitions);
        let eager = !self.assignor.is_cooperative();
        for (id, target) in targets {
            let member = self
                .members
                .get_mut(&id)
                .expect("assignor answers for members");
            member.target = target.into_iter().collect();
            member.revoking_all = eager && !member.owned.is_empty();
        }
    }

    /// Whether an eager rebalance still waits for some member to give up everything.
    fn eager_barrier(&self) -> bool {
        self.members.values().any(|m| m.revoking_all)
    }

    /// Whether a member other than `member_id` owns `tp`.
    fn owned_by_other(&self, member_id: &str, tp: &TopicPartition) -> bool {
        self.members
            .iter()
            .any(|(id, m)| id != member_id && m.owned.contains(tp))
    }

    /// Reconciles one member toward its target and says what it must do: grants the
    /// target partitions no one else owns (unless an eager barrier holds), asks it to
    /// revoke what it owns outside its target (everything, in an eager barrier).
    ///
    /// # Panics
    ///
    /// If `member_id` is not a member (callers look it up first).
    pub(super) fn reconcile(&mut self, member_id: &str) -> MemberState {
        let barrier = self.eager_barrier();
        let member = &self.members[member_id];
        let (keep, revoke): (Vec<_>, Vec<_>) = if member.revoking_all {
            (Vec::new(), member.owned.iter().cloned().collect())
        } else {
            member
                .owned
                .iter()
                .cloned()
                .partition(|tp| member.target.contains(tp))
        };
        let mut grant = Vec::new();
        let mut pending = Vec::new();
        for tp in member.target.difference(&member.owned) {
            if barrier || self.owned_by_other(member_id, tp) {
                pending.push(tp.clone());
            } else {
                grant.push(tp.clone());
            }
        }
        if barrier && member.revoking_all {
            // Everything it keeps is revoked too, so all of its target waits.
            pending.extend(member.target.intersection(&member.owned).cloned());
            pending.sort();
        }
        let member = self.members.get_mut(member_id).expect("looked up above");
        member.owned.extend(grant.iter().cloned());
        let mut assigned = keep;
        assigned.extend(grant);
        assigned.sort();
        MemberState {
            member_id: member_id.to_owned(),
            generation: self.generation,
            rebalance_in_progress: barrier || !revoke.is_empty() || !pending.is_empty(),
            assigned,
            revoke,
            pending,
        }
    }
}
