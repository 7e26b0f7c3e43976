//! Helpers shared by the examples.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use replog::{Cluster, ConsumedRecord, ConsumerConfig, OffsetReset, TopicPartition};

/// Reads every committed record of `topic` from the start.
pub fn consume_all(cluster: &Cluster, topic: &str) -> Vec<ConsumedRecord> {
    let t = cluster.topic(topic).expect("topic exists");
    let want: u64 = t.partitions().iter().map(|p| p.high_watermark()).sum();
    let consumer = cluster
        .consumer(ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest))
        .expect("consumer");
    let tps: Vec<TopicPartition> = (0..t.partition_count())
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (out.len() as u64) < want && Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(200)).expect("poll"));
    }
    out
}

/// The values in `records`.
pub fn values(records: &[ConsumedRecord]) -> BTreeSet<Vec<u8>> {
    records.iter().map(|r| r.value.to_vec()).collect()
}

/// Prints the closing line and exits non-zero when the check failed.
pub fn finish(what: &str, held: bool) {
    println!("check: {what}: {}", if held { "held" } else { "FAILED" });
    if !held {
        std::process::exit(1);
    }
}

/// Median and p99 of durations.
pub fn percentiles(mut d: Vec<Duration>) -> (Duration, Duration) {
    d.sort();
    let at = |q: f64| d[((d.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}
