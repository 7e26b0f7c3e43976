//! Rule 10 and the consumer-group issue: membership, rebalances, offset commits in
//! `__consumer_offsets`, and what survives broker failures and reopening.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use replog::*;

/// Short, so expiry tests are quick; long enough for 2 busy cores.
const SESSION: Duration = Duration::from_millis(800);
/// How long one consumer's turn in a polling round may block.
const TURN: Duration = Duration::from_millis(10);
const OFFSETS_TOPIC: &str = "__consumer_offsets";

fn cluster() -> Cluster {
    Cluster::builder()
        .brokers(3)
        .offsets_topic_partitions(5)
        .build()
        .unwrap()
}

fn topic(c: &Cluster, name: &str, partitions: u32) {
    c.create_topic(name, TopicConfig::new(partitions, 3).min_insync_replicas(2))
        .unwrap();
}

/// A member of `group` that commits only when told to.
fn config(group: &str) -> ConsumerConfig {
    ConsumerConfig::new()
        .group(group)
        .session_timeout(SESSION)
        .auto_offset_reset(OffsetReset::Earliest)
        .enable_auto_commit(false)
}

fn subscriber(c: &Cluster, group: &str, topic: &str) -> Consumer {
    let consumer = c.consumer(config(group)).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Polls every consumer in turn until `done` holds (records are dropped).
fn poll_until(what: &str, consumers: &[&Consumer], mut done: impl FnMut() -> bool) {
    wait_until(what, || {
        for c in consumers {
            c.poll(TURN).unwrap();
        }
        done()
    });
}

fn all_partitions(topic: &str, n: u32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| TopicPartition::new(topic, p)).collect()
}

/// The consumers own every partition of `topic` exactly once, evenly.
fn split_evenly(consumers: &[&Consumer], topic: &str, n: u32) -> bool {
    let sizes: Vec<usize> = consumers.iter().map(|c| c.assignment().len()).collect();
    let union: BTreeSet<TopicPartition> = consumers.iter().flat_map(|c| c.assignment()).collect();
    let total: usize = sizes.iter().sum();
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    total == n as usize && union == all_partitions(topic, n) && max - min <= 1
}

fn set(c: &Consumer) -> BTreeSet<TopicPartition> {
    c.assignment().into_iter().collect()
}

/// What the rebalance callbacks reported.
#[derive(Debug, Default)]
struct Events {
    assigned: Vec<TopicPartition>,
    revoked: Vec<TopicPartition>,
    lost: Vec<TopicPartition>,
}

#[derive(Clone, Debug, Default)]
struct Recorder(Arc<Mutex<Events>>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&self, _: &Consumer, partitions: &[TopicPartition]) {
        self.0.lock().unwrap().revoked.extend_from_slice(partitions);
    }
    fn on_partitions_assigned(&self, _: &Consumer, partitions: &[TopicPartition]) {
        self.0
            .lock()
            .unwrap()
            .assigned
            .extend_from_slice(partitions);
    }
    fn on_partitions_lost(&self, _: &Consumer, partitions: &[TopicPartition]) {
        self.0.lock().unwrap().lost.extend_from_slice(partitions);
    }
}

