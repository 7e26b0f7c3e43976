//! Rule 1 across a topic deleted and created again under the same name: every
//! message about a partition carries the topic id of the creation it is about, so
//! a late or lost message about the deleted topic never acts on its successor, and
//! the deleted topic's records never pass for the new one's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::test_support::broker;
use super::Broker;
use crate::config::{Acks, TopicConfig};
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxReceiver;
use crate::protocol::{
    ClientFetch, ClientRequest, Envelope, FetchData, FetchError, FetchPartition,
    FetchPartitionResponse, Inbound, Mailbox, Message, PartitionState, ProduceReply,
    ProduceRequest, ReadLimit, ReplyTo,
};
use crate::record::{BatchBuilder, Record};
use crate::transport::{ChannelTransport, Transport};

const ME: BrokerId = BrokerId(1);
const PEER: BrokerId = BrokerId(2);

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// Broker 1 (files in `dir`, memory without) hosting nothing yet, and the inbox
/// of broker 2, where its fetches and answers go.
fn bare(dir: Option<&Path>) -> (Broker, InboxReceiver<Inbound>) {
    let net = Arc::new(ChannelTransport::new());
    let (tx, peer) = crate::inbox::inbox();
    net.register(NodeId::Broker(PEER), Mailbox { tx });
    let mut b = broker(ME, dir, net);
    b.broker_epoch = Some(1);
    (b, peer)
}

/// The controller's word on `t-0` of the topic created with `topic_id`: replicas
/// 1 and 2, both in sync, led by `leader` in `leader_epoch`.
fn state(topic_id: u64, leader: BrokerId, leader_epoch: u32) -> PartitionState {
    PartitionState {
        tp: tp(),
        topic_id,
        replicas: vec![ME, PEER],
        leader: Some(leader),
        leader_epoch,
        isr: vec![ME, PEER],
        partition_epoch: leader_epoch,
        config: Arc::new(TopicConfig::new(1, 2)),
    }
}

/// A batch of `records` records.
fn batch(records: u32) -> crate::record::Batch {
    let mut builder = BatchBuilder::new(None, 1 << 12);
    for i in 0..records {
        builder.push(&Record::new(vec![i as u8; 10]), 1_000);
    }
    builder.finish(None)
}

/// Sends `records` records to `t-0` of the creation `topic_id` with acks=1; the
/// leader's answer.
fn send(b: &mut Broker, topic_id: u64, records: u32) -> crate::Result<u64> {
    let (tx, rx) = crossbeam_channel::unbounded();
    b.produce(
        ProduceRequest {
            id: 1,
            tp: tp(),
            topic_id,
            acks: Acks::Leader,
            batch: batch(records),
            timeout: Duration::from_secs(30),
            reply: ProduceReply {
                to: ReplyTo::Channel(tx),
                slot: None,
            },
        },
        Duration::ZERO,
    );
    rx.try_recv().expect("acks=1 answers").result
}

/// Appends `records` records to `t-0` of the creation `topic_id`, led by this
/// broker.
fn produce(b: &mut Broker, topic_id: u64, records: u32) {
    send(b, topic_id, records).expect("appended");
}

/// Makes this broker the leader of `t-0` of the creation `topic_id` in epoch 0,
/// holding 3 records.
fn lead_with_three(b: &mut Broker, topic_id: u64) {
    b.apply_partition_state(state(topic_id, ME, 0), Duration::ZERO);
    produce(b, topic_id, 3);
}

/// A data dir left by this broker after it led `t-0` of creation 1 and wrote 3
/// records, and the directory of that replica.
fn left_on_disk() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (mut b, _peer) = bare(Some(dir.path()));
    lead_with_three(&mut b, 1);
    let replica_dir = b.partition_dir(&tp()).expect("a data dir");
    (dir, replica_dir)
}

fn from_controller(b: &mut Broker, message: Message) {
    b.handle_peer(Envelope::new(
        NodeId::Controller,
        NodeId::Broker(ME),
        message,
    ));
}

