//! The controller core's rules, each test named after what it proves. A harness
//! keeps every record the controller emits, so scenarios can also check that
//! replaying them rebuilds the same image.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const CHECK: Duration = Duration::from_secs(300);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn b(ids: &[u32]) -> Vec<BrokerId> {
    ids.iter().map(|&i| BrokerId(i)).collect()
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn config() -> ControllerConfig {
    ControllerConfig {
        session_timeout: SESSION,
        auto_leader_rebalance: true,
        leader_imbalance_check_interval: CHECK,
        leader_imbalance_per_broker_percentage: 10,
    }
}

/// Partitions per LeaderAndIsr recipient.
/// The result of the one message in `out`, an AlterPartitionReply (anything else
/// fails the test).
fn alter_reply(out: &ControllerOutput) -> std::result::Result<(), AlterPartitionError> {
    match &out.messages[..] {
        [(_, Message::AlterPartitionReply { result, .. })] => result.clone().map(|_| ()),
        other => panic!("expected one AlterPartitionReply, got {other:?}"),
    }
}

fn leader_and_isr(out: &ControllerOutput) -> BTreeMap<BrokerId, Vec<TopicPartition>> {
    let mut m = BTreeMap::new();
    for (to, msg) in &out.messages {
        if let Message::LeaderAndIsr { partitions, .. } = msg {
            let prev = m.insert(*to, partitions.iter().map(|p| p.tp.clone()).collect());
            assert!(prev.is_none(), "two LeaderAndIsr to {to} in one output");
        }
    }
    m
}

/// A controller plus every record it emitted.
struct H {
    c: Controller,
    brokers: Vec<(BrokerId, Option<String>)>,
    records: Vec<MetadataRecord>,
}

impl H {
    /// `n` brokers without racks, none registered.
    fn unregistered(n: u32) -> H {
        let brokers: Vec<_> = (0..n).map(|i| (BrokerId(i), None)).collect();
        H::with(config(), brokers)
    }

    fn with(config: ControllerConfig, brokers: Vec<(BrokerId, Option<String>)>) -> H {
        H {
            c: Controller::new(config, &brokers),
            brokers,
            records: Vec::new(),
        }
    }

    /// `n` brokers without racks, all registered at time 0.
    fn new(n: u32) -> H {
        let mut h = H::unregistered(n);
        for i in 0..n {
            h.register(i, secs(0));
        }
        h
    }

    fn take(&mut self, out: ControllerOutput) -> ControllerOutput {
        self.records.extend(out.records.iter().cloned());
        out
    }

    fn register_lost(
        &mut self,
        broker: u32,
        lost_data: Vec<TopicPartition>,
        lost_all: bool,
        now: Duration,
    ) -> ControllerOutput {
        let msg = Message::RegisterBroker {
            broker: BrokerId(broker),
            rack: None,
            lost_data,
            lost_all,
            incarnation: incarnation(),
        };
        let out = self.c.handle(BrokerId(broker), msg, now);
        self.take(out)
    }

    fn register(&mut self, broker: u32, now: Duration) -> ControllerOutput {
        self.register_lost(broker, Vec::new(), false, now)
    }

    fn create(&mut self, name: &str, config: TopicConfig) -> ControllerOutput {
        let out = self.c.create_topic(name, config, secs(0)).unwrap();
        self.take(out)
    }

    fn stop(&mut self, broker: u32) -> ControllerOutput {
        let out = self.c.broker_stopped(BrokerId(broker), secs(0));
        self.take(out)
    }

    fn tick(&mut self, now: Duration) -> ControllerOutput {
        let out = self.c.tick(now);
        self.take(out)
    }

    fn epoch_of(&self, broker: BrokerId) -> u64 {
        self.c.image().brokers[&broker].broker_epoch
    }

    fn heartbeat(&mut self, broker: u32, epoch: u64, now: Duration) -> bool {
        let out = self.c.handle(
            BrokerId(broker),
            Message::Heartbeat {
                broker_epoch: epoch,
                state_digest: 0,
            },
            now,
        );
        assert!(out.records.is_empty());
        match &out.messages[..] {
            [(
                to,
                Message::HeartbeatReply {
                    broker_epoch,
                    fenced,
                },
            )] if *to == BrokerId(broker) => {
                assert_eq!(
                    *broker_epoch, epoch,
                    "the answer names the epoch it answers"
                );
                *fenced
            }
            other => panic!("heartbeat answered with {other:?}"),
        }
    }

    /// An AlterPartition with every field given.
    fn alter_raw(
        &mut self,
        from: BrokerId,
        broker_epoch: u64,
        tp: &TopicPartition,
        leader_epoch: u32,
        partition_epoch: u32,
        new_isr: Vec<BrokerId>,
    ) -> std::result::Result<PartitionState, AlterPartitionError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // The leader saw every member in its current incarnation.
        let image = self.c.image();
        let member_epochs = new_isr
            .iter()
            .filter_map(|b| Some((*b, image.brokers.get(b)?.broker_epoch)))
            .collect();
        let request_id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let topic_id = self.c.image().partition(tp).map_or(0, |p| p.topic_id);
        let msg = Message::AlterPartition {
            broker_epoch,
            tp: tp.clone(),
            topic_id,
            leader_epoch,
            partition_epoch,
            new_isr,
            member_epochs,
            request_id,
        };
        let out = self.c.handle(from, msg, secs(0));
        let mut out = self.take(out);
        assert_eq!(out.messages.len(), 1, "{:?}", out.messages);
        match out.messages.pop() {
            Some((
                to,
                Message::AlterPartitionReply {
                    tp: got,
                    request_id: answered,
                    result,
                },
            )) => {
                // The reply names the request it answers (a leader tells it from
                // a late answer to an earlier one).
                assert_eq!((to, &got, answered), (from, tp, request_id));
                if result.is_err() {
                    assert!(
                        out.records.is_empty(),
                        "a refusal persisted {:?}",
                        out.records
                    );
                }
                result
            }
            other => panic!("AlterPartition answered with {other:?}"),
        }
    }

    /// An AlterPartition from the current leader with the current epochs.
    fn alter(
        &mut self,
        tp: &TopicPartition,
        new_isr: Vec<BrokerId>,
    ) -> std::result::Result<PartitionState, AlterPartitionError> {
        let p = self.state(tp);
        let leader = p.leader.expect("alter needs a leader");
        let epoch = self.epoch_of(leader);
        self.alter_raw(
            leader,
            epoch,
            tp,
            p.leader_epoch,
            p.partition_epoch,
            new_isr,
        )
    }

    fn state(&self, tp: &TopicPartition) -> PartitionState {
        self.c.image().partition(tp).unwrap().clone()
    }

    fn counters(&self) -> ControllerCounters {
        self.c.image().counters
    }

    /// A fresh controller that replayed every record so far.
    fn replayed(&self) -> Controller {
        let mut c = Controller::new(config(), &self.brokers);
        for r in &self.records {
            c.replay(r);
        }
        c
    }

    /// The same cluster after a reopen: a replayed controller, brokers unregistered.
    fn reopened(&self) -> H {
        H {
            c: self.replayed(),
            brokers: self.brokers.clone(),
            records: self.records.clone(),
        }
    }

    /// Replay rebuilds the topics, partition states and eligibility exactly, and
    /// every broker comes back not alive.
    fn assert_replay_matches(&self) {
        let r = self.replayed();
        assert_eq!(r.image().topics, self.c.image().topics);
        assert_eq!(r.image().ineligible, self.c.image().ineligible);
        assert!(r.image().brokers.values().all(|m| !m.alive));
    }
}

