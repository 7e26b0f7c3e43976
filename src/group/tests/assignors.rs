//! Assignor tables: Range and RoundRobin against Kafka's documented examples,
//! CooperativeSticky for balance and minimal movement.

use std::collections::{BTreeMap, BTreeSet};

use crate::group::assignor::{assign, AssignorKind, MemberSubscription};
use crate::ids::TopicPartition;

/// `"t0-1"` → `TopicPartition::new("t0", 1)`.
fn tp(s: &str) -> TopicPartition {
    let (topic, p) = s.rsplit_once('-').expect("topic-partition");
    TopicPartition::new(topic, p.parse().expect("partition"))
}

/// Members `(id, topics, current)` as assignor input.
fn members(spec: &[(&str, &[&str], &[&str])]) -> BTreeMap<String, MemberSubscription> {
    spec.iter()
        .map(|(id, topics, current)| {
            let sub = MemberSubscription {
                instance_id: None,
                topics: topics.iter().map(|t| t.to_string()).collect(),
                current: current.iter().map(|s| tp(s)).collect(),
            };
            (id.to_string(), sub)
        })
        .collect()
}

/// Topic partition counts.
fn topics(spec: &[(&str, u32)]) -> BTreeMap<String, u32> {
    spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

/// An assignment as `member → ["t-p", ...]`, for readable golden tables.
fn render(out: &BTreeMap<String, Vec<TopicPartition>>) -> BTreeMap<String, Vec<String>> {
    out.iter()
        .map(|(m, tps)| (m.clone(), tps.iter().map(|tp| tp.to_string()).collect()))
        .collect()
}

/// Expected table `member → ["t-p", ...]`.
fn table(spec: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    spec.iter()
        .map(|(m, tps)| (m.to_string(), tps.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// Partitions that changed owner between two assignments (or became unowned).
fn moved(
    before: &BTreeMap<String, Vec<TopicPartition>>,
    after: &BTreeMap<String, Vec<TopicPartition>>,
) -> usize {
    before
        .iter()
        .flat_map(|(m, tps)| tps.iter().map(move |tp| (m, tp)))
        .filter(|(m, tp)| !after.get(*m).is_some_and(|a| a.contains(tp)))
        .count()
}

/// Golden table: each case is (assignor, members, topic counts, expected).
#[test]
fn range_and_round_robin_match_kafka_golden_tables() {
    type Case<'a> = (
        AssignorKind,
        &'a [(&'a str, &'a [&'a str], &'a [&'a str])],
        &'a [(&'a str, u32)],
        &'a [(&'a str, &'a [&'a str])],
    );
    let both: &[&str] = &["t0", "t1"];
    let cases: &[Case] = &[
        // Kafka's RangeAssignor javadoc: C0 gets t0p0,t0p1,t1p0,t1p1; C1 the rest.
        (
            AssignorKind::Range,
            &[("c0", both, &[]), ("c1", both, &[])],
            &[("t0", 3), ("t1", 3)],
            &[
                ("c0", &["t0-0", "t0-1", "t1-0", "t1-1"]),
                ("c1", &["t0-2", "t1-2"]),
            ],
        ),
        // Kafka's RoundRobinAssignor javadoc, same input.
        (
            AssignorKind::RoundRobin,
            &[("c0", both, &[]), ("c1", both, &[])],
            &[("t0", 3), ("t1", 3)],
            &[
                ("c0", &["t0-0", "t0-2", "t1-1"]),
                ("c1", &["t0-1", "t1-0", "t1-2"]),
            ],
        ),
        // Range, 3 members over 7 partitions: the first 7 % 3 = 1 gets one extra.
        (
            AssignorKind::Range,
            &[("a", &["t"], &[]), ("b", &["t"], &[]), ("c", &["t"], &[])],
            &[("t", 7)],
            &[
                ("a", &["t-0", "t-1", "t-2"]),
                ("b", &["t-3", "t-4"]),
                ("c", &["t-5", "t-6"]),
            ],
        ),
        // RoundRobinAssignor javadoc, unequal subscriptions: C0 {t0}, C1 {t0,t1},
        // C2 {t0,t1,t2}; t0 has 1 partition, t1 2, t2 3.
        (
            AssignorKind::RoundRobin,
            &[
                ("c0", &["t0"], &[]),
                ("c1", &["t0", "t1"], &[]),
                ("c2", &["t0", "t1", "t2"], &[]),
            ],
            &[("t0", 1), ("t1", 2), ("t2", 3)],
            &[
                ("c0", &["t0-0"]),
                ("c1", &["t1-0"]),
                ("c2", &["t1-1", "t2-0", "t2-1", "t2-2"]),
            ],
        ),
        // More members than partitions: the extra member gets nothing, but appears.
        (
            AssignorKind::Range,
            &[("a", &["t"], &[]), ("b", &["t"], &[]), ("c", &["t"], &[])],
            &[("t", 2)],
            &[("a", &["t-0"]), ("b", &["t-1"]), ("c", &[])],
        ),
        // A subscribed topic that does not exist yet has no partitions.
        (
            AssignorKind::RoundRobin,
            &[("a", &["t", "missing"], &[])],
            &[("t", 2)],
            &[("a", &["t-0", "t-1"])],
        ),
    ];
    for (i, (kind, m, t, expected)) in cases.iter().enumerate() {
        let got = render(&assign(*kind, &members(m), &topics(t)));
        assert_eq!(got, table(expected), "case {i} ({kind:?})");
    }
}

