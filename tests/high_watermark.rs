//! Rule 2: HW = min LEO over the ISR, never decreasing; consumers see only offsets
//! below it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use replog::*;

#[test]
fn consumers_never_see_an_offset_at_or_above_the_hw() {
    let c = Cluster::builder().brokers(3).build().unwrap();
    let t = c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    let p = t.partition(0).unwrap();
    let leader = p.leader().unwrap();
    // Followers cannot fetch: acks=1 records sit in the leader's log, uncommitted.
    for b in p.replicas().into_iter().filter(|b| *b != leader) {
        c.faults().cut(NodeId::Broker(b), NodeId::Broker(leader));
    }
    let prod = c
        .producer(ProducerConfig::new().acks(Acks::Leader))
        .unwrap();
    for i in 0..10 {
        prod.send_to("t", 0, Record::new(format!("{i}")))
            .wait()
            .unwrap();
    }
    assert_eq!(p.replica(leader).unwrap().log_end_offset(), Some(10));
    assert_eq!(p.high_watermark(), 0);
    let consumer = consumer_from_start(&c, "t");
    assert!(consumer
        .poll(Duration::from_millis(300))
        .unwrap()
        .is_empty());
    // The leader's own log has them (Replica::read ignores the HW).
    assert_eq!(p.replica(leader).unwrap().read(0, 100).unwrap().len(), 10);
    c.heal();
    let got = consume_n(&consumer, 10);
    assert_eq!(got.len(), 10);
    let hw = p.high_watermark();
    assert!(got.iter().all(|r| r.offset < hw));
}

#[test]
fn hw_is_the_min_leo_over_the_isr_and_never_decreases() {
    let c = Cluster::builder().brokers(3).build().unwrap();
    let t = c
        .create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let p = t.partition(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 3000 {
                drop(prod.send_to("t", 0, Record::new(vec![0u8; 100])));
                n += 1;
            }
            prod.flush().unwrap();
        })
    };
    let mut last = 0;
    let mut samples = 0;
    while !writer.is_finished() {
        let hw = p.high_watermark();
        assert!(hw >= last, "HW went back from {last} to {hw}");
        // Sampled after the HW: every ISR member's LEO is at least the HW.
        for b in p.isr() {
            if let Some(leo) = p.replica(b).unwrap().log_end_offset() {
                assert!(leo >= hw, "replica {b} LEO {leo} below HW {hw}");
            }
        }
        last = hw;
        samples += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(samples > 0);
    wait_until("the HW to reach the log end", || p.high_watermark() == 3000);
}