/// The only partition of a one-partition topic and its replicas in assignment order.
fn single(h: &mut H, name: &str, config: TopicConfig) -> (TopicPartition, Vec<BrokerId>) {
    h.create(name, config);
    let tp = tp(name, 0);
    let replicas = h.state(&tp).replicas;
    (tp, replicas)
}

// ---- topics ----

#[test]
fn create_topic_assigns_replicas_and_the_first_replica_leads() {
    let mut h = H::new(3);
    let out = h.create("orders", TopicConfig::new(6, 2));
    let topic = &h.c.image().topics["orders"];
    assert_eq!(topic.partitions.len(), 6);
    let mut expect_lai: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
    for (i, p) in topic.partitions.iter().enumerate() {
        assert_eq!(p.tp, tp("orders", i as u32));
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, p.replicas);
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        assert_eq!(p.config.partitions(), 6);
        for r in &p.replicas {
            expect_lai.entry(*r).or_default().push(p.tp.clone());
        }
    }
    // Leaders spread evenly: 6 partitions over 3 brokers.
    let mut leaders = BTreeMap::new();
    for p in &topic.partitions {
        *leaders.entry(p.leader.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().collect::<Vec<_>>(), [&2, &2, &2]);
    // Creating is not an election.
    assert_eq!(h.counters(), ControllerCounters::default());
    assert!(
        matches!(&out.records[..], [MetadataRecord::TopicCreated { name, .. }] if name == "orders")
    );
    assert_eq!(leader_and_isr(&out), expect_lai);
    h.assert_replay_matches();
}

#[test]
fn invalid_topic_names_are_refused_with_the_rule_they_break() {
    let long = "x".repeat(250);
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        (".", "reserved"),
        ("..", "reserved"),
        (&long, "250 characters long, the limit is 249"),
        ("a b", "' ' at position 1"),
        ("orders/eu", "'/' at position 6"),
        ("zürich", "'ü' at position 1"),
        ("tab\t", "'\\t' at position 3"),
    ];
    let mut h = H::new(1);
    for (name, why) in cases {
        match h.c.create_topic(name, TopicConfig::new(1, 1), secs(0)) {
            Err(Error::InvalidTopicName { name: got, reason }) => {
                assert_eq!(&got, name);
                assert!(reason.contains(why), "{name:?}: {reason}");
            }
            other => panic!("{name:?} accepted: {other:?}"),
        }
    }
    assert!(h.c.image().topics.is_empty());
    let fine = [
        "__consumer_offsets",
        "a",
        "A.b_c-9",
        "...",
        &"y".repeat(249),
    ];
    for name in fine {
        h.create(name, TopicConfig::new(1, 1));
    }
    assert_eq!(h.c.image().topics.len(), fine.len());
}

#[test]
fn invalid_configs_are_refused_with_their_typed_errors_and_change_nothing() {
    let mut h = H::new(3);
    h.create("taken", TopicConfig::new(1, 1));
    let records_before = h.records.len();
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, TopicConfig, Check)> = vec![
        (
            "taken",
            TopicConfig::new(1, 1),
            |e| matches!(e, Error::TopicExists { topic } if topic == "taken"),
        ),
        ("p0", TopicConfig::new(0, 1), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "num.partitions",
                    ..
                }
            )
        }),
        ("rf0", TopicConfig::new(1, 0), |e| {
            matches!(
                e,
                Error::InvalidReplicationFactor {
                    replication_factor: 0,
                    ..
                }
            )
        }),
        ("isr0", TopicConfig::new(1, 2).min_insync_replicas(0), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "min.insync.replicas",
                    ..
                }
            )
        }),
        ("isr3", TopicConfig::new(1, 2).min_insync_replicas(3), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "min.insync.replicas",
                    ..
                }
            )
        }),
        ("small", TopicConfig::new(1, 1).max_message_bytes(10), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "max.message.bytes",
                    ..
                }
            )
        }),
        ("seg", TopicConfig::new(1, 1).segment_bytes(10), |e| {
            matches!(
                e,
                Error::InvalidConfig {
                    name: "segment.bytes",
                    ..
                }
            )
        }),
    ];
    for (name, config, check) in cases {
        let err = h.c.create_topic(name, config, secs(0)).unwrap_err();
        assert!(check(&err), "{name}: {err}");
    }
    assert_eq!(h.c.image().topics.len(), 1);
    assert_eq!(h.records.len(), records_before);
}

#[test]
fn replication_factor_above_live_brokers_is_refused_and_only_live_brokers_get_replicas() {
    let mut h = H::unregistered(3);
    h.register(0, secs(0));
    h.register(2, secs(0));
    let err =
        h.c.create_topic("t", TopicConfig::new(1, 3), secs(0))
            .unwrap_err();
    match &err {
        Error::InvalidReplicationFactor {
            replication_factor: 3,
            reason,
        } => assert!(reason.contains("only 2 brokers are alive"), "{reason}"),
        other => panic!("{other:?}"),
    }
    h.create("t", TopicConfig::new(4, 2));
    for p in &h.c.image().topics["t"].partitions {
        assert_eq!(
            p.replicas.iter().copied().collect::<BTreeSet<_>>(),
            b(&[0, 2]).into_iter().collect()
        );
    }
}

#[test]
fn six_brokers_on_three_racks_rf3_put_every_partition_on_three_racks_with_equal_leaders() {
    let racks = ["r1", "r1", "r2", "r2", "r3", "r3"];
    let brokers: Vec<_> = racks
        .iter()
        .enumerate()
        .map(|(i, r)| (BrokerId(i as u32), Some(r.to_string())))
        .collect();
    let mut h = H::with(config(), brokers);
    for i in 0..6 {
        h.register(i, secs(0));
    }
    for (name, partitions) in [
        ("a", 6),
        ("b", 12),
        ("orders", 12),
        ("__consumer_offsets", 6),
    ] {
        h.create(name, TopicConfig::new(partitions, 3));
        let mut leaders = BTreeMap::new();
        for p in &h.c.image().topics[name].partitions {
            let spanned: BTreeSet<_> = p.replicas.iter().map(|r| racks[r.0 as usize]).collect();
            assert_eq!(spanned.len(), 3, "{name}: {:?}", p.replicas);
            *leaders.entry(p.leader.unwrap()).or_insert(0u32) += 1;
        }
        assert_eq!(leaders.len(), 6, "{name}: {leaders:?}");
        assert!(
            leaders.values().all(|n| *n == partitions / 6),
            "{name}: {leaders:?}"
        );
    }
}

#[test]
fn rule1_a_topic_created_again_gets_a_new_topic_id_that_replay_repeats() {
    let mut h = H::new(3);
    let ids = |h: &H| -> Vec<u64> {
        h.c.image().topics["t"]
            .partitions
            .iter()
            .map(|p| p.topic_id)
            .collect()
    };
    h.create("t", TopicConfig::new(2, 3));
    let first = ids(&h);
    assert_eq!(first[0], first[1], "one id per topic");
    let out = h.c.delete_topic("t", secs(0)).unwrap();
    for (_, m) in &h.take(out).messages {
        let Message::StopReplica { partitions, .. } = m else {
            panic!("{m:?}");
        };
        assert!(partitions.iter().all(|(_, id)| *id == first[0]), "{m:?}");
    }
    h.create("t", TopicConfig::new(2, 3));
    let second = ids(&h);
    assert!(second[0] > first[0], "{first:?} then {second:?}");
    h.assert_replay_matches();
}

