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
use std::sync::Arc;

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
    /// Changes whenever a slot is taken or freed: what [`Slots`] found is
    /// valid only while it has not changed.
    generation: u64,
}

/// A slot that holds no replica (the partition is not hosted).
const NOT_HOSTED: u32 = u32::MAX;

/// Where each partition of one fetch was found, by position in the fetch; valid
/// while no replica is added or removed (a lookup falls back to the hash after).
#[derive(Debug, Default)]
pub(crate) struct Slots {
    generation: u64,
    slots: Vec<u32>,
}

/// What a leader remembers of one follower's last fetch, to find its partitions
/// again without hashing their names: a follower names the same partitions, by
/// the same `Arc`s, in the same order in every fetch. The memo holds those `Arc`s,
/// so a name it compares by address cannot have been freed and its address reused.
#[derive(Debug, Default)]
pub(crate) struct SlotMemo {
    generation: u64,
    /// Each name of the last fetch, by position, and the slot it was found in.
    seen: Vec<(Arc<TopicPartition>, u32)>,
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
        self.generation += 1;
        self.ordered.insert(tp.clone(), slot);
        self.by_hash.insert(tp, slot);
        None
    }

    /// Stops hosting `tp`; its replica, if it was hosted.
    pub(crate) fn remove(&mut self, tp: &TopicPartition) -> Option<Replica> {
        let slot = self.by_hash.remove(tp)?;
        self.generation += 1;
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
        self.ordered
            .iter()
            .map(|(tp, &slot)| (tp, self.in_slot(slot)))
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

    /// Changes whenever a replica is added or removed: slots read through
    /// [`slots_in_order`](Self::slots_in_order) stay valid until it does.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Every replica with its slot, in partition order.
    pub(crate) fn slots_in_order(&self) -> impl Iterator<Item = (usize, &Replica)> {
        self.ordered
            .values()
            .map(|&slot| (slot, self.in_slot(slot)))
    }

    /// The replica named `name`, found in slot `hint` when the replica there is
    /// named by that very `Arc`, and by hash otherwise.
    pub(crate) fn get_mut_hinted(
        &mut self,
        hint: Option<usize>,
        name: &Arc<TopicPartition>,
    ) -> Option<&mut Replica> {
        let held = |slot: usize| {
            self.slots
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|r| Arc::ptr_eq(&r.name, name))
        };
        let slot = match hint.filter(|&s| held(s)) {
            Some(slot) => slot,
            None => *self.by_hash.get(&**name)?,
        };
        self.slots[slot].as_mut()
    }

    /// Finds the slot of each of `names` (a fetch's partitions, in order), through
    /// `memo` where the name is the one it saw at that position last time, and
    /// by hash (remembered for next time) where not.
    pub(crate) fn resolve<'a>(
        &self,
        memo: &mut SlotMemo,
        names: impl ExactSizeIterator<Item = &'a Arc<TopicPartition>>,
    ) -> Slots {
        if memo.generation != self.generation {
            memo.seen.clear();
            memo.generation = self.generation;
        }
        let len = names.len();
        let mut slots = Vec::with_capacity(len);
        for (i, name) in names.enumerate() {
            let slot = match memo.seen.get(i) {
                Some((seen, slot)) if Arc::ptr_eq(seen, name) => *slot,
                _ => {
                    let slot = self
                        .by_hash
                        .get(&**name)
                        .map_or(NOT_HOSTED, |&s| u32::try_from(s).expect("slots fit u32"));
                    let entry = (name.clone(), slot);
                    match memo.seen.get_mut(i) {
                        Some(old) => *old = entry,
                        None => memo.seen.push(entry),
                    }
                    slot
                }
            };
            slots.push(slot);
        }
        memo.seen.truncate(len);
        Slots {
            generation: self.generation,
            slots,
        }
    }

    /// The replica of `tp`, the `i`th partition of the fetch `slots` resolved.
    pub(crate) fn get_at(&self, slots: &Slots, i: usize, tp: &TopicPartition) -> Option<&Replica> {
        match slots.slot(self.generation, i) {
            Some(Some(slot)) => self.slots[slot].as_ref(),
            Some(None) => None,
            None => self.get(tp),
        }
    }

    /// As [`get_at`](Self::get_at), to change.
    pub(crate) fn get_at_mut(
        &mut self,
        slots: &Slots,
        i: usize,
        tp: &TopicPartition,
    ) -> Option<&mut Replica> {
        match slots.slot(self.generation, i) {
            Some(Some(slot)) => self.slots[slot].as_mut(),
            Some(None) => None,
            None => self.get_mut(tp),
        }
    }

    /// The replica in `slot`, found through the index or by
    /// [`slots_in_order`](Self::slots_in_order) at the current
    /// [`generation`](Self::generation).
    pub(crate) fn in_slot(&self, slot: usize) -> &Replica {
        self.slots[slot]
            .as_ref()
            .expect("an indexed slot holds a replica")
    }
}

