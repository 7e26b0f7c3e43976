//! The simulation's own tests: a seed passes, a seed replays exactly, the checker
//! catches a rule broken on purpose within CI's seed set, and CI's seed set passes.
//!
//! The seed set runs with `cargo test --release --features sim sim_` (`.ci/run`);
//! plain `cargo test` runs only the short smoke and replay tests.

use std::time::Duration;

#[cfg(feature = "sim")]
use super::SimOutcome;
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
    assert!(o.tally.consumed > 0, "{}", o.report());
    assert!(o.faults.total() > 0, "{}", o.report());
}

/// Produce requests that reach a leader one right behind another are handled as
/// one run (one write on disk): every invariant still holds, through retries,
/// duplicates and the producers of all three acks modes sharing partitions.
#[test]
fn sim_produce_runs_answer_as_one_request_at_a_time() {
    let options = SimOptions {
        produce_runs: true,
        ..short()
    };
    let mut in_runs = 0;
    for seed in 1..=4 {
        let o = run(seed, &options);
        assert!(o.passed(), "{}", o.report());
        assert!(o.replay_command().contains("--produce-runs"));
        in_runs += o.requests_in_runs;
    }
    assert!(
        in_runs > 0,
        "no produce request reached a leader behind another"
    );
    assert_eq!(run(1, &short()).requests_in_runs, 0, "off by default");
}

#[test]
fn sim_same_seed_same_trace() {
    let a = run(7, &short());
    let b = run(7, &short());
    assert_eq!(a.trace_hash, b.trace_hash, "{}\n{}", a.report(), b.report());
    assert_eq!(a.events, b.events);
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.tally, b.tally);
    let c = run(8, &short());
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn sim_broken_rule_is_off_by_default_and_scoped_to_the_run() {
    assert_eq!(super::broken_rule(), BrokenRule::None);
    let o = run(
        3,
        &SimOptions {
            broken: BrokenRule::HwFromLeaderLeo,
            ..short()
        },
    );
    assert_eq!(o.broken, BrokenRule::HwFromLeaderLeo);
    assert_eq!(super::broken_rule(), BrokenRule::None);
    assert!(o.replay_command().contains("--broken hw"));
}

/// CI's seed set: `CI_SEEDS` seeds in two halves that `cargo test` runs in parallel.
#[cfg(feature = "sim")]
const CI_SEEDS: u64 = 800;

#[cfg(feature = "sim")]
fn run_set(seeds: std::ops::Range<u64>, options: &SimOptions) -> Vec<SimOutcome> {
    let list: Vec<u64> = seeds.collect();
    super::run_many(&list, options, 1, &|_| {})
}

#[cfg(feature = "sim")]
fn assert_all_pass(outcomes: &[SimOutcome]) {
    let mut summary = super::Summary::default();
    for o in outcomes {
        summary.add(o);
    }
    let failed: Vec<&SimOutcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    let reports: String = failed.iter().take(3).map(|o| o.report()).collect();
    assert!(
        failed.is_empty(),
        "{}\n{reports}",
        summary.report(Duration::ZERO)
    );
    eprintln!("{}", summary.report(Duration::ZERO));
}

#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_first_half() {
    assert_all_pass(&run_set(0..CI_SEEDS / 2, &SimOptions::default()));
}

#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_second_half() {
    assert_all_pass(&run_set(CI_SEEDS / 2..CI_SEEDS, &SimOptions::default()));
}

/// A quarter of CI's seeds again with rot in any segment file, not only the active
/// one, and seeds that once failed with it.
#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_with_rot_in_any_segment() {
    let options = SimOptions {
        flip_any_segment: true,
        ..SimOptions::default()
    };
    let mut seeds: Vec<u64> = (0..CI_SEEDS / 4).collect();
    // A follower holding only epochs newer than its leader's answer (it had led
    // epoch 1 on an emptied log) found no point to cut at and fetched the same
    // diverging offset forever, out of the ISR: rule 6, KIP-279.
    seeds.push(43_363_111_221_398);
    assert_all_pass(&super::run_many(&seeds, &options, 1, &|_| {}));
}