#[test]
fn rule4_a_topic_created_again_takes_isr_changes_from_its_leader_in_epoch_0() {
    let mut h = H::new(3);
    let (tp, replicas) = single(&mut h, "t", TopicConfig::new(1, 3));
    // The first creation's leader dies; the next one, in epoch 1, proposes.
    h.stop(replicas[0].0);
    h.register(replicas[0].0, secs(0));
    let st = h.state(&tp);
    assert_eq!(st.leader_epoch, 1);
    assert!(h
        .alter(
            &tp,
            st.isr.clone().into_iter().chain([replicas[0]]).collect()
        )
        .is_ok());
    let out = h.c.delete_topic("t", secs(0)).unwrap();
    h.take(out);
    h.create("t", TopicConfig::new(1, 3));
    // The new creation starts again in epoch 0: its proposals are not older than
    // the deleted topic's.
    let st = h.state(&tp);
    assert_eq!(st.leader_epoch, 0);
    let shrunk = h.alter(&tp, st.isr[..2].to_vec());
    assert_eq!(shrunk.map(|s| s.isr), Ok(st.isr[..2].to_vec()));
}

#[test]
fn rule4_a_late_proposal_for_a_deleted_topic_is_refused_by_the_topic_created_again() {
    let mut h = H::new(3);
    let (tp, _) = single(&mut h, "t", TopicConfig::new(1, 3));
    let old = h.state(&tp);
    let out = h.c.delete_topic("t", secs(0)).unwrap();
    h.take(out);
    h.create("t", TopicConfig::new(1, 3));
    let new = h.state(&tp);
    // Same leader, same epochs: only the topic id tells the proposals apart.
    assert_eq!(
        (old.leader, old.leader_epoch, old.partition_epoch),
        (new.leader, new.leader_epoch, new.partition_epoch)
    );
    let leader = new.leader.unwrap();
    let epoch = h.epoch_of(leader);
    let propose = |h: &mut H, topic_id| {
        let msg = Message::AlterPartition {
            broker_epoch: epoch,
            tp: tp.clone(),
            topic_id,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: new.isr[..2].to_vec(),
            member_epochs: Vec::new(),
            request_id: 7,
        };
        alter_reply(&h.c.handle(leader, msg, secs(0)))
    };
    assert_eq!(
        propose(&mut h, old.topic_id),
        Err(AlterPartitionError::UnknownTopicOrPartition)
    );
    assert_eq!(h.state(&tp).isr, new.isr, "nothing applied");
    assert_eq!(propose(&mut h, new.topic_id), Ok(()));
    assert_eq!(h.state(&tp).isr, new.isr[..2].to_vec());
}

#[test]
fn delete_topic_stops_live_replicas_and_unknown_topics_are_refused() {
    let mut h = H::new(3);
    h.create("t", TopicConfig::new(3, 2));
    h.stop(1);
    let out = h.c.delete_topic("t", secs(0)).unwrap();
    let out = h.take(out);
    assert_eq!(
        out.records,
        vec![MetadataRecord::TopicDeleted { name: "t".into() }]
    );
    let mut to: Vec<BrokerId> = Vec::new();
    for (broker, msg) in &out.messages {
        match msg {
            Message::StopReplica { partitions, delete } => {
                assert!(*delete);
                assert!(!partitions.is_empty());
                to.push(*broker);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(to, b(&[0, 2]), "dead broker 1 gets nothing");
    assert!(h.c.image().topics.is_empty());
    assert!(matches!(
        h.c.delete_topic("t", secs(0)),
        Err(Error::UnknownTopic { topic }) if topic == "t"
    ));
    h.assert_replay_matches();
}

// ---- brokers: registration, heartbeats, fencing ----

#[test]
fn registration_gives_rising_epochs_and_heartbeats_keep_the_session() {
    let mut h = H::unregistered(2);
    let out = h.register(0, secs(0));
    assert!(matches!(
        out.messages[0],
        (
            BrokerId(0),
            Message::Registered {
                broker_epoch: 1,
                ..
            }
        )
    ));
    h.register(1, secs(0));
    assert_eq!(h.epoch_of(BrokerId(1)), 2);
    // Heartbeats with the current epoch keep broker 0 alive past the timeout.
    assert!(!h.heartbeat(0, 1, secs(8)));
    assert_eq!(h.c.next_deadline(), Some(SESSION)); // broker 1, silent since 0
    h.tick(SESSION);
    assert!(h.c.image().is_alive(BrokerId(0)));
    assert!(!h.c.image().is_alive(BrokerId(1)), "fenced at its deadline");
    assert_eq!(h.c.next_deadline(), Some(secs(18)));
    h.tick(secs(17));
    assert!(h.c.image().is_alive(BrokerId(0)));
    h.tick(secs(18));
    assert!(!h.c.image().is_alive(BrokerId(0)));
    // Only the imbalance check is left to wait for.
    assert_eq!(h.c.next_deadline(), Some(CHECK));
    // A fenced broker's heartbeats are refused; it registers with a new epoch.
    assert!(h.heartbeat(0, 1, secs(19)));
    h.register(0, secs(19));
    assert_eq!(h.epoch_of(BrokerId(0)), 3);
    assert!(h.heartbeat(0, 1, secs(19)), "the old epoch stays fenced");
    assert!(!h.heartbeat(0, 3, secs(19)));
    assert!(h.heartbeat(7, 1, secs(19)), "unknown broker");
}

#[test]
fn registration_sends_every_hosted_partition_to_the_broker() {
    let mut h = H::new(3);
    h.create("a", TopicConfig::new(3, 2));
    h.create("b", TopicConfig::new(2, 1));
    h.stop(2);
    let out = h.register(2, secs(1));
    let hosted: Vec<TopicPartition> =
        h.c.image()
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replicas.contains(&BrokerId(2)))
            .map(|p| p.tp.clone())
            .collect();
    assert_eq!(leader_and_isr(&out)[&BrokerId(2)], hosted);
    assert!(matches!(out.messages[0].1, Message::Registered { .. }));
}

#[test]
fn registration_state_is_complete_as_of_the_last_topic_created() {
    let mut h = H::new(3);
    h.create("a", TopicConfig::new(1, 3));
    h.create("gone", TopicConfig::new(1, 3));
    let out = h.c.delete_topic("gone", secs(0)).unwrap();
    h.take(out);
    h.stop(2);
    let out = h.register(2, secs(1));
    let complete: Vec<Option<u64>> = out
        .messages
        .iter()
        .filter_map(|(_, m)| match m {
            Message::LeaderAndIsr { complete_as_of, .. } => Some(*complete_as_of),
            _ => None,
        })
        .collect();
    // Two topics created: a replica of either not listed is a deleted topic's.
    assert_eq!(complete, vec![Some(2)]);
    // A change is not complete: it says nothing of other partitions.
    let out = h.create("b", TopicConfig::new(1, 3));
    for (_, m) in &out.messages {
        assert!(
            matches!(
                m,
                Message::LeaderAndIsr {
                    complete_as_of: None,
                    ..
                }
            ),
            "{m:?}"
        );
    }
}

#[test]
fn session_timeout_fences_an_isolated_leader_and_elects_another() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    for b in &r[1..] {
        h.heartbeat(b.0, h.epoch_of(*b), secs(9));
    }
    h.tick(secs(10));
    let p = h.state(&tp);
    assert_eq!(p.leader, Some(r[1]));
    assert_eq!(p.isr, r[1..].to_vec());
    assert_eq!(p.leader_epoch, 1);
    h.assert_replay_matches();
}

#[test]
fn broker_stopped_elects_the_next_isr_member_in_assignment_order_and_leaves_isrs() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let out = h.stop(r[0].0);
    let p = h.state(&tp);
    assert_eq!(p.leader, Some(r[1]), "next in assignment order");
    assert_eq!(p.isr, r[1..].to_vec());
    assert_eq!(
        (p.leader_epoch, p.partition_epoch),
        (1, 1),
        "one bump per change"
    );
    assert_eq!(
        out.records,
        vec![MetadataRecord::PartitionChanged {
            tp: tp.clone(),
            leader: Some(r[1]),
            leader_epoch: 1,
            isr: r[1..].to_vec(),
            partition_epoch: 1,
        }]
    );
    // A follower dying shrinks the ISR but keeps the leader.
    h.stop(r[2].0);
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[1]), vec![r[1]]));
    assert_eq!(p.leader_epoch, 1);
    // The last member stays: the ISR never empties.
    h.stop(r[1].0);
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (None, vec![r[1]]));
    let c = h.counters();
    assert_eq!((c.leader_elections, c.isr_shrinks), (1, 2));
    // Stopping a dead broker again changes nothing.
    assert!(h.stop(r[1].0).records.is_empty());
    h.assert_replay_matches();
}

