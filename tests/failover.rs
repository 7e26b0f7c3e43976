//! Rules 5 and 7: elections, fencing, restarts. Every acknowledged acks=all write
//! survives a single failure.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use replog::*;

fn cluster3() -> Cluster {
    Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_millis(500))
        .session_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

type Acked = Arc<Mutex<Vec<(u32, u64, Bytes)>>>;

/// A background acks=all writer; returns what was acknowledged.
fn writer(
    c: &Cluster,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Acked) {
    let acked: Acked = Arc::default();
    let prod = c
        .producer(ProducerConfig::new().delivery_timeout(Duration::from_secs(30)))
        .unwrap();
    let out = acked.clone();
    let h = std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<_> = (0..50)
                .map(|_| {
                    i += 1;
                    let v = Bytes::from(format!("v{i}"));
                    (
                        v.clone(),
                        prod.send(topic, Record::new(v).key(format!("k{}", i % 11))),
                    )
                })
                .collect();
            for (v, d) in batch {
                if let Ok(m) = d.wait() {
                    out.lock()
                        .unwrap()
                        .push((m.partition, m.offset.unwrap(), v));
                }
            }
        }
    });
    (h, acked)
}

#[test]
fn leader_killed_under_acks_all_load_loses_no_acknowledged_record() {
    let c = cluster3();
    let t = c
        .create_topic("t", TopicConfig::new(3, 3).min_insync_replicas(2))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (h, acked) = writer(&c, "t", stop.clone());
    wait_until("some records to be acknowledged", || {
        acked.lock().unwrap().len() > 500
    });
    let victim = t.partition(0).unwrap().leader().unwrap();
    c.kill_broker(victim).unwrap();
    let before = acked.lock().unwrap().len();
    wait_until("writes to go on after the failover", || {
        acked.lock().unwrap().len() > before + 500
    });
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_ne!(t.partition(0).unwrap().leader(), Some(victim));
    let acked = acked.lock().unwrap().clone();
    all_acked_present_once(&c, "t", &acked);
    replicas_agree_below_hw(&c, "t");
}

#[test]
fn min_insync_refuses_acks_all_while_the_isr_is_too_small_and_accepts_after_restarts() {
    let c = cluster3();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let (_, followers) = kill_followers(&c, &p);
    let prod = c
        .producer(ProducerConfig::new().delivery_timeout(Duration::from_millis(300)))
        .unwrap();
    let err = prod.send_to("t", 0, Record::new("x")).wait().unwrap_err();
    assert!(matches!(err, Error::NotEnoughReplicas { .. }), "{err}");
    c.restart_broker(followers[0]).unwrap();
    wait_until("the restarted follower to rejoin the ISR", || {
        p.isr().len() == 2
    });
    let meta = prod.send_to("t", 0, Record::new("y")).wait().unwrap();
    assert_eq!(meta.offset, Some(0));
}

#[test]
fn clean_election_waits_for_the_last_in_sync_replica() {
    // Segment storage, so the last in-sync replica keeps its data across a restart.
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::builder()
        .brokers(3)
        .data_dir(dir.path())
        .replica_lag_time_max(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    let followers: Vec<BrokerId> = p.replicas().into_iter().filter(|b| *b != leader).collect();
    // Followers fall out of sync; the leader alone holds the newest records.
    for f in &followers {
        c.faults().cut(NodeId::Broker(*f), NodeId::Broker(leader));
    }
    let prod = c.producer(ProducerConfig::new()).unwrap();
    // A follower whose LEO equals the leader's never leaves the ISR (KAFKA-7152):
    // the first write makes them lag, and completes once they are out.
    for i in 0..10 {
        prod.send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
    }
    assert_eq!(p.isr(), vec![leader]);
    c.kill_broker(leader).unwrap();
    c.heal();
    wait_until("the partition to go offline", || p.leader().is_none());
    assert_eq!(c.metrics().offline_partitions, 1);
    // Out-of-sync replicas are alive but not elected.
    std::thread::sleep(Duration::from_millis(300)); // nothing to wait for: checks that nothing happens
    assert_eq!(p.leader(), None);
    c.restart_broker(leader).unwrap();
    wait_until("the last in-sync replica to lead again", || {
        p.leader() == Some(leader)
    });
    assert_eq!(c.metrics().unclean_leader_elections, 0);
    let consumer = consumer_from_start(&c, "t");
    assert_eq!(consume_n(&consumer, 10).len(), 10);
}

#[test]
fn unclean_election_elects_an_out_of_sync_replica_and_the_old_leader_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::builder()
        .brokers(3)
        .data_dir(dir.path())
        .replica_lag_time_max(Duration::from_millis(200))
        .auto_leader_rebalance(false)
        .build()
        .unwrap();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).unclean_leader_election(true))
        .unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    for i in 0..5 {
        prod.send_to("t", 0, Record::new(format!("a{i}")))
            .wait()
            .unwrap();
    }
    let followers: Vec<BrokerId> = p.replicas().into_iter().filter(|b| *b != leader).collect();
    for f in &followers {
        c.faults().cut(NodeId::Broker(*f), NodeId::Broker(leader));
    }
    // acks=all completes once the cut followers have left the ISR.
    for i in 0..5 {
        prod.send_to("t", 0, Record::new(format!("b{i}")))
            .wait()
            .unwrap();
    }
    assert_eq!(p.isr(), vec![leader]);
    c.kill_broker(leader).unwrap();
    c.heal();
    wait_until("an out-of-sync replica to be elected", || {
        p.leader().is_some_and(|l| l != leader)
    });
    assert_eq!(c.metrics().unclean_leader_elections, 1);
    let new_leader = p.leader().unwrap();
    // The new leader writes over the lost offsets.
    let meta = prod.send_to("t", 0, Record::new("c0")).wait().unwrap();
    assert_eq!(meta.offset, Some(5));
    c.restart_broker(leader).unwrap();
    // The old leader truncates its divergent tail (b0..b4) and follows.
    wait_until("the old leader to converge", || {
        p.replica(leader)
            .unwrap()
            .read(0, 100)
            .is_ok_and(|r| r.len() == 6 && r[5].value == "c0")
    });
    assert_eq!(p.leader(), Some(new_leader));
    replicas_agree_below_hw(&c, "t");
}

