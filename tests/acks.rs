//! Rule 3: what each `acks` mode waits for, and min.insync.replicas.

mod common;

use std::time::Duration;

use common::*;
use replog::*;

fn cluster(lag_ms: u64) -> Cluster {
    Cluster::builder()
        .brokers(3)
        .replica_lag_time_max(Duration::from_millis(lag_ms))
        .build()
        .unwrap()
}

fn producer(c: &Cluster, acks: Acks) -> Producer {
    c.producer(
        ProducerConfig::new()
            .acks(acks)
            .delivery_timeout(Duration::from_secs(30)),
    )
    .unwrap()
}

#[test]
fn acks_all_waits_for_a_stalled_follower_until_it_leaves_the_isr() {
    let c = cluster(300);
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    let stalled = p.replicas()[1];
    // The follower can no longer fetch from its leader, but still heartbeats.
    c.faults()
        .cut(NodeId::Broker(stalled), NodeId::Broker(leader));
    let d = producer(&c, Acks::All).send_to("t", 0, Record::new("x"));
    // Whenever the write completes, the stalled follower must be out of the ISR
    // already: acks=all waits for every ISR member.
    wait_until("the acks=all write to complete", || {
        if d.is_done() {
            assert!(
                !p.isr().contains(&stalled),
                "completed while {stalled} was in the ISR"
            );
            true
        } else {
            false
        }
    });
    let meta = d.wait().unwrap();
    assert_eq!(meta.offset, Some(0));
    assert_eq!(p.isr().len(), 2);
    assert!(c.metrics().isr_shrinks >= 1);
}

#[test]
fn acks_all_is_refused_when_the_isr_is_below_min_insync() {
    let c = cluster(10_000);
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let (leader, _) = kill_followers(&c, &p);
    wait_until("the ISR to shrink to the leader", || {
        p.isr() == vec![leader]
    });
    let before = p.replica(leader).unwrap().log_end_offset();
    let prod = c
        .producer(
            ProducerConfig::new()
                .acks(Acks::All)
                .delivery_timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let err = prod.send_to("t", 0, Record::new("x")).wait().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotEnoughReplicas {
                isr: 1,
                required: 2,
                ..
            }
        ),
        "{err}"
    );
    // Nothing was written.
    assert_eq!(p.replica(leader).unwrap().log_end_offset(), before);
    // acks=1 still goes through: min.insync.replicas only guards acks=all.
    let ok = producer(&c, Acks::Leader)
        .send_to("t", 0, Record::new("y"))
        .wait();
    assert_eq!(ok.unwrap().offset, Some(0));
}

#[test]
fn acks_leader_completes_on_the_leaders_append_alone() {
    let c = cluster(10_000);
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    for b in p.replicas().into_iter().filter(|b| *b != leader) {
        c.faults().cut(NodeId::Broker(b), NodeId::Broker(leader));
    }
    let meta = producer(&c, Acks::Leader)
        .send_to("t", 0, Record::new("x"))
        .wait()
        .unwrap();
    assert_eq!(meta.offset, Some(0));
    // In the leader's log, not committed: the followers could not fetch it.
    assert_eq!(p.replica(leader).unwrap().log_end_offset(), Some(1));
    assert_eq!(p.high_watermark(), 0);
    c.heal();
    wait_until("the HW to pass the record after heal", || {
        p.high_watermark() == 1
    });
}

#[test]
fn acks_none_resolves_at_hand_off_with_no_offset() {
    let c = cluster(10_000);
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let prod = producer(&c, Acks::None);
    for i in 0..10 {
        let meta = prod
            .send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
        assert_eq!(meta.offset, None);
    }
    let p = t.partition(0).unwrap();
    wait_until("the records to commit", || p.high_watermark() == 10);
}

#[test]
fn acks_all_completes_only_once_every_isr_member_has_the_record() {
    let c = cluster(10_000);
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let prod = producer(&c, Acks::All);
    for i in 0..50u64 {
        let meta = prod
            .send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
        let offset = meta.offset.unwrap();
        for b in p.isr() {
            let leo = p.replica(b).unwrap().log_end_offset().unwrap();
            assert!(
                leo > offset,
                "replica {b} has LEO {leo}, record at {offset} was acked"
            );
        }
    }
}