#[test]
fn leader_epoch_rises_on_every_leader_change() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let mut seen = vec![h.state(&tp).leader_epoch];
    let mut leaders = vec![h.state(&tp).leader];
    let mut step = |h: &mut H| {
        let p = h.state(&tp);
        if Some(&p.leader) != leaders.last() {
            assert!(p.leader_epoch > *seen.last().unwrap(), "{p:?}");
        }
        seen.push(p.leader_epoch);
        leaders.push(p.leader);
    };
    h.stop(r[0].0); // r1 leads
    step(&mut h);
    h.register(r[0].0, secs(1));
    h.alter(&tp, r.clone()).unwrap(); // r0 back in sync
    step(&mut h);
    h.c.elect_preferred_leaders(secs(1)); // r0 leads again
    let out = h.c.elect_preferred_leaders(secs(1));
    assert!(out.records.is_empty(), "nothing left to move");
    step(&mut h);
    for b in &r {
        h.stop(b.0); // ... r1, r2 ... then offline
        step(&mut h);
    }
    h.register(r[2].0, secs(2)); // the last ISR member returns
    step(&mut h);
    assert_eq!(leaders.last(), Some(&Some(r[2])));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}

// ---- election: offline, unclean, lost data ----

#[test]
fn last_isr_member_dead_partition_is_offline_and_waits_for_it() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    h.stop(r[1].0);
    h.stop(r[2].0);
    let before = h.counters();
    h.stop(r[0].0);
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (None, vec![r[0]]));
    assert_eq!(h.c.image().offline_partitions(), 1);
    // Out-of-sync replicas coming back do not lead: clean election waits.
    h.register(r[1].0, secs(1));
    h.register(r[2].0, secs(1));
    assert_eq!(h.state(&tp).leader, None);
    // The last in-sync replica returns and is elected at once.
    let out = h.register(r[0].0, secs(2));
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[0]), vec![r[0]]));
    let lai = leader_and_isr(&out);
    assert_eq!(lai.keys().copied().collect::<Vec<_>>(), r_sorted(&r));
    let c = h.counters();
    assert_eq!(c.leader_elections, before.leader_elections + 1);
    assert_eq!(c.unclean_leader_elections, 0);
    h.assert_replay_matches();
}

fn tp_of(topic: &str, partition: u32) -> TopicPartition {
    tp(topic, partition)
}

fn r_sorted(r: &[BrokerId]) -> Vec<BrokerId> {
    let mut v = r.to_vec();
    v.sort();
    v
}

#[test]
fn unclean_election_elects_the_first_live_replica_alone_and_counts_it() {
    let mut h = H::new(3);
    let config = TopicConfig::new(1, 3).unclean_leader_election(true);
    let (tp, r) = single(&mut h, "t", config);
    // ISR shrinks to the leader; then the leader dies with both others alive.
    h.alter(&tp, vec![r[0]]).unwrap();
    h.stop(r[0].0);
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[1]), vec![r[1]]));
    let c = h.counters();
    assert_eq!((c.leader_elections, c.unclean_leader_elections), (1, 1));
    // Its death hands over to the last live replica, uncleanly again.
    h.stop(r[1].0);
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[2]), vec![r[2]]));
    // With every replica dead it is offline; the first to return leads, uncleanly.
    h.stop(r[2].0);
    assert_eq!(h.state(&tp).leader, None);
    h.register(r[0].0, secs(1));
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[0]), vec![r[0]]));
    let c = h.counters();
    assert_eq!((c.leader_elections, c.unclean_leader_elections), (3, 3));
    h.assert_replay_matches();
}

#[test]
fn kip966_lost_data_last_isr_member_is_not_elected_with_unclean_off() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3).min_insync_replicas(2));
    // ISR {0,1,2} shrinks to {2}: make r[2] the leader first, then shrink.
    h.stop(r[0].0);
    h.stop(r[1].0);
    h.register(r[0].0, secs(1));
    h.register(r[1].0, secs(1));
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[2]), vec![r[2]]));
    // r[2] crashes and comes back without its data.
    h.stop(r[2].0);
    let out = h.register_lost(r[2].0, vec![tp.clone()], false, secs(2));
    let p = h.state(&tp);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (None, vec![r[2]]),
        "offline, ISR kept"
    );
    assert_eq!(h.c.image().ineligible[&tp], BTreeSet::from([r[2]]));
    assert!(out.records.contains(&MetadataRecord::ReplicasIneligible {
        tp: tp.clone(),
        brokers: vec![r[2]],
    }));
    assert_eq!(h.counters().unclean_leader_elections, 0);
    // Preferred election and rebalance do not elect it either.
    h.c.elect_preferred_leaders(secs(2));
    h.tick(CHECK);
    assert_eq!(h.state(&tp).leader, None);
    // Replay keeps it ineligible even if it registered as healthy next time.
    h.assert_replay_matches();
    let mut again = h.replayed();
    for b in &r {
        let msg = Message::RegisterBroker {
            broker: *b,
            rack: None,
            lost_data: vec![],
            lost_all: false,
            incarnation: incarnation(),
        };
        again.handle(*b, msg, secs(3));
    }
    assert_eq!(again.image().partition(&tp).unwrap().leader, None);
}

#[test]
fn kip966_lost_data_last_isr_member_with_unclean_on_elects_first_live_replica() {
    let mut h = H::new(3);
    let config = TopicConfig::new(1, 3).unclean_leader_election(true);
    let (tp, r) = single(&mut h, "t", config);
    h.alter(&tp, vec![r[0]]).unwrap();
    // Followers first, so nobody is left to take over uncleanly.
    h.stop(r[1].0);
    h.stop(r[2].0);
    h.stop(r[0].0);
    assert_eq!(h.state(&tp).leader, None);
    // The sole ISR member returns empty: elected uncleanly (first live replica).
    h.register_lost(r[0].0, vec![], true, secs(1));
    let p = h.state(&tp);
    assert_eq!((p.leader, p.isr.clone()), (Some(r[0]), vec![r[0]]));
    assert_eq!(h.counters().unclean_leader_elections, 1);
    assert!(h.c.image().ineligible.is_empty(), "it is the ISR now");
    h.assert_replay_matches();
}

