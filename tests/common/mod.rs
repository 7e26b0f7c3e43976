//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use replog::{
    BrokerId, Cluster, ConsumedRecord, Consumer, ConsumerConfig, OffsetReset, Partition,
    TopicPartition,
};

/// Generous: tests run on 2 shared cores, often in parallel.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `done` until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A consumer reading every partition of `topic` from the start.
pub fn consumer_from_start(cluster: &Cluster, topic: &str) -> Consumer {
    let n = cluster.topic(topic).unwrap().partition_count();
    let c = cluster
        .consumer(ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest))
        .unwrap();
    let tps: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new(topic, p)).collect();
    c.assign(&tps).unwrap();
    c
}

/// Consumes until `n` records arrived (or the deadline passes).
pub fn consume_n(consumer: &Consumer, n: usize) -> Vec<ConsumedRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while out.len() < n && Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(200)).unwrap());
    }
    out
}

/// Every ISR replica of every partition of `topic` holds the same records below
/// the high watermark.
pub fn replicas_agree_below_hw(cluster: &Cluster, topic: &str) {
    for p in cluster.topic(topic).unwrap().partitions() {
        let hw = p.high_watermark();
        let mut logs = Vec::new();
        for b in p.isr() {
            let Some(r) = p.replica(b) else { continue };
            if r.log_end_offset().is_none() {
                continue;
            }
            let recs = r.read(0, hw as usize).unwrap();
            let recs: Vec<(u64, bytes::Bytes)> = recs
                .into_iter()
                .filter(|r| r.offset < hw)
                .map(|r| (r.offset, r.value))
                .collect();
            logs.push((b, recs));
        }
        for w in logs.windows(2) {
            assert_eq!(
                w[0].1,
                w[1].1,
                "{topic}-{}: replicas {} and {} differ below HW {hw}",
                p.id(),
                w[0].0,
                w[1].0
            );
        }
    }
}

/// Consumes all of `topic` from the start and checks that every (partition,
/// value) in `acked` is there exactly once, at the offset it was acknowledged at.
pub fn all_acked_present_once(cluster: &Cluster, topic: &str, acked: &[(u32, u64, bytes::Bytes)]) {
    use std::collections::BTreeMap;
    // After a failover or a reopen the HW is rebuilt from follower fetches: wait
    // until it covers every acknowledged offset.
    let mut need: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, o, _) in acked {
        let n = need.entry(*p).or_default();
        *n = (*n).max(o + 1);
    }
    let t = cluster.topic(topic).unwrap();
    wait_until(
        "the high watermarks to cover every acknowledged record",
        || {
            need.iter()
                .all(|(p, n)| t.partition(*p).unwrap().high_watermark() >= *n)
        },
    );
    let consumer = consumer_from_start(cluster, topic);
    let mut want_total = 0usize;
    for p in t.partitions() {
        want_total += p.high_watermark() as usize;
    }
    let got = consume_n(&consumer, want_total);
    let mut at: BTreeMap<(u32, u64), bytes::Bytes> = BTreeMap::new();
    let mut count: BTreeMap<(u32, bytes::Bytes), usize> = BTreeMap::new();
    for r in &got {
        at.insert((r.partition, r.offset), r.value.clone());
        *count.entry((r.partition, r.value.clone())).or_default() += 1;
    }
    for (p, o, v) in acked {
        assert_eq!(
            at.get(&(*p, *o)),
            Some(v),
            "acknowledged record {topic}-{p}@{o} is missing or changed"
        );
        assert_eq!(
            count[&(*p, v.clone())],
            1,
            "{topic}-{p}: {v:?} appears twice"
        );
    }
}

/// Kills every follower of `partition`: returns its leader and the followers
/// killed, in replica order.
pub fn kill_followers(cluster: &Cluster, partition: &Partition) -> (BrokerId, Vec<BrokerId>) {
    let leader = partition.leader().expect("the partition has a leader");
    let followers: Vec<BrokerId> = partition
        .replicas()
        .into_iter()
        .filter(|b| *b != leader)
        .collect();
    for f in &followers {
        cluster.kill_broker(*f).unwrap();
    }
    (leader, followers)
}
