//! replog against its peers and its ceiling, in one run: prints one markdown table
//! (case, records/s, MB/s, ratio to the ceiling, ratio to the peer), the acks=all
//! end-to-end latency at a steady 10k records/s, how throughput scales with
//! partitions and replication factor, which targets hold, and writes
//! `docs/throughput.png` (throughput against concurrent writers).
//!
//! Run: `cargo run --release --example compare [seconds per case]`
//! (default 3 s per case after a short warm-up; the whole run takes two to three
//! minutes). The workloads are those of `benches/peers.rs`, in
//! `benches/peers/workloads.rs`, where each is described. Every record has a 100-byte
//! value; MB/s counts values only (10^6 B).
//!
//! The figures move with the machine's load (printed before and after); nothing is
//! asserted and the exit status does not depend on the targets.

use std::time::Duration;

use replog::{Acks, TopicConfig};

#[path = "../benches/peers/workloads.rs"]
mod workloads;

use workloads::{
    latency, measure_interleaved, Case, CommitLogAppend, Fanout, OpenRaft, Pipelined, Rate,
    TaskWriters, Writers,
};

const WRITERS: [usize; 3] = [1, 16, 64];
const PARTITIONS: [u32; 4] = [1, 10, 100, 1000];
const RFS: [u32; 4] = [1, 2, 3, 5];
const LATENCY_RATE: u64 = 10_000;
const PLOT: &str = "docs/throughput.png";

struct Run {
    warm_up: Duration,
    secs: Duration,
}

impl Run {
    /// Measures the named cases side by side (see `measure_interleaved`).
    fn group(&self, cases: Vec<(String, Box<dyn Case>)>) -> Vec<Rate> {
        let names: Vec<String> = cases.iter().map(|(n, _)| n.clone()).collect();
        eprintln!("  {}", names.join(" | "));
        let mut boxes: Vec<Box<dyn Case>> = cases.into_iter().map(|(_, c)| c).collect();
        let rates = measure_interleaved(&mut boxes, self.warm_up, self.secs);
        for (name, r) in names.iter().zip(&rates) {
            eprintln!(
                "    {name:<40}{:>10.0} records/s (slices {:.0}–{:.0})",
                r.per_sec(),
                r.min,
                r.max
            );
        }
        rates
    }
}

