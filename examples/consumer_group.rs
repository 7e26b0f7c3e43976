//! Three workers share a topic as one consumer group. Each commits after every
//! batch it processes. One worker dies mid-stream (no goodbye: it just stops, as a
//! crashed process does); when its session times out the others take over its
//! partitions from its last committed offsets.
//!
//! The check: every record is processed, and no record is delivered again once
//! its offset was committed (a record processed but not yet committed by the
//! worker that died may come again: that is at-least-once).
//!
//! Run: `cargo run --release --example consumer_group`

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use replog::{
    Cluster, Consumer, ConsumerConfig, OffsetReset, ProducerConfig, RebalanceListener, Record,
    TopicConfig, TopicPartition,
};

const TOPIC: &str = "jobs";
const PARTITIONS: u32 = 6;
const RECORDS: u64 = 600;
const GROUP: &str = "workers";
/// Time a worker spends on one record.
const PROCESSING: Duration = Duration::from_millis(3);

/// What the group did, shared by the workers.
#[derive(Debug, Default)]
struct Ledger {
    /// Per partition: the last committed offset and who committed it.
    committed: HashMap<u32, (u64, String)>,
    /// How often each (partition, offset) was delivered.
    deliveries: HashMap<(u32, u64), u32>,
    /// Records delivered below their partition's committed offset: must stay empty.
    violations: Vec<String>,
    /// Records processed per worker.
    processed: BTreeMap<String, usize>,
}

/// Says what moved, and commits before a partition goes to another worker.
#[derive(Debug)]
struct Handover {
    name: String,
    started: Instant,
    ledger: Arc<Mutex<Ledger>>,
}

impl RebalanceListener for Handover {
    fn on_partitions_revoked(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
        // Everything poll returned has been processed: commit it now, so the
        // next owner starts right after it.
        commit_partitions(&self.name, consumer, &self.ledger, partitions);
        println!(
            "{:>5}ms  {}: revoked {}",
            self.started.elapsed().as_millis(),
            self.name,
            list(partitions)
        );
    }

    fn on_partitions_assigned(&self, _: &Consumer, partitions: &[TopicPartition]) {
        println!(
            "{:>5}ms  {}: assigned {}",
            self.started.elapsed().as_millis(),
            self.name,
            list(partitions)
        );
    }
}

fn list(partitions: &[TopicPartition]) -> String {
    let ids: Vec<String> = partitions
        .iter()
        .map(|tp| tp.partition.to_string())
        .collect();
    format!("{TOPIC}-[{}]", ids.join(","))
}

fn config() -> ConsumerConfig {
    ConsumerConfig::new()
        .group(GROUP)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
        .session_timeout(Duration::from_secs(1))
        .max_poll_records(10)
}

/// Polls, processes, commits; `dies_after` records, stops dead without
/// committing its last batch or leaving the group.
fn worker(
    started: Instant,
    name: String,
    consumer: Consumer,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    dies_after: Option<usize>,
) {
    let mut processed = 0;
    while !stop.load(Ordering::Acquire) {
        let records = consumer.poll(Duration::from_millis(50)).expect("poll");
        if records.is_empty() {
            continue;
        }
        {
            let mut l = ledger.lock().unwrap();
            for r in &records {
                if let Some((floor, by)) = l.committed.get(&r.partition) {
                    if r.offset < *floor {
                        let v = format!(
                            "{name} got {TOPIC}-{} offset {} after {by} committed {floor}",
                            r.partition, r.offset
                        );
                        l.violations.push(v);
                    }
                }
                *l.deliveries.entry((r.partition, r.offset)).or_default() += 1;
                *l.processed.entry(name.clone()).or_default() += 1;
            }
        }
        // The work itself.
        thread::sleep(PROCESSING * records.len() as u32);
        processed += records.len();
        if dies_after.is_some_and(|n| processed >= n) {
            println!(
                "{:>5}ms  {name}: died after {processed} records, before committing its last batch",
                started.elapsed().as_millis()
            );
            // A crash: no commit, no leave. Its session times out instead.
            std::mem::forget(consumer);
            return;
        }
        commit(&name, &consumer, &ledger);
    }
    // Once more, after a poll has caught up with any rebalance, then leave.
    consumer.poll(Duration::ZERO).expect("poll");
    commit(&name, &consumer, &ledger);
    consumer.close().expect("close");
}

