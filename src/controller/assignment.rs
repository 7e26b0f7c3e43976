//! Rack-aware replica assignment: Kafka's `assignReplicasToBrokers` (AdminUtils).
//!
//! A pure function of the brokers, their racks and two start values. Kafka draws
//! the start index and the initial follower shift at random; replog derives both
//! from a CRC32 of the topic name ([`start_for_topic`]) so that an assignment is
//! reproducible (tests, simulation) while several topics still start on different
//! brokers instead of all piling their partition 0 onto the lowest id.
//!
//! Racks: all brokers have one or none. A mix is refused with
//! [`Error::InvalidConfig`] (`broker.rack`), as Kafka refuses it: silently ignoring
//! the racks would hand out assignments that do not survive the loss of a rack the
//! user believes they configured.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::BrokerId;
use crate::{Error, Result};

/// Where a topic's assignment starts: `(start_index, replica_shift)`, both below
/// `brokers`. Derived from a CRC32 of the name, so stable across runs and versions.
pub(crate) fn start_for_topic(topic: &str, brokers: usize) -> (usize, usize) {
    if brokers == 0 {
        return (0, 0);
    }
    let h = crc32fast::hash(topic.as_bytes()) as usize;
    // Two different bit ranges, so start and shift are not locked together.
    (h % brokers, (h >> 16) % brokers)
}

/// Orders brokers so that consecutive entries sit on different racks: racks sorted,
/// brokers sorted within each, then one from each rack in turn. Racks r1{0,5}
/// r2{3,4} r3{1,2} give 0,3,1,5,4,2.
pub(crate) fn rack_alternated(brokers: &[(BrokerId, &str)]) -> Vec<BrokerId> {
    let mut by_rack: BTreeMap<&str, Vec<BrokerId>> = BTreeMap::new();
    for &(b, rack) in brokers {
        by_rack.entry(rack).or_default().push(b);
    }
    let mut queues: Vec<std::vec::IntoIter<BrokerId>> = by_rack
        .into_values()
        .map(|mut v| {
            v.sort();
            v.into_iter()
        })
        .collect();
    let mut out = Vec::with_capacity(brokers.len());
    while out.len() < brokers.len() {
        for q in &mut queues {
            if let Some(b) = q.next() {
                out.push(b);
            }
        }
    }
    out
}

/// Kafka's follower index: the `j`-th candidate after the first replica, shifted by
/// `shift`, never the first replica itself (`shift` ranges over 1..n).
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    (first + 1 + (shift + j) % (n - 1)) % n
}

/// Assigns `replication_factor` distinct replicas to each of `partitions`
/// partitions over `brokers` (id and optional rack). The first replica of each
/// partition (the preferred leader) goes round-robin from `start_index`, so leaders
/// spread evenly; followers follow at a shift that grows by one after every full
/// round of first replicas. With racks, brokers are [`rack_alternated`] and a
/// follower skips a broker whose rack already holds a replica while some rack holds
/// none, so each partition spans `min(racks, replication_factor)` racks.
///
/// # Errors
///
/// [`Error::InvalidReplicationFactor`] when it is 0 or exceeds the brokers given;
/// [`Error::InvalidConfig`] (`broker.rack`) when some brokers have a rack and
/// others none.
pub(crate) fn assign_replicas(
    brokers: &[(BrokerId, Option<&str>)],
    partitions: u32,
    replication_factor: u32,
    start_index: usize,
    replica_shift: usize,
) -> Result<Vec<Vec<BrokerId>>> {
    let rf = replication_factor as usize;
    if rf == 0 {
        return Err(Error::InvalidReplicationFactor {
            replication_factor,
            reason: "it must be at least 1".into(),
        });
    }
    if rf > brokers.len() {
        return Err(Error::InvalidReplicationFactor {
            replication_factor,
            reason: format!(
                "only {} brokers are available; lower it or start more brokers",
                brokers.len()
            ),
        });
    }
    let with_rack: Vec<(BrokerId, &str)> = brokers
        .iter()
        .filter_map(|&(b, r)| r.map(|r| (b, r)))
        .collect();
    if with_rack.is_empty() {
        let mut ids: Vec<BrokerId> = brokers.iter().map(|&(b, _)| b).collect();
        ids.sort();
        Ok(assign_rack_unaware(
            &ids,
            partitions,
            rf,
            start_index,
            replica_shift,
        ))
    } else if with_rack.len() == brokers.len() {
        Ok(assign_rack_aware(
            &with_rack,
            partitions,
            rf,
            start_index,
            replica_shift,
        ))
    } else {
        let without: Vec<BrokerId> = brokers
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|&(b, _)| b)
            .collect();
        Err(Error::InvalidConfig {
            name: "broker.rack",
            reason: format!(
                "brokers {without:?} have no rack while others have one; give every broker \
                 a rack (ClusterBuilder::racks) or none"
            ),
        })
    }
}

