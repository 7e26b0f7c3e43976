//! The same crash under acks 0, 1 and all: a stream of records, replication slowed
//! by a few milliseconds of network delay, the leader killed mid-stream. How many
//! acknowledged records survive?
//!
//! Run: `cargo run --release --example acks_tradeoff`

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replog::{Acks, Cluster, ProducerConfig, Record, TopicConfig};

fn run(acks: Acks) -> replog::Result<(usize, usize)> {
    let cluster = Cluster::builder().brokers(3).build()?;
    cluster.create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))?;
    // Every message between brokers takes 2-5 ms: followers trail the leader.
    cluster
        .faults()
        .delay(Duration::from_millis(2), Duration::from_millis(5))?;
    let producer = cluster.producer(ProducerConfig::new().acks(acks))?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..50)
                    .map(|_| {
                        i += 1;
                        let v = format!("r{i}");
                        (v.clone(), producer.send_to("t", 0, Record::new(v)))
                    })
                    .collect();
                for (v, d) in batch {
                    if d.wait().is_ok() {
                        acked.lock().unwrap().push(v.into_bytes());
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let leader = cluster
        .topic("t")?
        .partition(0)?
        .leader()
        .expect("a leader");
    cluster.kill_broker(leader)?;
    let at_kill = acked.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    cluster.faults().clear_faults();
    let present = common::values(&common::consume_all(&cluster, "t"));
    let acked = acked.lock().unwrap();
    // Records acknowledged before the kill: the ones the crash could take.
    let before: Vec<&Vec<u8>> = acked.iter().take(at_kill).collect();
    let survived = before.iter().filter(|v| present.contains(**v)).count();
    Ok((before.len(), survived))
}

fn main() -> replog::Result<()> {
    println!("records acknowledged before the leader was killed, and how many are still there:");
    let mut all_ok = true;
    for (name, acks) in [
        ("acks=0  ", Acks::None),
        ("acks=1  ", Acks::Leader),
        ("acks=all", Acks::All),
    ] {
        let (acked, survived) = run(acks)?;
        println!(
            "  {name}: {acked:6} acknowledged, {survived:6} survived, {:5} lost",
            acked - survived
        );
        if acks == Acks::All {
            all_ok = acked == survived;
        }
    }
    common::finish("acks=all lost nothing it acknowledged", all_ok);
    Ok(())
}
