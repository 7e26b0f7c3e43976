//! Coordinator scenarios: joins, heartbeats, rebalances (cooperative and eager),
//! session timeouts, static membership, commits and replay.

use std::time::Duration;

use crate::group::{AssignorKind, Committer, Coordinator, JoinRequest, MemberState, OffsetRecord};
use crate::ids::TopicPartition;
use crate::Error;

const GROUP: &str = "g";
const SESSION: Duration = Duration::from_secs(10);

/// `n` milliseconds of virtual time.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Partition `p` of topic `t`.
fn tp(p: u32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Partitions `ps` of topic `t`.
fn tps(ps: &[u32]) -> Vec<TopicPartition> {
    ps.iter().map(|p| tp(*p)).collect()
}

/// A coordinator that knows topic `t` with 6 partitions.
fn coordinator() -> Coordinator {
    let mut c = Coordinator::new("b0e1", 50);
    c.topic_partitions_changed("t", Some(6));
    c
}

/// A join request for topic `t`.
fn request(client: &str, assignor: AssignorKind, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group: GROUP.into(),
        member_id: None,
        instance_id: instance.map(str::to_owned),
        client_id: client.into(),
        topics: vec!["t".into()],
        assignor,
        session_timeout: SESSION,
    }
}

/// A simulated consumer: applies each answer as the Consumer would.
#[derive(Debug)]
struct Sim {
    member_id: String,
    generation: u32,
    owned: Vec<TopicPartition>,
    done: bool,
}

impl Sim {
    /// Joins and applies the answer.
    fn join(c: &mut Coordinator, req: JoinRequest, now: Duration) -> Sim {
        let state = c.join(req, now).expect("join");
        let mut sim = Sim {
            member_id: state.member_id.clone(),
            generation: 0,
            owned: Vec::new(),
            done: false,
        };
        sim.apply(&state);
        sim
    }

    /// Applies an answer: drop `revoke`, own `assigned`.
    fn apply(&mut self, state: &MemberState) {
        assert_eq!(state.member_id, self.member_id);
        for r in &state.revoke {
            assert!(self.owned.contains(r), "revokes only what it owns: {r}");
        }
        self.generation = state.generation;
        self.owned = state.assigned.clone();
        self.done = !state.rebalance_in_progress;
    }

    /// Heartbeats, applies the answer and returns it.
    fn heartbeat(&mut self, c: &mut Coordinator, now: Duration) -> MemberState {
        let state = c
            .heartbeat(GROUP, &self.member_id, self.generation, &self.owned, now)
            .expect("heartbeat");
        self.apply(&state);
        state
    }
}

/// Heartbeats every member in turn until all have converged, checking after every
/// step that no partition is owned by two members.
fn converge(c: &mut Coordinator, sims: &mut [&mut Sim], now: Duration) {
    for _ in 0..10 {
        for i in 0..sims.len() {
            sims[i].heartbeat(c, now);
            assert_disjoint(sims_owned(sims));
        }
        if sims.iter().all(|s| s.done) {
            return;
        }
    }
    panic!("group did not converge: {sims:?}");
}

/// What each member owns.
fn sims_owned(sims: &[&mut Sim]) -> Vec<Vec<TopicPartition>> {
    sims.iter().map(|s| s.owned.clone()).collect()
}

/// No partition owned twice.
fn assert_disjoint(owned: Vec<Vec<TopicPartition>>) {
    let mut all: Vec<TopicPartition> = owned.into_iter().flatten().collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a partition has two owners");
}

