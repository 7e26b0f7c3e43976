//! The cooperative-sticky assignor: balanced, and moves as few partitions as
//! balance allows, so a cooperative rebalance revokes little.
//!
//! Three steps, all in a fixed order so the result is deterministic:
//! 1. every member keeps the partitions of its current assignment that still exist
//!    and that it still subscribes to (a partition claimed twice stays with the
//!    first claimant in member id order);
//! 2. each partition nobody kept goes to the least loaded member subscribed to its
//!    topic;
//! 3. while some member holds at least two partitions more than a member that could
//!    take one of them, one such partition moves from the most loaded to the least
//!    loaded member.
//!
//! Step 3 ends because every move lowers the sum of squared member loads. At its end
//! members with the same subscriptions differ by at most one partition (each could
//! take any of the other's). Only step 3 moves kept partitions, and only from a
//! member at least two above another: with equal subscriptions a join moves just the
//! partitions the newcomer needs, and a leave moves just the leaver's partitions.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::TopicPartition;

use super::assignor::{partition_count, MemberSubscription};

/// See the module docs.
pub(super) fn cooperative_sticky(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<&str, BTreeSet<TopicPartition>> = members
        .keys()
        .map(|m| (m.as_str(), BTreeSet::new()))
        .collect();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();

    // 1. Keep what is still valid.
    for (id, sub) in members {
        for tp in &sub.current {
            let valid = sub.topics.contains(&tp.topic)
                && tp.partition < partition_count(partitions, &tp.topic);
            if valid && taken.insert(tp.clone()) {
                out.get_mut(id.as_str()).expect("member").insert(tp.clone());
            }
        }
    }

    // 2. Hand out the rest, least loaded first (ties: member id order, as min_by_key
    // keeps the first minimum).
    let topics: BTreeSet<&String> = members.values().flat_map(|s| &s.topics).collect();
    for topic in topics {
        for p in 0..partition_count(partitions, topic) {
            let tp = TopicPartition::new(topic.as_str(), p);
            if taken.contains(&tp) {
                continue;
            }
            let receiver = members
                .iter()
                .filter(|(_, s)| s.topics.contains(topic))
                .map(|(id, _)| id.as_str())
                .min_by_key(|id| out[id].len())
                .expect("a topic in the set has a subscriber");
            out.get_mut(receiver).expect("member").insert(tp);
        }
    }

    // 3. Balance.
    while let Some((from, to, tp)) = next_move(members, &out) {
        out.get_mut(from).expect("member").remove(&tp);
        out.get_mut(to).expect("member").insert(tp);
    }

    out.into_iter().map(|(m, s)| (m.to_owned(), s)).collect()
}

/// The next balancing move: from the most loaded member to the least loaded one
/// that is at least two below it and subscribes to one of its partitions' topics;
/// the moved partition is the donor's highest such one. `None` when balanced.
fn next_move<'a>(
    members: &BTreeMap<String, MemberSubscription>,
    out: &BTreeMap<&'a str, BTreeSet<TopicPartition>>,
) -> Option<(&'a str, &'a str, TopicPartition)> {
    let mut donors: Vec<(&'a str, usize)> = out.iter().map(|(m, s)| (*m, s.len())).collect();
    // Most loaded first; ties by member id (stable sort keeps map order).
    donors.sort_by_key(|(_, len)| std::cmp::Reverse(*len));
    let mut receivers = donors.clone();
    receivers.sort_by_key(|(_, len)| *len);
    for (from, from_len) in &donors {
        for (to, to_len) in &receivers {
            if to_len + 1 >= *from_len {
                break; // receivers are sorted: none further is two below
            }
            let wants = &members[*to].topics;
            if let Some(tp) = out[from].iter().rev().find(|tp| wants.contains(&tp.topic)) {
                return Some((from, to, tp.clone()));
            }
        }
    }
    None
}
