//! Rule 8 and the fault transport: duplicated or reordered messages change nothing,
//! and an idempotent producer never writes a record twice.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use replog::*;

fn check_exactly_once(c: &Cluster, topic: &str, n: usize) {
    let consumer = consumer_from_start(c, topic);
    let got = consume_n(&consumer, n);
    assert_eq!(got.len(), n, "consumed {} of {n}", got.len());
    let values: BTreeSet<Vec<u8>> = got.iter().map(|r| r.value.to_vec()).collect();
    assert_eq!(values.len(), n, "a record was delivered twice");
    // Offsets are dense per partition.
    let mut by_partition = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for r in &got {
        by_partition.entry(r.partition).or_default().push(r.offset);
    }
    for offsets in by_partition.values() {
        for (i, o) in offsets.iter().enumerate() {
            assert_eq!(*o, i as u64, "offsets are not dense");
        }
    }
}

fn replicas_agree(c: &Cluster, topic: &str) {
    for p in c.topic(topic).unwrap().partitions() {
        let hw = p.high_watermark();
        let mut logs = Vec::new();
        for b in p.isr() {
            let r = p.replica(b).unwrap().read(0, hw as usize).unwrap();
            logs.push(
                r.into_iter()
                    .map(|r| (r.offset, r.value))
                    .collect::<Vec<_>>(),
            );
        }
        for w in logs.windows(2) {
            assert_eq!(w[0], w[1], "replicas differ below the HW");
        }
    }
}

#[test]
fn duplicated_and_reordered_messages_change_nothing() {
    let faults = FaultTransport::default().seed(7);
    faults.duplicate_probability(0.3).unwrap();
    faults.reorder_probability(0.3).unwrap();
    let c = Cluster::builder()
        .brokers(3)
        .transport(faults.clone())
        .build()
        .unwrap();
    c.create_topic("t", TopicConfig::new(3, 3).min_insync_replicas(2))
        .unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let ds: Vec<_> = (0..600)
        .map(|i| prod.send("t", Record::new(format!("v{i}")).key(format!("k{}", i % 7))))
        .collect();
    for d in ds {
        d.wait().unwrap();
    }
    let stats = faults.stats();
    assert!(stats.duplicated > 0 && stats.reordered > 0, "{stats:?}");
    check_exactly_once(&c, "t", 600);
    replicas_agree(&c, "t");
}

#[test]
fn an_idempotent_producer_never_duplicates_across_a_leader_change() {
    let c = Cluster::builder().brokers(3).build().unwrap();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let prod = c
        .producer(ProducerConfig::new().delivery_timeout(Duration::from_secs(30)))
        .unwrap();
    let mut ds = Vec::new();
    for i in 0..2000 {
        ds.push(prod.send_to("t", 0, Record::new(format!("v{i}"))));
        if i == 1000 {
            let leader = p.leader().unwrap();
            c.kill_broker(leader).unwrap();
        }
    }
    for d in ds {
        d.wait().unwrap();
    }
    check_exactly_once(&c, "t", 2000);
}

#[test]
fn keyed_records_land_where_kafkas_partitioner_puts_them() {
    let c = Cluster::builder().brokers(1).build().unwrap();
    c.create_topic("t", TopicConfig::new(12, 1)).unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    // Partitions of these keys among 12, computed with Kafka's murmur2 partitioner
    // (toPositive(murmur2(key)) % 12), vectors from Kafka's own tests.
    let expect = [
        ("foobar", (-790332482i32 & 0x7fffffff) as u32 % 12),
        ("21", (-973932308i32 & 0x7fffffff) as u32 % 12),
        ("abc", 479470107u32 % 12),
    ];
    for (key, partition) in expect {
        let meta = prod.send("t", Record::new("x").key(key)).wait().unwrap();
        assert_eq!(meta.partition, partition, "key {key}");
    }
}

#[test]
fn batches_refused_for_a_small_isr_are_retried_and_written_once() {
    let c = Cluster::builder().brokers(3).build().unwrap();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let (leader, followers) = kill_followers(&c, &p);
    wait_until("the ISR to shrink to the leader", || {
        p.isr() == vec![leader]
    });
    // Small batches, many of them: the sending thread hands each full one to the
    // leader itself and takes the refusals (NotEnoughReplicas) that come back
    // while it is still sending; the sender thread retries them.
    let prod = c
        .producer(
            ProducerConfig::new()
                .batch_size(1024)
                .delivery_timeout(Duration::from_secs(30)),
        )
        .unwrap();
    let ds: Vec<_> = (0..3000)
        .map(|i| prod.send_to("t", 0, Record::new(format!("v{i}"))))
        .collect();
    assert!(
        ds.iter().all(|d| !d.is_done()),
        "acks=all completed with the ISR below min.insync.replicas"
    );
    assert_eq!(p.replica(leader).unwrap().log_end_offset(), Some(0));
    c.restart_broker(followers[0]).unwrap();
    for d in ds {
        d.wait().unwrap();
    }
    check_exactly_once(&c, "t", 3000);
    replicas_agree(&c, "t");
}