#[test]
fn first_member_gets_every_partition_at_once() {
    let mut c = coordinator();
    let a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    assert_eq!(a.owned, tps(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(a.generation, 1);
    assert!(a.done);
    assert!(a.member_id.starts_with("a-b0e1-"), "{}", a.member_id);
}

#[test]
fn two_members_split_the_partitions() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let mut b = Sim::join(&mut c, request("b", AssignorKind::default(), None), ms(1));
    assert_ne!(a.member_id, b.member_id);
    converge(&mut c, &mut [&mut a, &mut b], ms(2));
    assert_eq!(a.owned.len(), 3);
    assert_eq!(b.owned.len(), 3);
    assert_disjoint(vec![a.owned.clone(), b.owned.clone()]);
    assert_eq!(a.generation, 2);
    assert!(c.describe(GROUP).expect("group").stable);
}

#[test]
fn cooperative_rebalance_revokes_only_partitions_that_move_and_grants_them_after_release() {
    let mut c = coordinator();
    let mut a = Sim::join(
        &mut c,
        request("a", AssignorKind::CooperativeSticky, None),
        ms(0),
    );
    let before = a.owned.clone();

    let b_join = c
        .join(request("b", AssignorKind::CooperativeSticky, None), ms(1))
        .expect("join");
    let mut b = Sim {
        member_id: b_join.member_id.clone(),
        generation: 0,
        owned: Vec::new(),
        done: false,
    };
    b.apply(&b_join);
    // A still owns everything: B gets nothing yet, and waits for 3.
    assert!(b_join.assigned.is_empty());
    assert_eq!(b_join.pending.len(), 3);
    assert!(b_join.rebalance_in_progress);

    let a_hb = a.heartbeat(&mut c, ms(2));
    assert_eq!(
        a_hb.revoke, b_join.pending,
        "A revokes exactly what B will get"
    );
    assert_eq!(a_hb.assigned.len(), 3);
    assert!(
        a_hb.assigned.iter().all(|p| before.contains(p)),
        "the rest stays"
    );
    // A may commit the revoked partitions with the generation it was told.
    let offsets: Vec<(TopicPartition, u64)> = a_hb.revoke.iter().map(|p| (p.clone(), 7)).collect();
    let member = Committer::Member {
        member_id: &a.member_id,
        generation: a_hb.generation,
    };
    let records = c.commit(GROUP, member, &offsets, ms(2)).expect("commit");
    c.commit_applied(&records);

    // A's answer dropped them, but A has not acknowledged yet (has not heartbeated
    // without them): its earlier report still counts, so B waits.
    let b_hb = c
        .heartbeat(GROUP, &b.member_id, b.generation, &b.owned, ms(3))
        .expect("heartbeat");
    assert!(b_hb.assigned.is_empty(), "not before A released them");

    // A heartbeats without them: released. Nothing A keeps is revoked.
    let a_hb2 = a.heartbeat(&mut c, ms(4));
    assert!(a_hb2.revoke.is_empty());
    assert!(!a_hb2.rebalance_in_progress);

    let b_hb2 = b.heartbeat(&mut c, ms(5));
    assert_eq!(b_hb2.assigned, a_hb.revoke);
    assert!(!b_hb2.rebalance_in_progress);
    for p in &b_hb2.assigned {
        assert_eq!(c.committed(GROUP, p), Some(7), "B sees A's last commit");
    }
    assert!(c.describe(GROUP).expect("group").stable);
}

#[test]
fn eager_rebalance_revokes_everything_before_anyone_is_assigned() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::Range, None), ms(0));
    assert_eq!(a.owned, tps(&[0, 1, 2, 3, 4, 5]));
    let mut b = Sim::join(&mut c, request("b", AssignorKind::Range, None), ms(1));
    assert!(b.owned.is_empty());

    // A must give up everything, even the partitions Range gives it back.
    let a_hb = a.heartbeat(&mut c, ms(2));
    assert_eq!(a_hb.revoke, tps(&[0, 1, 2, 3, 4, 5]));
    assert!(a_hb.assigned.is_empty());
    assert!(a_hb.rebalance_in_progress);
    // B gets nothing while A has not acknowledged.
    let b_hb = b.heartbeat(&mut c, ms(3));
    assert!(b_hb.assigned.is_empty());
    assert!(b_hb.rebalance_in_progress);

    // A acknowledges (owns nothing): now both get their Range assignment.
    let a_hb = a.heartbeat(&mut c, ms(4));
    let b_hb = b.heartbeat(&mut c, ms(5));
    let (first, second) = if a.member_id < b.member_id {
        (&a_hb, &b_hb)
    } else {
        (&b_hb, &a_hb)
    };
    assert_eq!(first.assigned, tps(&[0, 1, 2]));
    assert_eq!(second.assigned, tps(&[3, 4, 5]));
    assert!(!a_hb.rebalance_in_progress && !b_hb.rebalance_in_progress);
}

