//! Produce throughput for each `acks` mode against a fan-out ceiling measured in the
//! same run, and the round trip of one `acks=all` record.
//!
//! Run: `cargo bench --bench acks -- --warm-up-time 1 --measurement-time 5`
//!
//! # Group `produce` (`Throughput::Elements`: records)
//!
//! Every replog case runs on a fresh cluster of 3 brokers with memory storage (no
//! `data_dir`), a topic of [`PARTITIONS`] partitions, replication factor 3 and
//! `min.insync.replicas` 2, and one producer with `batch.size` 16 KiB (Kafka's
//! default) and `linger.ms` 5 (Kafka 4.0's default). Cluster, topic and producer are
//! built once, outside the measured loop. One iteration hands [`RECORDS_PER_ITER`]
//! unkeyed records of 100-byte values to [`Producer::send`]; each timed sample ends
//! with [`Producer::flush`], and with acks 1/all every [`Delivery`] is then checked
//! to have resolved `Ok` (inside the timed part: a user waits for them too).
//! Criterion's linear sampling fits time = a + b·iterations, so the fixed cost of
//! draining the pipeline at the end of a sample goes into `a`, not into the
//! reported per-record slope `b`.
//!
//! - `acks_0`: a delivery completes when its batch is handed to the leader's inbox.
//! - `acks_1`: it completes once the batch is in the leader's log.
//! - `acks_all`: it completes once every ISR member (3, at least 2) has the batch,
//!   i.e. after the followers' next fetch tells the leader how far they got.
//!
//! Why [`PARTITIONS`] = 3: one partition per broker, so each broker leads one and
//! follows two, the work is spread over all three broker threads, and the unkeyed
//! (sticky) partitioner fills whole 16 KiB batches, moving to the next partition after
//! each. That is how a user lays out a topic on three brokers (partitions ≥ brokers,
//! leaders balanced); a single partition would leave two broker threads with only
//! follower work. Every id uses the same topic layout.
//!
//! Memory storage keeps every record and the broker applies no retention to it, so
//! the topic is deleted and created again every [`ROTATE_RECORDS`] records, outside
//! the timed part, to keep the footprint bounded.
//!
//! ## `ceiling_fanout3`: the fair ceiling
//!
//! What any in-process replicated log must do at the least, with the same batching
//! replog's producer does: the sending thread encodes each record (the same
//! 24-byte framing plus the 100-byte value, 124 B, as replog's batch format) into a
//! 16 KiB batch buffer, and each full batch (132 records, the count replog's
//! accumulator puts in a 16 KiB batch) is handed as a shared `Bytes` over a bounded
//! crossbeam channel to each of three "replica" threads, which copy it into their
//! own `Vec` (cleared, capacity kept, every 64 MiB). A sample ends when all three have
//! confirmed they copied everything (the `flush`). Channel capacity is 2048 batches,
//! the 32 MiB of replog's default `buffer.memory`, so both have the same room before
//! backpressure.
//!
//! Batches, not single records, because replog is a batching system: handing over
//! each record on its own would pay a channel operation and possibly a thread
//! wake-up per record in the ceiling only, making it artificially low and the ratios
//! flattering. The ceiling has no leader/follower protocol, offsets, CRC, delivery
//! tracking or acknowledgements: the gap to it is exactly what replog's protocol and
//! bookkeeping cost. It copies each batch three times (replog's memory log shares
//! the `Bytes` between replicas instead), but a 16 KiB copy is a microsecond or so,
//! small beside the channel hand-offs, so this does not make the ceiling unfairly
//! slow. Targets: `acks_all` ≥ 50 % and `acks_1` ≥ 70 % of the ceiling's records/s.
//!
//! # Group `latency`
//!
//! `acks_all_one_record`: one record at a time to partition 0 with `acks=all` and
//! `linger.ms` 0 (the defaults): `send_to(..).wait()`, so each iteration is one full
//! round trip (calling thread → leader append → follower fetch answered → follower
//! appends and fetches again → HW moves → answer → delivery). Criterion reports the
//! mean; `cargo run --release --example latency` prints percentiles.
//!
//! The machine may be shared: figures move with its load. No timing is asserted.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use replog::{Acks, Cluster, Delivery, Producer, ProducerConfig, Record, TopicConfig};