/// A quarter of CI's seeds again with a group committing offsets throughout to a
/// `__consumer_offsets` that compacts at every KiB (rule 10: no acknowledged commit
/// lost across compactions, failovers and truncations), and seeds that once failed
/// with it: a follower that wrote in an epoch older than any its compacted leader
/// still knew was told nothing diverged and kept records the leader's deleted ones
/// had replaced (rule 6).
#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_with_a_group_committing_to_a_compacted_offsets_log() {
    let options = SimOptions {
        groups: true,
        ..SimOptions::default()
    };
    let mut seeds: Vec<u64> = (0..CI_SEEDS / 4).collect();
    seeds.extend([
        10_261_701_974_756,
        10_261_701_974_768,
        10_261_701_974_788,
        10_261_701_974_927,
        10_261_701_975_184,
    ]);
    let outcomes = super::run_many(&seeds, &options, 1, &|_| {});
    assert!(
        outcomes
            .iter()
            .filter(|o| o.tally.offsets_compacted > 0)
            .count()
            > seeds.len() / 2,
        "most seeds compact their offsets log"
    );
    assert_all_pass(&outcomes);
}

/// A quarter of CI's seeds again with produce requests for one partition that
/// reach a broker together handled as one run (`SimOptions::produce_runs`).
#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_with_produce_runs() {
    let options = SimOptions {
        produce_runs: true,
        ..SimOptions::default()
    };
    let outcomes = run_set(CI_SEEDS / 4..CI_SEEDS / 2, &options);
    let in_runs: u64 = outcomes.iter().map(|o| o.requests_in_runs).sum();
    assert!(
        in_runs > outcomes.len() as u64,
        "{in_runs} requests in runs over {} seeds",
        outcomes.len()
    );
    assert_all_pass(&outcomes);
}

/// A quarter of CI's seeds again with a second topic deleted and created again
/// under its name throughout the fault phase (`SimOptions::recreate`): no creation's
/// records pass for another's, and each keeps what was acknowledged to it.
#[cfg(feature = "sim")]
#[test]
fn sim_ci_seeds_with_a_topic_deleted_and_created_again() {
    let options = SimOptions {
        recreate: true,
        ..SimOptions::default()
    };
    let outcomes = run_set(CI_SEEDS / 2..3 * CI_SEEDS / 4, &options);
    let recreated: u64 = outcomes.iter().map(|o| o.recreated).sum();
    assert!(
        recreated > outcomes.len() as u64,
        "created again {recreated} times over {} seeds",
        outcomes.len()
    );
    assert_all_pass(&outcomes);
}

/// Seeds that once failed because the schedule itself destroyed the last copy of
/// committed records: it killed the one replica holding them while the only other
/// in-sync replica had restarted without its data (memory storage).
#[cfg(feature = "sim")]
#[test]
fn sim_the_schedule_never_kills_the_last_holder_of_committed_records() {
    let options = SimOptions {
        fault_phase: Duration::from_secs(60),
        ..SimOptions::default()
    };
    assert_all_pass(&super::run_many(
        &[268_793_272_148_317],
        &options,
        1,
        &|_| {},
    ));
}

/// Found by a soak with a 60 s fault phase: a leader whose ISR expansion was
/// applied, but whose answer was lost and whose retry was refused once it had been
/// fenced, dropped the expansion and raised its HW past the new member, which the
/// controller then elected (rule 2, KIP-497).
#[cfg(feature = "sim")]
#[test]
fn sim_a_refused_retry_of_an_applied_expansion_keeps_the_hw_bounded() {
    let options = SimOptions {
        fault_phase: Duration::from_secs(60),
        flip_any_segment: true,
        ..SimOptions::default()
    };
    assert_all_pass(&super::run_many(
        &[241_230_445_146_179],
        &options,
        1,
        &|_| {},
    ));
}