#[test]
fn member_that_leaves_loses_its_partitions_to_the_others() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let mut b = Sim::join(&mut c, request("b", AssignorKind::default(), None), ms(1));
    converge(&mut c, &mut [&mut a, &mut b], ms(2));
    let generation = a.generation;

    assert!(c.leave(GROUP, &b.member_id, ms(3)));
    assert!(
        !c.leave(GROUP, &b.member_id, ms(3)),
        "leaving twice is harmless"
    );
    let a_hb = a.heartbeat(&mut c, ms(4));
    assert_eq!(a_hb.assigned, tps(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(a_hb.generation, generation + 1);
    assert!(!a_hb.rebalance_in_progress);
}

#[test]
fn member_that_stops_heartbeating_loses_its_partitions_at_session_timeout() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let mut b = Sim::join(&mut c, request("b", AssignorKind::default(), None), ms(0));
    converge(&mut c, &mut [&mut a, &mut b], ms(0));
    a.heartbeat(&mut c, ms(6_000));

    assert_eq!(c.next_deadline(), Some(ms(10_000)), "B's deadline");
    assert!(c.tick(ms(9_999)).is_empty());
    let expired = c.tick(ms(10_000));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].member_id, b.member_id);
    assert_eq!(c.next_deadline(), Some(ms(16_000)), "A's deadline");
    let generation = a.generation;

    let a_hb = a.heartbeat(&mut c, ms(10_001));
    assert_eq!(a_hb.assigned, tps(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(a_hb.generation, generation + 1);
    // B, back from a long pause, is told it is no longer a member.
    let err = c
        .heartbeat(GROUP, &b.member_id, b.generation, &b.owned, ms(10_002))
        .expect_err("expired");
    assert!(matches!(err, Error::IllegalGeneration { .. }), "{err}");
}

#[test]
fn stale_generation_commit_is_refused_and_changes_nothing() {
    let mut c = coordinator();
    let a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let old = a.generation;
    let records = c
        .commit(
            GROUP,
            Committer::Member {
                member_id: &a.member_id,
                generation: old,
            },
            &[(tp(0), 10)],
            ms(1),
        )
        .expect("current generation");
    c.commit_applied(&records);
    let _b = Sim::join(&mut c, request("b", AssignorKind::default(), None), ms(2));

    let zombie = Committer::Member {
        member_id: &a.member_id,
        generation: old,
    };
    let err = c
        .commit(GROUP, zombie, &[(tp(0), 99)], ms(3))
        .expect_err("stale");
    match err {
        Error::IllegalGeneration {
            group,
            generation,
            current,
        } => {
            assert_eq!(group, GROUP);
            assert_eq!(generation, old);
            assert_eq!(current, old + 1);
        }
        other => panic!("expected IllegalGeneration, got {other}"),
    }
    let unknown = Committer::Member {
        member_id: "nobody",
        generation: old + 1,
    };
    let err = c.commit(GROUP, unknown, &[(tp(0), 99)], ms(3));
    assert!(matches!(err, Err(Error::IllegalGeneration { .. })));
    assert_eq!(c.committed(GROUP, &tp(0)), Some(10), "nothing recorded");
}

#[test]
fn standalone_commit_is_accepted_only_while_the_group_has_no_members() {
    let mut c = coordinator();
    let records = c
        .commit(
            "manual",
            Committer::Standalone,
            &[(tp(1), 5), (tp(2), 6)],
            ms(0),
        )
        .expect("no members");
    assert_eq!(records.len(), 2);
    c.commit_applied(&records);
    assert_eq!(c.committed("manual", &tp(1)), Some(5));
    assert_eq!(c.committed("manual", &tp(2)), Some(6));

    let _a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(1));
    let err = c
        .commit(GROUP, Committer::Standalone, &[(tp(1), 5)], ms(2))
        .expect_err("group has a member");
    assert!(matches!(err, Error::Usage(_)), "{err}");
}

