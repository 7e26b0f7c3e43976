//! Partition assignors: pure functions from the group's members (subscriptions and
//! current assignment) and the subscribed topics' partition counts to a target
//! assignment. Deterministic: every collection is ordered, so the same input gives
//! the same output on every broker.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::TopicPartition;

use super::sticky;

/// Which assignor a group uses, Kafka's `partition.assignment.strategy`.
///
/// The kind also chooses the rebalance protocol: `CooperativeSticky` rebalances
/// cooperatively (only partitions that move are revoked, KIP-429); `Range` and
/// `RoundRobin` rebalance eagerly (every member revokes everything first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum AssignorKind {
    /// Kafka's `RangeAssignor`: per topic, contiguous ranges of partitions.
    Range,
    /// Kafka's `RoundRobinAssignor`: all partitions dealt over the members in turn.
    RoundRobin,
    /// Kafka's `CooperativeStickyAssignor`: balanced, and keeps current owners.
    #[default]
    CooperativeSticky,
}

impl AssignorKind {
    /// Whether a rebalance revokes only the partitions that move (KIP-429) rather
    /// than everything (the eager protocol).
    pub(crate) fn is_cooperative(self) -> bool {
        matches!(self, AssignorKind::CooperativeSticky)
    }

    /// The name Kafka's clients use for the assignor, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AssignorKind::Range => "range",
            AssignorKind::RoundRobin => "roundrobin",
            AssignorKind::CooperativeSticky => "cooperative-sticky",
        }
    }
}

/// What an assignor knows of one member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberSubscription {
    /// `group.instance.id` of a static member: Range and RoundRobin order static
    /// members by it, so a restarted static member (new member id) keeps its place.
    pub(crate) instance_id: Option<String>,
    /// Subscribed topics.
    pub(crate) topics: BTreeSet<String>,
    /// The member's current target assignment; only the sticky assignor reads it.
    pub(crate) current: BTreeSet<TopicPartition>,
}

/// Computes the target assignment of `members` (by member id) with `kind`.
///
/// `partitions` maps a topic to its partition count; a subscribed topic missing
/// from it has no partitions (yet). Every member appears in the result, possibly
/// with an empty list; lists are sorted.
pub(crate) fn assign(
    kind: AssignorKind,
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let sets = match kind {
        AssignorKind::Range => range(members, partitions),
        AssignorKind::RoundRobin => round_robin(members, partitions),
        AssignorKind::CooperativeSticky => sticky::cooperative_sticky(members, partitions),
    };
    sets.into_iter()
        .map(|(m, tps)| (m, tps.into_iter().collect()))
        .collect()
}

/// Partition count of `topic`, 0 when unknown.
pub(super) fn partition_count(partitions: &BTreeMap<String, u32>, topic: &str) -> u32 {
    partitions.get(topic).copied().unwrap_or(0)
}

/// An empty assignment for every member, so each appears in the result.
fn empty(
    members: &BTreeMap<String, MemberSubscription>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect()
}

/// Member ids in Kafka's `MemberInfo` order: static members first, by instance
/// id, then dynamic members by member id.
fn kafka_member_order(members: &BTreeMap<String, MemberSubscription>) -> Vec<&str> {
    let mut ids: Vec<(&str, &MemberSubscription)> =
        members.iter().map(|(id, s)| (id.as_str(), s)).collect();
    ids.sort_by(
        |(a_id, a), (b_id, b)| match (&a.instance_id, &b.instance_id) {
            (Some(a), Some(b)) => a.cmp(b).then(a_id.cmp(b_id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a_id.cmp(b_id),
        },
    );
    ids.into_iter().map(|(id, _)| id).collect()
}

/// Kafka's `RangeAssignor`: for each topic, its subscribers in member order split
/// the partitions into contiguous ranges; the first `partitions % subscribers`
/// members get one extra.
fn range(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out = empty(members);
    let order = kafka_member_order(members);
    let topics: BTreeSet<&String> = members.values().flat_map(|s| &s.topics).collect();
    for topic in topics {
        let subscribers: Vec<&str> = order
            .iter()
            .copied()
            .filter(|m| members[*m].topics.contains(topic))
            .collect();
        let n = partition_count(partitions, topic);
        let m = subscribers.len() as u32;
        let (per, extra) = (n / m, n % m);
        for (i, member) in subscribers.into_iter().enumerate() {
            let i = i as u32;
            let start = per * i + i.min(extra);
            let len = per + u32::from(i < extra);
            let set = out.get_mut(member).expect("subscriber is a member");
            set.extend((start..start + len).map(|p| TopicPartition::new(topic.as_str(), p)));
        }
    }
    out
}

/// Kafka's `RoundRobinAssignor`: every subscribed partition, sorted by topic then
/// partition, goes to the next member in a circular walk over the members in member
/// order, skipping members not subscribed to its topic.
fn round_robin(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out = empty(members);
    let order = kafka_member_order(members);
    let topics: BTreeSet<&String> = members.values().flat_map(|s| &s.topics).collect();
    let mut next = 0usize;
    for topic in topics {
        for p in 0..partition_count(partitions, topic) {
            // Terminates: the topic is in the set because some member subscribes to it.
            while !members[order[next % order.len()]].topics.contains(topic) {
                next += 1;
            }
            let member = order[next % order.len()];
            next += 1;
            let set = out.get_mut(member).expect("walk visits members");
            set.insert(TopicPartition::new(topic.as_str(), p));
        }
    }
    out
}
