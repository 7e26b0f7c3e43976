//! Topic creation, validation, deletion and listing.

mod common;

use std::time::Duration;

use replog::*;

fn cluster() -> Cluster {
    Cluster::builder().brokers(3).build().unwrap()
}

#[test]
fn bad_topic_names_are_refused_with_the_rule_they_break() {
    let c = cluster();
    let long = "x".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "has space",
        "slash/y",
        "ünïcode",
        long.as_str(),
    ] {
        let err = c.create_topic(name, TopicConfig::new(1, 1)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTopicName { .. }),
            "{name:?}: {err}"
        );
    }
    // The longest legal name and every legal character class.
    c.create_topic(&"x".repeat(249), TopicConfig::new(1, 1))
        .unwrap();
    c.create_topic("a.B-c_9", TopicConfig::new(1, 1)).unwrap();
}

#[test]
fn bad_topic_configs_get_their_typed_errors() {
    let c = cluster();
    type Check = fn(&Error) -> bool;
    let cases: Vec<(TopicConfig, Check)> = vec![
        (TopicConfig::new(0, 1), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "num.partitions",
                    ..
                }
            )
        }),
        (TopicConfig::new(1, 0), |e| {
            matches!(e, Error::InvalidReplicationFactor { .. })
        }),
        (TopicConfig::new(1, 4), |e| {
            matches!(
                e,
                Error::InvalidReplicationFactor {
                    replication_factor: 4,
                    ..
                }
            )
        }),
        (TopicConfig::new(1, 3).min_insync_replicas(0), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "min.insync.replicas",
                    ..
                }
            )
        }),
        (TopicConfig::new(1, 3).min_insync_replicas(4), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "min.insync.replicas",
                    ..
                }
            )
        }),
        (TopicConfig::new(1, 1).max_message_bytes(1), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "max.message.bytes",
                    ..
                }
            )
        }),
        (TopicConfig::new(1, 1).segment_bytes(10), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "segment.bytes",
                    ..
                }
            )
        }),
    ];
    for (config, check) in cases {
        let err = c.create_topic("t", config.clone()).unwrap_err();
        assert!(check(&err), "{config:?}: {err}");
        // Every message says what to do.
        assert!(err.to_string().len() > 20, "{err}");
    }
    assert!(c.topics().is_empty(), "a refused topic must not exist");
}

#[test]
fn replication_factor_is_bounded_by_live_brokers() {
    let c = cluster();
    c.kill_broker(BrokerId(2)).unwrap();
    common::wait_until("the controller to see broker 2 dead", || {
        c.metrics().live_brokers == 2
    });
    let err = c.create_topic("t", TopicConfig::new(1, 3)).unwrap_err();
    assert!(
        matches!(err, Error::InvalidReplicationFactor { .. }),
        "{err}"
    );
    c.create_topic("t", TopicConfig::new(1, 2)).unwrap();
}

#[test]
fn existing_topic_is_refused_and_unknown_topic_is_a_typed_error() {
    let c = cluster();
    c.create_topic("t", TopicConfig::new(1, 1)).unwrap();
    assert!(matches!(
        c.create_topic("t", TopicConfig::new(1, 1)).unwrap_err(),
        Error::TopicExists { .. }
    ));
    assert!(matches!(
        c.topic("nope").unwrap_err(),
        Error::UnknownTopic { .. }
    ));
    assert!(matches!(
        c.delete_topic("nope").unwrap_err(),
        Error::UnknownTopic { .. }
    ));
    assert!(matches!(
        c.topic("t").unwrap().partition(1).unwrap_err(),
        Error::UnknownPartition { partitions: 1, .. }
    ));
}

#[test]
fn topics_are_listed_sorted_and_deleted_topics_vanish() {
    let c = cluster();
    for name in ["b", "a", "c"] {
        c.create_topic(name, TopicConfig::new(1, 3)).unwrap();
    }
    assert_eq!(c.topics(), vec!["a", "b", "c"]);
    c.delete_topic("b").unwrap();
    assert_eq!(c.topics(), vec!["a", "c"]);
    // The name can be used again, with a fresh log.
    c.create_topic("b", TopicConfig::new(2, 3)).unwrap();
    let p = c.producer(ProducerConfig::new()).unwrap();
    let meta = p.send_to("b", 1, Record::new("x")).wait().unwrap();
    assert_eq!(meta.offset, Some(0));
}

#[test]
fn a_new_partition_is_led_by_its_first_replica_with_a_full_isr() {
    let c = cluster();
    let t = c.create_topic("t", TopicConfig::new(6, 3)).unwrap();
    for p in t.partitions() {
        let replicas = p.replicas();
        assert_eq!(p.leader(), Some(replicas[0]));
        assert_eq!(p.isr().len(), 3);
        assert_eq!(p.leader_epoch(), 0);
        assert!(p.replica(replicas[0]).unwrap().is_leader());
    }
}

/// Three brokers keeping their logs under `dir`.
fn disk_cluster(dir: &std::path::Path) -> Cluster {
    Cluster::builder().brokers(3).data_dir(dir).build().unwrap()
}