#[test]
fn commit_is_visible_only_after_it_is_applied() {
    let mut c = coordinator();
    let records = c
        .commit(GROUP, Committer::Standalone, &[(tp(0), 3)], ms(0))
        .expect("commit");
    assert_eq!(c.committed(GROUP, &tp(0)), None, "not before it is written");
    c.commit_applied(&records);
    assert_eq!(c.committed(GROUP, &tp(0)), Some(3));
}

#[test]
fn static_member_rejoining_within_session_timeout_keeps_assignment_without_rebalance() {
    let mut c = coordinator();
    let mut s = Sim::join(
        &mut c,
        request("s", AssignorKind::default(), Some("i1")),
        ms(0),
    );
    let mut d = Sim::join(&mut c, request("d", AssignorKind::default(), None), ms(0));
    converge(&mut c, &mut [&mut s, &mut d], ms(0));
    let generation = s.generation;

    // The static member's process closes: it does not leave the group.
    assert!(!c.leave(GROUP, &s.member_id, ms(1_000)));
    let d_hb = d.heartbeat(&mut c, ms(1_001));
    assert_eq!(
        d_hb.generation, generation,
        "no rebalance on a static close"
    );

    // It restarts within its session timeout: a new member id, the same partitions.
    let restarted = c
        .join(request("s", AssignorKind::default(), Some("i1")), ms(5_000))
        .expect("rejoin");
    assert_ne!(restarted.member_id, s.member_id);
    assert_eq!(restarted.generation, generation);
    assert_eq!(restarted.assigned, s.owned);
    assert!(!restarted.rebalance_in_progress);
    let d_hb = d.heartbeat(&mut c, ms(5_001));
    assert_eq!(d_hb.generation, generation);
    assert_eq!(d_hb.assigned, d.owned);

    // The old member id is fenced: a second process with the same instance id.
    let err = c
        .heartbeat(GROUP, &s.member_id, generation, &s.owned, ms(5_002))
        .expect_err("fenced");
    assert!(
        matches!(err, Error::Usage(ref m) if m.contains("i1")),
        "{err}"
    );
}

#[test]
fn static_member_rejoining_after_session_timeout_starts_a_rebalance() {
    let mut c = coordinator();
    let s = Sim::join(
        &mut c,
        request("s", AssignorKind::default(), Some("i1")),
        ms(0),
    );
    let state = c
        .join(request("s", AssignorKind::default(), Some("i1")), SESSION)
        .expect("rejoin");
    assert_ne!(state.member_id, s.member_id);
    assert!(state.generation > s.generation);
    assert_eq!(c.describe(GROUP).expect("group").members.len(), 1);
}

#[test]
fn offsets_replayed_from_records_rebuild_committed() {
    let mut old = coordinator();
    let mut log: Vec<(bytes::Bytes, bytes::Bytes)> = Vec::new();
    for (p, offset) in [(0, 5), (1, 8), (0, 9)] {
        let records = old
            .commit(GROUP, Committer::Standalone, &[(tp(p), offset)], ms(0))
            .expect("commit");
        log.extend(records.iter().map(OffsetRecord::encode));
        old.commit_applied(&records);
    }
    let tombstones = old.delete_group("other").expect("unknown group: nothing");
    assert!(tombstones.is_empty());

    let mut new = Coordinator::new("b1e1", 50);
    for (key, value) in &log {
        new.replay(&OffsetRecord::decode(key, value).expect("decode"));
    }
    assert_eq!(
        new.committed(GROUP, &tp(0)),
        Some(9),
        "the last commit wins"
    );
    assert_eq!(new.committed(GROUP, &tp(1)), Some(8));
    assert_eq!(new.committed(GROUP, &tp(2)), None);

    // Group deletion writes tombstones; replaying them forgets the offsets.
    let tombstones = new.delete_group(GROUP).expect("no members");
    assert_eq!(tombstones.len(), 2);
    for t in &tombstones {
        let (key, value) = t.encode();
        new.replay(&OffsetRecord::decode(&key, &value).expect("decode"));
    }
    assert_eq!(new.committed(GROUP, &tp(0)), None);
    assert!(new.describe(GROUP).is_none());
}