impl Slots {
    /// The `i`th partition's slot (`Some(None)`: not hosted); `None` when the map
    /// has changed since, and only a lookup by name can tell.
    fn slot(&self, generation: u64, i: usize) -> Option<Option<usize>> {
        if generation != self.generation {
            return None;
        }
        let slot = *self.slots.get(i)?;
        Some((slot != NOT_HOSTED).then_some(slot as usize))
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

    /// A map hosting partitions `0..partitions` of topic `t`.
    fn hosting_t(partitions: u32) -> ReplicaMap {
        let mut m = ReplicaMap::default();
        for p in 0..partitions {
            let (tp, r) = replica("t", p);
            m.insert(tp, r);
        }
        m
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

    #[test]
    fn a_fetch_finds_its_partitions_through_the_memo_until_a_replica_comes_or_goes() {
        let mut m = hosting_t(3);
        let names: Vec<Arc<TopicPartition>> = [0, 7, 2]
            .into_iter()
            .map(|p| Arc::new(TopicPartition::new("t", p)))
            .collect();
        let found = |m: &ReplicaMap, slots: &Slots| -> Vec<Option<u32>> {
            names
                .iter()
                .enumerate()
                .map(|(i, tp)| m.get_at(slots, i, tp).map(|r| r.name.partition))
                .collect()
        };
        let mut memo = SlotMemo::default();
        let first = m.resolve(&mut memo, names.iter());
        assert_eq!(found(&m, &first), [Some(0), None, Some(2)]);
        assert_eq!(memo.seen.len(), 3);

        // The same names again: found through the memo, by address.
        let again = m.resolve(&mut memo, names.iter());
        assert_eq!(again.slots, first.slots);

        // An equal name at another address is looked up, and remembered.
        let other = [Arc::new(TopicPartition::new("t", 0))];
        let slots = m.resolve(&mut memo, other.iter());
        assert_eq!(
            m.get_at(&slots, 0, &other[0]).map(|r| r.name.partition),
            Some(0)
        );
        assert_eq!(memo.seen.len(), 1);
        assert!(Arc::ptr_eq(&memo.seen[0].0, &other[0]));

        // Once a replica comes, what was found before is looked up by name: the
        // partition not hosted then is found now.
        let (tp, r) = replica("t", 7);
        m.insert(tp, r);
        assert_eq!(found(&m, &first), [Some(0), Some(7), Some(2)]);
        let r = m.get_at_mut(&first, 1, &names[1]).expect("hosted now");
        assert_eq!(r.name.partition, 7);
        // And once one goes, it is not found in its old slot.
        m.remove(&TopicPartition::new("t", 0));
        assert_eq!(found(&m, &first), [None, Some(7), Some(2)]);
        let fresh = m.resolve(&mut memo, names.iter());
        assert_eq!(found(&m, &fresh), [None, Some(7), Some(2)]);
    }

    #[test]
    fn a_hinted_lookup_takes_the_slot_only_when_it_holds_that_very_name() {
        let mut m = hosting_t(3);
        let name_of = |m: &ReplicaMap, p: u32| m[&TopicPartition::new("t", p)].name.clone();
        let one = name_of(&m, 1);
        let slot_of_one = m.by_hash[&*one];
        let slot_of_two = m.by_hash[&TopicPartition::new("t", 2)];
        let found = |m: &mut ReplicaMap, hint, name: &Arc<TopicPartition>| {
            m.get_mut_hinted(hint, name).map(|r| r.name.partition)
        };
        assert_eq!(found(&mut m, Some(slot_of_one), &one), Some(1));
        // A wrong, missing or out-of-range hint falls back to the name.
        assert_eq!(found(&mut m, Some(slot_of_two), &one), Some(1));
        assert_eq!(found(&mut m, None, &one), Some(1));
        assert_eq!(found(&mut m, Some(99), &one), Some(1));
        // An equal name at another address is found by name too.
        let equal = Arc::new(TopicPartition::new("t", 1));
        assert_eq!(found(&mut m, Some(slot_of_one), &equal), Some(1));
        // Once the replica is gone, its old slot and name find nothing, even
        // when another replica has taken the slot.
        m.remove(&one);
        assert_eq!(found(&mut m, Some(slot_of_one), &one), None);
        let (tp, r) = replica("t", 5);
        m.insert(tp, r);
        assert_eq!(m.by_hash[&TopicPartition::new("t", 5)], slot_of_one);
        assert_eq!(found(&mut m, Some(slot_of_one), &one), None);
    }
}