#[test]
fn lost_data_replica_is_ineligible_until_an_alter_partition_puts_it_back_in_the_isr() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    h.stop(r[1].0);
    assert_eq!(
        h.alter(&tp, r.clone()),
        Err(AlterPartitionError::IneligibleReplica),
        "a dead broker cannot rejoin"
    );
    h.register_lost(r[1].0, vec![tp.clone()], false, secs(1));
    assert_eq!(h.c.image().ineligible[&tp], BTreeSet::from([r[1]]));
    // Out of the ISR and ineligible: the leader's death skips it.
    h.stop(r[0].0);
    assert_eq!(h.state(&tp).leader, Some(r[2]));
    h.register(r[0].0, secs(1));
    h.alter(&tp, r.clone()).unwrap();
    assert!(
        h.c.image().ineligible.is_empty(),
        "back in the ISR: eligible"
    );
    assert!(h.records.contains(&MetadataRecord::ReplicasIneligible {
        tp: tp.clone(),
        brokers: vec![],
    }));
    h.assert_replay_matches();
}

#[test]
fn lost_data_isr_member_registering_leaves_the_isr_unless_it_is_the_last() {
    // After a reopen every broker is dead with ISRs intact: the registration itself
    // must drop a replica that lost its data from the ISR.
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let mut h = h.reopened();
    h.register_lost(r[0].0, vec![tp.clone()], false, secs(1));
    let p = h.state(&tp);
    assert_eq!(p.isr, vec![r[1], r[2]]);
    assert_eq!(p.leader, None, "the others are still down");
    h.register(r[2].0, secs(1));
    assert_eq!(h.state(&tp).leader, Some(r[2]));
    h.assert_replay_matches();
}

#[test]
fn lost_all_marks_every_hosted_partition_ineligible() {
    let mut h = H::new(3);
    h.create("t", TopicConfig::new(3, 3));
    h.stop(2);
    h.register_lost(2, vec![], true, secs(1));
    for p in &h.c.image().topics["t"].partitions {
        assert!(h.c.image().ineligible[&p.tp].contains(&BrokerId(2)));
        assert!(!p.isr.contains(&BrokerId(2)));
    }
    h.assert_replay_matches();
}

// ---- AlterPartition (KIP-497) ----

#[test]
fn alter_partition_refusals_each_name_their_reason() {
    let mut h = H::new(4);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let outsider = (0..4).map(BrokerId).find(|x| !r.contains(x)).unwrap();
    // r1 leads at leader epoch 1 with ISR {r1, r2}; r0 is dead.
    h.stop(r[0].0);
    let p = h.state(&tp);
    let (le, pe) = (p.leader_epoch, p.partition_epoch);
    assert_eq!((le, pe), (1, 1));
    let (leader, follower, dead) = (r[1], r[2], r[0]);
    let e = h.epoch_of(leader);
    use AlterPartitionError::*;
    struct Case {
        why: &'static str,
        from: BrokerId,
        broker_epoch: u64,
        tp: TopicPartition,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<BrokerId>,
        want: AlterPartitionError,
    }
    let case =
        |why, from, broker_epoch, tp: &TopicPartition, leader_epoch, partition_epoch, isr, want| {
            Case {
                why,
                from,
                broker_epoch,
                tp: tp.clone(),
                leader_epoch,
                partition_epoch,
                isr,
                want,
            }
        };
    let (ef, ed) = (h.epoch_of(follower), h.epoch_of(dead));
    let (t0, t1, nope) = (tp.clone(), tp_of("t", 1), tp_of("nope", 0));
    let cases = [
        case(
            "unknown topic",
            leader,
            e,
            &nope,
            le,
            pe,
            vec![leader],
            UnknownTopicOrPartition,
        ),
        case(
            "unknown partition",
            leader,
            e,
            &t1,
            le,
            pe,
            vec![leader],
            UnknownTopicOrPartition,
        ),
        case(
            "stale broker epoch",
            leader,
            e - 1,
            &t0,
            le,
            pe,
            vec![leader],
            StaleBrokerEpoch,
        ),
        case(
            "dead sender",
            dead,
            ed,
            &t0,
            le,
            pe,
            vec![dead],
            StaleBrokerEpoch,
        ),
        case(
            "not the leader",
            follower,
            ef,
            &t0,
            le,
            pe,
            vec![follower],
            FencedLeaderEpoch,
        ),
        case(
            "old leader epoch",
            leader,
            e,
            &t0,
            le - 1,
            pe,
            vec![leader],
            FencedLeaderEpoch,
        ),
        case(
            "newer leader epoch",
            leader,
            e,
            &t0,
            le + 1,
            pe,
            vec![leader],
            FencedLeaderEpoch,
        ),
        case(
            "stale partition epoch",
            leader,
            e,
            &t0,
            le,
            pe - 1,
            vec![leader],
            InvalidUpdateVersion,
        ),
        case(
            "empty ISR",
            leader,
            e,
            &t0,
            le,
            pe,
            vec![],
            IneligibleReplica,
        ),
        case(
            "non-replica",
            leader,
            e,
            &t0,
            le,
            pe,
            vec![leader, outsider],
            IneligibleReplica,
        ),
        case(
            "dead replica",
            leader,
            e,
            &t0,
            le,
            pe,
            vec![leader, follower, dead],
            IneligibleReplica,
        ),
        case(
            "duplicate",
            leader,
            e,
            &t0,
            le,
            pe,
            vec![leader, leader],
            IneligibleReplica,
        ),
    ];
    for c in cases {
        let got = h.alter_raw(
            c.from,
            c.broker_epoch,
            &c.tp,
            c.leader_epoch,
            c.partition_epoch,
            c.isr,
        );
        assert_eq!(got, Err(c.want), "{}", c.why);
    }
    assert_eq!(h.state(&tp), p, "nothing changed");
}

#[test]
fn a_leader_proposing_an_isr_without_itself_resigns_and_becomes_ineligible() {
    // Rule 9: a leader that found its log corrupt gives up leadership.
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let before = h.state(&tp);
    let leader = r[0];
    let rest: Vec<BrokerId> = before
        .isr
        .iter()
        .copied()
        .filter(|b| *b != leader)
        .collect();
    let e = h.epoch_of(leader);
    let got = h
        .alter_raw(
            leader,
            e,
            &tp,
            before.leader_epoch,
            before.partition_epoch,
            rest.clone(),
        )
        .expect("a resignation onto in-sync replicas is accepted");
    assert_eq!(
        got.leader,
        Some(rest[0]),
        "the next ISR member in assignment order leads"
    );
    assert!(got.leader_epoch > before.leader_epoch);
    assert_eq!(got.isr, rest);
    // Ineligible until it is back in the ISR.
    assert!(h
        .c
        .image()
        .ineligible
        .get(&tp)
        .is_some_and(|s| s.contains(&leader)));
}