#[test]
fn snapshot_keeps_the_last_value_of_each_live_offset_of_the_partition_with_pending_commits_over_it()
{
    let mut c = Coordinator::new("b0e1", 3);
    // Two groups that `__consumer_offsets` partition 0 holds, one that another does.
    let groups: Vec<String> = (0..40).map(|i| format!("g{i}")).collect();
    let on = |p: u32| -> Vec<&String> {
        groups
            .iter()
            .filter(|g| crate::group::partition_for(g, 3) == p)
            .take(2)
            .collect()
    };
    let (here, there) = (on(0), on(1));
    let (a, b, other) = (here[0].as_str(), here[1].as_str(), there[0].as_str());
    for (group, p, offset) in [(a, 0, 5), (a, 1, 7), (a, 0, 9), (b, 2, 4), (other, 0, 1)] {
        let records = c
            .commit(group, Committer::Standalone, &[(tp(p), offset)], ms(0))
            .expect("commit");
        c.commit_applied(&records);
    }
    let tombstones = c.delete_group(b).expect("no members");
    c.commit_applied(&tombstones);
    let rec = |group: &str, p: u32, offset: Option<u64>| OffsetRecord {
        group: group.to_string(),
        tp: tp(p),
        offset,
    };
    assert_eq!(
        c.snapshot(0, []),
        vec![rec(a, 0, Some(9)), rec(a, 1, Some(7))],
        "last values only, the deleted group gone, the other partition's group apart"
    );
    // Written but not yet applied, in log order: a newer value, a deletion, a new
    // offset, and one of a group another partition holds.
    let pending = [
        rec(a, 0, Some(11)),
        rec(a, 0, Some(12)),
        rec(a, 1, None),
        rec(b, 3, Some(2)),
        rec(other, 5, Some(8)),
    ];
    assert_eq!(
        c.snapshot(0, &pending),
        vec![rec(a, 0, Some(12)), rec(b, 3, Some(2))]
    );
    // Replaying the snapshot alone rebuilds what replaying everything would.
    let mut fresh = Coordinator::new("b1e1", 3);
    for r in c.snapshot(0, []) {
        fresh.replay(&r);
    }
    assert_eq!(fresh.committed(a, &tp(0)), Some(9));
    assert_eq!(fresh.committed(a, &tp(1)), Some(7));
    assert_eq!(fresh.committed(b, &tp(2)), None);
    assert_eq!(fresh.committed(other, &tp(0)), None);
}

#[test]
fn topic_growth_rebalances_subscribed_groups_only() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    assert!(c.topic_partitions_changed("other", Some(3)).is_empty());
    assert!(
        c.topic_partitions_changed("t", Some(6)).is_empty(),
        "no change"
    );
    assert_eq!(
        c.topic_partitions_changed("t", Some(8)),
        vec![GROUP.to_string()]
    );
    let hb = a.heartbeat(&mut c, ms(1));
    assert_eq!(hb.generation, 2);
    assert_eq!(hb.assigned, tps(&[0, 1, 2, 3, 4, 5, 6, 7]));
    // Deletion revokes everything.
    c.topic_partitions_changed("t", None);
    let hb = a.heartbeat(&mut c, ms(2));
    assert_eq!(hb.revoke.len(), 8);
    assert!(hb.assigned.is_empty());
}

#[test]
fn join_refuses_bad_requests_with_what_to_fix() {
    let mut c = coordinator();
    let _a = Sim::join(
        &mut c,
        request("a", AssignorKind::CooperativeSticky, None),
        ms(0),
    );
    let mut no_topics = request("b", AssignorKind::default(), None);
    no_topics.topics.clear();
    let mut no_group = request("b", AssignorKind::default(), None);
    no_group.group.clear();
    let mut no_timeout = request("b", AssignorKind::default(), None);
    no_timeout.session_timeout = Duration::ZERO;
    let cases = [
        (no_topics, "subscribe"),
        (no_group, "group.id"),
        (no_timeout, "session.timeout.ms"),
        (
            request("b", AssignorKind::Range, None),
            "partition.assignment.strategy",
        ),
        (
            request("b", AssignorKind::default(), Some("")),
            "group.instance.id",
        ),
    ];
    for (req, says) in cases {
        let err = c.join(req, ms(1)).expect_err("refused");
        assert!(err.to_string().contains(says), "{err}");
    }
    assert_eq!(c.describe(GROUP).expect("group").members.len(), 1);
}

