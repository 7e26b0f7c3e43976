//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use replog::{Cluster, ConsumedRecord, Consumer, ConsumerConfig, OffsetReset, TopicPartition};

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
