//! replog against its peers, in the same run: openraft (a replicated log, 3 nodes in
//! one process) and commitlog (a single-node append-only log on disk), next to the
//! `ceiling_fanout3` of `benches/acks.rs`. Every record has a 100-byte value.
//!
//! Run: `cargo bench --bench peers -- --warm-up-time 1 --measurement-time 3`
//!
//! For one table with ratios, the latency percentiles, the scale series and a plot,
//! run `cargo run --release --example compare` instead (same workloads, in
//! `benches/peers/workloads.rs`).
//!
//! # Group `replicated` (`Throughput::Elements`: records)
//!
//! - `openraft/{1,16,64}`: a 3-node openraft 0.9 cluster on `openraft-memstore`, wired
//!   as openraft's `cluster_benchmark` (in-memory router, node 0 leads), N tokio tasks
//!   each awaiting `client_write` in a loop.
//! - `replog_tasks_p1/{1,16,64}`: 3 brokers, memory storage, one partition (one
//!   ordered log, as one Raft group), RF 3, `min.insync.replicas` 2, `acks=all`;
//!   N tokio tasks on a runtime like openraft's, each awaiting `send(..)` in a loop,
//!   one record outstanding per writer.
//! - `replog_tasks_p3/{1,16,64}`: the same with 3 partitions, one led by each broker
//!   (replog's usual layout, as in `benches/acks.rs`).
//! - `replog_threads_p1/{1,16,64}`: as `replog_tasks_p1` with N OS threads each
//!   `send(..).wait()` in a loop.
//! - `replog_pipelined_acks_all`, `replog_pipelined_acks_1`: the same 3-partition
//!   topic with replog's normal producer, many records in flight (`linger.ms` 5,
//!   `batch.size` 16 KiB), as `benches/acks.rs` `produce`.
//! - `ceiling_fanout3`: as in `benches/acks.rs`.
//!
//! # Group `disk` (`Throughput::Elements`: records)
//!
//! - `commitlog`: one thread appends 132-record batches (16 KiB) to a `commitlog` 0.2
//!   log on disk, default options, no fsync.
//! - `replog_rf1_acks_1`: 1 broker, segment storage (`FsyncPolicy::Never`), one
//!   partition, RF 1, `acks=1`, the pipelined producer (16 KiB batches). Same
//!   batches, different writes: commitlog writes each batch on its own, the broker
//!   writes the produce requests that queued up behind each other (up to five
//!   batches in flight, 1 MiB at most) in one.
//! - `replog_rf1_acks_1_send_all`: the same with the records handed to
//!   `Producer::send_all` in calls of 132, the size of commitlog's batches.
//!
//! # Group `scale` (`Throughput::Elements`: records)
//!
//! The pipelined producer with `acks=all`, memory storage:
//! - `partitions/{1,10,100,1000}`: 3 brokers, RF 3, `min.insync.replicas` 2.
//! - `rf/{1,2,3,5}`: 5 brokers, 5 partitions (one led by each broker),
//!   `min.insync.replicas` min(2, RF).
//!
//! The machine may be shared: figures move with its load. No timing is asserted.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use replog::{Acks, TopicConfig};

#[path = "peers/workloads.rs"]
mod workloads;

use workloads::{
    Case, CommitLogAppend, Fanout, OpenRaft, Pipelined, TaskWriters, Writers, RECORDS_PER_BATCH,
};

/// Records per criterion iteration.
const RECORDS_PER_ITER: u64 = 1000;
/// Concurrent writers of the openraft comparison.
const WRITERS: [usize; 3] = [1, 16, 64];

fn bench(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, case: &mut dyn Case) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| case.run(iters * RECORDS_PER_ITER))
    });
}

fn rf3() -> TopicConfig {
    TopicConfig::new(3, 3).min_insync_replicas(2)
}

fn replicated(c: &mut Criterion) {
    let mut g = c.benchmark_group("replicated");
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    let workers = OpenRaft::default_workers();
    for n in WRITERS {
        let mut raft = OpenRaft::new(n, workers);
        bench(&mut g, &format!("openraft/{n}"), &mut raft);
    }
    for p in [1, 3] {
        for n in WRITERS {
            bench(
                &mut g,
                &format!("replog_tasks_p{p}/{n}"),
                &mut TaskWriters::new(n, p, workers),
            );
        }
    }
    for n in WRITERS {
        bench(
            &mut g,
            &format!("replog_threads_p1/{n}"),
            &mut Writers::new(n, 1),
        );
    }
    bench(
        &mut g,
        "replog_pipelined_acks_all",
        &mut Pipelined::memory(3, rf3(), Acks::All),
    );
    bench(
        &mut g,
        "replog_pipelined_acks_1",
        &mut Pipelined::memory(3, rf3(), Acks::Leader),
    );
    bench(&mut g, "ceiling_fanout3", &mut Fanout::new(3));
    g.finish();
}

fn disk(c: &mut Criterion) {
    let mut g = c.benchmark_group("disk");
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    bench(&mut g, "commitlog", &mut CommitLogAppend::new());
    bench(
        &mut g,
        "replog_rf1_acks_1",
        &mut Pipelined::disk(1, TopicConfig::new(1, 1), Acks::Leader),
    );
    bench(
        &mut g,
        "replog_rf1_acks_1_send_all",
        &mut Pipelined::disk(1, TopicConfig::new(1, 1), Acks::Leader)
            .in_calls_of(RECORDS_PER_BATCH),
    );
    g.finish();
}

fn scale(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale");
    g.throughput(Throughput::Elements(RECORDS_PER_ITER));
    for p in [1, 10, 100, 1000] {
        let config = TopicConfig::new(p, 3).min_insync_replicas(2);
        bench(
            &mut g,
            &format!("partitions/{p}"),
            &mut Pipelined::memory(3, config, Acks::All),
        );
    }
    for rf in [1, 2, 3, 5] {
        let config = TopicConfig::new(5, rf).min_insync_replicas(rf.min(2));
        bench(
            &mut g,
            &format!("rf/{rf}"),
            &mut Pipelined::memory(5, config, Acks::All),
        );
    }
    g.finish();
}

criterion_group!(benches, replicated, disk, scale);
criterion_main!(benches);