impl Recorder {
    fn take(&self) -> Events {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn produce(c: &Cluster, topic: &str, partitions: u32, count: usize) {
    let p = c.producer(ProducerConfig::new()).unwrap();
    let deliveries: Vec<Delivery> = (0..count)
        .map(|i| p.send_to(topic, i as u32 % partitions, Record::new(format!("r{i}"))))
        .collect();
    for d in deliveries {
        d.wait().unwrap();
    }
}

#[test]
fn two_members_split_the_partitions() {
    let c = cluster();
    topic(&c, "t", 4);
    let a = subscriber(&c, "g", "t");
    let b = subscriber(&c, "g", "t");
    poll_until("two members to split 4 partitions", &[&a, &b], || {
        split_evenly(&[&a, &b], "t", 4)
    });
    assert_eq!(a.assignment().len(), 2);
    assert_eq!(b.assignment().len(), 2);
}

#[test]
fn a_member_that_leaves_loses_its_partitions_to_the_others() {
    let c = cluster();
    topic(&c, "t", 4);
    let a = subscriber(&c, "g", "t");
    let b = subscriber(&c, "g", "t");
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    a.close().unwrap();
    poll_until("the remaining member to own everything", &[&b], || {
        set(&b) == all_partitions("t", 4)
    });

    // Drop leaves too.
    let d = subscriber(&c, "g", "t");
    poll_until("a new member to take half", &[&b, &d], || {
        split_evenly(&[&b, &d], "t", 4)
    });
    drop(d);
    poll_until(
        "the dropped member's partitions to come back",
        &[&b],
        || set(&b) == all_partitions("t", 4),
    );
}

#[test]
fn a_member_that_stops_heartbeating_loses_its_partitions_after_its_session_timeout() {
    let c = cluster();
    topic(&c, "t", 4);
    let listener = Recorder::default();
    let a = c.consumer(config("g")).unwrap();
    a.subscribe_with_listener(&["t"], listener.clone()).unwrap();
    let b = subscriber(&c, "g", "t");
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let a_had = set(&a);

    // `a` stays alive but no longer polls, so it sends no heartbeat.
    poll_until("the silent member's partitions to move", &[&b], || {
        set(&b) == all_partitions("t", 4)
    });

    // Back again: it learns it was removed, reports the partitions lost (not
    // revoked: they are someone else's already) and rejoins.
    poll_until("the returning member to rejoin", &[&a, &b], || {
        split_evenly(&[&a, &b], "t", 4)
    });
    let events = listener.take();
    let lost: BTreeSet<TopicPartition> = events.lost.into_iter().collect();
    assert_eq!(
        lost, a_had,
        "the expired member's partitions are reported lost"
    );
}

/// What a group consumed and committed, checked as it goes: no record below a
/// committed offset is ever delivered again.
#[derive(Default)]
struct Ledger {
    /// Per partition: the offset committed so far (what must never come again).
    committed: HashMap<TopicPartition, (u64, &'static str)>,
    seen: HashSet<(u32, u64)>,
    /// Partitions another member went on from right where one had committed.
    handovers: usize,
}

impl Ledger {
    /// One poll, checked, then a commit of what it returned.
    fn step(&mut self, name: &'static str, consumer: &Consumer) {
        let records = consumer.poll(TURN).unwrap();
        for r in &records {
            let tp = TopicPartition::new(r.topic.clone(), r.partition);
            let (floor, by) = self.committed.get(&tp).copied().unwrap_or((0, name));
            assert!(
                r.offset >= floor,
                "{tp} offset {} delivered again after offset {floor} was committed",
                r.offset
            );
            if r.offset == floor && by != name {
                self.handovers += 1;
            }
            self.seen.insert((r.partition, r.offset));
        }
        if records.is_empty() {
            return;
        }
        // A commit can be refused when a rebalance happened since the poll: then
        // those records may come again, which is allowed (they were not committed).
        match consumer.commit() {
            Ok(()) => {
                for tp in consumer.assignment() {
                    let p = consumer.position(&tp).unwrap();
                    self.committed.insert(tp, (p, name));
                }
            }
            Err(Error::IllegalGeneration { .. }) => {}
            Err(e) => panic!("commit failed: {e}"),
        }
    }
}

#[test]
fn committed_records_are_not_delivered_again_after_a_rebalance() {
    let c = cluster();
    topic(&c, "t", 4);
    produce(&c, "t", 4, 200);
    let small = |g| config(g).max_poll_records(7);
    let a = c.consumer(small("g")).unwrap();
    a.subscribe(&["t"]).unwrap();

    let mut ledger = Ledger::default();
    wait_until("the first member to consume half", || {
        ledger.step("a", &a);
        ledger.seen.len() >= 100
    });
    let b = c.consumer(small("g")).unwrap();
    b.subscribe(&["t"]).unwrap();
    wait_until("both members to consume the rest", || {
        ledger.step("a", &a);
        ledger.step("b", &b);
        ledger.seen.len() == 200
    });
    produce(&c, "t", 4, 100);
    a.close().unwrap();
    wait_until("the remaining member to consume everything", || {
        ledger.step("b", &b);
        ledger.seen.len() == 300
    });
    let handovers = ledger.handovers;
    assert!(
        handovers > 0,
        "a partition should have moved with a committed offset"
    );
}

#[test]
fn a_commit_from_a_stale_generation_is_refused() {
    let c = cluster();
    topic(&c, "t", 4);
    let a = subscriber(&c, "g", "t");
    poll_until("the only member to own everything", &[&a], || {
        set(&a) == all_partitions("t", 4)
    });
    let t0 = TopicPartition::new("t", 0);
    a.commit_offsets(&[(t0.clone(), 3)]).unwrap();

    // `b` joins: a new generation that `a`, which has not polled since, missed.
    let b = subscriber(&c, "g", "t");
    b.poll(TURN).unwrap();
    match a.commit_offsets(&[(t0.clone(), 5)]) {
        Err(Error::IllegalGeneration {
            generation,
            current,
            ..
        }) => assert!(generation < current, "{generation} < {current}"),
        other => panic!("expected IllegalGeneration, got {other:?}"),
    }
    assert_eq!(a.committed(&t0).unwrap(), Some(3), "nothing was written");

    // Once it has caught up with the rebalance, its commits are accepted again.
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let mine = a.assignment()[0].clone();
    a.commit_offsets(&[(mine.clone(), 1)]).unwrap();
    assert_eq!(b.committed(&mine).unwrap(), Some(1));
}

#[test]
fn committed_offsets_stay_readable_while_any_one_broker_is_down() {
    let c = cluster();
    topic(&c, "t", 2);
    let consumer = c.consumer(config("g")).unwrap();
    let tps: Vec<TopicPartition> = all_partitions("t", 2).into_iter().collect();
    consumer.assign(&tps).unwrap();
    let mut expected = 10;
    consumer
        .commit_offsets(&[(tps[0].clone(), expected), (tps[1].clone(), 1)])
        .unwrap();
    let offsets = c.topic(OFFSETS_TOPIC).unwrap();
    for broker in c.brokers() {
        c.kill_broker(broker).unwrap();
        assert_eq!(
            consumer.committed(&tps[0]).unwrap(),
            Some(expected),
            "with {broker} down"
        );
        assert_eq!(consumer.committed(&tps[1]).unwrap(), Some(1));
        // Commits go on too: two of three replicas meet min.insync.replicas=2.
        expected += 1;
        consumer
            .commit_offsets(&[(tps[0].clone(), expected)])
            .unwrap();
        assert_eq!(consumer.committed(&tps[0]).unwrap(), Some(expected));
        c.restart_broker(broker).unwrap();
        // Back in every ISR before the next broker goes down.
        wait_until("the restarted broker to catch up", || {
            offsets.partitions().iter().all(|p| p.isr().len() == 3)
        });
    }
    assert_eq!(consumer.committed(&tps[0]).unwrap(), Some(expected));
}

#[test]
fn committed_offsets_survive_reopening_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Cluster::builder()
            .brokers(3)
            .offsets_topic_partitions(5)
            .data_dir(dir.path())
            .build()
            .unwrap()
    };
    let t0 = TopicPartition::new("t", 0);
    {
        let c = open();
        topic(&c, "t", 1);
        produce(&c, "t", 1, 10);
        let consumer = subscriber(&c, "g", "t");
        let got = consume_n(&consumer, 7);
        assert!(got.len() >= 7);
        consumer
            .commit_offsets(&[(t0.clone(), got[6].offset + 1)])
            .unwrap();
        drop(consumer);
        c.shutdown().unwrap();
    }
    // The offsets topic keeps the partition count it was created with (as
    // Kafka's): groups are found where they were written.
    let c = Cluster::builder()
        .brokers(3)
        .offsets_topic_partitions(7)
        .data_dir(dir.path())
        .build()
        .unwrap();
    assert_eq!(c.topic(OFFSETS_TOPIC).unwrap().partition_count(), 5);
    let consumer = subscriber(&c, "g", "t");
    assert_eq!(consumer.committed(&t0).unwrap(), Some(7));
    // A member of the group starts where the group left off.
    let rest = consume_n(&consumer, 3);
    let offsets: Vec<u64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![7, 8, 9]);
}

