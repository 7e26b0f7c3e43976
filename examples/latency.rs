//! The round trip of one record with `acks=all`, as percentiles (criterion's
//! `latency` group in `benches/acks.rs` gives only the mean).
//!
//! Three brokers, memory storage, a topic of one partition with replication factor 3
//! and `min.insync.replicas` 2, the producer's defaults (`acks=all`, `linger.ms` 0).
//! Records of 100-byte values are sent one at a time: `send_to(..).wait()`, so each
//! sample is a full round trip: the calling thread hands the batch to the
//! leader, the leader appends it and answers the followers' parked fetches, the
//! followers append and fetch again, which moves the high watermark, and the leader
//! answers the producer.
//!
//! Run: `cargo run --release --example latency [records] [acks: all|1]`
//! (default: 20000 records, acks=all, after 2000 unmeasured warm-up records).
//! The figures move with the machine's load; nothing is asserted.

use std::time::{Duration, Instant};

use replog::{Acks, Cluster, ProducerConfig, Record, TopicConfig};

const WARM_UP: usize = 2000;
const VALUE_LEN: usize = 100;

fn main() -> replog::Result<()> {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .map(|s| s.parse().expect("records: a number"))
        .unwrap_or(20_000);
    let acks = match args.next().as_deref() {
        None | Some("all") => Acks::All,
        Some("1") => Acks::Leader,
        Some(other) => panic!("acks: `all` or `1`, not {other:?}"),
    };

    let cluster = Cluster::builder().brokers(3).build()?;
    let topic = cluster.create_topic("latency", TopicConfig::new(1, 3).min_insync_replicas(2))?;
    let p = topic.partition(0)?;
    println!(
        "latency-0: leader {:?}, ISR {:?}; {records} records of {VALUE_LEN} B one at a time, acks={acks:?}",
        p.leader().expect("a new partition has a leader"),
        p.isr(),
    );
    let producer = cluster.producer(ProducerConfig::new().acks(acks))?;
    let value = bytes::Bytes::from(vec![0xAB; VALUE_LEN]);

    for _ in 0..WARM_UP {
        producer
            .send_to("latency", 0, Record::new(value.clone()))
            .wait()?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(records);
    let started = Instant::now();
    for _ in 0..records {
        let t = Instant::now();
        producer
            .send_to("latency", 0, Record::new(value.clone()))
            .wait()?;
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    samples.sort_unstable();

    let pct =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let mean = total / records as u32;
    println!("round trip per record (send_to + wait), {records} samples:");
    println!("  min     {:>10.1?}", samples[0]);
    println!("  median  {:>10.1?}", pct(0.50));
    println!("  p90     {:>10.1?}", pct(0.90));
    println!("  p99     {:>10.1?}", pct(0.99));
    println!("  p99.9   {:>10.1?}", pct(0.999));
    println!("  max     {:>10.1?}", samples[samples.len() - 1]);
    println!(
        "  mean    {:>10.1?}  ({:.0} records/s one at a time)",
        mean,
        records as f64 / total.as_secs_f64()
    );
    cluster.shutdown()?;
    Ok(())
}