/// StopReplica (delete) for `t-0` of the topic created with `topic_id`.
fn stop(b: &mut Broker, topic_id: u64) {
    let partitions = vec![(tp(), topic_id)];
    from_controller(
        b,
        Message::StopReplica {
            partitions,
            delete: true,
        },
    );
}

/// The log end offset of the replica of `t-0`, if hosted.
fn leo(b: &Broker) -> Option<u64> {
    b.replicas.get(&tp()).map(|r| r.log.log_end_offset())
}

#[test]
fn rule1_a_late_stop_replica_of_a_deleted_topic_spares_the_topic_created_again() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 2);
    stop(&mut b, 1);
    assert_eq!(
        leo(&b),
        Some(3),
        "the StopReplica was for the deleted topic"
    );
    stop(&mut b, 2);
    assert_eq!(leo(&b), None, "its own StopReplica stops it");
}

#[test]
fn rule1_a_late_state_of_a_deleted_topic_is_ignored() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 2);
    // The deleted topic's partition had moved on to a later leader epoch.
    b.apply_partition_state(state(1, PEER, 7), Duration::ZERO);
    let r = &b.replicas[&tp()];
    assert_eq!(
        r.state.as_ref().map(|s| (s.topic_id, s.leader_epoch)),
        Some((2, 0))
    );
    assert_eq!(leo(&b), Some(3));
}

#[test]
fn rule1_a_replica_left_by_a_deleted_topic_is_emptied_by_the_state_of_its_successor() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 1);
    // Its StopReplica was lost; the topic created again starts in epoch 0 too.
    b.apply_partition_state(state(2, ME, 0), Duration::ZERO);
    assert_eq!(
        leo(&b),
        Some(0),
        "none of the deleted topic's records remain"
    );
    assert_eq!(b.replicas[&tp()].topic_id, Some(2));
}

#[test]
fn rule1_a_replica_on_disk_keeps_its_topic_id_across_a_restart() {
    let (dir, _) = left_on_disk();
    // Restarted with the files: the same creation keeps its records …
    let (mut b, _peer) = bare(Some(dir.path()));
    assert_eq!(b.replicas[&tp()].topic_id, Some(1));
    b.apply_partition_state(state(1, ME, 1), Duration::ZERO);
    assert_eq!(leo(&b), Some(3));
    drop(b);
    // … and a later one (the topic was deleted and created again while this
    // broker was down) starts from nothing.
    let (mut b, _peer) = bare(Some(dir.path()));
    b.apply_partition_state(state(2, ME, 0), Duration::ZERO);
    assert_eq!(leo(&b), Some(0));
    drop(b);
    let (b, _peer) = bare(Some(dir.path()));
    assert_eq!(b.replicas[&tp()].topic_id, Some(2));
}

/// Broker 2 fetches `t-0` at `offset` for the topic created with `topic_id`
/// (answered at once); the answer's result for it, if any.
fn fetch_at(
    b: &mut Broker,
    peer: &InboxReceiver<Inbound>,
    topic_id: u64,
    offset: u64,
) -> Option<Result<u64, FetchError>> {
    let p = FetchPartition {
        tp: Arc::new(tp()),
        topic_id,
        fetch_offset: offset,
        leader_epoch: 0,
        last_fetched_epoch: (offset > 0).then_some(0),
        high_watermark: 0,
        log_start: 0,
    };
    let now = Duration::ZERO;
    b.handle_replica_fetch((PEER, 1), 1, 1 << 20, vec![p], now, now);
    let Ok(Inbound::Peer(env)) = peer.try_recv() else {
        panic!("no answer");
    };
    let Message::FetchReply { partitions, .. } = env.message else {
        panic!("not a fetch answer: {}", env.kind());
    };
    partitions
        .into_iter()
        .next()
        .map(|r| r.result.map(|d| d.high_watermark))
}