/// The plain algorithm over `ids` (sorted).
fn assign_rack_unaware(
    ids: &[BrokerId],
    partitions: u32,
    rf: usize,
    start_index: usize,
    replica_shift: usize,
) -> Vec<Vec<BrokerId>> {
    let n = ids.len();
    let start = start_index % n;
    let mut shift = replica_shift % n;
    (0..partitions as usize)
        .map(|p| {
            if p > 0 && p % n == 0 {
                shift += 1;
            }
            let first = (p + start) % n;
            let mut replicas = vec![ids[first]];
            replicas.extend((0..rf - 1).map(|j| ids[replica_index(first, shift, j, n)]));
            replicas
        })
        .collect()
}

/// The rack-aware algorithm.
fn assign_rack_aware(
    brokers: &[(BrokerId, &str)],
    partitions: u32,
    rf: usize,
    start_index: usize,
    replica_shift: usize,
) -> Vec<Vec<BrokerId>> {
    let rack_of: BTreeMap<BrokerId, &str> = brokers.iter().copied().collect();
    let num_racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let arranged = rack_alternated(brokers);
    let n = arranged.len();
    let start = start_index % n;
    let mut shift = replica_shift % n;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_used = BTreeSet::from([rack_of[&leader]]);
        let mut brokers_used = BTreeSet::from([leader]);
        let mut k = 0;
        for _ in 1..rf {
            loop {
                // Every candidate other than the leader comes up within n - 1 steps,
                // and one of them is acceptable while replicas < brokers.
                assert!(k < n * rf, "rack-aware assignment found no candidate");
                let b = arranged[replica_index(first, shift * num_racks, k, n)];
                k += 1;
                let rack = rack_of[&b];
                let rack_ok = !racks_used.contains(rack) || racks_used.len() == num_racks;
                let broker_ok = !brokers_used.contains(&b) || brokers_used.len() == n;
                if rack_ok && broker_ok {
                    replicas.push(b);
                    racks_used.insert(rack);
                    brokers_used.insert(b);
                    break;
                }
            }
        }
        out.push(replicas);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ids: &[u32]) -> Vec<BrokerId> {
        ids.iter().map(|&i| BrokerId(i)).collect()
    }

    fn racked(spec: &[(u32, &'static str)]) -> Vec<(BrokerId, Option<&'static str>)> {
        spec.iter().map(|&(i, r)| (BrokerId(i), Some(r))).collect()
    }

    fn plain(n: u32) -> Vec<(BrokerId, Option<&'static str>)> {
        (0..n).map(|i| (BrokerId(i), None)).collect()
    }

    #[test]
    fn rack_alternation_interleaves_sorted_racks() {
        type Case = (&'static [(u32, &'static str)], &'static [u32]);
        let cases: &[Case] = &[
            // KAFKA.md's example.
            (
                &[
                    (0, "r1"),
                    (5, "r1"),
                    (3, "r2"),
                    (4, "r2"),
                    (1, "r3"),
                    (2, "r3"),
                ],
                &[0, 3, 1, 5, 4, 2],
            ),
            // Input order and uneven racks do not matter.
            (
                &[(2, "b"), (1, "a"), (0, "a"), (3, "c"), (4, "a")],
                &[0, 2, 3, 1, 4],
            ),
            (&[(7, "x")], &[7]),
        ];
        for (brokers, want) in cases {
            let brokers: Vec<(BrokerId, &str)> =
                brokers.iter().map(|&(i, r)| (BrokerId(i), r)).collect();
            assert_eq!(rack_alternated(&brokers), b(want), "{brokers:?}");
        }
    }

    #[test]
    fn rack_unaware_matches_kafka_plain_algorithm() {
        // Kafka's AdminUtils doc example: 5 brokers, 10 partitions, RF 3, start 0,
        // shift 0 ... here with the shift growing after each round of first replicas.
        let got = assign_replicas(&plain(5), 10, 3, 0, 0).unwrap();
        let want: Vec<Vec<BrokerId>> = [
            [0, 1, 2],
            [1, 2, 3],
            [2, 3, 4],
            [3, 4, 0],
            [4, 0, 1],
            [0, 2, 3],
            [1, 3, 4],
            [2, 4, 0],
            [3, 0, 1],
            [4, 1, 2],
        ]
        .iter()
        .map(|r| b(r))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn rack_aware_matches_kafka_example() {
        // Brokers arranged 0,3,1,5,4,2; start 0, shift 0.
        let brokers = racked(&[
            (0, "r1"),
            (5, "r1"),
            (3, "r2"),
            (4, "r2"),
            (1, "r3"),
            (2, "r3"),
        ]);
        let got = assign_replicas(&brokers, 6, 3, 0, 0).unwrap();
        let want: Vec<Vec<BrokerId>> = [
            [0, 3, 1],
            [3, 1, 5],
            [1, 5, 4],
            [5, 4, 2],
            [4, 2, 0],
            [2, 0, 3],
        ]
        .iter()
        .map(|r| b(r))
        .collect();
        assert_eq!(got, want);
    }

    /// Table: (racks of brokers 0.., partitions, RF). Every start, every shift.
    #[test]
    fn assignments_are_distinct_span_racks_and_balance_leaders() {
        let cases: &[(&[&str], u32, u32)] = &[
            (&["r1", "r1", "r2", "r2", "r3", "r3"], 6, 3),
            (&["r1", "r1", "r2", "r2", "r3", "r3"], 12, 3),
            (&["r1", "r1", "r2", "r2", "r3", "r3"], 12, 2),
            (&["r1", "r2", "r3", "r1", "r2", "r3"], 60, 3),
            (&["a", "b", "a", "b"], 8, 3),
            (&["a", "b", "c"], 9, 3),
            (&["a", "a", "a", "b"], 8, 2),
            (&["a", "b", "c", "d", "e"], 10, 4),
            (&["", "", "", "", ""], 10, 3), // one rack (named "")
        ];
        for &(racks, partitions, rf) in cases {
            let brokers: Vec<(BrokerId, Option<&str>)> = racks
                .iter()
                .enumerate()
                .map(|(i, r)| (BrokerId(i as u32), Some(*r)))
                .collect();
            let num_racks = racks.iter().collect::<BTreeSet<_>>().len();
            for start in 0..racks.len() {
                for shift in 0..racks.len() {
                    let a = assign_replicas(&brokers, partitions, rf, start, shift).unwrap();
                    check(&a, racks, num_racks, partitions, rf);
                }
            }
        }
        // And without racks.
        for n in 1..=6u32 {
            for rf in 1..=n {
                for start in 0..n as usize {
                    let a = assign_replicas(&plain(n), 2 * n, rf, start, start).unwrap();
                    check(&a, &vec![""; n as usize], 1, 2 * n, rf);
                }
            }
        }
    }

    fn check(a: &[Vec<BrokerId>], racks: &[&str], num_racks: usize, partitions: u32, rf: u32) {
        assert_eq!(a.len(), partitions as usize);
        let mut leaders = vec![0u32; racks.len()];
        for replicas in a {
            assert_eq!(replicas.len(), rf as usize);
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(
                distinct.len(),
                replicas.len(),
                "replicas repeat: {replicas:?}"
            );
            let spanned: BTreeSet<_> = replicas.iter().map(|b| racks[b.0 as usize]).collect();
            assert_eq!(
                spanned.len(),
                num_racks.min(rf as usize),
                "{replicas:?} spans too few racks"
            );
            leaders[replicas[0].0 as usize] += 1;
        }
        let (min, max) = (leaders.iter().min(), leaders.iter().max());
        assert!(
            max.unwrap() - min.unwrap() <= 1,
            "leaders unbalanced: {leaders:?}"
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(
            assign_replicas(&plain(3), 1, 0, 0, 0),
            Err(Error::InvalidReplicationFactor {
                replication_factor: 0,
                ..
            })
        ));
        assert!(matches!(
            assign_replicas(&plain(3), 1, 4, 0, 0),
            Err(Error::InvalidReplicationFactor {
                replication_factor: 4,
                ..
            })
        ));
        let mixed = vec![(BrokerId(0), Some("r1")), (BrokerId(1), None)];
        match assign_replicas(&mixed, 1, 1, 0, 0) {
            Err(Error::InvalidConfig { name, reason }) => {
                assert_eq!(name, "broker.rack");
                assert!(reason.contains("[BrokerId(1)]"), "{reason}");
            }
            other => panic!("mixed racks accepted: {other:?}"),
        }
    }

    #[test]
    fn start_for_topic_is_stable_and_in_range() {
        for n in 1..10 {
            let (s, f) = start_for_topic("orders", n);
            assert!(s < n && f < n);
            assert_eq!(start_for_topic("orders", n), (s, f));
        }
        assert_eq!(start_for_topic("x", 0), (0, 0));
    }
}