#[test]
fn alter_partition_applies_bumps_the_partition_epoch_and_counts() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let before = h.state(&tp);
    // Shrink.
    let got = h.alter(&tp, vec![r[0]]).unwrap();
    assert_eq!(got.isr, vec![r[0]]);
    assert_eq!(got.partition_epoch, before.partition_epoch + 1);
    assert_eq!(got.leader_epoch, before.leader_epoch, "no leader change");
    assert_eq!(h.state(&tp), got);
    assert_eq!(
        h.records.last(),
        Some(&MetadataRecord::PartitionChanged {
            tp: tp.clone(),
            leader: Some(r[0]),
            leader_epoch: 0,
            isr: vec![r[0]],
            partition_epoch: 1,
        })
    );
    // Expand, listed out of order: stored in assignment order.
    let got = h.alter(&tp, vec![r[2], r[0], r[1]]).unwrap();
    assert_eq!(got.isr, r);
    let c = h.counters();
    assert_eq!(
        (c.isr_shrinks, c.isr_expands, c.leader_elections),
        (1, 1, 0)
    );
    h.assert_replay_matches();
}

#[test]
fn alter_partition_identical_to_the_current_state_is_answered_without_a_bump() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let before = h.state(&tp);
    let records = h.records.len();
    assert_eq!(h.alter(&tp, r.clone()), Ok(before.clone()));
    // A retry of an applied shrink, carrying the old partition epoch.
    let applied = h.alter(&tp, vec![r[0], r[1]]).unwrap();
    let e = h.epoch_of(r[0]);
    let retry = h.alter_raw(r[0], e, &tp, 0, before.partition_epoch, vec![r[1], r[0]]);
    assert_eq!(retry, Ok(applied));
    assert_eq!(
        h.records.len(),
        records + 1,
        "only the real change persisted"
    );
}

#[test]
fn stale_broker_epoch_is_refused_after_re_registration() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let old = h.epoch_of(r[0]);
    let p = h.state(&tp);
    // The leader restarts without the controller seeing it stop.
    h.register(r[0].0, secs(1));
    assert!(h.epoch_of(r[0]) > old);
    let p2 = h.state(&tp);
    assert_ne!(
        p2.leader_epoch, p.leader_epoch,
        "the old incarnation lost leadership"
    );
    assert_eq!(
        h.alter_raw(
            r[0],
            old,
            &tp,
            p.leader_epoch,
            p.partition_epoch,
            vec![r[0]]
        ),
        Err(AlterPartitionError::StaleBrokerEpoch)
    );
}

// ---- preferred leaders ----

#[test]
fn preferred_leaders_are_elected_on_demand() {
    let mut h = H::new(3);
    h.create("t", TopicConfig::new(3, 3));
    h.stop(0);
    h.register(0, secs(1));
    let moved: Vec<TopicPartition> = h.c.image().topics["t"]
        .partitions
        .iter()
        .filter(|p| p.replicas[0] == BrokerId(0))
        .map(|p| p.tp.clone())
        .collect();
    assert!(!moved.is_empty());
    // Broker 0 is back but out of the ISR: not eligible yet.
    assert!(h.c.elect_preferred_leaders(secs(1)).records.is_empty());
    for tp in &moved {
        h.alter(tp, b(&[0, 1, 2])).unwrap();
    }
    let elections = h.counters().leader_elections;
    let out = h.c.elect_preferred_leaders(secs(1));
    let out = h.take(out);
    for tp in &moved {
        let p = h.state(tp);
        assert_eq!(p.leader, Some(BrokerId(0)));
    }
    assert_eq!(
        h.counters().leader_elections,
        elections + moved.len() as u64
    );
    assert_eq!(out.records.len(), moved.len());
    assert_eq!(leader_and_isr(&out).len(), 3, "every replica hears of it");
    h.assert_replay_matches();
}

#[test]
fn auto_rebalance_moves_leaders_back_after_the_check_interval() {
    let mut h = H::new(3);
    h.create("t", TopicConfig::new(6, 3));
    h.stop(1);
    h.register(1, secs(1));
    let mine: Vec<TopicPartition> = h.c.image().topics["t"]
        .partitions
        .iter()
        .filter(|p| p.replicas[0] == BrokerId(1))
        .map(|p| p.tp.clone())
        .collect();
    for tp in &mine {
        h.alter(tp, b(&[0, 1, 2])).unwrap();
        assert_ne!(h.state(tp).leader, Some(BrokerId(1)));
    }
    // Keep sessions alive up to the check.
    for i in 0..3 {
        let e = h.epoch_of(BrokerId(i));
        h.heartbeat(i, e, CHECK - secs(1));
    }
    assert_eq!(h.c.next_deadline(), Some(CHECK));
    h.tick(CHECK - secs(1));
    assert_ne!(
        h.state(&mine[0]).leader,
        Some(BrokerId(1)),
        "not before the interval"
    );
    h.tick(CHECK);
    for tp in &mine {
        assert_eq!(h.state(tp).leader, Some(BrokerId(1)));
    }
    assert_eq!(h.c.next_deadline(), Some(CHECK - secs(1) + SESSION));
    h.assert_replay_matches();
}

#[test]
fn auto_rebalance_leaves_imbalance_at_or_below_the_threshold() {
    // 10 partitions prefer broker 0 and one of them is led elsewhere: exactly 10 %,
    // which is not more than leader.imbalance.per.broker.percentage = 10.
    let mut h = H::new(2);
    h.create("t", TopicConfig::new(20, 2));
    let preferring_0: Vec<TopicPartition> = h.c.image().topics["t"]
        .partitions
        .iter()
        .filter(|p| p.replicas[0] == BrokerId(0))
        .map(|p| p.tp.clone())
        .collect();
    assert_eq!(preferring_0.len(), 10);
    h.stop(0);
    h.register(0, secs(1));
    for tp in &preferring_0 {
        h.alter(tp, b(&[0, 1])).unwrap();
    }
    let mut changes = Changes::default();
    for tp in &preferring_0[1..] {
        h.c.move_to_preferred(tp, &mut changes);
    }
    let out = h.c.finish(&changes, None);
    h.take(out);
    for i in 0..2 {
        let e = h.epoch_of(BrokerId(i));
        h.heartbeat(i, e, CHECK);
    }
    h.tick(CHECK);
    assert_eq!(
        h.state(&preferring_0[0]).leader,
        Some(BrokerId(1)),
        "10 % is tolerated"
    );
    h.assert_replay_matches();
}

#[test]
fn auto_rebalance_off_never_schedules_a_check() {
    let mut c = config();
    c.auto_leader_rebalance = false;
    let mut h = H::with(c, vec![(BrokerId(0), None)]);
    assert_eq!(h.c.next_deadline(), None);
    h.register(0, secs(0));
    assert_eq!(h.c.next_deadline(), Some(SESSION));
}

// ---- messages ----

#[test]
fn leader_and_isr_goes_to_the_live_replicas_of_changed_partitions_only() {
    let mut h = H::new(4);
    h.create("t", TopicConfig::new(8, 2));
    h.stop(3);
    let led_by_0: Vec<PartitionState> = h.c.image().topics["t"]
        .partitions
        .iter()
        .filter(|p| p.leader == Some(BrokerId(0)))
        .cloned()
        .collect();
    let out = h.stop(0);
    let mut expect: BTreeMap<BrokerId, Vec<TopicPartition>> = BTreeMap::new();
    for p in h.c.image().topics["t"].partitions.iter() {
        if !p.replicas.contains(&BrokerId(0)) {
            continue;
        }
        for r in p.replicas.iter().filter(|r| h.c.image().is_alive(**r)) {
            expect.entry(*r).or_default().push(p.tp.clone());
        }
    }
    assert!(!led_by_0.is_empty());
    assert_eq!(leader_and_isr(&out), expect);
    // The states sent are the new ones.
    for (_, msg) in &out.messages {
        if let Message::LeaderAndIsr { partitions, .. } = msg {
            for p in partitions {
                assert_eq!(p, &h.state(&p.tp));
            }
        }
    }
}

