//! `Producer::send_all`: many records in one call behave as one `send` each, in
//! order; each record succeeds or fails on its own.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use replog::*;

fn cluster(partitions: u32) -> Cluster {
    let c = Cluster::builder().brokers(3).build().unwrap();
    c.create_topic("t", TopicConfig::new(partitions, 3).min_insync_replicas(2))
        .unwrap();
    c
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn send_all_writes_each_record_once_in_call_order() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    // More than one lock hold and more than one batch.
    let before = now_ms();
    let ds = prod.send_all("t", (0..1000).map(|i| Record::new(format!("v{i}"))));
    assert_eq!(ds.len(), 1000);
    for (i, d) in ds.into_iter().enumerate() {
        let meta = d.wait().unwrap();
        assert_eq!((meta.topic.as_str(), meta.partition), ("t", 0));
        assert_eq!(meta.offset, Some(i as u64));
    }
    let after = now_ms();
    let got = consume_n(&consumer_from_start(&c, "t"), 1000);
    assert_eq!(got.len(), 1000);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            (r.offset, &r.value[..]),
            (i as u64, format!("v{i}").as_bytes())
        );
        // Stamped when the call ran, as `send` stamps a record when it is called.
        assert!(
            (before..=after).contains(&r.timestamp),
            "timestamp {} outside {before}..={after}",
            r.timestamp
        );
    }
}

#[test]
fn send_all_keeps_a_records_own_timestamp() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let ds = prod.send_all(
        "t",
        [
            Record::new("a").timestamp(42),
            Record::new("b").timestamp(7),
        ],
    );
    for d in ds {
        d.wait().unwrap();
    }
    let got = consume_n(&consumer_from_start(&c, "t"), 2);
    let stamps: Vec<u64> = got.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, [42, 7]);
}

#[test]
fn send_all_puts_keyed_records_where_send_puts_them() {
    let c = cluster(6);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let one_by_one: Vec<u32> = keys
        .iter()
        .map(|k| prod.send("t", Record::new("x").key(k.clone())))
        .map(|d| d.wait().unwrap().partition)
        .collect();
    let all_at_once: Vec<u32> = prod
        .send_all("t", keys.iter().map(|k| Record::new("y").key(k.clone())))
        .into_iter()
        .map(|d| d.wait().unwrap().partition)
        .collect();
    assert_eq!(all_at_once, one_by_one);
    assert!(
        one_by_one
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1,
        "200 keys all on one partition: the test proves nothing"
    );
}

#[test]
fn send_all_keeps_each_partitions_order_for_unkeyed_records() {
    let c = cluster(3);
    let prod = c.producer(ProducerConfig::new().batch_size(1024)).unwrap();
    let ds = prod.send_all(
        "t",
        (0..3000u32).map(|i| Record::new(i.to_be_bytes().to_vec())),
    );
    let mut last = BTreeMap::<u32, u64>::new();
    for d in ds {
        let meta = d.wait().unwrap();
        let offset = meta.offset.unwrap();
        if let Some(prev) = last.insert(meta.partition, offset) {
            assert!(
                offset > prev,
                "partition {}: {offset} after {prev}",
                meta.partition
            );
        }
    }
    // Sticky: whole batches went to each of the three partitions.
    assert_eq!(last.len(), 3, "{last:?}");
}

