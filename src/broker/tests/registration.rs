//! A broker takes only the controller's answers to its own, latest registration
//! and heartbeat: late or duplicated answers (the fault transport delays, reorders
//! and duplicates them) neither grant a stale broker epoch, nor fence the current
//! one, nor clear what a restart lost before the controller has heard of it.

use std::sync::Arc;

use super::test_support::broker;
use super::Broker;
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxReceiver;
use crate::protocol::{Envelope, Inbound, Mailbox, Message};
use crate::transport::{ChannelTransport, Transport};

const ME: BrokerId = BrokerId(1);

/// Broker 1, not yet registered, and the controller's inbox.
fn unregistered() -> (Broker, InboxReceiver<Inbound>) {
    let net = Arc::new(ChannelTransport::new());
    let (tx, controller) = crate::inbox::inbox();
    net.register(NodeId::Controller, Mailbox { tx });
    (broker(ME, None, net), controller)
}

fn from_controller(b: &mut Broker, message: Message) {
    b.handle_peer(Envelope::new(
        NodeId::Controller,
        NodeId::Broker(ME),
        message,
    ));
}

fn registered(b: &mut Broker, broker_epoch: u64, incarnation: u64) {
    from_controller(
        b,
        Message::Registered {
            broker_epoch,
            incarnation,
        },
    );
}

fn heartbeat_answer(b: &mut Broker, broker_epoch: u64, fenced: bool) {
    from_controller(
        b,
        Message::HeartbeatReply {
            broker_epoch,
            fenced,
        },
    );
}

/// An unregistered broker that was granted `epoch` and then fenced from it; and
/// its incarnation.
fn fenced_from(epoch: u64) -> (Broker, u64) {
    let (mut b, _controller) = unregistered();
    let me = b.incarnation;
    registered(&mut b, epoch, me);
    heartbeat_answer(&mut b, epoch, true);
    assert_eq!(b.broker_epoch, None, "fenced: registers again");
    (b, me)
}

/// What the broker's registrations sent so far said it lost: `(lost_data,
/// lost_all)` of each.
fn registrations(controller: &InboxReceiver<Inbound>) -> Vec<(Vec<TopicPartition>, bool)> {
    let mut out = Vec::new();
    while let Ok(m) = controller.try_recv() {
        if let Inbound::Peer(Envelope {
            message:
                Message::RegisterBroker {
                    lost_data,
                    lost_all,
                    ..
                },
            ..
        }) = m
        {
            out.push((lost_data, lost_all));
        }
    }
    out
}

/// A restarted broker whose first registration (telling what it lost) was
/// dropped receives a late answer meant for the start it replaced. Taking it would
/// clear its loss report, so that its retry would claim a whole log, and the
/// controller could elect it with none of the records it lost.
#[test]
fn rule5_a_late_answer_to_a_replaced_start_keeps_what_the_restart_lost_reported() {
    let (mut b, controller) = unregistered();
    let me = b.incarnation;
    let lost = TopicPartition::new("t", 0);
    b.config.restarted = true;
    b.lost_data = vec![lost.clone()];
    b.register();
    // That registration is lost; the answer to the previous start arrives.
    let replaced = b.incarnation.wrapping_sub(1);
    registered(&mut b, 4, replaced);
    assert_eq!(b.broker_epoch, None, "not an answer to this start");
    b.register();
    assert_eq!(
        registrations(&controller),
        [(vec![lost.clone()], true), (vec![lost], true)],
        "the retry still reports the loss"
    );
    registered(&mut b, 5, me);
    assert_eq!(b.broker_epoch, Some(5));
    b.register();
    assert_eq!(
        registrations(&controller),
        [(vec![], false)],
        "reported once the controller answered"
    );
}

#[test]
fn rule7_a_late_fencing_answer_to_an_epoch_left_behind_does_not_fence_the_current_one() {
    let (mut b, me) = fenced_from(5);
    registered(&mut b, 6, me);
    assert_eq!(b.broker_epoch, Some(6));
    // The fencing answer to epoch 5, duplicated or delayed.
    heartbeat_answer(&mut b, 5, true);
    assert_eq!(b.broker_epoch, Some(6), "epoch 6 was never fenced");
    heartbeat_answer(&mut b, 6, false);
    assert_eq!(b.broker_epoch, Some(6));
    heartbeat_answer(&mut b, 6, true);
    assert_eq!(b.broker_epoch, None);
}

#[test]
fn rule7_a_late_registration_answer_does_not_bring_back_an_epoch_left_behind() {
    let (mut b, me) = fenced_from(5);
    // A duplicate of the answer that granted epoch 5, after the fence.
    registered(&mut b, 5, me);
    assert_eq!(b.broker_epoch, None, "epoch 5 is fenced");
    registered(&mut b, 7, me);
    assert_eq!(b.broker_epoch, Some(7));
    // Another registration's answer while registered changes nothing.
    registered(&mut b, 8, me);
    assert_eq!(b.broker_epoch, Some(7));
}