#[test]
fn an_isolated_leader_cannot_complete_acks_all_and_is_replaced() {
    let c = cluster3();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let zombie = p.leader().unwrap();
    let epoch = p.leader_epoch();
    let prod = c
        .producer(ProducerConfig::new().delivery_timeout(Duration::from_secs(20)))
        .unwrap();
    prod.send_to("t", 0, Record::new("before")).wait().unwrap();
    c.isolate_broker(zombie).unwrap();
    // Sent while the zombie still leads in the metadata: it cannot commit it, so
    // the producer retries at the new leader after the session timeout.
    let d = prod.send_to("t", 0, Record::new("during"));
    wait_until("a new leader after the session timeout", || {
        p.leader().is_some_and(|l| l != zombie)
    });
    assert!(p.leader_epoch() > epoch);
    let meta = d.wait().unwrap();
    assert_eq!(meta.offset, Some(1));
    c.heal();
    wait_until("the old leader to rejoin the ISR", || {
        p.isr().contains(&zombie)
    });
    replicas_agree_below_hw(&c, "t");
    let consumer = consumer_from_start(&c, "t");
    let got = consume_n(&consumer, 2);
    let values: Vec<&[u8]> = got.iter().map(|r| r.value.as_ref()).collect();
    assert_eq!(values, vec![b"before".as_ref(), b"during".as_ref()]);
}

#[test]
fn a_zombie_leaders_acks_1_writes_are_truncated_after_heal() {
    let c = cluster3();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let zombie = p.leader().unwrap();
    let acks1 = c
        .producer(ProducerConfig::new().acks(Acks::Leader))
        .unwrap();
    acks1
        .send_to("t", 0, Record::new("committed"))
        .wait()
        .unwrap();
    wait_until("the first record to commit", || p.high_watermark() == 1);
    c.isolate_broker(zombie).unwrap();
    // Clients still reach the zombie: acks=1 accepts, but nobody else has it.
    let lost = acks1.send_to("t", 0, Record::new("lost")).wait().unwrap();
    assert_eq!(lost.offset, Some(1));
    wait_until("a new leader", || p.leader().is_some_and(|l| l != zombie));
    acks1.send_to("t", 0, Record::new("new")).wait().unwrap();
    c.heal();
    wait_until("the zombie to truncate and follow", || {
        p.replica(zombie)
            .unwrap()
            .read(0, 10)
            .is_ok_and(|r| r.len() == 2 && r[1].value == "new")
    });
    replicas_agree_below_hw(&c, "t");
}