/// How many entries of the broker directories under `data_dir` start with `prefix`.
fn broker_dir_entries(data_dir: &std::path::Path, prefix: &str) -> usize {
    let mut n = 0;
    for broker in std::fs::read_dir(data_dir).unwrap().flatten() {
        if !broker.file_name().to_string_lossy().starts_with("broker-") {
            continue;
        }
        n += std::fs::read_dir(broker.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count();
    }
    n
}

#[test]
fn a_deleted_topic_leaves_no_files_on_any_broker() {
    let dir = tempfile::tempdir().unwrap();
    let c = disk_cluster(dir.path());
    c.create_topic("t", TopicConfig::new(2, 3)).unwrap();
    c.create_topic("kept", TopicConfig::new(1, 3)).unwrap();
    let p = c.producer(ProducerConfig::new()).unwrap();
    let sent: Vec<Delivery> = (0..100)
        .map(|i| p.send("t", Record::new(format!("{i}"))))
        .collect();
    for d in sent {
        d.wait().unwrap();
    }
    assert_eq!(
        broker_dir_entries(dir.path(), "t-"),
        6,
        "two partitions on three brokers"
    );
    c.delete_topic("t").unwrap();
    common::wait_until("t's directories to be removed", || {
        broker_dir_entries(dir.path(), "t-") == 0
    });
    assert_eq!(
        broker_dir_entries(dir.path(), "kept-"),
        3,
        "another topic's directories stay"
    );
    // The name starts again from an empty log.
    c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let meta = p.send_to("t", 0, Record::new("again")).wait().unwrap();
    assert_eq!(meta.offset, Some(0));
}

#[test]
fn a_restarted_broker_removes_what_an_interrupted_deletion_left() {
    let dir = tempfile::tempdir().unwrap();
    let c = disk_cluster(dir.path());
    c.kill_broker(BrokerId(0)).unwrap();
    // As a kill between the rename and the removal leaves it.
    let left = dir.path().join("broker-0").join("gone-0.1a2b0001-delete");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("00000000000000000000.log"), [0u8; 4096]).unwrap();
    c.restart_broker(BrokerId(0)).unwrap();
    common::wait_until("the leftover to be removed", || !left.exists());
    assert!(c.topics().is_empty(), "nothing was loaded from it");
}

/// Three brokers whose messages go through the returned fault transport (seeded).
fn three_brokers_on_a_fault_transport(seed: u64) -> (Cluster, FaultTransport) {
    let faults = FaultTransport::default().seed(seed);
    let c = Cluster::builder()
        .brokers(3)
        .transport(faults.clone())
        .build()
        .unwrap();
    (c, faults)
}

/// The first `n` values in the log of `p`'s replica on broker `b`, as text.
fn values_on(p: &Partition, b: BrokerId, n: usize) -> Vec<String> {
    p.replica(b)
        .unwrap()
        .read(0, n)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect()
}

/// Rule 1 across deletion: a StopReplica of a deleted topic that arrives late,
/// after the topic was created again under its name, must not delete the new
/// topic's replicas (with its acknowledged records).
#[test]
fn rule1_a_late_stop_replica_of_a_deleted_topic_spares_the_topic_created_again() {
    let (c, faults) = three_brokers_on_a_fault_transport(1);
    let config = TopicConfig::new(1, 3).min_insync_replicas(2);
    c.create_topic("t", config.clone()).unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    prod.send("t", Record::new("deleted")).wait().unwrap();
    // Every message sent now, the StopReplicas among them, arrives 300 ms late.
    let late = Duration::from_millis(300);
    faults.delay(late, late).unwrap();
    let deleted = std::time::Instant::now();
    c.delete_topic("t").unwrap();
    faults.clear_faults();
    c.create_topic("t", config).unwrap();
    let values: Vec<String> = (0..20).map(|i| format!("new-{i}")).collect();
    for v in &values {
        prod.send("t", Record::new(v.clone())).wait().unwrap();
    }
    assert!(
        deleted.elapsed() < late,
        "written before the StopReplicas arrive"
    );
    assert!(faults.stats().delayed > 0);
    // The late copies are the only ones held in the transport: once it has
    // handed over as many as it was given, they have reached the brokers' inboxes.
    common::wait_until("the late messages to arrive", || {
        let s = faults.stats();
        s.sent + s.duplicated == s.delivered + s.dropped
    });
    // A write to a new topic on every broker is handled after them (an inbox is
    // served in order), so they have been handled too.
    c.create_topic("probe", TopicConfig::new(1, 3).min_insync_replicas(3))
        .unwrap();
    prod.send("probe", Record::new("p")).wait().unwrap();
    let p = c.topic("t").unwrap().partition(0).unwrap();
    common::wait_until("a full ISR", || p.isr().len() == 3);
    for b in p.replicas() {
        assert_eq!(values_on(&p, b, 100), values, "replica on {b:?}");
    }
    let consumer = common::consumer_from_start(&c, "t");
    let got = common::consume_n(&consumer, values.len());
    assert_eq!(got.len(), values.len());
}