#[test]
fn send_all_fails_a_record_too_large_alone() {
    let c = Cluster::builder().brokers(3).build().unwrap();
    c.create_topic(
        "t",
        TopicConfig::new(1, 3)
            .min_insync_replicas(2)
            .max_message_bytes(1000),
    )
    .unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let records = (0..5).map(|i| Record::new(vec![b'x'; if i == 2 { 5000 } else { 10 }]));
    let results: Vec<_> = prod
        .send_all("t", records)
        .into_iter()
        .map(|d| d.wait())
        .collect();
    match &results[2] {
        Err(Error::RecordTooLarge { topic, max, .. }) => {
            assert_eq!((topic.as_str(), *max), ("t", 1000))
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    let offsets: Vec<_> = [0, 1, 3, 4]
        .iter()
        .map(|&i| results[i].as_ref().unwrap().offset)
        .collect();
    assert_eq!(offsets, [Some(0), Some(1), Some(2), Some(3)]);
}

#[test]
fn send_all_to_an_unknown_topic_fails_every_record() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let ds = prod.send_all("nope", (0..300).map(|_| Record::new("x")));
    assert_eq!(ds.len(), 300);
    for d in ds {
        let e = d.wait().unwrap_err();
        assert!(
            matches!(&e, Error::UnknownTopic { topic } if topic == "nope"),
            "{e}"
        );
    }
    // The producer is unharmed.
    assert_eq!(
        prod.send("t", Record::new("x")).wait().unwrap().offset,
        Some(0)
    );
}

#[test]
fn send_all_of_nothing_returns_nothing() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    assert!(prod.send_all("t", std::iter::empty()).is_empty());
    assert!(prod.send_all("nope", Vec::new()).is_empty());
}

#[test]
fn send_all_blocked_on_buffer_memory_goes_on_as_answers_free_it() {
    let c = cluster(1);
    // Room for two records at a time: the call waits for answers again and again.
    let prod = c
        .producer(
            ProducerConfig::new()
                .buffer_memory(1000)
                .linger(Duration::from_millis(1)),
        )
        .unwrap();
    let ds = prod.send_all("t", (0..200).map(|_| Record::new(vec![7u8; 400])));
    for (i, d) in ds.into_iter().enumerate() {
        assert_eq!(d.wait().unwrap().offset, Some(i as u64));
    }
}

