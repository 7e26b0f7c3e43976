//! Rule 4: ISR shrink after replica.lag.time.max, rejoin at the HW, never empty.

mod common;

use std::time::Duration;

use common::*;
use replog::*;

#[test]
fn a_cut_off_follower_leaves_the_isr_and_rejoins_after_heal() {
    let c = Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    let f = p.replicas()[2];
    c.faults().cut(NodeId::Broker(f), NodeId::Broker(leader));
    let prod = c.producer(ProducerConfig::new()).unwrap();
    for i in 0..20 {
        prod.send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
    }
    wait_until("the follower to leave the ISR", || !p.isr().contains(&f));
    assert!(c.metrics().isr_shrinks >= 1);
    assert_eq!(c.metrics().under_replicated_partitions, 1);
    c.heal();
    wait_until("the follower to rejoin", || p.isr().contains(&f));
    assert!(c.metrics().isr_expands >= 1);
    // Rejoined means caught up to the HW: it holds every committed record.
    assert!(p.replica(f).unwrap().log_end_offset().unwrap() >= 20);
    assert_eq!(c.metrics().under_replicated_partitions, 0);
}

#[test]
fn a_killed_follower_leaves_the_isr_at_once() {
    let c = Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_secs(60))
        .build()
        .unwrap();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let f = p.replicas()[1];
    c.kill_broker(f).unwrap();
    // Far sooner than the lag time: the controller fences a dead broker at once.
    wait_until("the dead follower to leave the ISR", || {
        !p.isr().contains(&f)
    });
    let meta = c
        .producer(ProducerConfig::new())
        .unwrap()
        .send_to("t", 0, Record::new("x"))
        .wait()
        .unwrap();
    assert_eq!(meta.offset, Some(0));
}

#[test]
fn the_isr_never_becomes_empty() {
    let c = Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_millis(100))
        .build()
        .unwrap();
    let t = c.create_topic("t", TopicConfig::new(3, 3)).unwrap();
    for b in c.brokers() {
        c.kill_broker(b).unwrap();
    }
    wait_until("every partition to go offline", || {
        c.metrics().offline_partitions == 3
    });
    for p in t.partitions() {
        assert!(!p.isr().is_empty(), "partition {} has an empty ISR", p.id());
        assert_eq!(p.leader(), None);
    }
}
