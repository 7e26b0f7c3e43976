//! The leader is isolated from the other brokers and the controller, but clients
//! still reach it: a zombie. Its acks=all writes cannot complete (they are retried
//! at the new leader); its acks=1 writes are acknowledged and then lost when, healed,
//! it truncates its divergent tail.
//!
//! Run: `cargo run --release --example zombie_leader`

mod common;

use std::time::{Duration, Instant};

use replog::{Acks, Cluster, ProducerConfig, Record, TopicConfig};

fn main() -> replog::Result<()> {
    let cluster = Cluster::builder()
        .brokers(3)
        .session_timeout(Duration::from_millis(500))
        .build()?;
    let topic = cluster.create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))?;
    let p = topic.partition(0)?;
    let all = cluster.producer(ProducerConfig::new())?;
    let one = cluster.producer(ProducerConfig::new().acks(Acks::Leader))?;
    for i in 0..100 {
        all.send_to("t", 0, Record::new(format!("before-{i}")))
            .wait()?;
    }
    let zombie = p.leader().expect("a leader");
    let epoch = p.leader_epoch();
    cluster.isolate_broker(zombie)?;
    println!("isolated leader {zombie} (epoch {epoch}); clients can still reach it");

    let t0 = Instant::now();
    let during_all: Vec<_> = (0..10)
        .map(|i| all.send_to("t", 0, Record::new(format!("all-{i}"))))
        .collect();
    let mut zombie_acked = 0;
    for i in 0..10 {
        if one
            .send_to("t", 0, Record::new(format!("one-{i}")))
            .wait()
            .is_ok()
        {
            zombie_acked += 1;
        }
    }
    println!("the zombie acknowledged {zombie_acked} acks=1 writes; its acks=all writes wait");
    for d in during_all {
        d.wait()?;
    }
    println!(
        "the acks=all writes completed {:?} later at broker {} (epoch {}), after the controller fenced the zombie",
        t0.elapsed(),
        p.leader().expect("a new leader"),
        p.leader_epoch()
    );
    cluster.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.isr().contains(&zombie) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let zombie_log = p.replica(zombie).expect("a replica").read(0, 1000)?;
    let leader_log = p
        .replica(p.leader().expect("a leader"))
        .expect("a replica")
        .read(0, 1000)?;
    let lost = zombie_log
        .iter()
        .chain(&leader_log)
        .filter(|r| r.value.starts_with(b"one-"))
        .count();
    println!(
        "healed: the zombie truncated its divergent tail and follows; {} records in both logs, {} acks=1 zombie writes left",
        leader_log.len(),
        lost
    );
    let present = common::values(&common::consume_all(&cluster, "t"));
    let all_present = (0..100)
        .map(|i| format!("before-{i}"))
        .chain((0..10).map(|i| format!("all-{i}")))
        .all(|v| present.contains(v.as_bytes()));
    common::finish(
        "every acks=all record is present and the zombie's log equals the leader's",
        all_present && zombie_log == leader_log,
    );
    Ok(())
}