/// Found by a soak: a refusal of a leader's earlier ISR proposal, duplicated by
/// the transport, arrived while its next proposal (adding a follower that had just
/// caught up) was pending. The leader took it for the answer, dropped the proposal
/// and raised its HW past the follower; the controller applied the proposal, then
/// elected that follower, which lacked committed records (rule 2, KIP-497).
#[cfg(feature = "sim")]
#[test]
fn sim_a_late_refusal_of_an_earlier_proposal_keeps_the_hw_bounded() {
    assert_all_pass(&super::run_many(
        &[27_638_505_608_774],
        &SimOptions::default(),
        1,
        &|_| {},
    ));
}

/// Found by a soak with `--groups` and a 60 s fault phase: the one offsets
/// partition and partition 1 of the sim's topic ended offline as rule 5 requires.
/// The settle phase then skipped partition 0 of every topic (it matched offline
/// partitions by number alone) and declared the cluster settled while a follower's
/// lost fetch still held the HW of the sim's partition 0 below its log end; the
/// final check also held the offline offsets partition to commits no coordinator
/// could load.
#[cfg(feature = "sim")]
#[test]
fn sim_offline_partitions_are_skipped_by_topic_and_partition() {
    let options = SimOptions {
        fault_phase: Duration::from_secs(60),
        groups: true,
        ..SimOptions::default()
    };
    let outcomes = super::run_many(&[33_000_903], &options, 1, &|_| {});
    assert!(
        outcomes[0].tally.offline_by_rule5 > 0,
        "the seed still ends with a partition offline by rule 5"
    );
    assert_all_pass(&outcomes);
}

/// Runs CI's seeds with `options` (a rule broken) until one fails; returns that
/// outcome.
#[cfg(feature = "sim")]
fn first_caught(options: SimOptions) -> Option<SimOutcome> {
    (0..CI_SEEDS)
        .map(|s| run(s, &options))
        .find(|o| !o.passed())
}

/// The default options with `rule` broken.
#[cfg(feature = "sim")]
fn breaking(rule: BrokenRule) -> SimOptions {
    SimOptions {
        broken: rule,
        ..SimOptions::default()
    }
}

#[cfg(feature = "sim")]
#[test]
fn sim_checker_catches_hw_taken_from_the_leader_alone() {
    let o = first_caught(breaking(BrokenRule::HwFromLeaderLeo))
        .expect("CI's seeds catch a broken HW rule");
    eprintln!("caught by seed {}:\n{}", o.seed, o.report());
}

#[cfg(feature = "sim")]
#[test]
fn sim_checker_catches_a_stop_replica_that_ignores_the_topic_id() {
    let o = first_caught(SimOptions {
        recreate: true,
        ..breaking(BrokenRule::StopAnyCreation)
    })
    .expect("CI's seeds catch a late StopReplica deleting the topic created again");
    eprintln!("caught by seed {}:\n{}", o.seed, o.report());
}

#[cfg(feature = "sim")]
#[test]
fn sim_checker_catches_a_compaction_that_forgets_pending_commits() {
    let o = first_caught(SimOptions {
        groups: true,
        ..breaking(BrokenRule::SnapshotWithoutPending)
    })
    .expect("CI's seeds catch a compaction that loses acknowledged commits");
    assert!(
        o.violations.iter().any(|v| v.contains("was acknowledged")),
        "{}",
        o.report()
    );
    eprintln!("caught by seed {}:\n{}", o.seed, o.report());
}

#[cfg(feature = "sim")]
#[test]
fn sim_checker_catches_election_of_any_live_replica() {
    let o = first_caught(breaking(BrokenRule::ElectAnyLive))
        .expect("CI's seeds catch a broken election rule");
    eprintln!("caught by seed {}:\n{}", o.seed, o.report());
}
