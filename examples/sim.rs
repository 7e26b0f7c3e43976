//! The deterministic simulation's runner.
//!
//! ```text
//! cargo run --release --features sim --example sim -- --seed 12345 [--trace]   # replay one seed
//! cargo run --release --features sim --example sim -- --seeds 1000            # soak: random seeds
//! cargo run --release --features sim --example sim -- --seeds 1000 --from 0   # soak: seeds 0..1000
//! ```
//!
//! Options: `--threads N` (default: available cores),
//! `--broken hw|election|compaction|topic-id` (break a rule on purpose),
//! `--fault-phase SECS` (virtual seconds of faults per seed),
//! `--flip-any-segment` (flip bytes in inactive segments too), `--groups` (a group
//! commits offsets throughout, to a compacted `__consumer_offsets`), `--produce-runs`
//! (produce requests for one partition arriving together are appended as one run),
//! `--recreate` (a second topic is deleted and created again under its name).
//! Exits with status 1 when a seed fails, after printing its replay command.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replog::sim::{run, run_many, timed, BrokenRule, SimOptions, Summary};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seed: Option<u64> = None;
    let mut seeds: Option<u64> = None;
    let mut from: Option<u64> = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut options = SimOptions::default();
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--seed" => seed = Some(parse(&value("--seed"))),
            "--seeds" => seeds = Some(parse(&value("--seeds"))),
            "--from" => from = Some(parse(&value("--from"))),
            "--threads" => threads = parse(&value("--threads")) as usize,
            "--fault-phase" => {
                options.fault_phase = Duration::from_secs(parse(&value("--fault-phase")))
            }
            "--broken" => {
                let v = value("--broken");
                options.broken =
                    BrokenRule::parse(&v).unwrap_or_else(|| usage(&format!("unknown rule {v}")));
            }
            "--trace" => options.trace = true,
            "--flip-any-segment" => options.flip_any_segment = true,
            "--groups" => options.groups = true,
            "--produce-runs" => options.produce_runs = true,
            "--recreate" => options.recreate = true,
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if let Some(seed) = seed {
        let (outcome, elapsed) = timed(|| run(seed, &options));
        print!("{}", outcome.report());
        println!("  took {:.2}s", elapsed.as_secs_f64());
        std::process::exit(if outcome.passed() { 0 } else { 1 });
    }
    let count = seeds.unwrap_or(100);
    let base = from.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 16
    });
    let list: Vec<u64> = (0..count).map(|i| base.wrapping_add(i)).collect();
    println!(
        "soak: {count} seeds from {base} on {threads} threads{}",
        match options.broken {
            BrokenRule::None => String::new(),
            b => format!(", rule broken on purpose: {}", b.name()),
        }
    );
    let done = AtomicU64::new(0);
    let summary = Mutex::new(Summary::default());
    let step = (count / 20).max(1);
    let (outcomes, elapsed) = timed(|| {
        run_many(&list, &options, threads, &|o| {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            let mut s = summary.lock().unwrap();
            s.add(o);
            if !o.passed() {
                print!("{}", o.report());
            }
            if n.is_multiple_of(step) {
                println!("  {n}/{count} seeds, {} failed", s.failed.len());
            }
        })
    });
    let summary = summary.into_inner().unwrap();
    println!("{}", summary.report(elapsed));
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
    if let Some(first) = failed.first() {
        println!("first failure replays with: {}", first.replay_command());
        std::process::exit(1);
    }
}

fn parse(s: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "usage: sim --seed N [--trace] | --seeds N [--from S] [--threads T]; [--broken hw|election|compaction|topic-id] [--fault-phase SECS] [--flip-any-segment] [--groups] [--produce-runs] [--recreate]"
    );
    std::process::exit(2);
}