/// Rule 10 over time: however often a group commits, its offsets partition stays
/// small on every replica (compacted to one record per live offset), and a
/// coordinator that takes over from the compacted log answers the last commit of
/// each partition.
fn compacts_committed_offsets(data_dir: Option<&std::path::Path>) {
    let mut b = Cluster::builder()
        .brokers(3)
        .offsets_topic_partitions(5)
        .offsets_topic_segment_bytes(4096);
    if let Some(dir) = data_dir {
        b = b.data_dir(dir);
    }
    let c = b.build().unwrap();
    topic(&c, "t", 3);
    let consumer = c.consumer(config("g")).unwrap();
    let tps: Vec<TopicPartition> = all_partitions("t", 3).into_iter().collect();
    consumer.assign(&tps).unwrap();
    // About 100 bytes of log per commit: dozens of compactions' worth.
    const COMMITS: u64 = 1500;
    for i in 1..=COMMITS {
        let offsets: Vec<(TopicPartition, u64)> = tps
            .iter()
            .map(|tp| (tp.clone(), i * 10 + u64::from(tp.partition)))
            .collect();
        consumer.commit_offsets(&offsets).unwrap();
    }
    let offsets = c.topic(OFFSETS_TOPIC).unwrap();
    let group_partition = offsets
        .partitions()
        .into_iter()
        .max_by_key(Partition::high_watermark)
        .unwrap();
    assert!(group_partition.high_watermark() >= COMMITS * 3);
    // Every replica, followers too, holds only a tail: one segment's worth or so
    // (4096 bytes: tens of records) and the latest snapshot, not 4500 records.
    wait_until(
        "every replica of the group's offsets partition to be compacted",
        || {
            group_partition.replicas().iter().all(|&broker| {
                let r = group_partition.replica(broker).unwrap();
                match (r.log_start_offset(), r.log_end_offset()) {
                    (Some(start), Some(end)) => start > 0 && end - start < 200,
                    _ => false,
                }
            })
        },
    );
    let last = |tp: &TopicPartition| COMMITS * 10 + u64::from(tp.partition);
    for tp in &tps {
        assert_eq!(consumer.committed(tp).unwrap(), Some(last(tp)));
    }
    // A new coordinator rebuilds its offsets from the compacted log alone.
    let coordinator = group_partition.leader().unwrap();
    c.kill_broker(coordinator).unwrap();
    wait_until("a new coordinator", || {
        group_partition.leader().is_some_and(|l| l != coordinator)
    });
    for tp in &tps {
        assert_eq!(
            consumer.committed(tp).unwrap(),
            Some(last(tp)),
            "{tp} after the coordinator moved"
        );
    }
    consumer.commit_offsets(&[(tps[0].clone(), 1)]).unwrap();
    assert_eq!(consumer.committed(&tps[0]).unwrap(), Some(1));
    let Some(dir) = data_dir else {
        return;
    };
    // Reopened, the compacted segments on disk rebuild the same offsets.
    drop(consumer);
    c.shutdown().unwrap();
    let c = Cluster::builder()
        .brokers(3)
        .offsets_topic_partitions(5)
        .data_dir(dir)
        .build()
        .unwrap();
    let consumer = c.consumer(config("g")).unwrap();
    assert_eq!(consumer.committed(&tps[0]).unwrap(), Some(1));
    for tp in &tps[1..] {
        assert_eq!(
            consumer.committed(tp).unwrap(),
            Some(last(tp)),
            "{tp} reopened"
        );
    }
}