#[test]
fn rule1_a_leader_does_not_count_a_follower_fetching_for_a_deleted_topic() {
    let (mut b, peer) = bare(None);
    lead_with_three(&mut b, 2);
    // Broker 2 still replicates the deleted topic, whose log also ends at 3: told
    // its view is stale, and not counted towards the HW.
    let stale = fetch_at(&mut b, &peer, 1, 3);
    assert_eq!(stale, Some(Err(FetchError::FencedLeaderEpoch)));
    assert_eq!(b.replicas[&tp()].high_watermark(), 0);
    // The same fetch for this creation moves the HW.
    assert_eq!(fetch_at(&mut b, &peer, 2, 3), Some(Ok(3)));
    assert_eq!(b.replicas[&tp()].high_watermark(), 3);
}

#[test]
fn rule1_a_follower_ignores_an_answer_fetched_for_a_deleted_topic() {
    let (mut b, peer) = bare(None);
    b.apply_partition_state(state(2, PEER, 0), Duration::ZERO);
    let answer = |b: &mut Broker, topic_id: u64| {
        b.send_fetches(Duration::ZERO);
        let Ok(Inbound::Peer(env)) = peer.try_recv() else {
            panic!("no fetch sent");
        };
        let Message::Fetch { request_id, .. } = env.message else {
            panic!("not a fetch: {}", env.kind());
        };
        let partitions = vec![FetchPartitionResponse {
            tp: Arc::new(tp()),
            index: 0,
            topic_id,
            result: Ok(FetchData {
                high_watermark: 0,
                log_start: 0,
                leader_epoch: 0,
                diverging: None,
                batches: vec![batch(3).stamped(0, 0)],
            }),
        }];
        b.handle_peer(Envelope::new(
            NodeId::Broker(PEER),
            NodeId::Broker(ME),
            Message::FetchReply {
                request_id,
                partitions,
            },
        ));
    };
    // Records of the deleted topic, answering a fetch sent before this replica
    // replaced its own: not appended.
    answer(&mut b, 1);
    assert_eq!(leo(&b), Some(0));
    answer(&mut b, 2);
    assert_eq!(leo(&b), Some(3));
}

#[test]
fn rule1_a_leader_refuses_a_batch_routed_to_another_creation_of_its_topic() {
    let (mut b, _peer) = bare(None);
    // This broker has not heard yet that `t` was deleted and created again (2).
    b.apply_partition_state(state(1, ME, 0), Duration::ZERO);
    let refused = send(&mut b, 2, 3);
    assert!(
        matches!(refused, Err(crate::Error::NotLeader { .. })),
        "retriable: {refused:?}"
    );
    assert_eq!(
        leo(&b),
        Some(0),
        "nothing appended to the deleted topic's log"
    );
    assert_eq!(send(&mut b, 1, 3).ok(), Some(0));
}

#[test]
fn rule1_a_reader_of_another_creation_is_not_served_the_deleted_topics_records() {
    let (mut b, _peer) = bare(None);
    // This broker has not heard yet that `t` was deleted and created again (2).
    lead_with_three(&mut b, 1);
    let read = |b: &mut Broker, topic_id: Option<u64>| {
        let (reply, rx) = crossbeam_channel::bounded(1);
        b.handle_client(ClientRequest::Fetch(ClientFetch {
            partitions: vec![(tp(), 0, topic_id)],
            max_wait: Duration::ZERO,
            max_bytes: 1 << 20,
            limit: ReadLimit::LogEnd,
            reply,
        }));
        let (_, result) = rx.try_recv().expect("answered").partitions.remove(0);
        result.map(|d| d.batches.iter().map(|b| b.record_count()).sum::<u32>())
    };
    assert!(matches!(
        read(&mut b, Some(2)),
        Err(crate::Error::NotLeader { .. })
    ));
    assert_eq!(read(&mut b, Some(1)).ok(), Some(3));
    assert_eq!(read(&mut b, None).ok(), Some(3), "a replica's own log");
    let offsets = |b: &mut Broker, topic_id: u64| {
        let (reply, rx) = crossbeam_channel::bounded(1);
        b.handle_client(ClientRequest::ListOffsets {
            tp: tp(),
            topic_id,
            reply,
        });
        rx.try_recv().expect("answered").map(|o| o.log_end)
    };
    assert!(matches!(
        offsets(&mut b, 2),
        Err(crate::Error::NotLeader { .. })
    ));
    assert_eq!(offsets(&mut b, 1).ok(), Some(3));
}