#[test]
fn messages_meant_for_brokers_are_ignored() {
    let mut h = H::new(1);
    let out = h.c.handle(
        BrokerId(0),
        Message::HeartbeatReply {
            broker_epoch: 1,
            fenced: false,
        },
        secs(0),
    );
    assert!(out.records.is_empty() && out.messages.is_empty());
    let msg = Message::RegisterBroker {
        broker: BrokerId(9),
        rack: None,
        lost_data: vec![],
        lost_all: false,
        incarnation: incarnation(),
    };
    let out = h.c.handle(BrokerId(9), msg, secs(0));
    assert!(out.messages.is_empty(), "unknown broker ids get nothing");
}

// ---- replay and producer ids ----

#[test]
fn replay_of_emitted_records_rebuilds_the_same_image_and_registration_re_elects() {
    let mut h = H::new(3);
    h.create("a", TopicConfig::new(4, 3).min_insync_replicas(2));
    h.create("b", TopicConfig::new(2, 1).retention(None));
    h.create("gone", TopicConfig::new(1, 1));
    h.stop(1);
    h.register(1, secs(1));
    h.alter(&tp("a", 0), b(&[0, 1, 2])).unwrap();
    let out = h.c.delete_topic("gone", secs(1)).unwrap();
    h.take(out);
    h.assert_replay_matches();

    // After a reopen, leaders recorded as alive are dead until brokers register;
    // each registration re-elects with a new leader epoch.
    let mut c = h.replayed();
    assert_eq!(c.image().offline_partitions(), 6);
    for i in 0..3 {
        let msg = Message::RegisterBroker {
            broker: BrokerId(i),
            rack: None,
            lost_data: vec![],
            lost_all: false,
            incarnation: incarnation(),
        };
        c.handle(BrokerId(i), msg, secs(0));
    }
    assert_eq!(c.image().offline_partitions(), 0);
    for (name, t) in &c.image().topics {
        for p in &t.partitions {
            let old = &h.c.image().topics[name].partitions[p.tp.partition as usize];
            assert!(p.leader_epoch > old.leader_epoch, "{p:?}");
            assert!(p.leader.is_some());
        }
    }
}

#[test]
fn producer_ids_are_unique_across_a_replay_and_persisted_in_blocks() {
    let mut h = H::new(1);
    let mut ids = BTreeSet::new();
    let mut records = 0;
    for _ in 0..2500 {
        let (id, out) = h.c.allocate_producer_id();
        records += out.records.len();
        h.take(out);
        assert!(ids.insert(id), "{id} twice");
    }
    assert_eq!(records, 3, "one record per block of {PRODUCER_ID_BLOCK}");
    let mut c = h.replayed();
    for _ in 0..1500 {
        let (id, _) = c.allocate_producer_id();
        assert!(ids.insert(id), "{id} reused after replay");
    }
}

#[test]
fn records_persisted_to_the_metadata_log_replay_into_the_same_image_after_reopen() {
    let mut h = H::new(3);
    h.create("a", TopicConfig::new(3, 3).unclean_leader_election(true));
    h.create("b", TopicConfig::new(2, 2).retention_bytes(Some(1 << 20)));
    h.stop(2);
    h.register_lost(2, vec![], true, secs(1));
    let (_, out) = h.c.allocate_producer_id();
    h.take(out);
    let dir = tempfile::tempdir().unwrap();
    let (mut log, read) = metadata_log::MetadataLog::open(dir.path()).unwrap();
    assert!(read.is_empty());
    log.append(&h.records).unwrap();
    drop(log);
    let (_, read) = metadata_log::MetadataLog::open(dir.path()).unwrap();
    assert_eq!(read, h.records);
    let mut c = Controller::new(config(), &h.brokers);
    for r in &read {
        c.replay(r);
    }
    assert_eq!(c.image().topics, h.c.image().topics);
    assert_eq!(c.image().ineligible, h.c.image().ineligible);
    assert!(c.allocate_producer_id().0 >= PRODUCER_ID_BLOCK);
}

/// A fresh broker incarnation: every registration in these tests is a new start.
fn incarnation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Found by the simulation (seed 2143): a memory broker restarted, retried its
/// registration, caught up and became the last ISR member; then its first, delayed
/// RegisterBroker (lost_all) arrived and was taken for a new start: the broker was
/// fenced and made ineligible, and the partition went offline for good. The same
/// incarnation is now answered again; an earlier one is ignored.
#[test]
fn a_late_duplicate_registration_of_the_live_incarnation_changes_nothing() {
    let mut h = H::new(3);
    let (tp, _) = single(&mut h, "t", TopicConfig::new(1, 3).min_insync_replicas(2));
    let leader = h.state(&tp).leader.unwrap();
    let register = |lost_all: bool, incarnation: u64| Message::RegisterBroker {
        broker: leader,
        rack: None,
        lost_data: vec![],
        lost_all,
        incarnation,
    };
    let epoch = h.epoch_of(leader);
    let before = h.state(&tp);
    h.c.handle(leader, register(true, 1_000_000), secs(1));
    assert_ne!(h.state(&tp), before, "a new incarnation fences the old one");
    let epoch_now = h.epoch_of(leader);
    assert!(epoch_now > epoch);
    let state = h.state(&tp);
    // The same incarnation again, late: answered with the current epoch, nothing else.
    let out = h.c.handle(leader, register(true, 1_000_000), secs(2));
    assert!(out.records.is_empty());
    assert!(
        matches!(
            out.messages.as_slice(),
            [(b, Message::Registered { broker_epoch, incarnation: 1_000_000 })]
                if *b == leader && *broker_epoch == epoch_now
        ),
        "{:?}",
        out.messages
    );
    assert_eq!(h.state(&tp), state);
    assert_eq!(h.epoch_of(leader), epoch_now);
    // An earlier incarnation: ignored.
    let out = h.c.handle(leader, register(true, 999_999), secs(2));
    assert!(out.records.is_empty() && out.messages.is_empty());
    assert_eq!(h.epoch_of(leader), epoch_now);
}

#[test]
fn a_damaged_follower_leaves_the_isr_and_is_not_elected_until_it_rejoins() {
    // Rule 9: a follower that cut committed records over a bad CRC.
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let damaged = r[1];
    let e = h.epoch_of(damaged);
    let out = h.c.handle(
        damaged,
        Message::ReplicaDamaged {
            broker_epoch: e,
            tp: tp.clone(),
            topic_id: h.state(&tp).topic_id,
            report: 1,
        },
        Duration::from_millis(1),
    );
    h.take(out);
    let st = h.state(&tp);
    assert_eq!(st.isr, vec![r[0], r[2]]);
    assert!(h.c.image().ineligible[&tp].contains(&damaged));
    // The leader dies: the damaged replica is skipped although it comes first.
    h.stop(r[0].0);
    assert_eq!(h.state(&tp).leader, Some(r[2]));
    // Caught up, it is proposed back by the leader and is eligible again.
    h.alter(&tp, vec![r[1], r[2]]).unwrap();
    assert!(!h.c.image().ineligible.contains_key(&tp));
    h.assert_replay_matches();
}