#[test]
fn committed_offsets_are_compacted_in_memory_and_a_new_coordinator_reads_the_last_of_each() {
    compacts_committed_offsets(None);
}

#[test]
fn committed_offsets_are_compacted_on_disk_and_a_new_coordinator_reads_the_last_of_each() {
    let dir = tempfile::tempdir().unwrap();
    compacts_committed_offsets(Some(dir.path()));
}

#[test]
fn a_cooperative_rebalance_revokes_only_the_partitions_that_move() {
    let c = cluster();
    topic(&c, "t", 6);
    let (la, lb) = (Recorder::default(), Recorder::default());
    let a = c.consumer(config("g")).unwrap();
    a.subscribe_with_listener(&["t"], la.clone()).unwrap();
    let b = c.consumer(config("g")).unwrap();
    b.subscribe_with_listener(&["t"], lb.clone()).unwrap();
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 6));
    let (a_before, b_before) = (set(&a), set(&b));
    la.take();
    lb.take();

    let third = subscriber(&c, "g", "t");
    poll_until("a three-way split", &[&a, &b, &third], || {
        split_evenly(&[&a, &b, &third], "t", 6)
    });
    let (ea, eb) = (la.take(), lb.take());
    let revoked: BTreeSet<TopicPartition> = ea.revoked.iter().chain(&eb.revoked).cloned().collect();
    assert_eq!(
        revoked,
        set(&third),
        "exactly what the newcomer got was revoked"
    );
    assert_eq!(ea.revoked.len() + eb.revoked.len(), 2, "each revoked once");
    assert!(ea.assigned.is_empty() && eb.assigned.is_empty());
    assert!(ea.lost.is_empty() && eb.lost.is_empty());
    // Partitions that stayed were never revoked.
    assert!(set(&a).is_subset(&a_before) && set(&b).is_subset(&b_before));
}