#[test]
fn send_all_records_with_a_linger_go_out_when_it_runs_out() {
    let c = cluster(1);
    let linger = Duration::from_millis(50);
    let prod = c.producer(ProducerConfig::new().linger(linger)).unwrap();
    // Ten in a row: the first few may find the sender thread awake anyway, woken
    // by the metadata changes of a new cluster.
    for _ in 0..10 {
        let start = std::time::Instant::now();
        // Far less than a batch: only the linger sends them.
        let ds = prod.send_all("t", (0..3).map(|_| Record::new("x")));
        for d in ds {
            d.wait().unwrap();
        }
        let took = start.elapsed();
        assert!(took >= linger, "sent before the linger ran out: {took:?}");
        // Far below the second the sender thread sleeps when nobody wakes it.
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}

#[test]
fn concurrent_send_all_calls_keep_each_callers_order() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let prod = prod.clone();
                s.spawn(move || {
                    let mut offsets = Vec::new();
                    for call in 0..10 {
                        let ds = prod.send_all(
                            "t",
                            (0..300).map(|i| Record::new(format!("{t}-{call}-{i}"))),
                        );
                        offsets.extend(ds.into_iter().map(|d| d.wait().unwrap().offset.unwrap()));
                    }
                    offsets
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = per_thread.iter().flatten().copied().collect();
    for offsets in &per_thread {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "a caller's records out of order"
        );
    }
    all.sort_unstable();
    assert_eq!(all, (0..12_000).collect::<Vec<_>>(), "offsets not dense");
}

#[test]
fn send_all_across_a_leader_change_writes_each_record_once() {
    let c = cluster(1);
    let p = c.topic("t").unwrap().partition(0).unwrap();
    let prod = c
        .producer(ProducerConfig::new().delivery_timeout(Duration::from_secs(30)))
        .unwrap();
    let mut ds = prod.send_all("t", (0..1000).map(|i| Record::new(format!("v{i}"))));
    c.kill_broker(p.leader().unwrap()).unwrap();
    ds.extend(prod.send_all("t", (1000..2000).map(|i| Record::new(format!("v{i}")))));
    let offsets: Vec<u64> = ds
        .into_iter()
        .map(|d| d.wait().unwrap().offset.unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "acknowledged out of order"
    );
    let got = consume_n(&consumer_from_start(&c, "t"), 2000);
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect();
    let expect: Vec<String> = (0..2000).map(|i| format!("v{i}")).collect();
    assert_eq!(
        values, expect,
        "a record lost, written twice or out of order"
    );
}

/// A small deterministic generator: the records differ from seed to seed, the
/// test does not.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Mixed records (keyed and not, some with their own timestamp, a few too large)
/// sent one `send` each to one topic and through `send_all` in calls of random
/// sizes to another, each by a fresh producer: every record lands on the same
/// partition at the same offset, or fails with the same error.
#[test]
fn send_all_places_every_record_as_one_send_each_would() {
    for seed in 1..=5u64 {
        let c = Cluster::builder().brokers(3).build().unwrap();
        for t in ["one", "all"] {
            c.create_topic(
                t,
                TopicConfig::new(4, 3)
                    .min_insync_replicas(2)
                    .max_message_bytes(2000),
            )
            .unwrap();
        }
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let records: Vec<Record> = (0..400)
            .map(|i| {
                let len = if rng.below(50) == 0 {
                    5000
                } else {
                    rng.below(300)
                };
                let mut r = Record::new(vec![b'v'; len as usize]);
                if rng.below(2) == 0 {
                    r = r.key(format!("key-{}", rng.below(10)));
                }
                if rng.below(10) == 0 {
                    r = r.timestamp(i);
                }
                r
            })
            .collect();
        let config = || ProducerConfig::new().batch_size(1024);
        let one_by_one = c.producer(config()).unwrap();
        let one: Vec<_> = records
            .iter()
            .map(|r| one_by_one.send("one", r.clone()))
            .collect();
        let all_at_once = c.producer(config()).unwrap();
        let mut all = Vec::new();
        let mut rest = records.clone().into_iter().peekable();
        while rest.peek().is_some() {
            let n = 1 + rng.below(150) as usize;
            all.extend(all_at_once.send_all("all", rest.by_ref().take(n)));
        }
        assert_eq!(all.len(), records.len());
        let outcome = |r: Result<RecordMetadata>| match r {
            Ok(m) => Ok((m.partition, m.offset)),
            Err(e) => Err(e.to_string().replace("`all`", "`one`")),
        };
        for (i, (a, b)) in one.into_iter().zip(all).enumerate() {
            assert_eq!(
                outcome(a.wait()),
                outcome(b.wait()),
                "seed {seed}, record {i}"
            );
        }
    }
}

/// A call that outlasts `delivery.timeout.ms` under backpressure: each record
/// waits for buffer memory on its own clock, as with one `send` each, so none
/// times out while answers keep freeing memory.
#[test]
fn send_all_gives_each_record_its_own_wait_for_buffer_memory() {
    let faults = FaultTransport::default();
    // Each acks=all round trip takes at least two delayed messages (the followers'
    // fetches and their answers): 10 ms or more.
    faults
        .delay(Duration::from_millis(5), Duration::from_millis(5))
        .unwrap();
    let c = Cluster::builder()
        .brokers(3)
        .transport(faults)
        .build()
        .unwrap();
    c.create_topic("t", TopicConfig::new(1, 3).min_insync_replicas(2))
        .unwrap();
    let timeout = Duration::from_millis(300);
    // Room for two records: 100 rounds of at least 5 ms each for 200 records.
    let prod = c
        .producer(
            ProducerConfig::new()
                .buffer_memory(1000)
                .delivery_timeout(timeout),
        )
        .unwrap();
    let start = std::time::Instant::now();
    let ds = prod.send_all("t", (0..200).map(|_| Record::new(vec![1u8; 400])));
    let took = start.elapsed();
    assert!(took > timeout, "the call took {took:?}: it proves nothing");
    for (i, d) in ds.into_iter().enumerate() {
        assert_eq!(d.wait().unwrap().offset, Some(i as u64), "after {took:?}");
    }
}

/// The caller's iterator runs with the producer's lock released: one that sends
/// through the same producer as it goes (or blocks until another thread has sent)
/// neither deadlocks nor holds up anyone else.
#[test]
fn send_all_runs_its_iterator_without_holding_the_producer() {
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    offsets_0_to_600_in_time("send_all deadlocked with its own iterator", move || {
        let mut side = Vec::new();
        let records = (0..300).map(|i| {
            // Waits for its answer: the sender thread and the leader need the
            // producer's state meanwhile.
            side.push(prod.send("t", Record::new("side")).wait().map(|m| m.offset));
            Record::new(format!("v{i}"))
        });
        let ds = prod.send_all("t", records);
        let mut offsets: Vec<Option<u64>> =
            ds.into_iter().map(|d| d.wait().unwrap().offset).collect();
        offsets.extend(side.into_iter().map(|r| r.unwrap()));
        offsets
    });
}

/// Runs `write` on a thread of its own and checks the offsets it returns are
/// exactly 0..600; panics with `stuck` if it does not return within [`DEADLINE`]
/// (a deadlock leaves the thread behind, not the test hanging).
fn offsets_0_to_600_in_time(
    stuck: &str,
    write: impl FnOnce() -> Vec<Option<u64>> + Send + 'static,
) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(write());
    });
    let mut offsets = done_rx.recv_timeout(DEADLINE).expect(stuck);
    offsets.sort_unstable();
    let expect: Vec<Option<u64>> = (0..600).map(Some).collect();
    assert_eq!(offsets, expect);
}

