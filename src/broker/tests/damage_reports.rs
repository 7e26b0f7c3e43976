//! A follower's reports of records it cut over a bad CRC (rule 9): repeated with
//! every heartbeat until the controller acknowledges the latest one.

use std::sync::Arc;
use std::time::Duration;

use super::test_support::broker;
use super::Broker;
use crate::config::TopicConfig;
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxReceiver;
use crate::protocol::{Envelope, Inbound, Mailbox, Message, PartitionState};
use crate::transport::{ChannelTransport, Transport};

const ME: BrokerId = BrokerId(1);
const BROKER_EPOCH: u64 = 3;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// Broker 1 following `t-0` (led by broker 2, empty log), and the controller's
/// inbox, where its reports go.
fn follower() -> (Broker, InboxReceiver<Inbound>) {
    let net = Arc::new(ChannelTransport::new());
    let (tx, controller) = crate::inbox::inbox();
    net.register(NodeId::Controller, Mailbox { tx });
    let mut b = broker(ME, None, net);
    b.broker_epoch = Some(BROKER_EPOCH);
    let replicas = vec![BrokerId(2), ME];
    let state = PartitionState {
        tp: tp(),
        topic_id: 1,
        replicas: replicas.clone(),
        leader: Some(BrokerId(2)),
        leader_epoch: 1,
        isr: replicas,
        partition_epoch: 1,
        config: Arc::new(TopicConfig::new(1, 2)),
    };
    b.apply_partition_state(state, Duration::ZERO);
    (b, controller)
}

/// The report numbers of the damage reports the controller has received.
fn reports(controller: &InboxReceiver<Inbound>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(m) = controller.try_recv() {
        if let Inbound::Peer(Envelope {
            message: Message::ReplicaDamaged { report, .. },
            ..
        }) = m
        {
            out.push(report);
        }
    }
    out
}

fn ack(b: &mut Broker, report: u64) {
    b.handle_peer(Envelope::new(
        NodeId::Controller,
        NodeId::Broker(ME),
        Message::ReplicaDamagedAck { tp: tp(), report },
    ));
}

#[test]
fn rule9_a_damage_report_is_repeated_until_the_controller_acknowledges_it() {
    let (mut b, controller) = follower();
    let first = b.note_damage(&tp(), 10, 1);
    b.report_damage(BROKER_EPOCH);
    assert_eq!(
        reports(&controller),
        [first],
        "repeated: not yet acknowledged"
    );
    ack(&mut b, first);
    b.report_damage(BROKER_EPOCH);
    assert_eq!(reports(&controller), [], "acknowledged: no more repeats");
}

/// The replica cut, was acknowledged (possibly more than once: each repeat is),
/// rejoined, and cut again. A late ack of the first report, delivered after the
/// second cut, must not stop the second report's repeats: if the second report was
/// lost, the controller would never hear of it and could elect the replica
/// without the records it cut.
#[test]
fn rule9_a_late_ack_of_an_earlier_cut_does_not_end_the_repeats_of_a_later_one() {
    let (mut b, controller) = follower();
    let first = b.note_damage(&tp(), 10, 1);
    ack(&mut b, first);
    let second = b.note_damage(&tp(), 20, 1);
    assert_ne!(first, second);
    // The first report's duplicated ack arrives now.
    ack(&mut b, first);
    b.report_damage(BROKER_EPOCH);
    assert_eq!(reports(&controller), [second], "still repeated");
    ack(&mut b, second);
    b.report_damage(BROKER_EPOCH);
    assert_eq!(reports(&controller), []);
}

/// The topic was deleted and created again: the replica of the new creation
/// misses nothing, and reporting the old cut against it would take it out of the
/// new topic's ISR for no reason.
#[test]
fn rule9_damage_to_a_deleted_topics_replica_is_not_reported_against_its_successor() {
    let (mut b, controller) = follower();
    let first = b.note_damage(&tp(), 10, 1);
    b.report_damage(BROKER_EPOCH);
    assert_eq!(reports(&controller), [first]);
    let mut created_again = b.replicas[&tp()].state.clone().expect("a state");
    created_again.topic_id = 2;
    created_again.leader_epoch = 0;
    created_again.partition_epoch = 0;
    b.apply_partition_state(created_again, Duration::ZERO);
    assert_eq!(b.replicas[&tp()].topic_id, Some(2));
    b.report_damage(BROKER_EPOCH);
    assert_eq!(reports(&controller), [], "not the replica that was cut");
}