fn case(name: impl Into<String>, c: impl Case + 'static) -> (String, Box<dyn Case>) {
    (name.into(), Box::new(c))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The machine's CPU time in ticks from `/proc/stat`: (steal, total).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user).
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// The share of the machine's CPU time a hypervisor gave to others since `before`:
/// a run with much of it is not comparable with a quiet one.
fn steal_since(before: Option<(u64, u64)>) -> String {
    match (before, cpu_ticks()) {
        (Some((s0, t0)), Some((s1, t1))) if t1 > t0 => {
            format!("{:.0}%", 100.0 * (s1 - s0) as f64 / (t1 - t0) as f64)
        }
        _ => "unknown".into(),
    }
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("seconds per case: a number"))
        .unwrap_or(3.0);
    let run = Run {
        warm_up: Duration::from_secs_f64((secs / 4.0).max(0.5)),
        secs: Duration::from_secs_f64(secs),
    };
    let cores = OpenRaft::default_workers();
    let load_before = load();
    let ticks_before = cpu_ticks();
    eprintln!("measuring, {secs} s per case ({cores} cores, load {load_before}) ...");

    let rf3 = || TopicConfig::new(3, 3).min_insync_replicas(2);
    // `send_all` in calls of one batch's worth of records, as the ceiling and
    // commitlog hand over whole batches.
    let calls = workloads::RECORDS_PER_BATCH;
    let [ceiling, piped_all, piped_1, all_all, all_1]: [Rate; 5] = run
        .group(vec![
            case("ceiling_fanout3", Fanout::new(3)),
            case(
                "replog pipelined acks=all",
                Pipelined::memory(3, rf3(), Acks::All),
            ),
            case(
                "replog pipelined acks=1",
                Pipelined::memory(3, rf3(), Acks::Leader),
            ),
            case(
                "replog send_all acks=all",
                Pipelined::memory(3, rf3(), Acks::All).in_calls_of(calls),
            ),
            case(
                "replog send_all acks=1",
                Pipelined::memory(3, rf3(), Acks::Leader).in_calls_of(calls),
            ),
        ])
        .try_into()
        .expect("five rates");
    // Writers as tokio tasks on the same runtime shape as openraft's (the fair
    // comparison), and as OS threads (what a blocking caller gets).
    let (mut raft, mut p1, mut p3, mut threads) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in WRITERS {
        let r = run.group(vec![
            case(format!("openraft, {n} tasks"), OpenRaft::new(n, cores)),
            case(
                format!("replog p1, {n} tasks"),
                TaskWriters::new(n, 1, cores),
            ),
            case(
                format!("replog p3, {n} tasks"),
                TaskWriters::new(n, 3, cores),
            ),
            case(format!("replog p1, {n} threads"), Writers::new(n, 1)),
        ]);
        raft.push(r[0]);
        p1.push(r[1]);
        p3.push(r[2]);
        threads.push(r[3]);
    }
    let [commitlog, disk, disk_all]: [Rate; 3] = run
        .group(vec![
            case("commitlog append", CommitLogAppend::new()),
            case(
                "replog disk RF 1 acks=1",
                Pipelined::disk(1, TopicConfig::new(1, 1), Acks::Leader),
            ),
            case(
                "replog disk RF 1 acks=1 send_all",
                Pipelined::disk(1, TopicConfig::new(1, 1), Acks::Leader).in_calls_of(calls),
            ),
        ])
        .try_into()
        .expect("three rates");
    let parts = run.group(
        PARTITIONS
            .iter()
            .map(|&p| {
                let config = TopicConfig::new(p, 3).min_insync_replicas(2);
                case(
                    format!("replog {p} partitions"),
                    Pipelined::memory(3, config, Acks::All),
                )
            })
            .collect(),
    );
    let rfs = run.group(
        RFS.iter()
            .map(|&rf| {
                let config = TopicConfig::new(5, rf).min_insync_replicas(rf.min(2));
                case(
                    format!("replog RF {rf}"),
                    Pipelined::memory(5, config, Acks::All),
                )
            })
            .collect(),
    );
    eprint!("  latency acks=all at 10k records/s ...");
    let lat = latency(
        LATENCY_RATE,
        run.warm_up,
        Duration::from_secs_f64(secs.max(3.0)),
    );
    eprintln!(" done");
    let load_after = load();
    let steal = steal_since(ticks_before);

    // ---- the table ----
    let c = ceiling.per_sec();
    let row = |case: &str, r: &Rate, peer: Option<(&Rate, &str)>| {
        let vs_peer = match peer {
            Some((p, name)) => format!("{:.2} ({name})", r.per_sec() / p.per_sec()),
            None => "—".into(),
        };
        println!(
            "| {case} | {:.0} | {:.1} | {:.2} | {vs_peer} | {:.0}–{:.0} |",
            r.per_sec(),
            r.mb_per_sec(),
            r.per_sec() / c,
            r.min,
            r.max
        );
    };
    println!(
        "### replog against its peers ({cores} cores, load {load_before} before, {load_after} after; \
         CPU time stolen by the hypervisor during the run: {steal}; {secs} s per case)\n"
    );
    println!("| case | records/s | MB/s | × ceiling | × peer | 0.25 s slices, min–max |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    row(
        "ceiling_fanout3 (3 threads copy 16 KiB batches)",
        &ceiling,
        None,
    );
    for (i, n) in WRITERS.iter().enumerate() {
        row(
            &format!(
                "openraft 0.9 + memstore, 3 nodes, {n} writer {}",
                plural(*n, "task")
            ),
            &raft[i],
            None,
        );
    }
    let series: [(&str, &[Rate], &str); 3] = [
        ("1 partition", &p1, "task"),
        ("3 partitions", &p3, "task"),
        ("1 partition", &threads, "thread"),
    ];
    for (layout, rates, writer) in series {
        for (i, &n) in WRITERS.iter().enumerate() {
            let peer = format!("openraft, {n} {}", plural(n, "task"));
            row(
                &format!(
                    "replog acks=all RF 3, {layout}, {n} writer {}",
                    plural(n, writer)
                ),
                &rates[i],
                Some((&raft[i], &peer)),
            );
        }
    }
    row(
        "replog acks=all RF 3, 3 partitions, pipelined producer",
        &piped_all,
        Some((&raft[2], "openraft, 64 tasks")),
    );
    row(
        "replog acks=1 RF 3, 3 partitions, pipelined producer",
        &piped_1,
        None,
    );
    row(
        &format!("replog acks=all RF 3, 3 partitions, send_all in calls of {calls}"),
        &all_all,
        None,
    );
    row(
        &format!("replog acks=1 RF 3, 3 partitions, send_all in calls of {calls}"),
        &all_1,
        None,
    );
    row(
        "commitlog 0.2, disk, 16 KiB batches, one thread",
        &commitlog,
        None,
    );
    row(
        "replog disk, 1 broker, RF 1, acks=1, pipelined",
        &disk,
        Some((&commitlog, "commitlog")),
    );
    row(
        &format!("replog disk, 1 broker, RF 1, acks=1, send_all in calls of {calls}"),
        &disk_all,
        Some((&commitlog, "commitlog")),
    );

    println!(
        "\n### acks=all end to end (send → a consumer sees it), 3 brokers, RF 3, 1 partition\n"
    );
    println!(
        "| offered rate | achieved rate | samples | median | p99 | p99.9 | max | process CPU |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let cpu = lat
        .process_cores
        .map_or_else(|| "unknown".into(), |c| format!("{c:.2} cores"));
    println!(
        "| {LATENCY_RATE} records/s | {:.0} records/s | {} | {:.0?} | {:.0?} | {:.0?} | {:.0?} | {cpu} |",
        lat.achieved_rate,
        lat.samples.len(),
        lat.quantile(0.5),
        lat.quantile(0.99),
        lat.quantile(0.999),
        lat.samples[lat.samples.len() - 1],
    );

    println!("\n### Scale: acks=all, pipelined producer, memory storage\n");
    println!("| case | records/s | MB/s | × first row of its series | slices, min–max |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, p) in PARTITIONS.iter().enumerate() {
        println!(
            "| 3 brokers, RF 3, {p} partitions | {:.0} | {:.1} | {:.2} | {:.0}–{:.0} |",
            parts[i].per_sec(),
            parts[i].mb_per_sec(),
            parts[i].per_sec() / parts[0].per_sec(),
            parts[i].min,
            parts[i].max
        );
    }
    for (i, rf) in RFS.iter().enumerate() {
        println!(
            "| 5 brokers, 5 partitions, RF {rf} | {:.0} | {:.1} | {:.2} | {:.0}–{:.0} |",
            rfs[i].per_sec(),
            rfs[i].mb_per_sec(),
            rfs[i].per_sec() / rfs[0].per_sec(),
            rfs[i].min,
            rfs[i].max
        );
    }

    println!("\n### Targets (same run)\n");
    let target = |what: &str, value: f64, want: f64| {
        let held = if value >= want { "held" } else { "MISSED" };
        println!("- {what}: {value:.2} (want ≥ {want:.2}): {held}");
    };
    let ratio = |a: &Rate, b: &Rate| a.per_sec() / b.per_sec();
    target(
        "replog acks=all / openraft, 64 writer tasks (1 partition)",
        ratio(&p1[2], &raft[2]),
        3.0,
    );
    target(
        "replog acks=all / openraft, 64 writer tasks (3 partitions)",
        ratio(&p3[2], &raft[2]),
        3.0,
    );
    target(
        "replog acks=all / openraft, 1 writer task (1 partition)",
        ratio(&p1[0], &raft[0]),
        1.0,
    );
    println!(
        "- (not a target) replog acks=all / openraft, 1 writer thread (1 partition): {:.2}",
        ratio(&threads[0], &raft[0])
    );
    // One `send` per record, then the same records through `send_all`.
    for (api, disk, all, one) in [
        ("", &disk, &piped_all, &piped_1),
        (" (send_all)", &disk_all, &all_all, &all_1),
    ] {
        target(
            &format!("replog RF 1 on disk / commitlog{api}"),
            ratio(disk, &commitlog),
            1.0,
        );
        target(
            &format!("acks_all{api} / ceiling_fanout3"),
            ratio(all, &ceiling),
            0.5,
        );
        target(
            &format!("acks_1{api} / ceiling_fanout3"),
            ratio(one, &ceiling),
            0.7,
        );
    }
    target(
        "1000 partitions / 10 partitions (within 2×)",
        ratio(&parts[3], &parts[1]),
        0.5,
    );

    match plot(&raft, &p1, &p3, &threads, &piped_all, &ceiling, cores) {
        Ok(()) => println!("\nplot: {PLOT}"),
        Err(e) => println!("\nplot not written: {e}"),
    }
}

/// `word` for one, `word`s for more.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// A TrueType font for the plot's labels (plotters' `ab_glyph` backend needs one).
fn font() -> Option<&'static [u8]> {
    const CANDIDATES: [&str; 3] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    CANDIDATES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|b| &*Box::leak(b.into_boxed_slice()))
}

