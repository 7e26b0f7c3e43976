//! The last in-sync replica dies. With unclean leader election off, the partition
//! goes offline and nothing is lost; with it on, an out-of-sync replica takes over
//! at once and the records only the dead leader had are lost (and counted).
//!
//! Run: `cargo run --release --example unclean_election`

mod common;

use std::time::{Duration, Instant};

use replog::{Cluster, NodeId, ProducerConfig, Record, TopicConfig};

/// Returns (offline while the leader was dead, records readable after it returned,
/// unclean elections).
fn scenario(unclean: bool) -> replog::Result<(bool, usize, u64)> {
    let dir = tempfile::tempdir().map_err(|e| replog::Error::Usage(e.to_string()))?;
    let cluster = Cluster::builder()
        .brokers(3)
        .data_dir(dir.path())
        .replica_lag_time_max(Duration::from_millis(200))
        .auto_leader_rebalance(false)
        .build()?;
    let topic =
        cluster.create_topic("t", TopicConfig::new(1, 3).unclean_leader_election(unclean))?;
    let p = topic.partition(0)?;
    let producer = cluster.producer(ProducerConfig::new())?;
    for i in 0..100 {
        producer
            .send_to("t", 0, Record::new(format!("replicated-{i}")))
            .wait()?;
    }
    let leader = p.leader().expect("a leader");
    for f in p.replicas().into_iter().filter(|b| *b != leader) {
        cluster
            .faults()
            .cut(NodeId::Broker(f), NodeId::Broker(leader));
    }
    // The followers fall out of the ISR; these 50 are on the leader alone.
    for i in 0..50 {
        producer
            .send_to("t", 0, Record::new(format!("leader-only-{i}")))
            .wait()?;
    }
    cluster.kill_broker(leader)?;
    cluster.heal();
    // The controller acts at once on a thread exit: offline, or another leader.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.leader() == Some(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let offline = p.leader().is_none();
    cluster.restart_broker(leader)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.leader().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let readable = common::consume_all(&cluster, "t").len();
    Ok((
        offline,
        readable,
        cluster.metrics().unclean_leader_elections,
    ))
}

fn main() -> replog::Result<()> {
    println!("150 records acknowledged with acks=all; the last 50 while the ISR was the leader alone; then the leader dies.");
    let (offline, kept, unclean) = scenario(false)?;
    println!(
        "unclean.leader.election.enable=false: offline until the leader returned: {offline}; records readable after: {kept}; unclean elections: {unclean}"
    );
    let off_ok = offline && kept == 150 && unclean == 0;
    let (offline_on, kept_on, unclean_on) = scenario(true)?;
    println!(
        "unclean.leader.election.enable=true:  offline: {offline_on}; records readable after: {kept_on} ({} lost); unclean elections: {unclean_on}",
        150 - kept_on
    );
    let on_ok = !offline_on && kept_on == 100 && unclean_on == 1;
    common::finish(
        "off keeps every record (offline meanwhile); on stays available and loses the leader-only records",
        off_ok && on_ok,
    );
    Ok(())
}
