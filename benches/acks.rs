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
//! built once, outside the measured loop. One iteration hands `RECORDS_PER_ITER`
//! unkeyed records of 100-byte values to `Producer::send`; each timed sample ends
//! with `Producer::flush`, and with acks 1/all every `Delivery` is then checked
//! to have resolved `Ok` with an offset (inside the timed part: a user waits for
//! them too), by `Delivery::wait_offset`, which allocates nothing; `wait` would
//! add a `String` of the topic's name per record, about 15–20 ns here.
//! Criterion's linear sampling fits time = a + b·iterations, so the fixed cost of
//! draining the pipeline at the end of a sample goes into `a`, not into the
//! reported per-record slope `b`.
//!
//! - `acks_0`: a delivery completes when its batch is handed to the leader's inbox.
//! - `acks_1`: it completes once the batch is in the leader's log.
//! - `acks_all`: it completes once every ISR member (3, at least 2) has the batch,
//!   i.e. after the followers' next fetch tells the leader how far they got.
//! - `acks_0_send_all`, `acks_1_send_all`, `acks_all_send_all`: the same, with the
//!   records handed to `Producer::send_all` in calls of 132 (one 16 KiB batch's
//!   worth, what the ceiling hands over at a time) instead of one `send` each.
//!
//! Why [`PARTITIONS`] = 3: one partition per broker, so each broker leads one and
//! follows two, the work is spread over all three broker threads, and the unkeyed
//! (sticky) partitioner fills whole 16 KiB batches, moving to the next partition after
//! each. That is how a user lays out a topic on three brokers (partitions ≥ brokers,
//! leaders balanced); a single partition would leave two broker threads with only
//! follower work. Every id uses the same topic layout.
//!
//! Memory storage keeps every record and the broker applies no retention to it, so
//! the topic is deleted and created again every 500,000 records, outside the timed
//! part, to keep the footprint bounded (as the ceiling's replica threads reuse
//! their `Vec`s). A sample of more records is timed in parts that each end with
//! `flush` and their deliveries checked, with a fresh topic between them.
//!
//! The cases are the workloads of the peer comparison (`benches/peers/workloads.rs`):
//! `Pipelined` here, `Fanout` for the ceiling, `Writers` for the latency group.
//!
//! ## `ceiling_fanout3`: the fair ceiling
//!
//! What any in-process replicated log must do at the least, with the same batching
//! replog's producer does: the sending thread stamps each record with a timestamp
//! from the clock replog's producer reads and encodes it (the same
//! 24-byte framing plus the 100-byte value, 124 B, as replog's batch format) into a
//! 16 KiB batch buffer, and each full batch (132 records, the count replog's
//! accumulator puts in a 16 KiB batch) is handed as a shared `Bytes` over a bounded
//! crossbeam channel to each of three "replica" threads, which copy it into their
//! own `Vec` (cleared, capacity kept, every 64 MiB). The sending thread writes the
//! next batch into the oldest buffer all three have let go of, as replog's producer
//! writes into an answered batch's buffer. A sample ends when all three have
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
//! `acks_all_one_record`: one record at a time to a topic of one partition with
//! `acks=all` and `linger.ms` 0 (the defaults): `send(..).wait()` on one writer
//! thread (`replicated/replog_threads_p1/1` of `benches/peers.rs`), so each
//! iteration is one full round trip (calling thread → leader append → follower fetch answered → follower
//! appends and fetches again → HW moves → answer → delivery). Criterion reports the
//! mean; `cargo run --release --example latency` prints percentiles.
//!
//! The machine may be shared: figures move with its load. No timing is asserted.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use replog::{Acks, TopicConfig};

/// Partitions of the produce topic: one per broker (see the module docs).
const PARTITIONS: u32 = 3;
/// Records per criterion iteration.
const RECORDS_PER_ITER: u64 = 1000;

#[path = "peers/workloads.rs"]
mod workloads;

use workloads::{Case, Fanout, Pipelined, Writers, RECORDS_PER_BATCH};

fn produce(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce");
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    for (id, acks) in [
        ("acks_0", Acks::None),
        ("acks_1", Acks::Leader),
        ("acks_all", Acks::All),
    ] {
        // Replication factor 3, `min.insync.replicas` 2.
        let config = TopicConfig::new(PARTITIONS, 3).min_insync_replicas(2);
        // One cluster at a time: each is shut down before the next starts.
        for (name, calls) in [
            (id.to_string(), None),
            (format!("{id}_send_all"), Some(RECORDS_PER_BATCH)),
        ] {
            let case = Pipelined::memory(3, config.clone(), acks);
            let mut case = match calls {
                Some(n) => case.in_calls_of(n),
                None => case,
            };
            g.bench_function(name, |b| {
                b.iter_custom(|iters| case.run(iters * RECORDS_PER_ITER))
            });
        }
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
    let mut one = Writers::new(1, 1);
    g.bench_function("acks_all_one_record", |b| {
        b.iter_custom(|iters| one.run(iters))
    });
    g.finish();
}

criterion_group!(benches, produce, latency);
criterion_main!(benches);
