//! Rack-aware replica assignment and leader spread.

use std::collections::{BTreeMap, BTreeSet};

use replog::*;

#[test]
fn six_brokers_on_three_racks_put_every_partition_on_three_racks_with_even_leaders() {
    let racks = ["r1", "r1", "r2", "r2", "r3", "r3"];
    let c = Cluster::builder().racks(racks).build().unwrap();
    for (name, partitions) in [("a", 6), ("b", 12), ("c", 18)] {
        let t = c
            .create_topic(name, TopicConfig::new(partitions, 3))
            .unwrap();
        let mut leaders = BTreeMap::<BrokerId, u32>::new();
        for p in t.partitions() {
            let replicas = p.replicas();
            assert_eq!(replicas.len(), 3);
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3, "replicas of {name}-{} repeat", p.id());
            let spanned: BTreeSet<&str> = replicas.iter().map(|b| racks[b.0 as usize]).collect();
            assert_eq!(spanned.len(), 3, "{name}-{} spans {spanned:?}", p.id());
            *leaders.entry(p.leader().unwrap()).or_default() += 1;
        }
        assert_eq!(
            leaders.len(),
            6,
            "{name}: some broker leads nothing: {leaders:?}"
        );
        let counts: BTreeSet<u32> = leaders.values().copied().collect();
        assert_eq!(counts.len(), 1, "{name}: uneven leaders {leaders:?}");
    }
}

#[test]
fn with_fewer_racks_than_replicas_every_rack_gets_a_replica() {
    let racks = ["a", "a", "b", "b"];
    let c = Cluster::builder().racks(racks).build().unwrap();
    let t = c.create_topic("t", TopicConfig::new(8, 3)).unwrap();
    for p in t.partitions() {
        let spanned: BTreeSet<&str> = p.replicas().iter().map(|b| racks[b.0 as usize]).collect();
        assert_eq!(spanned.len(), 2);
    }
}

#[test]
fn with_more_racks_than_replicas_each_rack_holds_at_most_one() {
    let racks = ["a", "b", "c", "d", "e"];
    let c = Cluster::builder().racks(racks).build().unwrap();
    let t = c.create_topic("t", TopicConfig::new(10, 2)).unwrap();
    for p in t.partitions() {
        let spanned: BTreeSet<&str> = p.replicas().iter().map(|b| racks[b.0 as usize]).collect();
        assert_eq!(spanned.len(), 2);
    }
}

#[test]
fn without_racks_leaders_spread_evenly() {
    let c = Cluster::builder().brokers(4).build().unwrap();
    let t = c.create_topic("t", TopicConfig::new(8, 2)).unwrap();
    let mut leaders = BTreeMap::<BrokerId, u32>::new();
    for p in t.partitions() {
        *leaders.entry(p.leader().unwrap()).or_default() += 1;
    }
    assert_eq!(
        leaders.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2, 2]
    );
}