#[test]
fn a_follower_that_lost_everything_catches_up_byte_for_byte() {
    let c = cluster3();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    for i in 0..1000 {
        drop(prod.send_to("t", 0, Record::new(format!("{i}")).header("h", "v")));
    }
    prod.flush().unwrap();
    let f = p.replicas()[2];
    c.kill_broker(f).unwrap(); // memory storage: its log is gone
    c.restart_broker(f).unwrap();
    wait_until("the follower to catch up and rejoin", || {
        p.isr().contains(&f)
    });
    let leader = p.leader().unwrap();
    let a = p.replica(leader).unwrap().read(0, 2000).unwrap();
    let b = p.replica(f).unwrap().read(0, 2000).unwrap();
    assert_eq!(a.len(), 1000);
    assert_eq!(a, b);
}

#[test]
fn a_replica_restarted_without_its_data_is_not_elected_over_committed_data() {
    // KIP-966: ISR shrinks to one replica, which then restarts empty.
    let c = Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    for i in 0..5 {
        prod.send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
    }
    for f in p.replicas().into_iter().filter(|b| *b != leader) {
        c.faults().cut(NodeId::Broker(f), NodeId::Broker(leader));
    }
    // Committed with the leader alone in the ISR, once the others fell out.
    prod.send_to("t", 0, Record::new("last")).wait().unwrap();
    assert_eq!(p.isr(), vec![leader]);
    c.kill_broker(leader).unwrap(); // memory storage: its data is gone
    c.heal();
    c.restart_broker(leader).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // nothing to wait for: checks that nothing happens
    assert_eq!(
        p.leader(),
        None,
        "an empty replica was elected over committed data"
    );
}

#[test]
fn preferred_leaders_come_back_on_demand_and_automatically() {
    let c = Cluster::builder()
        .brokers(3)
        .leader_imbalance_check_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let t = c.create_topic("t", TopicConfig::new(3, 3)).unwrap();
    let preferred = |p: &Partition| p.replicas()[0];
    let p0 = t.partition(0).unwrap();
    let b = preferred(&p0);
    c.kill_broker(b).unwrap();
    wait_until("a new leader", || p0.leader().is_some_and(|l| l != b));
    c.restart_broker(b).unwrap();
    wait_until("the preferred replica back in the ISR", || {
        p0.isr().contains(&b)
    });
    // Automatic rebalance (auto.leader.rebalance.enable) moves it back.
    wait_until("automatic preferred leader election", || {
        p0.leader() == Some(b)
    });
    // And on demand.
    let c2 = Cluster::builder()
        .brokers(3)
        .auto_leader_rebalance(false)
        .build()
        .unwrap();
    let t2 = c2.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let q = t2.partition(0).unwrap();
    let b2 = q.replicas()[0];
    c2.kill_broker(b2).unwrap();
    wait_until("a new leader", || q.leader().is_some_and(|l| l != b2));
    c2.restart_broker(b2).unwrap();
    wait_until("back in the ISR", || q.isr().contains(&b2));
    assert_ne!(q.leader(), Some(b2));
    c2.elect_preferred_leaders().unwrap();
    wait_until("preferred leader elected on demand", || {
        q.leader() == Some(b2)
    });
}

#[test]
fn leader_epoch_rises_on_every_leader_change() {
    let c = cluster3();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let mut last = p.leader_epoch();
    for _ in 0..3 {
        let l = p.leader().unwrap();
        c.kill_broker(l).unwrap();
        wait_until("a new leader", || p.leader().is_some_and(|x| x != l));
        assert!(p.leader_epoch() > last);
        last = p.leader_epoch();
        c.restart_broker(l).unwrap();
        wait_until("the restarted broker back in the ISR", || {
            p.isr().contains(&l)
        });
    }
}

#[test]
fn every_batch_carries_the_leader_epoch_it_was_appended_in() {
    // Rule 1: records keep the epoch of the leader that appended them, on every
    // replica, across leader changes.
    let c = cluster3();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let mut epochs = Vec::new();
    for round in 0..3 {
        let epoch = p.leader_epoch();
        for i in 0..5 {
            let m = prod
                .send_to("t", 0, Record::new(format!("{round}-{i}")))
                .wait()
                .unwrap();
            epochs.push((m.offset.unwrap(), epoch));
        }
        let l = p.leader().unwrap();
        c.kill_broker(l).unwrap();
        wait_until("a new leader", || p.leader().is_some_and(|x| x != l));
        c.restart_broker(l).unwrap();
        wait_until("the restarted broker back in the ISR", || {
            p.isr().contains(&l)
        });
    }
    for b in p.replicas() {
        let records = p.replica(b).unwrap().read(0, 100).unwrap();
        assert_eq!(records.len(), epochs.len());
        for (r, (offset, epoch)) in records.iter().zip(&epochs) {
            assert_eq!((r.offset, r.leader_epoch), (*offset, *epoch), "replica {b}");
        }
    }
}