#[test]
fn an_eager_rebalance_revokes_everything_first() {
    let c = cluster();
    topic(&c, "t", 4);
    let eager = |g| config(g).assignment_strategy(AssignmentStrategy::Range);
    let la = Recorder::default();
    let a = c.consumer(eager("g")).unwrap();
    a.subscribe_with_listener(&["t"], la.clone()).unwrap();
    poll_until("the only member to own everything", &[&a], || {
        set(&a) == all_partitions("t", 4)
    });
    la.take();
    let b = c.consumer(eager("g")).unwrap();
    b.subscribe(&["t"]).unwrap();
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let ea = la.take();
    let revoked: BTreeSet<TopicPartition> = ea.revoked.into_iter().collect();
    assert_eq!(revoked, all_partitions("t", 4), "eager: everything revoked");
    let assigned: BTreeSet<TopicPartition> = ea.assigned.into_iter().collect();
    assert_eq!(assigned, set(&a), "and what it keeps is assigned again");
}

#[test]
fn a_static_member_that_rejoins_keeps_its_assignment() {
    let c = cluster();
    topic(&c, "t", 4);
    // Long enough for the restart to land within it on a busy machine.
    let static_config = |instance| {
        config("g")
            .session_timeout(Duration::from_secs(5))
            .heartbeat_interval(Duration::from_millis(200))
            .group_instance_id(instance)
    };
    let lb = Recorder::default();
    let a = c.consumer(static_config("a")).unwrap();
    a.subscribe(&["t"]).unwrap();
    let b = c.consumer(static_config("b")).unwrap();
    b.subscribe_with_listener(&["t"], lb.clone()).unwrap();
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let (a_had, b_had) = (set(&a), set(&b));
    lb.take();

    // Restart `a`: a new consumer with the same group.instance.id.
    a.close().unwrap();
    let a = c.consumer(static_config("a")).unwrap();
    a.subscribe(&["t"]).unwrap();
    poll_until(
        "the restarted member to get its partitions back",
        &[&a, &b],
        || set(&a) == a_had,
    );
    // Keep both polling a while: nothing moves.
    for _ in 0..20 {
        a.poll(TURN).unwrap();
        b.poll(TURN).unwrap();
    }
    assert_eq!(set(&a), a_had);
    assert_eq!(set(&b), b_had);
    let eb = lb.take();
    assert!(
        eb.revoked.is_empty() && eb.assigned.is_empty() && eb.lost.is_empty(),
        "no rebalance for the other member: {eb:?}"
    );
}

