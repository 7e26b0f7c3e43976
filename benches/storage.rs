//! Storage throughput: append and read of the memory log and the segment log, each
//! beside its raw ceiling in the same run (`Vec::extend_from_slice` of the same
//! encoded bytes for memory, `File::write_all` / `read_at` of the same bytes for
//! disk). Batches of about 16 KiB (Kafka's default `batch.size`), values of 100 B and
//! 1 KiB, counted both in records and in bytes.
//!
//! Run: `cargo bench --bench storage -- --warm-up-time 1 --measurement-time 3`

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use replog::bench_support::{BenchBatches, BenchLog};

const BATCH_BYTES: usize = 16 * 1024;
/// Batches per cycle: appends restart from an empty log/file every 32 MiB, outside
/// the timed part, so the disk footprint stays bounded.
const CYCLE_BATCHES: usize = 2048;
const SEGMENT_BYTES: u64 = 16 << 20;
/// A fetch: about 1 MiB (`fetch.max.bytes` territory).
const READ_BYTES: usize = 1 << 20;

/// Times `iters` calls of `step(state, i)`, where `i` cycles through `0..CYCLE_BATCHES` and
/// `reset` (untimed) runs before each cycle starts again.
fn cycled<S>(
    iters: u64,
    state: &mut S,
    mut step: impl FnMut(&mut S, usize),
    mut reset: impl FnMut(&mut S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        reset(state);
        let run = left.min(CYCLE_BATCHES);
        let start = Instant::now();
        for i in 0..run {
            step(state, i);
        }
        total += start.elapsed();
        left -= run;
    }
    total
}

fn append_benches(g: &mut BenchmarkGroup<'_, WallTime>, batches: &BenchBatches, label: &str) {
    g.bench_function(format!("{label}/memory_log"), |b| {
        let mut log = BenchLog::memory();
        b.iter_custom(|iters| {
            cycled(
                iters,
                &mut log,
                |log, i| log.append(batches, i).unwrap(),
                |log| log.reset().unwrap(),
            )
        })
    });
    g.bench_function(format!("{label}/vec_extend_ceiling"), |b| {
        let mut buf: Vec<u8> = Vec::new();
        b.iter_custom(|iters| {
            cycled(
                iters,
                &mut buf,
                |buf, i| buf.extend_from_slice(batches.bytes(i)),
                |buf| buf.clear(),
            )
        })
    });
    g.bench_function(format!("{label}/segment_log"), |b| {
        let dir = tempfile::tempdir().unwrap();
        let mut log = BenchLog::segment(dir.path(), SEGMENT_BYTES).unwrap();
        b.iter_custom(|iters| {
            cycled(
                iters,
                &mut log,
                |log, i| log.append(batches, i).unwrap(),
                |log| log.reset().unwrap(),
            )
        })
    });
    g.bench_function(format!("{label}/file_write_all_ceiling"), |b| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        b.iter_custom(|iters| {
            cycled(
                iters,
                &mut file,
                |file, i| file.write_all(batches.bytes(i)).unwrap(),
                |file| file.set_len(0).unwrap(),
            )
        })
    });
}

fn append(c: &mut Criterion) {
    for (label, value_len) in [("100B", 100), ("1KiB", 1024)] {
        let batches = BenchBatches::new(CYCLE_BATCHES, BATCH_BYTES, value_len);
        let records = u64::from(batches.records_per_batch());
        let bytes = batches.bytes(0).len() as u64;
        let mut g = c.benchmark_group("append_records");
        g.throughput(Throughput::Elements(records));
        append_benches(&mut g, &batches, label);
        g.finish();
        let mut g = c.benchmark_group("append_bytes");
        g.throughput(Throughput::Bytes(bytes));
        append_benches(&mut g, &batches, label);
        g.finish();
    }
}

fn read(c: &mut Criterion) {
    for (label, value_len) in [("100B", 100), ("1KiB", 1024)] {
        let batches = BenchBatches::new(CYCLE_BATCHES, BATCH_BYTES, value_len);
        let per_batch = u64::from(batches.records_per_batch());
        let batch_len = batches.bytes(0).len();
        let dir = tempfile::tempdir().unwrap();
        let mut memory = BenchLog::memory();
        let mut segment = BenchLog::segment(dir.path(), SEGMENT_BYTES).unwrap();
        let raw_path = dir.path().join("raw");
        let mut raw = File::create(&raw_path).unwrap();
        for i in 0..batches.len() {
            memory.append(&batches, i).unwrap();
            segment.append(&batches, i).unwrap();
            raw.write_all(batches.bytes(i)).unwrap();
        }
        let raw = File::open(&raw_path).unwrap();
        let (per_read, read_len) = segment.read(0, READ_BYTES).unwrap();
        // Start points cycle over batch boundaries that leave a full read behind them.
        let starts = batches.len() - per_read - 1;
        for (group, throughput) in [
            (
                "read_records",
                Throughput::Elements(per_read as u64 * per_batch),
            ),
            ("read_bytes", Throughput::Bytes(read_len as u64)),
        ] {
            let mut g = c.benchmark_group(group);
            g.throughput(throughput);
            let mut n = 0usize;
            g.bench_function(format!("{label}/memory_log"), |b| {
                b.iter(|| {
                    n = (n + 1) % starts;
                    memory.read(n as u64 * per_batch, READ_BYTES).unwrap()
                })
            });
            g.bench_function(format!("{label}/segment_log"), |b| {
                b.iter(|| {
                    n = (n + 1) % starts;
                    segment.read(n as u64 * per_batch, READ_BYTES).unwrap()
                })
            });
            g.bench_function(format!("{label}/file_read_at_ceiling"), |b| {
                b.iter(|| {
                    n = (n + 1) % starts;
                    let mut buf = vec![0u8; read_len];
                    raw.read_exact_at(&mut buf, (n * batch_len) as u64).unwrap();
                    buf
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, append, read);
criterion_main!(benches);
