//! A broker's replicas by partition: looked up by hash, walked in partition order.
//!
//! A leader looks up every partition named in each fetch it answers, and a
//! follower's fetch names every partition it follows on that leader. In a
//! `BTreeMap` each lookup compared the topic name about a dozen times, each time
//! reading another key's name from the heap: with one topic of 1000 partitions
//! that was a tenth of a broker's time. Walks keep the partition order of the
//! `BTreeMap` they replace, so that what a broker sends (fetch requests, ISR
//! proposals) comes in the same order as before, in every run.

use std::collections::BTreeMap;
use std::ops::Index;

use crate::hash::FxHashMap;
use crate::ids::TopicPartition;

use super::replica::Replica;

/// The replicas, each in a slot found by hash or through the ordered index.
#[derive(Default)]
pub(crate) struct ReplicaMap {
    /// Replicas by slot; `None` for a free slot.
    slots: Vec<Option<Replica>>,
    /// Slots freed by `remove`, reused first.
    free: Vec<usize>,
    /// Slot by partition, for lookups.
    by_hash: FxHashMap<TopicPartition, usize>,
    /// Slot by partition, in partition order, for walks.
    ordered: BTreeMap<TopicPartition, usize>,
}

impl ReplicaMap {
    /// The replica of `tp`, if hosted.
    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<&Replica> {
        let slot = *self.by_hash.get(tp)?;
        self.slots[slot].as_ref()
    }

    /// The replica of `tp`, if hosted, to change.
    pub(crate) fn get_mut(&mut self, tp: &TopicPartition) -> Option<&mut Replica> {
        let slot = *self.by_hash.get(tp)?;
        self.slots[slot].as_mut()
    }

    /// Whether `tp` is hosted.
    pub(crate) fn contains_key(&self, tp: &TopicPartition) -> bool {
        self.by_hash.contains_key(tp)
    }

    /// How many replicas are hosted.
    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Hosts `replica` as `tp`'s; the replica it replaces, if any.
    pub(crate) fn insert(&mut self, tp: TopicPartition, replica: Replica) -> Option<Replica> {
        if let Some(&slot) = self.by_hash.get(&tp) {
            return self.slots[slot].replace(replica);
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(replica);
                slot
            }
            None => {
                self.slots.push(Some(replica));
                self.slots.len() - 1
            }
        };
        self.ordered.insert(tp.clone(), slot);
        self.by_hash.insert(tp, slot);
        None
    }

    /// Stops hosting `tp`; its replica, if it was hosted.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) -> Option<Replica> {
        let slot = self.by_hash.remove(tp)?;
        self.ordered.remove(tp);
        self.free.push(slot);
        self.slots[slot].take()
    }

    /// Every hosted partition, in order.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &TopicPartition> {
        self.ordered.keys()
    }

    /// Every partition and its replica, in partition order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TopicPartition, &Replica)> {
        self.ordered.iter().map(|(tp, &slot)| (tp, self.slot(slot)))
    }

    /// Every replica, in partition order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Replica> {
        self.iter().map(|(_, r)| r)
    }

    /// Every replica, to change, in no particular order (the same in every run):
    /// for work on each replica alone that sends nothing.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Replica> {
        self.slots.iter_mut().flatten()
    }

    fn slot(&self, slot: usize) -> &Replica {
        self.slots[slot]
            .as_ref()
            .expect("an indexed slot holds a replica")
    }
}

impl Index<&TopicPartition> for ReplicaMap {
    type Output = Replica;

    fn index(&self, tp: &TopicPartition) -> &Replica {
        self.get(tp).expect("a hosted partition")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::storage::Chunks;

    fn replica(topic: &str, partition: u32) -> (TopicPartition, Replica) {
        let tp = TopicPartition::new(topic, partition);
        let r = Replica::memory(tp.clone(), Default::default(), Chunks::default());
        (tp, r)
    }

    fn order(m: &ReplicaMap) -> Vec<(String, u32)> {
        m.iter()
            .map(|(tp, r)| {
                assert_eq!(*r.name, *tp, "a walk pairs each replica with its name");
                (tp.topic.clone(), tp.partition)
            })
            .collect()
    }

    #[test]
    fn lookups_find_each_replica_and_walks_go_in_partition_order() {
        let mut m = ReplicaMap::default();
        for (topic, p) in [("b", 1), ("a", 2), ("b", 0), ("a", 10)] {
            let (tp, r) = replica(topic, p);
            assert!(m.insert(tp, r).is_none());
        }
        let sorted = |v: &[(&str, u32)]| -> Vec<(String, u32)> {
            v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
        };
        assert_eq!(
            order(&m),
            sorted(&[("a", 2), ("a", 10), ("b", 0), ("b", 1)])
        );

        let gone = m.remove(&TopicPartition::new("a", 10)).expect("hosted");
        assert_eq!(gone.name.partition, 10);
        assert!(m.get(&TopicPartition::new("a", 10)).is_none());
        assert!(m.remove(&TopicPartition::new("a", 10)).is_none());

        // The freed slot is reused; nothing else moves.
        let (tp, r) = replica("a", 0);
        assert!(m.insert(tp, r).is_none());
        assert_eq!(order(&m), sorted(&[("a", 0), ("a", 2), ("b", 0), ("b", 1)]));
        assert_eq!(m.slots.len(), 4);
        for (tp, _) in m.iter() {
            assert_eq!(*m.get(tp).expect("found").name, *tp);
            assert!(m.contains_key(tp));
        }

        // A second replica for a hosted partition replaces the first.
        let (tp, r) = replica("b", 1);
        assert!(m.insert(tp.clone(), r).is_some());
        assert_eq!(m.len(), 4);
        assert_eq!(m.values_mut().count(), 4);
        assert_eq!(m[&tp].name.partition, 1);
    }
}
