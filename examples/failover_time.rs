//! Failover time over 50 leader kills: from `kill_broker` on the leader to the first
//! acks=all write acknowledged by its successor. Prints the median and p99.
//!
//! Run: `cargo run --release --example failover_time`

mod common;

use std::time::{Duration, Instant};

use replog::{Cluster, ProducerConfig, Record, TopicConfig};

const KILLS: usize = 50;

fn main() -> replog::Result<()> {
    let cluster = Cluster::builder().brokers(3).build()?;
    let topic = cluster.create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))?;
    let p = topic.partition(0)?;
    let producer = cluster.producer(ProducerConfig::new())?;
    for i in 0..100 {
        producer
            .send_to("t", 0, Record::new(format!("warm-up {i}")))
            .wait()?;
    }
    let mut times = Vec::with_capacity(KILLS);
    for i in 0..KILLS {
        let leader = p.leader().expect("a leader");
        let t0 = Instant::now();
        cluster.kill_broker(leader)?;
        producer
            .send_to("t", 0, Record::new(format!("after kill {i}")))
            .wait()?;
        times.push(t0.elapsed());
        cluster.restart_broker(leader)?;
        // The next kill starts from a full ISR, so min.insync.replicas=2 holds.
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.isr().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (median, p99) = common::percentiles(times.clone());
    let max = times.iter().max().copied().unwrap_or_default();
    println!("failover over {KILLS} leader kills (kill -> first acks=all write acknowledged):");
    println!("  median {median:?}, p99 {p99:?}, max {max:?}");
    common::finish(
        "median <= 10 ms and p99 <= 50 ms",
        median <= Duration::from_millis(10) && p99 <= Duration::from_millis(50),
    );
    Ok(())
}
