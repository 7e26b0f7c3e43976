//! Transport tests, named after the network behaviour they prove.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{unbounded, Receiver};

use crate::ids::{BrokerId, NodeId};
use crate::protocol::{Envelope, Inbound, Mailbox, Message};
use crate::transport::{ChannelTransport, Transport};

fn broker(id: u32) -> NodeId {
    NodeId::Broker(BrokerId(id))
}

/// A heartbeat numbered `n`, so tests can follow individual messages.
fn numbered(from: NodeId, to: NodeId, n: u64) -> Envelope {
    Envelope::new(from, to, Message::Heartbeat { broker_epoch: n })
}

/// Registers `node` with a fresh unbounded inbox; the transport holds its only sender.
fn inbox<T: Transport + ?Sized>(net: &T, node: NodeId) -> Receiver<Inbound> {
    let (tx, rx) = unbounded();
    net.register(node, Mailbox { tx });
    rx
}

fn number(inbound: Inbound) -> u64 {
    match inbound {
        Inbound::Peer(Envelope {
            message: Message::Heartbeat { broker_epoch },
            ..
        }) => broker_epoch,
        other => panic!("expected a numbered heartbeat, got {other:?}"),
    }
}

/// Every message already delivered (synchronous deliveries), by number.
fn drain(rx: &Receiver<Inbound>) -> Vec<u64> {
    rx.try_iter().map(number).collect()
}

// ---- ChannelTransport ----

#[test]
fn channel_delivers_in_send_order() {
    let net = ChannelTransport::new();
    let rx = inbox(&net, broker(2));
    for n in 0..100 {
        net.send(numbered(broker(1), broker(2), n));
    }
    assert_eq!(drain(&rx), (0..100).collect::<Vec<_>>());
}

#[test]
fn channel_routes_by_addressee() {
    let net = ChannelTransport::new();
    let to_controller = inbox(&net, NodeId::Controller);
    let to_b2 = inbox(&net, broker(2));
    net.send(numbered(broker(1), NodeId::Controller, 1));
    net.send(numbered(broker(1), broker(2), 2));
    assert_eq!(drain(&to_controller), [1]);
    assert_eq!(drain(&to_b2), [2]);
}

#[test]
fn channel_drops_messages_to_unregistered_nodes() {
    let net = ChannelTransport::new();
    net.send(numbered(broker(1), broker(2), 0)); // never registered: dropped, no panic
    let rx = inbox(&net, broker(2));
    net.unregister(broker(2));
    net.send(numbered(broker(1), broker(2), 1));
    assert_eq!(drain(&rx), Vec::<u64>::new());
}

#[test]
fn channel_register_again_replaces_the_mailbox() {
    let net = ChannelTransport::new();
    let before_restart = inbox(&net, broker(2));
    let after_restart = inbox(&net, broker(2));
    net.send(numbered(broker(1), broker(2), 7));
    assert_eq!(drain(&before_restart), Vec::<u64>::new());
    assert_eq!(drain(&after_restart), [7]);
}

#[test]
fn channel_drops_silently_when_the_inbox_is_closed() {
    let net = ChannelTransport::new();
    drop(inbox(&net, broker(2))); // the node stopped without unregistering
    net.send(numbered(broker(1), broker(2), 0));
}

#[test]
fn channel_keeps_per_sender_order_under_concurrent_senders() {
    let net = Arc::new(ChannelTransport::new());
    let rx = inbox(&*net, NodeId::Controller);
    let senders: Vec<_> = (1..=4)
        .map(|b| {
            let net = Arc::clone(&net);
            thread::spawn(move || {
                for n in 0..500 {
                    net.send(numbered(broker(b), NodeId::Controller, n));
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let mut last = [None::<u64>; 5];
    let mut count = 0;
    for inbound in rx.try_iter() {
        let Inbound::Peer(envelope) = inbound else {
            panic!("expected a peer message")
        };
        let NodeId::Broker(BrokerId(b)) = envelope.from() else {
            panic!("unexpected sender")
        };
        let n = number(Inbound::Peer(envelope));
        assert!(last[b as usize] < Some(n), "broker {b} overtook itself");
        last[b as usize] = Some(n);
        count += 1;
    }
    assert_eq!(count, 4 * 500);
}
