//! Rule 6: truncation by leader epoch (KIP-101, KIP-279), never by a follower's own
//! stale high watermark. Two failovers in quick succession must leave the replicas
//! agreeing, with no committed record lost.

mod common;

use std::time::Duration;

use common::*;
use replog::*;

/// The replica's log as strings (empty while it cannot be read: dead, or
/// truncating as we read).
fn values(p: &Partition, b: BrokerId) -> Vec<String> {
    p.replica(b)
        .unwrap()
        .read(0, 100)
        .unwrap_or_default()
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

fn two_brokers(dir: &std::path::Path) -> Cluster {
    Cluster::builder()
        .brokers(2)
        .data_dir(dir)
        .replica_lag_time_max(Duration::from_secs(30))
        .auto_leader_rebalance(false)
        .build()
        .unwrap()
}

#[test]
fn a_restarted_follower_keeps_what_it_had_rather_than_truncating_to_its_stale_hw() {
    // KIP-101's first case: a follower whose HW lags the leader's must not cut its
    // log to that HW on restart; it keeps its log and asks the leader by epoch.
    let dir = tempfile::tempdir().unwrap();
    let c = two_brokers(dir.path());
    let t = c.create_topic("t", TopicConfig::new(1, 2)).unwrap();
    let p = t.partition(0).unwrap();
    let (a, b) = (p.leader().unwrap(), p.replicas()[1]);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    for i in 0..10 {
        prod.send_to("t", 0, Record::new(format!("m{i}")))
            .wait()
            .unwrap();
    }
    // The follower holds all ten; its own HW may trail by a fetch round trip.
    wait_until("the follower to hold everything", || {
        p.replica(b).unwrap().log_end_offset() == Some(10)
    });
    c.kill_broker(b).unwrap();
    c.restart_broker(b).unwrap();
    assert_eq!(p.replica(b).unwrap().log_end_offset(), Some(10));
    wait_until("the follower back in the ISR", || p.isr().contains(&b));
    // Now the old leader goes: the follower leads with every committed record.
    c.kill_broker(a).unwrap();
    wait_until("the follower to lead", || p.leader() == Some(b));
    assert_eq!(
        values(&p, b),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn two_quick_failovers_make_a_divergent_uncommitted_record_go() {
    // KIP-101's second case: A has m1 (committed) and m2 (only A). A dies; B leads a
    // new epoch and writes m3 at m2's offset. A returns and must drop m2 for m3,
    // whatever its HW says; then B dies at once and A leads with m1 and m3.
    let dir = tempfile::tempdir().unwrap();
    let c = two_brokers(dir.path());
    let t = c.create_topic("t", TopicConfig::new(1, 2)).unwrap();
    let p = t.partition(0).unwrap();
    let (a, b) = (p.leader().unwrap(), p.replicas()[1]);
    let all = c.producer(ProducerConfig::new()).unwrap();
    let one = c
        .producer(ProducerConfig::new().acks(Acks::Leader))
        .unwrap();
    all.send_to("t", 0, Record::new("m1")).wait().unwrap();
    c.faults().cut(NodeId::Broker(b), NodeId::Broker(a));
    one.send_to("t", 0, Record::new("m2")).wait().unwrap();
    assert_eq!(
        p.isr().len(),
        2,
        "B is still in the ISR: the lag time has not passed"
    );
    // First failover.
    c.kill_broker(a).unwrap();
    c.heal();
    wait_until("B to lead a new epoch", || p.leader() == Some(b));
    let m3 = all.send_to("t", 0, Record::new("m3")).wait().unwrap();
    assert_eq!(m3.offset, Some(1), "m3 takes the offset m2 had on A");
    c.restart_broker(a).unwrap();
    wait_until("A to drop m2, follow and rejoin", || {
        values(&p, a) == ["m1", "m3"] && p.isr().contains(&a)
    });
    // Second failover, right away.
    c.kill_broker(b).unwrap();
    wait_until("A to lead", || p.leader() == Some(a));
    assert_eq!(values(&p, a), ["m1", "m3"]);
    let m4 = all.send_to("t", 0, Record::new("m4"));
    c.restart_broker(b).unwrap();
    assert_eq!(m4.wait().unwrap().offset, Some(2));
    wait_until("B to follow A", || values(&p, b) == ["m1", "m3", "m4"]);
    replicas_agree_below_hw(&c, "t");
}

#[test]
fn a_leader_answers_with_the_largest_epoch_not_above_the_one_asked() {
    // KIP-279: B led epoch 1 briefly and wrote m2' that nobody else has; A, which
    // never saw epoch 1, leads epoch 2 after an unclean election and writes m3. B's
    // last epoch (1) is unknown to A: A answers with its largest epoch <= 1 (epoch
    // 0) and where it ends, and B cuts m2' there instead of keeping it.
    let dir = tempfile::tempdir().unwrap();
    let c = two_brokers(dir.path());
    let t = c
        .create_topic("t", TopicConfig::new(1, 2).unclean_leader_election(true))
        .unwrap();
    let p = t.partition(0).unwrap();
    let (a, b) = (p.leader().unwrap(), p.replicas()[1]);
    let all = c.producer(ProducerConfig::new()).unwrap();
    let one = c
        .producer(ProducerConfig::new().acks(Acks::Leader))
        .unwrap();
    all.send_to("t", 0, Record::new("m1")).wait().unwrap();
    c.faults().cut(NodeId::Broker(b), NodeId::Broker(a));
    one.send_to("t", 0, Record::new("m2")).wait().unwrap();
    c.kill_broker(a).unwrap();
    wait_until("B to lead", || p.leader() == Some(b));
    one.send_to("t", 0, Record::new("m2'")).wait().unwrap();
    c.kill_broker(b).unwrap();
    c.heal();
    c.restart_broker(a).unwrap();
    wait_until("A to lead again (unclean)", || p.leader() == Some(a));
    one.send_to("t", 0, Record::new("m3")).wait().unwrap();
    c.restart_broker(b).unwrap();
    wait_until("B to converge on A's log", || {
        values(&p, b) == ["m1", "m2", "m3"]
    });
    assert_eq!(values(&p, a), ["m1", "m2", "m3"]);
    replicas_agree_below_hw(&c, "t");
}
