//! Three brokers, a topic with replication factor 3 and min.insync.replicas 2,
//! records produced with acks=all, then consumed.
//!
//! Run: `cargo run --release --example quickstart`

use std::time::{Duration, Instant};

use replog::{
    Acks, Cluster, ConsumerConfig, OffsetReset, ProducerConfig, Record, TopicConfig, TopicPartition,
};

fn main() -> replog::Result<()> {
    let cluster = Cluster::builder().brokers(3).build()?;
    println!("started a cluster of {} brokers", cluster.brokers().len());

    let topic = cluster.create_topic("orders", TopicConfig::new(3, 3).min_insync_replicas(2))?;
    for p in topic.partitions() {
        println!(
            "  orders-{}: leader {:?}, replicas {:?}, ISR {:?}",
            p.id(),
            p.leader().expect("a new partition has a leader"),
            p.replicas(),
            p.isr()
        );
    }

    let producer = cluster.producer(ProducerConfig::new().acks(Acks::All))?;
    let started = Instant::now();
    let deliveries: Vec<_> = (0..1000)
        .map(|i| {
            let key = format!("customer-{}", i % 10);
            producer.send("orders", Record::new(format!("order #{i}")).key(key))
        })
        .collect();
    let mut acked = 0;
    for d in deliveries {
        d.wait()?;
        acked += 1;
    }
    println!(
        "produced {acked} records with acks=all in {:?} (each is in the log of every in-sync replica)",
        started.elapsed()
    );

    let consumer =
        cluster.consumer(ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest))?;
    let partitions: Vec<TopicPartition> =
        (0..3).map(|p| TopicPartition::new("orders", p)).collect();
    consumer.assign(&partitions)?;
    let mut consumed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumed.len() < acked && Instant::now() < deadline {
        consumed.extend(consumer.poll(Duration::from_millis(500))?);
    }
    println!(
        "consumed {} records; the first: {:?} at orders-{}@{}",
        consumed.len(),
        String::from_utf8_lossy(&consumed[0].value),
        consumed[0].partition,
        consumed[0].offset,
    );
    for p in topic.partitions() {
        println!("  orders-{}: high watermark {}", p.id(), p.high_watermark());
    }
    let ok = consumed.len() == acked;
    println!(
        "check: every acknowledged record was consumed: {}",
        if ok { "held" } else { "FAILED" }
    );
    cluster.shutdown()?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