#[test]
fn rule9_a_late_damage_report_of_a_deleted_topic_leaves_the_topic_created_again_alone() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let old = h.state(&tp).topic_id;
    let out = h.c.delete_topic("t", secs(0)).unwrap();
    h.take(out);
    h.create("t", TopicConfig::new(1, 3));
    let before = h.state(&tp);
    let out = h.c.handle(
        r[1],
        Message::ReplicaDamaged {
            broker_epoch: h.epoch_of(r[1]),
            tp: tp.clone(),
            topic_id: old,
            report: 3,
        },
        Duration::from_millis(1),
    );
    assert!(out.records.is_empty(), "{:?}", out.records);
    assert!(
        matches!(
            out.messages.as_slice(),
            [(_, Message::ReplicaDamagedAck { report: 3, .. })]
        ),
        "acknowledged, to end its repeats: {:?}",
        out.messages
    );
    assert_eq!(h.state(&tp), before);
    assert!(!h.c.image().ineligible.contains_key(&tp));
}

#[test]
fn a_damage_report_from_a_stale_broker_epoch_changes_nothing_but_is_acknowledged() {
    // Moot: a broker with a newer epoch was fenced in between, so it left every
    // ISR and rejoins only once it has refetched. The ack stops its repeats.
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let before = h.state(&tp);
    let out = h.c.handle(
        r[1],
        Message::ReplicaDamaged {
            broker_epoch: 9999,
            tp: tp.clone(),
            topic_id: before.topic_id,
            report: 7,
        },
        Duration::from_millis(1),
    );
    assert!(out.records.is_empty());
    assert!(
        matches!(
            out.messages.as_slice(),
            [(b, Message::ReplicaDamagedAck { tp: t, report: 7 })] if *b == r[1] && *t == tp
        ),
        "{:?}",
        out.messages
    );
    assert_eq!(h.state(&tp), before);
}

#[test]
fn rule9_a_repeated_damage_report_is_acknowledged_each_time_and_changes_nothing_more() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let damaged = r[1];
    let report = |h: &H| Message::ReplicaDamaged {
        broker_epoch: h.epoch_of(damaged),
        tp: tp.clone(),
        topic_id: h.state(&tp).topic_id,
        report: 1,
    };
    let acked = |out: &ControllerOutput| {
        out.messages
            .iter()
            // Naming the report it answers.
            .any(|(b, m)| {
                *b == damaged && matches!(m, Message::ReplicaDamagedAck { report: 1, .. })
            })
    };
    let out = h.c.handle(damaged, report(&h), Duration::from_millis(1));
    assert!(acked(&out));
    h.take(out);
    let after_first = h.state(&tp);
    assert_eq!(after_first.isr, vec![r[0], r[2]]);
    // The ack was lost: the same report again.
    let out = h.c.handle(damaged, report(&h), Duration::from_millis(2));
    assert!(out.records.is_empty(), "{:?}", out.records);
    assert!(acked(&out));
    h.take(out);
    assert_eq!(h.state(&tp), after_first);
    assert!(h.c.image().ineligible[&tp].contains(&damaged));
    h.assert_replay_matches();
}

#[test]
fn a_delayed_copy_of_a_refused_alter_partition_is_not_applied_later() {
    // Found by the simulation (seed 900851): a proposal to re-add a follower is
    // refused while the follower is fenced; after it registers again, a delayed
    // duplicate of that proposal must not put it back in the ISR, since the
    // follower may have fallen behind the HW meanwhile.
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let (leader, f) = (r[0], r[2]);
    h.stop(f.0);
    let st = h.state(&tp);
    assert!(!st.isr.contains(&f));
    let e = h.epoch_of(leader);
    let epochs_now = |h: &H| -> Vec<(BrokerId, u64)> {
        r.iter()
            .filter_map(|b| Some((*b, h.c.image().brokers.get(b)?.broker_epoch)))
            .collect()
    };
    let before = epochs_now(&h);
    let proposal = |request_id, member_epochs: &Vec<(BrokerId, u64)>| Message::AlterPartition {
        broker_epoch: e,
        tp: tp.clone(),
        topic_id: st.topic_id,
        leader_epoch: st.leader_epoch,
        partition_epoch: st.partition_epoch,
        new_isr: r.clone(),
        member_epochs: member_epochs.clone(),
        request_id,
    };
    let out = h.c.handle(
        leader,
        proposal(1_000_000, &before),
        Duration::from_millis(1),
    );
    assert_eq!(
        alter_reply(&out),
        Err(AlterPartitionError::IneligibleReplica)
    );
    h.register(f.0, Duration::from_millis(2));
    // The late copy of the refused proposal.
    let out = h.c.handle(
        leader,
        proposal(1_000_000, &before),
        Duration::from_millis(3),
    );
    assert_eq!(
        alter_reply(&out),
        Err(AlterPartitionError::InvalidUpdateVersion)
    );
    assert!(
        !h.state(&tp).isr.contains(&f),
        "a stale proposal re-added the follower"
    );
    // KIP-903: a fresh proposal built on what the leader saw of the follower's
    // earlier incarnation is refused; the follower restarted since.
    let out = h.c.handle(
        leader,
        proposal(1_000_001, &before),
        Duration::from_millis(4),
    );
    assert_eq!(
        alter_reply(&out),
        Err(AlterPartitionError::StaleMemberEpoch)
    );
    assert!(!h.state(&tp).isr.contains(&f));
    // One from the leader that has seen this incarnation catch up works.
    let out = h.c.handle(
        leader,
        proposal(1_000_002, &epochs_now(&h)),
        Duration::from_millis(4),
    );
    assert_eq!(alter_reply(&out), Ok(()));
    assert!(h.state(&tp).isr.contains(&f));
}

/// Rule 4 with KIP-903: a follower joins the ISR only on what the leader saw of its
/// current incarnation. A memory replica comes back empty; progress its previous
/// incarnation reported must not put it in the ISR (and so make it electable).
#[test]
fn kip903_a_member_seen_before_its_restart_is_not_added_to_the_isr() {
    let mut h = H::new(3);
    let (tp, r) = single(&mut h, "t", TopicConfig::new(1, 3));
    let (leader, f) = (r[0], r[2]);
    let old = h.epoch_of(f);
    h.stop(f.0);
    h.register(f.0, Duration::from_millis(2));
    let new = h.epoch_of(f);
    assert_ne!(old, new);
    let st = h.state(&tp);
    assert!(!st.isr.contains(&f));
    let propose = |h: &mut H, request_id, f_epoch| {
        let member_epochs = r
            .iter()
            .filter(|b| **b != f)
            .map(|b| (*b, h.epoch_of(*b)))
            .chain([(f, f_epoch)])
            .collect();
        let msg = Message::AlterPartition {
            broker_epoch: h.epoch_of(leader),
            tp: tp.clone(),
            topic_id: st.topic_id,
            leader_epoch: st.leader_epoch,
            partition_epoch: st.partition_epoch,
            new_isr: r.clone(),
            member_epochs,
            request_id,
        };
        alter_reply(&h.c.handle(leader, msg, Duration::from_millis(3)))
    };
    assert_eq!(
        propose(&mut h, 10, old),
        Err(AlterPartitionError::StaleMemberEpoch)
    );
    assert!(!h.state(&tp).isr.contains(&f));
    assert_eq!(propose(&mut h, 11, new), Ok(()));
    assert!(h.state(&tp).isr.contains(&f));
}
