//! An acks=all stream; the partition leader is killed mid-way. Shows the failover
//! time and checks that every acknowledged record is present exactly once.
//!
//! Run: `cargo run --release --example kill_leader`

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replog::{Cluster, ProducerConfig, Record, TopicConfig};

fn main() -> replog::Result<()> {
    let cluster = Cluster::builder().brokers(3).build()?;
    let topic = cluster.create_topic("payments", TopicConfig::new(1, 3).min_insync_replicas(2))?;
    let p = topic.partition(0)?;
    let leader = p.leader().expect("a leader");
    println!("payments-0: leader {leader}, ISR {:?}", p.isr());

    let producer = cluster.producer(ProducerConfig::new())?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (producer, acked, stop) = (producer.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let pending: Vec<_> = (0..100)
                    .map(|_| {
                        i += 1;
                        (
                            i,
                            producer.send_to("payments", 0, Record::new(format!("payment-{i}"))),
                        )
                    })
                    .collect();
                for (i, d) in pending {
                    if d.wait().is_ok() {
                        acked
                            .lock()
                            .unwrap()
                            .push(format!("payment-{i}").into_bytes());
                    }
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 20_000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_kill = acked.lock().unwrap().len();
    let t0 = Instant::now();
    cluster.kill_broker(leader)?;
    producer
        .send_to("payments", 0, Record::new("first-after-kill"))
        .wait()?;
    let failover = t0.elapsed();
    println!(
        "killed leader {leader} after {at_kill} acknowledged records; broker {} leads (epoch {}); first write accepted {failover:?} after the kill",
        p.leader().expect("a new leader"),
        p.leader_epoch()
    );
    while acked.lock().unwrap().len() < at_kill + 20_000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let acked = acked.lock().unwrap().clone();
    let records = common::consume_all(&cluster, "payments");
    let present = common::values(&records);
    let missing = acked.iter().filter(|v| !present.contains(*v)).count();
    let duplicates = records.len() - present.len();
    println!(
        "{} records acknowledged with acks=all, {} in the log; missing {missing}, duplicated {duplicates}",
        acked.len(),
        records.len()
    );
    common::finish(
        "every acknowledged record is present exactly once",
        missing == 0 && duplicates == 0,
    );
    Ok(())
}