#[test]
fn range_orders_static_members_by_instance_id_first() {
    // "z" is static with instance "i0", so it sorts before dynamic "a".
    let mut m = members(&[("a", &["t"], &[]), ("z", &["t"], &[])]);
    m.get_mut("z").expect("z").instance_id = Some("i0".into());
    let got = render(&assign(AssignorKind::Range, &m, &topics(&[("t", 3)])));
    assert_eq!(got, table(&[("a", &["t-2"]), ("z", &["t-0", "t-1"])]));
}

#[test]
fn sticky_first_assignment_is_balanced() {
    let both: &[&str] = &["t0", "t1"];
    let m = members(&[("a", both, &[]), ("b", both, &[]), ("c", both, &[])]);
    let out = assign(
        AssignorKind::CooperativeSticky,
        &m,
        &topics(&[("t0", 4), ("t1", 3)]),
    );
    let counts: Vec<usize> = out.values().map(Vec::len).collect();
    assert_eq!(counts, vec![3, 2, 2]);
    let all: BTreeSet<&TopicPartition> = out.values().flatten().collect();
    assert_eq!(all.len(), 7, "every partition assigned exactly once");
}

#[test]
fn sticky_join_moves_only_what_the_newcomer_needs() {
    let t = topics(&[("t", 6)]);
    let before = assign(
        AssignorKind::CooperativeSticky,
        &members(&[("a", &["t"], &[]), ("b", &["t"], &[])]),
        &t,
    );
    let current = |m: &str| -> Vec<String> { before[m].iter().map(|tp| tp.to_string()).collect() };
    let (a, b) = (current("a"), current("b"));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let after = assign(
        AssignorKind::CooperativeSticky,
        &members(&[("a", &["t"], &a), ("b", &["t"], &b), ("c", &["t"], &[])]),
        &t,
    );
    let counts: Vec<usize> = after.values().map(Vec::len).collect();
    assert_eq!(counts, vec![2, 2, 2]);
    // c needs 2: exactly 2 partitions change owner, one from each.
    assert_eq!(moved(&before, &after), 2);
    for m in ["a", "b"] {
        assert!(
            after[m].iter().all(|tp| before[m].contains(tp)),
            "{m} only lost partitions"
        );
    }
}

#[test]
fn sticky_leave_moves_only_the_leavers_partitions() {
    let t = topics(&[("t", 7)]);
    let m3 = members(&[("a", &["t"], &[]), ("b", &["t"], &[]), ("c", &["t"], &[])]);
    let before = assign(AssignorKind::CooperativeSticky, &m3, &t);
    let keep: BTreeMap<String, MemberSubscription> = ["a", "b"]
        .iter()
        .map(|m| {
            let sub = MemberSubscription {
                instance_id: None,
                topics: BTreeSet::from(["t".to_string()]),
                current: before[*m].iter().cloned().collect(),
            };
            (m.to_string(), sub)
        })
        .collect();
    let after = assign(AssignorKind::CooperativeSticky, &keep, &t);
    for m in ["a", "b"] {
        assert!(
            before[m].iter().all(|tp| after[m].contains(tp)),
            "{m} kept all it had"
        );
    }
    let counts: Vec<usize> = after.values().map(Vec::len).collect();
    assert_eq!(counts.iter().sum::<usize>(), 7);
    assert!(counts.iter().max().expect("two") - counts.iter().min().expect("two") <= 1);
    assert_eq!(moved(&before, &after), before["c"].len());
}

#[test]
fn sticky_keeps_a_balanced_assignment_unchanged() {
    // Deliberately scattered but balanced: nothing moves.
    let m = members(&[
        ("a", &["t"], &["t-0", "t-3", "t-5"]),
        ("b", &["t"], &["t-1", "t-2", "t-4"]),
    ]);
    let got = render(&assign(
        AssignorKind::CooperativeSticky,
        &m,
        &topics(&[("t", 6)]),
    ));
    assert_eq!(
        got,
        table(&[("a", &["t-0", "t-3", "t-5"]), ("b", &["t-1", "t-2", "t-4"])])
    );
}

#[test]
fn sticky_drops_partitions_that_no_longer_exist_or_are_unsubscribed() {
    // t shrank to 2 partitions; b unsubscribed from u.
    let m = members(&[
        ("a", &["t"], &["t-0", "t-2", "t-3"]),
        ("b", &["t"], &["t-1", "u-0"]),
    ]);
    let got = render(&assign(
        AssignorKind::CooperativeSticky,
        &m,
        &topics(&[("t", 2), ("u", 1)]),
    ));
    assert_eq!(got, table(&[("a", &["t-0"]), ("b", &["t-1"])]));
}

#[test]
fn sticky_balances_within_equal_subscriptions_when_they_differ() {
    // a and b take t and u; c only u. Members with equal subscriptions differ by ≤ 1.
    let m = members(&[
        ("a", &["t", "u"], &[]),
        ("b", &["t", "u"], &[]),
        ("c", &["u"], &[]),
    ]);
    let out = assign(
        AssignorKind::CooperativeSticky,
        &m,
        &topics(&[("t", 5), ("u", 4)]),
    );
    assert!(out["a"].len().abs_diff(out["b"].len()) <= 1, "{out:?}");
    assert!(out["c"].iter().all(|tp| tp.topic == "u"));
    assert_eq!(out.values().map(Vec::len).sum::<usize>(), 9);
}

#[test]
fn assignors_are_deterministic() {
    let both: &[&str] = &["t0", "t1"];
    let m = members(&[
        ("x", both, &[]),
        ("y", both, &["t1-0"]),
        ("z", &["t1"], &[]),
    ]);
    let t = topics(&[("t0", 5), ("t1", 4)]);
    for kind in [
        AssignorKind::Range,
        AssignorKind::RoundRobin,
        AssignorKind::CooperativeSticky,
    ] {
        assert_eq!(assign(kind, &m, &t), assign(kind, &m, &t), "{kind:?}");
    }
}