#[test]
fn rule1_a_late_state_of_a_deleted_creation_does_not_bring_its_replica_back() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 1);
    stop(&mut b, 1);
    assert_eq!(leo(&b), None);
    // A LeaderAndIsr of the deleted creation, sent before its deletion.
    b.apply_partition_state(state(1, ME, 1), Duration::ZERO);
    assert_eq!(leo(&b), None, "still deleted");
    // The topic created again is hosted.
    b.apply_partition_state(state(2, ME, 0), Duration::ZERO);
    assert_eq!(leo(&b), Some(0));
}

/// A complete LeaderAndIsr as of the controller's `created`th topic creation,
/// listing `partitions`.
fn complete(b: &mut Broker, created: u64, partitions: Vec<PartitionState>) {
    let m = Message::LeaderAndIsr {
        partitions,
        complete_as_of: Some(created),
    };
    from_controller(b, m);
}

#[test]
fn rule1_a_complete_state_removes_the_replica_of_a_topic_deleted_without_its_stop_replica() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 1);
    // The topic was deleted, its StopReplica lost; nothing else is assigned here.
    complete(&mut b, 1, vec![]);
    assert_eq!(leo(&b), None, "what the deleted topic left is gone");
    assert_eq!(b.state_digest(), 0, "as the controller counts it");
    // A state of it sent before its deletion does not bring it back.
    b.apply_partition_state(state(1, ME, 1), Duration::ZERO);
    assert_eq!(leo(&b), None);
}

#[test]
fn rule1_a_complete_state_keeps_what_it_lists() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 1);
    complete(&mut b, 1, vec![state(1, ME, 0)]);
    assert_eq!(leo(&b), Some(3));
}

#[test]
fn rule1_a_complete_state_older_than_a_creation_spares_its_replica() {
    let (mut b, _peer) = bare(None);
    lead_with_three(&mut b, 3);
    // Computed before topic 3 was created, delivered after.
    complete(&mut b, 2, vec![]);
    assert_eq!(leo(&b), Some(3), "newer than the list: not a stray");
}

#[test]
fn rule1_a_restarted_broker_removes_a_deleted_topic_when_told_all_it_hosts() {
    let (dir, _) = left_on_disk();
    // Restarted after the topic was deleted: the replica has no state, and the
    // heartbeat's digest says so, unlike the controller's (which knows of none).
    let (mut b, _peer) = bare(Some(dir.path()));
    assert_eq!(leo(&b), Some(3));
    assert_ne!(b.state_digest(), 0, "the stateless replica is reported");
    complete(&mut b, 1, vec![]);
    assert_eq!(leo(&b), None);
    assert_eq!(b.state_digest(), 0);
    drop(b);
    let (b, _peer) = bare(Some(dir.path()));
    assert_eq!(leo(&b), None, "its files went with it");
}

#[test]
fn rule1_a_replica_of_unknown_creation_is_kept_by_a_complete_state() {
    let (dir, replica_dir) = left_on_disk();
    std::fs::remove_file(replica_dir.join("topic.id")).unwrap();
    // Its records may be the only copy of acknowledged ones: kept.
    let (mut b, _peer) = bare(Some(dir.path()));
    assert_eq!(b.replicas[&tp()].topic_id, None);
    complete(&mut b, 5, vec![]);
    assert_eq!(leo(&b), Some(3));
}