#[test]
fn a_standalone_consumer_commits_and_reads_committed_offsets() {
    let c = cluster();
    topic(&c, "t", 2);
    produce(&c, "t", 2, 10);
    let tp = TopicPartition::new("t", 1);
    let consumer = c.consumer(config("solo")).unwrap();
    consumer.assign(std::slice::from_ref(&tp)).unwrap();
    assert_eq!(consumer.committed(&tp).unwrap(), None);
    let got = consume_n(&consumer, 5);
    assert_eq!(got.len(), 5);
    consumer.commit().unwrap();
    assert_eq!(consumer.committed(&tp).unwrap(), Some(5));
    consumer.commit_offsets(&[(tp.clone(), 2)]).unwrap();
    drop(consumer);

    // The next consumer of the group starts from the committed offset.
    let next = c.consumer(config("solo")).unwrap();
    next.assign(std::slice::from_ref(&tp)).unwrap();
    assert_eq!(next.position(&tp).unwrap(), 2);

    // A consumer without a group cannot commit.
    let anon = c.consumer(ConsumerConfig::new()).unwrap();
    anon.assign(std::slice::from_ref(&tp)).unwrap();
    assert!(matches!(anon.commit(), Err(Error::Usage(_))));
}

#[test]
fn positions_start_at_the_committed_offset_else_at_auto_offset_reset() {
    let c = cluster();
    topic(&c, "t", 1);
    produce(&c, "t", 1, 5);
    let tp = TopicPartition::new("t", 0);
    // No committed offset: latest skips what is there, earliest reads it.
    let latest = c
        .consumer(config("l").auto_offset_reset(OffsetReset::Latest))
        .unwrap();
    latest.subscribe(&["t"]).unwrap();
    poll_until("an assignment", &[&latest], || {
        !latest.assignment().is_empty()
    });
    assert_eq!(latest.position(&tp).unwrap(), 5);
    let earliest = subscriber(&c, "e", "t");
    let got = consume_n(&earliest, 5);
    assert_eq!(got.first().map(|r| r.offset), Some(0));
    // A committed offset wins over either.
    latest.commit_offsets(&[(tp.clone(), 3)]).unwrap();
    drop(latest);
    let again = c
        .consumer(config("l").auto_offset_reset(OffsetReset::Latest))
        .unwrap();
    again.subscribe(&["t"]).unwrap();
    let got = consume_n(&again, 2);
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn auto_commit_commits_what_poll_returned_on_its_interval() {
    let c = cluster();
    topic(&c, "t", 1);
    produce(&c, "t", 1, 5);
    let tp = TopicPartition::new("t", 0);
    let consumer = c
        .consumer(
            config("g")
                .enable_auto_commit(true)
                .auto_commit_interval(Duration::from_millis(50)),
        )
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    assert_eq!(consume_n(&consumer, 5).len(), 5);
    poll_until("the auto commit", &[&consumer], || {
        consumer.committed(&tp).unwrap() == Some(5)
    });
}

#[test]
fn the_offsets_topic_is_internal_replicated_and_sized_by_the_builder() {
    let c = cluster();
    topic(&c, "t", 1);
    let _consumer = c.consumer(config("g")).unwrap();
    assert_eq!(c.topics(), vec!["t".to_string()], "hidden from topics()");
    let offsets = c.topic(OFFSETS_TOPIC).unwrap();
    assert_eq!(offsets.partition_count(), 5);
    for p in offsets.partitions() {
        assert_eq!(p.replicas().len(), 3, "replication factor min(3, brokers)");
    }

    // Kafka's default of 50; replication factor 1 on a single broker.
    let single = Cluster::builder().brokers(1).build().unwrap();
    single.create_topic("t", TopicConfig::new(1, 1)).unwrap();
    let _consumer = single.consumer(config("g")).unwrap();
    let offsets = single.topic(OFFSETS_TOPIC).unwrap();
    assert_eq!(offsets.partition_count(), 50);
    assert_eq!(offsets.partition(0).unwrap().replicas().len(), 1);
    assert_eq!(single.topics(), vec!["t".to_string()]);
}

/// Commits the position of every partition it is about to lose, as the
/// `RebalanceListener` docs suggest; remembers what each commit answered.
#[derive(Clone, Debug, Default)]
struct CommitOnRevoke(Arc<Mutex<Vec<std::result::Result<(), String>>>>);

impl RebalanceListener for CommitOnRevoke {
    fn on_partitions_revoked(&self, consumer: &Consumer, partitions: &[TopicPartition]) {
        let offsets: Vec<(TopicPartition, u64)> = partitions
            .iter()
            .map(|tp| (tp.clone(), consumer.position(tp).unwrap()))
            .collect();
        let result = consumer.commit_offsets(&offsets).map_err(|e| e.to_string());
        self.0.lock().unwrap().push(result);
    }
}

#[test]
fn a_rebalance_listener_can_commit_before_its_partitions_move() {
    let c = cluster();
    topic(&c, "t", 4);
    produce(&c, "t", 4, 40);
    let listener = CommitOnRevoke::default();
    let a = c.consumer(config("g")).unwrap();
    a.subscribe_with_listener(&["t"], listener.clone()).unwrap();
    assert_eq!(consume_n(&a, 40).len(), 40);

    let b = subscriber(&c, "g", "t");
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let results = listener.0.lock().unwrap().clone();
    assert!(!results.is_empty(), "partitions were revoked");
    for r in &results {
        assert_eq!(r, &Ok(()), "a commit from the revoke callback");
    }
    // So `b` starts where `a` stopped: nothing is delivered twice.
    for tp in b.assignment() {
        assert_eq!(b.committed(&tp).unwrap(), Some(10));
        assert_eq!(b.position(&tp).unwrap(), 10);
    }
}

#[test]
fn a_member_blocked_in_a_long_poll_keeps_its_membership() {
    let c = cluster();
    topic(&c, "t", 2);
    let listener = Recorder::default();
    let a = c.consumer(config("g")).unwrap();
    a.subscribe_with_listener(&["t"], listener.clone()).unwrap();
    poll_until("an assignment", &[&a], || set(&a) == all_partitions("t", 2));
    // Longer than the session timeout, with nothing to read: poll must keep
    // heartbeating while it waits, as Kafka's background heartbeat does.
    assert!(a.poll(SESSION * 3).unwrap().is_empty());
    a.poll(TURN).unwrap();
    let events = listener.take();
    assert!(
        events.lost.is_empty(),
        "the member expired during poll: {events:?}"
    );
    assert_eq!(set(&a), all_partitions("t", 2));
}

#[test]
fn a_group_carries_on_when_its_coordinator_dies() {
    let c = cluster();
    topic(&c, "t", 4);
    let a = subscriber(&c, "g", "t");
    let b = subscriber(&c, "g", "t");
    poll_until("the split", &[&a, &b], || split_evenly(&[&a, &b], "t", 4));
    let offsets = c.topic(OFFSETS_TOPIC).unwrap();
    for (i, broker) in c.brokers().into_iter().enumerate() {
        c.kill_broker(broker).unwrap();
        // Whoever coordinates now rebuilt the offsets from the log.
        let tp = TopicPartition::new("t", 0);
        if i > 0 {
            assert_eq!(a.committed(&tp).unwrap(), Some(i as u64));
        }
        let mut done = false;
        poll_until("a commit after the coordinator moved", &[&a, &b], || {
            if !done && split_evenly(&[&a, &b], "t", 4) {
                let owner = if a.assignment().contains(&tp) { &a } else { &b };
                done = owner.commit_offsets(&[(tp.clone(), i as u64 + 1)]).is_ok();
            }
            done
        });
        c.restart_broker(broker).unwrap();
        wait_until("the restarted broker to catch up", || {
            offsets.partitions().iter().all(|p| p.isr().len() == 3)
        });
    }
    assert_eq!(a.committed(&TopicPartition::new("t", 0)).unwrap(), Some(3));
}

#[test]
fn deleting_a_subscribed_topic_rebalances_the_group() {
    let c = cluster();
    topic(&c, "t", 2);
    topic(&c, "u", 2);
    let a = c.consumer(config("g")).unwrap();
    a.subscribe(&["t", "u"]).unwrap();
    let everything: BTreeSet<TopicPartition> = all_partitions("t", 2)
        .into_iter()
        .chain(all_partitions("u", 2))
        .collect();
    poll_until("both topics assigned", &[&a], || set(&a) == everything);
    c.delete_topic("u").unwrap();
    poll_until("the deleted topic's partitions to go", &[&a], || {
        set(&a) == all_partitions("t", 2)
    });
    topic(&c, "u", 3);
    let everything: BTreeSet<TopicPartition> = all_partitions("t", 2)
        .into_iter()
        .chain(all_partitions("u", 3))
        .collect();
    poll_until("the recreated topic's partitions", &[&a], || {
        set(&a) == everything
    });
}

#[test]
fn a_subscribed_consumer_commits_only_as_a_member() {
    let c = cluster();
    topic(&c, "t", 2);
    let a = subscriber(&c, "g", "t");
    poll_until("an assignment", &[&a], || !a.assignment().is_empty());
    // `b` subscribed but has not joined yet (no poll): it is not a member, and
    // must not slip in as a standalone committer.
    let b = subscriber(&c, "g", "t");
    let t0 = TopicPartition::new("t", 0);
    match b.commit_offsets(&[(t0.clone(), 9)]) {
        Err(Error::IllegalGeneration { .. }) => {}
        other => panic!("expected IllegalGeneration, got {other:?}"),
    }
    assert_eq!(a.committed(&t0).unwrap(), None);
}

#[test]
fn dropping_a_consumer_after_shutdown_does_not_hang() {
    let c = cluster();
    topic(&c, "t", 1);
    let a = c.consumer(config("g").enable_auto_commit(true)).unwrap();
    a.subscribe(&["t"]).unwrap();
    poll_until("an assignment", &[&a], || !a.assignment().is_empty());
    c.shutdown().unwrap();
    let started = std::time::Instant::now();
    drop(a);
    // Generous: a hang would be the 15 s a group call retries for.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_offsets_topic_waits_for_enough_brokers_rather_than_being_created_under_replicated() {
    let c = cluster();
    topic(&c, "t", 1);
    c.kill_broker(BrokerId(1)).unwrap();
    let creating = {
        let c = c.clone();
        std::thread::spawn(move || c.consumer(config("g")).map(|_| ()))
    };
    c.restart_broker(BrokerId(1)).unwrap();
    creating.join().unwrap().unwrap();
    for p in c.topic(OFFSETS_TOPIC).unwrap().partitions() {
        assert_eq!(
            p.replicas().len(),
            3,
            "min(3, brokers), not min(3, live brokers)"
        );
    }
}

#[test]
fn a_zero_timeout_poll_still_fetches() {
    let c = cluster();
    topic(&c, "t", 1);
    produce(&c, "t", 1, 3);
    let consumer = c.consumer(config("g")).unwrap();
    consumer.assign(&[TopicPartition::new("t", 0)]).unwrap();
    let mut got = Vec::new();
    wait_until("records from poll(0)", || {
        got.extend(consumer.poll(Duration::ZERO).unwrap());
        got.len() == 3
    });
}