#[test]
fn send_all_with_acks_0_resolves_each_record_without_an_offset() {
    let c = cluster(3);
    let prod = c.producer(ProducerConfig::new().acks(Acks::None)).unwrap();
    let ds = prod.send_all("t", (0..500).map(|i| Record::new(format!("v{i}"))));
    for d in ds {
        let meta = d.wait().unwrap();
        assert_eq!((meta.topic.as_str(), meta.offset), ("t", None));
    }
    prod.flush().unwrap();
    // Nothing was lost on the way: all 500 are readable.
    assert_eq!(consume_n(&consumer_from_start(&c, "t"), 500).len(), 500);
}

/// A record's bytes may belong to an owner whose drop code runs when the record is
/// dropped (`Bytes::from_owner`): `send_all` drops its records after it lets go of
/// the producer, so that code may send through the same producer.
#[test]
fn send_all_drops_its_records_without_holding_the_producer() {
    struct SendsOnDrop {
        prod: Producer,
        sent: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
        value: Vec<u8>,
    }
    impl AsRef<[u8]> for SendsOnDrop {
        fn as_ref(&self) -> &[u8] {
            &self.value
        }
    }
    impl Drop for SendsOnDrop {
        fn drop(&mut self) {
            let d = self.prod.send("t", Record::new("from a drop"));
            self.sent.lock().unwrap().push(d);
        }
    }
    let c = cluster(1);
    let prod = c.producer(ProducerConfig::new()).unwrap();
    offsets_0_to_600_in_time("send_all deadlocked dropping its records", move || {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let records = (0..300).map(|i| {
            Record::new(bytes::Bytes::from_owner(SendsOnDrop {
                prod: prod.clone(),
                sent: sent.clone(),
                value: format!("v{i}").into_bytes(),
            }))
        });
        let ds = prod.send_all("t", records);
        let mut offsets: Vec<Option<u64>> =
            ds.into_iter().map(|d| d.wait().unwrap().offset).collect();
        let from_drops = std::mem::take(&mut *sent.lock().unwrap());
        assert_eq!(from_drops.len(), 300, "every record was dropped by now");
        offsets.extend(from_drops.into_iter().map(|d| d.wait().unwrap().offset));
        offsets
    });
}