#[test]
fn record_too_large_fails_alone_and_its_neighbours_are_written() {
    let c = cluster(10_000);
    c.create_topic("t", TopicConfig::new(1, 3).max_message_bytes(1024))
        .unwrap();
    let prod = producer(&c, Acks::All);
    let a = prod.send_to("t", 0, Record::new(vec![1u8; 100]));
    let big = prod.send_to("t", 0, Record::new(vec![2u8; 4096]));
    let b = prod.send_to("t", 0, Record::new(vec![3u8; 100]));
    assert!(matches!(
        big.wait().unwrap_err(),
        Error::RecordTooLarge { max: 1024, .. }
    ));
    assert_eq!(a.wait().unwrap().offset, Some(0));
    assert_eq!(b.wait().unwrap().offset, Some(1));
}

#[test]
fn unknown_topic_and_partition_are_typed_errors() {
    let c = cluster(10_000);
    c.create_topic("t", TopicConfig::new(2, 1)).unwrap();
    let prod = producer(&c, Acks::All);
    assert!(matches!(
        prod.send("nope", Record::new("x")).wait().unwrap_err(),
        Error::UnknownTopic { .. }
    ));
    assert!(matches!(
        prod.send_to("t", 2, Record::new("x")).wait().unwrap_err(),
        Error::UnknownPartition { partitions: 2, .. }
    ));
}

#[test]
fn record_too_large_fails_at_once_while_the_buffer_is_full() {
    let c = cluster(2_000);
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).max_message_bytes(1024))
        .unwrap();
    let p = t.partition(0).unwrap();
    // A stalled follower holds every acks=all write for the 2 s lag time.
    c.faults().cut(
        NodeId::Broker(p.replicas()[1]),
        NodeId::Broker(p.leader().unwrap()),
    );
    let prod = c
        .producer(
            ProducerConfig::new()
                .acks(Acks::All)
                .buffer_memory(1000)
                .delivery_timeout(Duration::from_secs(30)),
        )
        .unwrap();
    // Fills buffer.memory: the next record that fits would wait for room.
    let held = prod.send_to("t", 0, Record::new(vec![1u8; 900]));
    let started = std::time::Instant::now();
    let big = prod.send_to("t", 0, Record::new(vec![2u8; 4096]));
    assert!(matches!(
        big.wait().unwrap_err(),
        Error::RecordTooLarge { max: 1024, .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after waiting for buffer memory ({:?})",
        started.elapsed()
    );
    assert!(
        !held.is_done(),
        "the stalled follower still holds the first record"
    );
}

#[test]
fn a_send_sees_a_topic_deleted_and_created_again() {
    let c = cluster(10_000);
    c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let prod = producer(&c, Acks::All);
    assert_eq!(
        prod.send("t", Record::new("a")).wait().unwrap().offset,
        Some(0)
    );
    c.delete_topic("t").unwrap();
    assert!(matches!(
        prod.send("t", Record::new("b")).wait().unwrap_err(),
        Error::UnknownTopic { .. }
    ));
    c.create_topic("t", TopicConfig::new(3, 3)).unwrap();
    // The new topic's third partition, unknown to the deleted one.
    let meta = prod.send_to("t", 2, Record::new("c")).wait().unwrap();
    assert_eq!((meta.partition, meta.offset), (2, Some(0)));
}

#[test]
fn a_send_future_completes_under_a_hand_written_executor() {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake};

    /// Wakes the thread that polls.
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        let waker = Arc::new(ThreadWaker(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        loop {
            match f.as_mut().poll(&mut cx) {
                Poll::Ready(v) => return v,
                Poll::Pending => std::thread::park(),
            }
        }
    }

    let c = cluster(10_000);
    c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let prod = producer(&c, Acks::All);
    let meta = block_on(prod.send("t", Record::new("async"))).unwrap();
    assert_eq!(meta.offset, Some(0));
    let metas = block_on(async {
        let a = prod.send("t", Record::new("a")).await?;
        let b = prod.send("t", Record::new("b")).await?;
        Ok::<_, Error>((a, b))
    })
    .unwrap();
    assert_eq!((metas.0.offset, metas.1.offset), (Some(1), Some(2)));
}