#[test]
fn rejoin_with_a_new_subscription_rebalances_and_a_repeat_does_not() {
    let mut c = coordinator();
    c.topic_partitions_changed("u", Some(2));
    let a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let mut again = request("a", AssignorKind::default(), None);
    again.member_id = Some(a.member_id.clone());
    let same = c.join(again.clone(), ms(1)).expect("repeat");
    assert_eq!(same.member_id, a.member_id);
    assert_eq!(same.generation, a.generation);
    again.topics = vec!["t".into(), "u".into()];
    let wider = c.join(again, ms(2)).expect("resubscribe");
    assert_eq!(wider.generation, a.generation + 1);
    assert_eq!(wider.assigned.len(), 8);
}

#[test]
fn unload_forgets_only_the_groups_of_that_offsets_partition() {
    let mut c = coordinator();
    // "hello" → partition 22 of 50, "billing" → 9.
    for g in ["hello", "billing"] {
        let records = c
            .commit(g, Committer::Standalone, &[(tp(0), 1)], ms(0))
            .expect("commit");
        c.commit_applied(&records);
    }
    assert_eq!(c.unload(22), vec!["hello".to_string()]);
    assert_eq!(c.committed("hello", &tp(0)), None);
    assert_eq!(c.committed("billing", &tp(0)), Some(1));
}

#[test]
fn random_schedules_never_give_a_partition_to_two_members_and_converge() {
    for assignor in [
        AssignorKind::CooperativeSticky,
        AssignorKind::Range,
        AssignorKind::RoundRobin,
    ] {
        for seed in 1..=20u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let mut c = coordinator();
            let mut partitions = 6;
            let mut sims: Vec<Sim> = Vec::new();
            let mut clients = 0;
            for step in 0..60u64 {
                let now = ms(step);
                match next(10) {
                    0 | 1 if sims.len() < 5 => {
                        clients += 1;
                        let req = request(&format!("c{clients}"), assignor, None);
                        sims.push(Sim::join(&mut c, req, now));
                    }
                    2 if !sims.is_empty() => {
                        let gone = sims.remove(next(sims.len() as u64) as usize);
                        c.leave(GROUP, &gone.member_id, now);
                    }
                    3 if partitions < 12 => {
                        partitions += 1;
                        c.topic_partitions_changed("t", Some(partitions));
                    }
                    _ if !sims.is_empty() => {
                        let i = next(sims.len() as u64) as usize;
                        sims[i].heartbeat(&mut c, now);
                    }
                    _ => {}
                }
                assert_disjoint(sims.iter().map(|s| s.owned.clone()).collect());
            }
            if sims.is_empty() {
                continue;
            }
            let mut refs: Vec<&mut Sim> = sims.iter_mut().collect();
            converge(&mut c, &mut refs, ms(100));
            let owned: Vec<usize> = sims.iter().map(|s| s.owned.len()).collect();
            assert_eq!(
                owned.iter().sum::<usize>(),
                partitions as usize,
                "{assignor:?} seed {seed}"
            );
            let (max, min) = (owned.iter().max(), owned.iter().min());
            assert!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "{assignor:?} seed {seed}: {owned:?}"
            );
            assert!(c.describe(GROUP).expect("group").stable);
        }
    }
}

#[test]
fn members_expiring_together_cause_one_rebalance() {
    let mut c = coordinator();
    let mut a = Sim::join(&mut c, request("a", AssignorKind::default(), None), ms(0));
    let _b = Sim::join(&mut c, request("b", AssignorKind::default(), None), ms(0));
    let _d = Sim::join(&mut c, request("d", AssignorKind::default(), None), ms(0));
    a.heartbeat(&mut c, ms(5_000));
    let generation = a.generation;
    assert_eq!(c.tick(SESSION).len(), 2);
    let hb = a.heartbeat(&mut c, SESSION);
    assert_eq!(hb.generation, generation + 1);
    assert_eq!(hb.assigned, tps(&[0, 1, 2, 3, 4, 5]));
}