/// Rule 1 across deletion, with the network dropping, delaying, duplicating and
/// reordering messages: each creation of a topic holds exactly the records
/// acknowledged to it, on every in-sync replica, however the messages about the
/// creations before it were lost or arrive late.
#[test]
fn rule1_a_topic_deleted_and_created_again_under_faults_holds_only_its_own_records() {
    let (c, faults) = three_brokers_on_a_fault_transport(11);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    // From the deletion of one creation to the writes to the next.
    let faulty = || {
        faults.drop_probability(0.05).unwrap();
        faults.duplicate_probability(0.1).unwrap();
        faults.reorder_probability(0.2).unwrap();
        faults
            .delay(Duration::ZERO, Duration::from_millis(200))
            .unwrap();
    };
    faulty();
    for round in 0..8 {
        c.create_topic("t", TopicConfig::new(2, 3).min_insync_replicas(2))
            .unwrap();
        let values: Vec<String> = (0..30).map(|i| format!("round-{round}-{i}")).collect();
        let ds: Vec<_> = values
            .iter()
            .map(|v| prod.send("t", Record::new(v.clone()).key(v.clone())))
            .collect();
        for d in ds {
            d.wait().unwrap();
        }
        // Checked on a quiet network: every replica back in sync.
        faults.clear_faults();
        let t = c.topic("t").unwrap();
        let mut seen = Vec::new();
        for p in t.partitions() {
            common::wait_until("a full ISR", || p.isr().len() == 3);
            let hw = p.high_watermark();
            let mut logs = Vec::new();
            for b in p.isr() {
                logs.push(values_on(&p, b, hw as usize));
            }
            assert!(
                logs.windows(2).all(|w| w[0] == w[1]),
                "round {round}, partition {}: replicas differ: {logs:?}",
                p.id()
            );
            seen.extend(logs.swap_remove(0));
        }
        seen.sort();
        let mut want = values.clone();
        want.sort();
        assert_eq!(
            seen, want,
            "round {round}: the records of this creation only"
        );
        faulty();
        c.delete_topic("t").unwrap();
    }
}

/// Three brokers keeping their logs under `dir`, their messages going through the
/// returned fault transport.
fn disk_cluster_on_a_fault_transport(dir: &std::path::Path) -> (Cluster, FaultTransport) {
    let faults = FaultTransport::default().seed(7);
    let c = Cluster::builder()
        .brokers(3)
        .data_dir(dir)
        .transport(faults.clone())
        .build()
        .unwrap();
    (c, faults)
}

/// Topic `t` (2 partitions) and `kept` (1), both on all three brokers, with a few
/// acknowledged records each.
fn two_topics_written(c: &Cluster, dir: &std::path::Path) {
    c.create_topic("t", TopicConfig::new(2, 3)).unwrap();
    c.create_topic("kept", TopicConfig::new(1, 3)).unwrap();
    let p = c.producer(ProducerConfig::new()).unwrap();
    for topic in ["t", "kept"] {
        for i in 0..10 {
            p.send(topic, Record::new(format!("{i}"))).wait().unwrap();
        }
    }
    assert_eq!(broker_dir_entries(dir, "t-"), 6);
}

/// A deleted topic's replicas go even when every StopReplica is lost: the
/// brokers' heartbeats still report them, and the controller answers with the
/// complete list of what each should hold.
#[test]
fn a_deleted_topic_whose_stop_replicas_were_lost_is_still_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (c, faults) = disk_cluster_on_a_fault_transport(dir.path());
    two_topics_written(&c, dir.path());
    faults.drop_kind("StopReplica");
    c.delete_topic("t").unwrap();
    faults.allow_kind("StopReplica");
    assert!(
        faults.stats().dropped >= 3,
        "one StopReplica per broker lost"
    );
    common::wait_until("t's replicas to be removed", || {
        broker_dir_entries(dir.path(), "t-") == 0
    });
    assert_eq!(broker_dir_entries(dir.path(), "kept-"), 3, "kept stays");
    let kept = c.topic("kept").unwrap().partition(0).unwrap();
    for b in kept.replicas() {
        assert_eq!(values_on(&kept, b, 100).len(), 10, "kept on {b:?}");
    }
}

/// A broker down while a topic is deleted gets no StopReplica; when it registers
/// again, the complete list of what it should hold tells it to remove the topic.
#[test]
fn a_broker_down_while_a_topic_was_deleted_removes_it_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _faults) = disk_cluster_on_a_fault_transport(dir.path());
    two_topics_written(&c, dir.path());
    c.kill_broker(BrokerId(0)).unwrap();
    c.delete_topic("t").unwrap();
    common::wait_until("the live brokers to remove t", || {
        broker_dir_entries(dir.path(), "t-") == 2
    });
    c.restart_broker(BrokerId(0)).unwrap();
    common::wait_until("broker 0 to remove t", || {
        broker_dir_entries(dir.path(), "t-") == 0
    });
    let kept = c.topic("kept").unwrap().partition(0).unwrap();
    common::wait_until("broker 0 back in kept's ISR", || kept.isr().len() == 3);
    assert_eq!(values_on(&kept, BrokerId(0), 100).len(), 10);
}