/// Commits what was processed; records it only once the group has it. A refused
/// commit (the group rebalanced since the poll) is fine: those records are not
/// committed, and may be delivered again.
fn commit(name: &str, consumer: &Consumer, ledger: &Mutex<Ledger>) {
    commit_partitions(name, consumer, ledger, &consumer.assignment());
}

fn commit_partitions(
    name: &str,
    consumer: &Consumer,
    ledger: &Mutex<Ledger>,
    partitions: &[TopicPartition],
) {
    let positions: Vec<(TopicPartition, u64)> = partitions
        .iter()
        .filter_map(|tp| Some((tp.clone(), consumer.position(tp).ok()?)))
        .collect();
    if consumer.commit_offsets(&positions).is_ok() {
        let mut l = ledger.lock().unwrap();
        for (tp, offset) in positions {
            l.committed.insert(tp.partition, (offset, name.to_string()));
        }
    }
}

fn main() -> replog::Result<()> {
    let started = Instant::now();
    let cluster = Cluster::builder().brokers(3).build()?;
    cluster.create_topic(
        TOPIC,
        TopicConfig::new(PARTITIONS, 3).min_insync_replicas(2),
    )?;
    let producer = cluster.producer(ProducerConfig::new())?;
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| producer.send(TOPIC, Record::new(format!("job {i}")).key(format!("k{i}"))))
        .collect();
    for d in deliveries {
        d.wait()?;
    }
    println!("produced {RECORDS} records to {TOPIC} ({PARTITIONS} partitions, acks=all)");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (i, dies_after) in [None, Some(120), None].into_iter().enumerate() {
        let name = format!("worker-{i}");
        let consumer = cluster.consumer(config().client_id(name.clone()))?;
        let listener = Handover {
            name: name.clone(),
            started,
            ledger: ledger.clone(),
        };
        consumer.subscribe_with_listener(&[TOPIC], listener)?;
        let (ledger, stop) = (ledger.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            worker(started, name, consumer, ledger, stop, dies_after)
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger.lock().unwrap().deliveries.len() < RECORDS as usize && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    println!("all {RECORDS} records processed: the workers close");
    stop.store(true, Ordering::Release);
    for h in handles {
        h.join().expect("worker panicked");
    }

    // What the group committed, as a fresh consumer of the group reads it.
    let reader = cluster.consumer(ConsumerConfig::new().group(GROUP))?;
    let mut committed_total = 0;
    for p in 0..PARTITIONS {
        let tp = TopicPartition::new(TOPIC, p);
        committed_total += reader.committed(&tp)?.unwrap_or(0);
    }
    let hw_total: u64 = cluster
        .topic(TOPIC)?
        .partitions()
        .iter()
        .map(|p| p.high_watermark())
        .sum();

    let l = ledger.lock().unwrap();
    for (name, n) in &l.processed {
        println!("{name}: {n} deliveries");
    }
    let again = l.deliveries.values().filter(|n| **n > 1).count();
    println!(
        "{} distinct records delivered; {again} delivered again (processed, not yet committed when their partition moved)",
        l.deliveries.len()
    );
    println!("committed offsets cover {committed_total} of {hw_total} records");
    for v in &l.violations {
        println!("VIOLATION: {v}");
    }
    let ok = l.deliveries.len() == RECORDS as usize
        && l.violations.is_empty()
        && committed_total == hw_total;
    println!(
        "check {}: every record processed, nothing committed delivered again ({:.1?})",
        if ok { "held" } else { "FAILED" },
        started.elapsed()
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