/// records/s (log scale) against concurrent writers (1, 16, 64), with the pipelined producer and
/// the ceiling as horizontal lines.
fn plot(
    raft: &[Rate],
    p1: &[Rate],
    p3: &[Rate],
    threads: &[Rate],
    piped: &Rate,
    ceiling: &Rate,
    cores: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let bytes = font().ok_or("no DejaVuSans.ttf found for the labels")?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "DejaVuSans.ttf is not a usable font")?;

    let all: Vec<f64> = raft
        .iter()
        .chain(p1)
        .chain(p3)
        .chain(threads)
        .chain([piped, ceiling])
        .map(Rate::per_sec)
        .collect();
    let lo = all.iter().cloned().fold(f64::MAX, f64::min) / 2.0;
    let hi = all.iter().cloned().fold(0.0, f64::max) * 2.0;

    let root = BitMapBackend::new(PLOT, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Writes/s against concurrent writers (100 B records, {cores} cores)"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.25f64..2.25f64, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("concurrent writers (tokio tasks unless marked; one outstanding write each)")
        .y_desc("records/s")
        .x_labels(WRITERS.len())
        .x_label_formatter(&|x| {
            let i = x.round() as usize;
            if (x - x.round()).abs() < 0.01 && i < WRITERS.len() {
                WRITERS[i].to_string()
            } else {
                String::new()
            }
        })
        .disable_x_mesh()
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;

    // One column per writer count (1, 16, 64), evenly spaced.
    let xs: Vec<f64> = (0..WRITERS.len()).map(|i| i as f64).collect();
    let series: [(&str, &[Rate], RGBColor); 4] = [
        (
            "openraft 0.9 + memstore, 3 nodes",
            raft,
            RGBColor(200, 60, 40),
        ),
        (
            "replog acks=all RF 3, 1 partition",
            p1,
            RGBColor(30, 90, 200),
        ),
        (
            "replog acks=all RF 3, 3 partitions",
            p3,
            RGBColor(40, 160, 90),
        ),
        (
            "replog acks=all RF 3, 1 partition, OS threads",
            threads,
            RGBColor(120, 170, 230),
        ),
    ];
    for (name, rates, color) in series {
        let pts: Vec<(f64, f64)> = xs
            .iter()
            .zip(rates)
            .map(|(&x, r)| (x, r.per_sec()))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 5, color.filled())))?;
    }
    let flat: [(&str, f64, RGBColor); 2] = [
        (
            "replog acks=all, pipelined producer",
            piped.per_sec(),
            RGBColor(120, 60, 180),
        ),
        ("ceiling_fanout3", ceiling.per_sec(), RGBColor(90, 90, 90)),
    ];
    for (name, y, color) in flat {
        chart
            .draw_series(LineSeries::new(
                [(-0.25, y), (2.25, y)],
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::MiddleLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}