/// Partitions of the produce topic: one per broker (see the module docs).
const PARTITIONS: u32 = 3;
/// Records per criterion iteration.
const RECORDS_PER_ITER: u64 = 1000;
/// The produce topic is recreated after this many records (untimed).
const ROTATE_RECORDS: u64 = 500_000;

/// Replication factor 3, `min.insync.replicas` 2.
fn topic_config(partitions: u32) -> TopicConfig {
    TopicConfig::new(partitions, 3).min_insync_replicas(2)
}

/// A cluster with one produce topic that is replaced now and then to bound memory.
struct Bench {
    cluster: Cluster,
    producer: Producer,
    acks: Acks,
    topic: String,
    generation: u32,
    partitions: u32,
    written: u64,
    deliveries: Vec<Delivery>,
    value: Bytes,
}

impl Bench {
    fn new(acks: Acks, producer: ProducerConfig, partitions: u32) -> Bench {
        let cluster = Cluster::builder().brokers(3).build().expect("cluster");
        let producer = cluster.producer(producer.acks(acks)).expect("producer");
        let mut b = Bench {
            cluster,
            producer,
            acks,
            topic: String::new(),
            generation: 0,
            partitions,
            written: 0,
            deliveries: Vec::new(),
            value: value(),
        };
        b.partitions = partitions;
        b.new_topic();
        b
    }

    fn new_topic(&mut self) {
        let partitions = self.partitions;
        if !self.topic.is_empty() {
            self.cluster
                .delete_topic(&self.topic)
                .expect("delete topic");
        }
        self.generation += 1;
        self.topic = format!("bench-{}", self.generation);
        let t = self
            .cluster
            .create_topic(&self.topic, topic_config(partitions))
            .expect("create topic");
        for p in t.partitions() {
            assert!(
                p.leader().is_some(),
                "{}-{} has no leader",
                self.topic,
                p.id()
            );
            assert_eq!(
                p.isr().len(),
                3,
                "{}-{} starts with a full ISR",
                self.topic,
                p.id()
            );
        }
        self.written = 0;
    }

    /// Untimed: a fresh topic when the current one holds enough.
    fn maybe_rotate(&mut self) {
        if self.written >= ROTATE_RECORDS {
            self.new_topic();
        }
    }

    /// Timed: `iters` × [`RECORDS_PER_ITER`] records, flush, check the deliveries.
    fn produce(&mut self, iters: u64) -> Duration {
        let n = iters * RECORDS_PER_ITER;
        let check = self.acks != Acks::None;
        if check {
            self.deliveries.reserve(n as usize);
        }
        let start = Instant::now();
        for _ in 0..n {
            let d = self
                .producer
                .send(&self.topic, Record::new(self.value.clone()));
            if check {
                self.deliveries.push(d);
            }
        }
        self.producer.flush().expect("flush");
        for d in self.deliveries.drain(..) {
            let meta = d.wait().expect("an acknowledged record");
            assert!(meta.offset.is_some(), "acks 1/all report an offset");
        }
        let elapsed = start.elapsed();
        self.written += n;
        elapsed
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.cluster.clone().shutdown();
    }
}

// The ceiling is the same code as `ceiling_fanout3` in the peer comparison.
#[path = "peers/workloads.rs"]
mod workloads;

use workloads::{value, Case, Fanout, BATCH_BYTES, LINGER};

fn produce(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce");
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    for (id, acks) in [
        ("acks_0", Acks::None),
        ("acks_1", Acks::Leader),
        ("acks_all", Acks::All),
    ] {
        let config = ProducerConfig::new().linger(LINGER).batch_size(BATCH_BYTES);
        let mut bench = Bench::new(acks, config, PARTITIONS);
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                bench.maybe_rotate();
                bench.produce(iters)
            })
        });
    }
    let mut fanout = Fanout::new(3);
    g.bench_function("ceiling_fanout3", |b| {
        b.iter_custom(|iters| fanout.run(iters * RECORDS_PER_ITER))
    });
    g.finish();
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    // acks=all and linger.ms=0 are the defaults: a lone record goes out at once.
    let bench = Bench::new(Acks::All, ProducerConfig::new(), 1);
    g.bench_function("acks_all_one_record", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let d = bench
                    .producer
                    .send_to(&bench.topic, 0, Record::new(bench.value.clone()));
                d.wait().expect("an acknowledged record");
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, produce, latency);
criterion_main!(benches);
