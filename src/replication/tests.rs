//! Table tests of the HW and ISR rules: no thread, no clock, no storage.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::TopicConfig;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{AlterPartitionError, PartitionState};

const LAG: Duration = Duration::from_millis(100);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn b(n: u32) -> BrokerId {
    BrokerId(n)
}

/// What the broker does with the leader's pending proposal: sends it as
/// AlterPartition `request_id`.
fn send_pending(leader: &mut Leader, request_id: u64) {
    let isr = leader.pending_isr().expect("a pending proposal").to_vec();
    leader.sending_proposal(&isr, request_id);
}

fn state(isr: &[u32], min_isr: u32) -> PartitionState {
    PartitionState {
        tp: TopicPartition::new("t", 0),
        topic_id: 1,
        replicas: vec![b(0), b(1), b(2)],
        leader: Some(b(0)),
        leader_epoch: 1,
        isr: isr.iter().map(|n| b(*n)).collect(),
        partition_epoch: 1,
        config: Arc::new(TopicConfig::new(1, 3).min_insync_replicas(min_isr)),
    }
}

/// One step of a scripted scenario.
enum Step {
    /// The leader's log grows to `leo`; `Some(id)` waits for acks=all.
    Append(u64, Option<u64>),
    /// Follower `b` fetches at offset `o` at time `t` ms.
    Fetch(u32, u64, u64),
    /// Tick at time `t` ms.
    Tick(u64),
    /// The controller confirms this ISR.
    Confirm(&'static [u32]),
}

/// Expected observation after a step.
struct Expect {
    hw: u64,
    acks: &'static [(u64, AckOutcome)],
    alter: Option<&'static [u32]>,
}

fn run(initial_isr: &[u32], min_isr: u32, script: &[(Step, Expect)]) {
    let mut st = state(initial_isr, min_isr);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    for (i, (step, expect)) in script.iter().enumerate() {
        let ready = match step {
            Step::Append(leo, w) => leader.appended(*leo, w.map(|id| (id, ms(10_000))), ms(0)),
            Step::Fetch(f, o, t) => leader.fetched(b(*f), 1, *o, ms(*t)),
            Step::Tick(t) => leader.tick(ms(*t)),
            Step::Confirm(isr) => {
                st.isr = isr.iter().map(|n| b(*n)).collect();
                st.partition_epoch += 1;
                leader.isr_updated(&st, ms(0))
            }
        };
        assert_eq!(leader.hw(), expect.hw, "step {i}: high watermark");
        assert_eq!(ready.acks, expect.acks.to_vec(), "step {i}: acks");
        let alter: Option<Vec<BrokerId>> = expect.alter.map(|a| a.iter().map(|n| b(*n)).collect());
        assert_eq!(ready.alter_isr, alter, "step {i}: AlterPartition proposal");
    }
}

use AckOutcome::*;
use Step::*;

#[test]
fn hw_is_min_leo_over_isr() {
    run(
        &[0, 1, 2],
        1,
        &[
            (
                Append(10, None),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 10, 1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 4, 1),
                Expect {
                    hw: 4,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 10, 2),
                Expect {
                    hw: 10,
                    acks: &[],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn hw_never_decreases() {
    let st = state(&[0, 1], 1);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    leader.appended(10, None, ms(0));
    leader.fetched(b(1), 1, 10, ms(1));
    assert_eq!(leader.hw(), 10);
    // A follower reporting an older offset (a reordered fetch) moves nothing back.
    leader.fetched(b(1), 1, 3, ms(2));
    assert_eq!(leader.hw(), 10);
    // Nor does an ISR expansion with a follower that is behind the HW.
    let mut wider = st.clone();
    wider.isr = vec![b(0), b(1), b(2)];
    wider.partition_epoch = 2;
    leader.isr_updated(&wider, ms(3));
    assert_eq!(leader.hw(), 10);
}

#[test]
fn acks_all_completes_when_hw_passes_the_record() {
    run(
        &[0, 1, 2],
        2,
        &[
            (
                Append(5, Some(7)),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 5, 1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 5, 1),
                Expect {
                    hw: 5,
                    acks: &[(7, Committed)],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn acks_all_waits_for_stalled_follower_until_it_leaves_the_isr() {
    run(
        &[0, 1, 2],
        2,
        &[
            (
                Append(5, Some(1)),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 5, 10),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            // Follower 2 never fetches. Within the lag time nothing changes.
            (
                Tick(50),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            // Past replica.lag.time.max it is proposed out…
            (
                Tick(150),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: Some(&[0, 1]),
                },
            ),
            // …but the HW still uses the larger ISR until the controller answers.
            (
                Fetch(1, 5, 160),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Confirm(&[0, 1]),
                Expect {
                    hw: 5,
                    acks: &[(1, Committed)],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn caught_up_follower_is_never_removed_from_isr() {
    // KAFKA-7152: a follower whose LEO equals the leader's is in sync however long
    // ago it last fetched.
    run(
        &[0, 1],
        1,
        &[
            (
                Append(5, None),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 5, 1),
                Expect {
                    hw: 5,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Tick(10_000),
                Expect {
                    hw: 5,
                    acks: &[],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn follower_rejoins_isr_on_reaching_hw() {
    run(
        &[0, 1],
        1,
        &[
            (
                Append(8, None),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 8, 1),
                Expect {
                    hw: 8,
                    acks: &[],
                    alter: None,
                },
            ),
            // Follower 2 is out of the ISR and behind the HW: not yet.
            (
                Fetch(2, 3, 2),
                Expect {
                    hw: 8,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 8, 3),
                Expect {
                    hw: 8,
                    acks: &[],
                    alter: Some(&[0, 1, 2]),
                },
            ),
            (
                Confirm(&[0, 1, 2]),
                Expect {
                    hw: 8,
                    acks: &[],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn committed_below_min_isr_is_reported() {
    run(
        &[0, 1],
        2,
        &[
            (
                Append(5, Some(3)),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Tick(500),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: Some(&[0]),
                },
            ),
            (
                Confirm(&[0]),
                Expect {
                    hw: 5,
                    acks: &[(3, CommittedBelowMinIsr { isr: 1 })],
                    alter: None,
                },
            ),
        ],
    );
}

#[test]
fn single_member_isr_commits_on_append() {
    run(
        &[0],
        1,
        &[(
            Append(3, Some(9)),
            Expect {
                hw: 3,
                acks: &[(9, Committed)],
                alter: None,
            },
        )],
    );
}

#[test]
fn min_isr_refuses_before_append() {
    let leader = Leader::new(b(0), &state(&[0], 2), 0, 0, LAG, ms(0));
    assert_eq!(leader.check_min_isr(), Err(1));
    let leader = Leader::new(b(0), &state(&[0, 1], 2), 0, 0, LAG, ms(0));
    assert_eq!(leader.check_min_isr(), Ok(()));
}

#[test]
fn waiters_time_out_and_resign_fails_the_rest() {
    let mut leader = Leader::new(b(0), &state(&[0, 1], 1), 0, 0, LAG, ms(0));
    leader.appended(1, Some((1, ms(50))), ms(0));
    leader.appended(2, Some((2, ms(500))), ms(0));
    assert_eq!(leader.next_deadline(), Some(ms(50)));
    let r = leader.tick(ms(60));
    assert_eq!(r.acks, vec![(1, TimedOut)]);
    assert_eq!(leader.resign(), vec![(2, NotLeader)]);
}

#[test]
fn unanswered_alter_partition_is_resent() {
    let mut leader = Leader::new(b(0), &state(&[0, 1], 1), 0, 0, LAG, ms(0));
    leader.appended(1, None, ms(0));
    let r = leader.tick(ms(500));
    assert_eq!(r.alter_isr, Some(vec![b(0)]));
    // No answer: the same proposal goes out again after the retry interval.
    assert_eq!(leader.tick(ms(600)).alter_isr, None);
    assert_eq!(leader.tick(ms(800)).alter_isr, Some(vec![b(0)]));
    send_pending(&mut leader, 2);
    leader.alter_refused(2, AlterPartitionError::IneligibleReplica);
    assert!(!leader.has_pending_isr());
}

/// Rule 2 with KIP-497: a proposal refused for a stale broker, leader or
/// partition epoch may have been applied by an earlier copy whose answer was lost
/// (found by the simulation, seed 241230445146179 with a 60 s fault phase: the
/// leader dropped its expansion on such a refusal, raised the HW past the joining
/// follower, which the controller already counted in the ISR and then elected).
/// It stays pending: its members keep bounding the HW, and it is sent again until
/// an answer or the controller's next state settles it.
#[test]
fn rule2_a_refusal_that_leaves_the_proposal_in_doubt_keeps_its_members_in_the_hw() {
    for error in [
        AlterPartitionError::StaleBrokerEpoch,
        AlterPartitionError::FencedLeaderEpoch,
        AlterPartitionError::InvalidUpdateVersion,
    ] {
        let st = state(&[0], 1);
        let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
        leader.appended(10, None, ms(0));
        assert_eq!(leader.hw(), 10, "alone in the ISR");
        // Follower 2 reaches the HW: proposed, and from now on it bounds the HW.
        let r = leader.fetched(b(2), 1, 10, ms(1));
        assert_eq!(r.alter_isr, Some(vec![b(0), b(2)]));
        leader.appended(20, None, ms(2));
        assert_eq!(leader.hw(), 10, "{error:?}: pending member at 10");
        send_pending(&mut leader, 1);
        leader.alter_refused(1, error);
        assert!(leader.has_pending_isr(), "{error:?}");
        leader.appended(30, None, ms(3));
        assert_eq!(
            leader.hw(),
            10,
            "{error:?}: still bounded by the pending member"
        );
        assert_eq!(
            leader.tick(ms(1_000)).alter_isr,
            Some(vec![b(0), b(2)]),
            "{error:?}: sent again"
        );
        // The same state again (a duplicate) settles nothing.
        leader.isr_updated(&st, ms(4));
        assert!(leader.has_pending_isr(), "{error:?}");
        assert_eq!(leader.hw(), 10);
        // The controller's next state settles it: here, the follower was added.
        let mut next = st.clone();
        next.partition_epoch = 2;
        next.isr = vec![b(0), b(2)];
        leader.isr_updated(&next, ms(5));
        assert!(!leader.has_pending_isr());
        assert_eq!(leader.hw(), 10, "{error:?}: the follower holds 10");
        leader.fetched(b(2), 1, 30, ms(6));
        assert_eq!(leader.hw(), 30);
    }
}

/// The other side: a refusal that proves the proposal was not applied (the
/// controller checked the partition epoch first) drops it, and the HW follows the
/// committed ISR again.
#[test]
fn rule2_a_refusal_that_proves_nothing_was_applied_drops_the_proposal() {
    for error in [
        AlterPartitionError::IneligibleReplica,
        AlterPartitionError::StaleMemberEpoch,
    ] {
        let st = state(&[0], 1);
        let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
        leader.appended(10, None, ms(0));
        leader.fetched(b(2), 1, 10, ms(1));
        leader.appended(20, None, ms(2));
        assert_eq!(leader.hw(), 10);
        send_pending(&mut leader, 1);
        leader.alter_refused(1, error);
        assert!(!leader.has_pending_isr(), "{error:?}");
        leader.appended(30, None, ms(3));
        assert_eq!(leader.hw(), 30, "{error:?}: alone in the ISR again");
    }
}

/// Rule 2 with KIP-497: only the refusal of a proposal's latest send drops it. The
/// controller refuses every copy numbered up to one it has answered, so that
/// refusal proves no copy can pass later; an answer to an earlier send, delivered
/// late or twice, proves nothing of the latest (found by the simulation, seed
/// 27638505608774: a duplicated refusal of an earlier proposal dropped the pending
/// one, the HW passed the joining follower, the controller applied the proposal
/// and later elected that follower, which lacked committed records).
#[test]
fn rule2_only_the_refusal_of_the_latest_send_drops_a_proposal() {
    use AlterPartitionError::IneligibleReplica;
    let mut leader = Leader::new(b(0), &state(&[0], 1), 0, 0, LAG, ms(0));
    leader.appended(10, None, ms(0));
    // Follower 2 reaches the HW: proposed as request 1, refused (say, it was still
    // fenced), dropped.
    assert_eq!(
        leader.fetched(b(2), 1, 10, ms(1)).alter_isr,
        Some(vec![b(0), b(2)])
    );
    send_pending(&mut leader, 1);
    leader.alter_refused(1, IneligibleReplica);
    assert!(!leader.has_pending_isr());
    // Proposed again as request 2; the first refusal arrives a second time.
    assert_eq!(
        leader.fetched(b(2), 1, 10, ms(2)).alter_isr,
        Some(vec![b(0), b(2)])
    );
    send_pending(&mut leader, 2);
    leader.alter_refused(1, IneligibleReplica);
    assert!(leader.has_pending_isr(), "an old answer settles nothing");
    leader.appended(20, None, ms(3));
    assert_eq!(leader.hw(), 10, "the pending member still bounds the HW");
    // Unanswered, sent again as request 3: the answer to request 2 is no longer
    // the last word either.
    assert_eq!(leader.tick(ms(300)).alter_isr, Some(vec![b(0), b(2)]));
    send_pending(&mut leader, 3);
    leader.alter_refused(2, IneligibleReplica);
    assert!(leader.has_pending_isr());
    assert_eq!(leader.hw(), 10);
    // The refusal of request 3 settles it: the HW follows the leader alone again.
    leader.alter_refused(3, IneligibleReplica);
    assert!(!leader.has_pending_isr());
    leader.appended(30, None, ms(301));
    assert_eq!(leader.hw(), 30);
}

#[test]
fn stale_state_does_not_replace_newer_isr() {
    let st = state(&[0, 1, 2], 1);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    let mut newer = st.clone();
    newer.partition_epoch = 5;
    newer.isr = vec![b(0), b(1)];
    leader.isr_updated(&newer, ms(0));
    let mut older = st.clone();
    older.partition_epoch = 3;
    leader.isr_updated(&older, ms(0));
    assert_eq!(leader.isr(), &[b(0), b(1)]);
    // A state from another leader epoch is not this leader's to apply.
    let mut other = newer.clone();
    other.leader_epoch = 9;
    other.isr = vec![b(0)];
    leader.isr_updated(&other, ms(0));
    assert_eq!(leader.isr(), &[b(0), b(1)]);
}

#[test]
fn a_follower_that_never_fetched_is_not_proposed_into_the_isr() {
    run(
        &[0, 1],
        1,
        &[
            // Follower 2 is out of the ISR and has not fetched: its LEO is unknown,
            // not 0, even though the HW is 0.
            (
                Tick(1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(1, 0, 2),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 0, 3),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: Some(&[0, 1, 2]),
                },
            ),
        ],
    );
}

#[test]
fn a_follower_the_controller_removed_must_fetch_again_to_rejoin() {
    run(
        &[0, 1, 2],
        1,
        &[
            (
                Fetch(1, 0, 1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            (
                Fetch(2, 0, 1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            // Broker 2 died; the controller took it out of the ISR.
            (
                Confirm(&[0, 1]),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            // Follower 1's next fetch does not bring the dead one back.
            (
                Fetch(1, 0, 2),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: None,
                },
            ),
            // Once it fetches again (restarted), it rejoins.
            (
                Fetch(2, 0, 3),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: Some(&[0, 1, 2]),
                },
            ),
        ],
    );
}

#[test]
fn a_follower_that_stopped_fetching_is_not_proposed_back() {
    run(
        &[0, 1],
        1,
        &[
            (
                Fetch(2, 0, 1),
                Expect {
                    hw: 0,
                    acks: &[],
                    alter: Some(&[0, 1, 2]),
                },
            ),
            // Refused (say, it was fenced meanwhile); its fetch is now older than
            // replica.lag.time.max, so a later fetch by another follower does not
            // propose it again.
        ],
    );
    let st = state(&[0, 1], 1);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    assert_eq!(
        leader.fetched(b(2), 1, 0, ms(1)).alter_isr,
        Some(vec![b(0), b(1), b(2)])
    );
    send_pending(&mut leader, 1);
    leader.alter_refused(1, AlterPartitionError::IneligibleReplica);
    assert_eq!(leader.fetched(b(1), 1, 0, ms(500)).alter_isr, None);
}

/// Rule 4 with KIP-903: a follower's new incarnation (a higher broker epoch in its
/// fetches) starts from what it fetches now; a late fetch of the old one changes
/// nothing; an ISR proposal carries the epoch the leader saw.
#[test]
fn kip903_a_restarted_follower_starts_over_and_late_fetches_of_its_old_self_are_ignored() {
    let st = state(&[0, 1], 1);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    leader.appended(10, None, ms(0));
    leader.fetched(b(2), 1, 10, ms(1));
    assert_eq!(leader.member_epochs(&[b(0), b(1), b(2)]), vec![(b(2), 1)]);
    // Restarted empty (epoch 2): its progress starts over from 0.
    assert!(leader.incarnation(b(2), 2));
    assert_eq!(leader.member_epochs(&[b(2)]), vec![(b(2), 2)]);
    send_pending(&mut leader, 1);
    leader.alter_refused(1, AlterPartitionError::StaleMemberEpoch);
    // The old incarnation's fetch at 10, delivered late, is not progress.
    assert!(!leader.incarnation(b(2), 1));
    assert_eq!(leader.fetched(b(2), 1, 10, ms(2)).alter_isr, None);
    // The new one, caught up, is.
    let ready = leader.fetched(b(2), 2, 10, ms(3));
    assert_eq!(ready.alter_isr, Some(vec![b(0), b(1), b(2)]));
    assert_eq!(
        leader.sending_proposal(&[b(0), b(1), b(2)], 2),
        vec![(b(2), 2)]
    );
}

/// KIP-903: an unanswered proposal is resent with the member epochs it was made
/// on. The follower caught up in one incarnation and restarted before the answer:
/// the resend must not vouch for the new incarnation, which has nothing yet.
#[test]
fn kip903_a_resent_proposal_carries_the_epochs_it_was_made_on() {
    let st = state(&[0, 1], 1);
    let mut leader = Leader::new(b(0), &st, 0, 0, LAG, ms(0));
    leader.appended(10, None, ms(0));
    let isr = vec![b(0), b(1), b(2)];
    assert_eq!(
        leader.fetched(b(2), 1, 10, ms(1)).alter_isr,
        Some(isr.clone())
    );
    // Restarted (epoch 2) while the proposal is unanswered.
    assert_eq!(leader.fetched(b(2), 2, 0, ms(2)).alter_isr, None);
    assert_eq!(leader.tick(ms(300)).alter_isr, Some(isr.clone()));
    assert_eq!(leader.sending_proposal(&isr, 1), vec![(b(2), 1)]);
}
