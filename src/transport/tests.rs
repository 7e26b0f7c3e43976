//! Transport tests, named after the network behaviour they prove.
//!
//! Nothing here sleeps to synchronise: synchronous deliveries are checked with
//! `try_recv`, deferred ones are awaited with `recv_timeout` and a generous deadline.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::error::Error;
use crate::ids::{BrokerId, NodeId};
use crate::inbox::InboxReceiver;
use crate::protocol::{Envelope, Inbound, Mailbox, Message};
use crate::transport::{ChannelTransport, FaultStats, FaultTransport, Transport};

/// How long to wait for something that should happen (a deferred delivery).
const PATIENCE: Duration = Duration::from_secs(5);

fn broker(id: u32) -> NodeId {
    NodeId::Broker(BrokerId(id))
}

/// A heartbeat numbered `n`, so tests can follow individual messages.
fn numbered(from: NodeId, to: NodeId, n: u64) -> Envelope {
    Envelope::new(
        from,
        to,
        Message::Heartbeat {
            broker_epoch: n,
            state_digest: 0,
        },
    )
}

fn fetch(from: NodeId, to: NodeId) -> Envelope {
    Envelope::new(
        from,
        to,
        Message::Fetch {
            request_id: 0,
            replica: BrokerId(0),
            broker_epoch: 1,
            max_wait_ms: 0,
            max_bytes: 0,
            partitions: Vec::new(),
        },
    )
}

/// Registers `node` with a fresh unbounded inbox; the transport holds its only sender.
fn inbox<T: Transport + ?Sized>(net: &T, node: NodeId) -> InboxReceiver<Inbound> {
    let (tx, rx) = crate::inbox::inbox();
    net.register(node, Mailbox { tx });
    rx
}

fn number(inbound: Inbound) -> u64 {
    match inbound {
        Inbound::Peer(Envelope {
            message: Message::Heartbeat { broker_epoch, .. },
            ..
        }) => broker_epoch,
        other => panic!("expected a numbered heartbeat, got {other:?}"),
    }
}

/// Every message already delivered (synchronous deliveries), by number.
fn drain(rx: &InboxReceiver<Inbound>) -> Vec<u64> {
    rx.try_iter().map(number).collect()
}

/// Waits for the next message (a deferred delivery).
fn next(rx: &InboxReceiver<Inbound>) -> u64 {
    number(
        rx.recv_timeout(PATIENCE)
            .expect("a deferred message never arrived"),
    )
}

fn kind(inbound: Inbound) -> &'static str {
    match inbound {
        Inbound::Peer(envelope) => envelope.kind(),
        other => panic!("expected a peer message, got {other:?}"),
    }
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

#[test]
fn transports_are_object_safe_and_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<ChannelTransport>();
    shareable::<FaultTransport>();
    shareable::<FaultTransport<Arc<dyn Transport>>>();
    let nets: Vec<Box<dyn Transport>> = vec![
        Box::new(ChannelTransport::new()),
        Box::new(FaultTransport::default()),
        Box::new(FaultTransport::new(
            Arc::new(ChannelTransport::new()) as Arc<dyn Transport>
        )),
    ];
    for net in nets {
        let rx = inbox(&*net, broker(1));
        net.send(numbered(broker(2), broker(1), 3));
        assert_eq!(drain(&rx), [3]);
    }
}

// ---- FaultTransport: links ----

#[test]
fn cut_drops_both_directions_until_restored() {
    let net = FaultTransport::default();
    let rx1 = inbox(&net, broker(1));
    let rx2 = inbox(&net, broker(2));
    let rx3 = inbox(&net, broker(3));
    net.cut(broker(1), broker(2));
    net.send(numbered(broker(1), broker(2), 1));
    net.send(numbered(broker(2), broker(1), 2));
    net.send(numbered(broker(1), broker(3), 3)); // other links are untouched
    assert_eq!(drain(&rx1), Vec::<u64>::new());
    assert_eq!(drain(&rx2), Vec::<u64>::new());
    assert_eq!(drain(&rx3), [3]);

    net.restore(broker(2), broker(1)); // either order of endpoints
    net.send(numbered(broker(1), broker(2), 4));
    net.send(numbered(broker(2), broker(1), 5));
    assert_eq!(drain(&rx2), [4]);
    assert_eq!(drain(&rx1), [5]);
}

#[test]
fn heal_restores_every_cut_link() {
    let net = FaultTransport::default();
    let rx1 = inbox(&net, broker(1));
    let rx2 = inbox(&net, broker(2));
    net.cut(broker(1), broker(2));
    net.cut_one_way(NodeId::Controller, broker(1));
    net.heal();
    net.send(numbered(broker(2), broker(1), 1));
    net.send(numbered(NodeId::Controller, broker(1), 2));
    net.send(numbered(broker(1), broker(2), 3));
    assert_eq!(drain(&rx1), [1, 2]);
    assert_eq!(drain(&rx2), [3]);
}

#[test]
fn cut_one_way_drops_only_that_direction() {
    let net = FaultTransport::default();
    let rx1 = inbox(&net, broker(1));
    let controller = inbox(&net, NodeId::Controller);
    net.cut_one_way(broker(1), NodeId::Controller); // heartbeats lost, metadata arrives
    net.send(numbered(broker(1), NodeId::Controller, 1));
    net.send(numbered(NodeId::Controller, broker(1), 2));
    assert_eq!(drain(&controller), Vec::<u64>::new());
    assert_eq!(drain(&rx1), [2]);
    assert!(net.is_cut(broker(1), NodeId::Controller));
    assert!(!net.is_cut(NodeId::Controller, broker(1)));
}

#[test]
fn isolate_cuts_a_node_from_all_others_including_the_controller_and_later_nodes() {
    let net = FaultTransport::default();
    let rx1 = inbox(&net, broker(1));
    let rx2 = inbox(&net, broker(2));
    let controller = inbox(&net, NodeId::Controller);
    net.isolate(broker(1));
    let rx9 = inbox(&net, broker(9)); // registered after the isolation
    for (n, to) in [broker(2), NodeId::Controller, broker(9)]
        .into_iter()
        .enumerate()
    {
        net.send(numbered(broker(1), to, n as u64));
        net.send(numbered(to, broker(1), n as u64));
    }
    net.send(numbered(broker(2), NodeId::Controller, 10)); // the others still talk
    net.send(numbered(broker(9), broker(2), 11));
    assert_eq!(drain(&rx1), Vec::<u64>::new());
    assert_eq!(drain(&controller), [10]);
    assert_eq!(drain(&rx2), [11]);
    assert_eq!(drain(&rx9), Vec::<u64>::new());

    net.heal();
    net.send(numbered(broker(1), NodeId::Controller, 12));
    net.send(numbered(broker(9), broker(1), 13));
    assert_eq!(drain(&controller), [12]);
    assert_eq!(drain(&rx1), [13]);
}

#[test]
fn restore_does_not_end_an_isolation() {
    let net = FaultTransport::default();
    net.isolate(broker(1));
    net.restore(broker(1), broker(2));
    assert!(net.is_cut(broker(1), broker(2)));
    assert!(
        !net.is_cut(broker(1), broker(1)),
        "a node is not cut from itself"
    );
}

#[test]
fn clones_share_the_fault_state_and_stats() {
    let net = FaultTransport::default();
    let handle = net.clone();
    let rx2 = inbox(&handle, broker(2)); // registered through the clone
    handle.cut(broker(1), broker(2));
    assert!(net.is_cut(broker(1), broker(2)));
    net.send(numbered(broker(1), broker(2), 1));
    net.heal();
    net.send(numbered(broker(1), broker(2), 2));
    assert_eq!(drain(&rx2), [2]);
    assert_eq!(handle.stats().dropped, 1);
    assert_eq!(handle.stats().delivered, 1);
}

// ---- FaultTransport: random faults ----

#[test]
fn drop_probability_one_drops_everything_and_zero_nothing() {
    let net = FaultTransport::default().seed(3);
    let rx = inbox(&net, broker(2));
    net.drop_probability(1.0).unwrap();
    for n in 0..200 {
        net.send(numbered(broker(1), broker(2), n));
    }
    assert_eq!(drain(&rx), Vec::<u64>::new());
    net.drop_probability(0.0).unwrap();
    for n in 0..200 {
        net.send(numbered(broker(1), broker(2), n));
    }
    assert_eq!(drain(&rx), (0..200).collect::<Vec<_>>());
}

#[test]
fn drop_probability_drops_about_that_share() {
    let net = FaultTransport::default().seed(11);
    let rx = inbox(&net, broker(2));
    net.drop_probability(0.3).unwrap();
    let sends = 20_000;
    for n in 0..sends {
        net.send(numbered(broker(1), broker(2), n));
    }
    let dropped = sends - drain(&rx).len() as u64;
    // Binomial(20000, 0.3): sd is about 65, so ±600 is far outside chance.
    assert!(
        (5_400..=6_600).contains(&dropped),
        "dropped {dropped} of {sends}"
    );
    assert_eq!(net.stats().dropped, dropped);
}

/// The numbers that arrive out of `sends` messages with 50% drops and `seed`.
fn survivors(seed: u64, sends: u64) -> Vec<u64> {
    let net = FaultTransport::default().seed(seed);
    let rx = inbox(&net, broker(2));
    net.drop_probability(0.5).unwrap();
    for n in 0..sends {
        net.send(numbered(broker(1), broker(2), n));
    }
    drain(&rx)
}

#[test]
fn same_seed_gives_the_same_drop_pattern() {
    assert_eq!(survivors(42, 500), survivors(42, 500));
    assert_ne!(survivors(42, 500), survivors(43, 500));
}

#[test]
fn reseeding_restarts_the_decision_sequence() {
    let net = FaultTransport::default().seed(5);
    let rx = inbox(&net, broker(2));
    net.drop_probability(0.5).unwrap();
    for n in 0..300 {
        net.send(numbered(broker(1), broker(2), n));
    }
    let first = drain(&rx);
    let net = net.seed(5);
    for n in 0..300 {
        net.send(numbered(broker(1), broker(2), n));
    }
    assert_eq!(drain(&rx), first);
}

#[test]
fn duplication_does_not_shift_which_messages_are_dropped() {
    let net = FaultTransport::default().seed(42);
    let rx = inbox(&net, broker(2));
    net.drop_probability(0.5).unwrap();
    net.duplicate_probability(0.5).unwrap();
    for n in 0..500 {
        net.send(numbered(broker(1), broker(2), n));
    }
    let mut arrived = drain(&rx);
    arrived.dedup();
    assert_eq!(arrived, survivors(42, 500));
}

#[test]
fn duplicate_probability_one_delivers_two_copies() {
    let net = FaultTransport::default();
    let rx = inbox(&net, broker(2));
    net.duplicate_probability(1.0).unwrap();
    for n in 0..3 {
        net.send(numbered(broker(1), broker(2), n));
    }
    assert_eq!(drain(&rx), [0, 0, 1, 1, 2, 2]);
    let stats = net.stats();
    assert_eq!((stats.sent, stats.duplicated, stats.delivered), (3, 3, 6));
}

#[test]
fn delay_delivers_no_earlier_than_min() {
    let net = FaultTransport::default();
    let rx = inbox(&net, broker(2));
    let (min, max) = (Duration::from_millis(30), Duration::from_millis(40));
    net.delay(min, max).unwrap();
    let sent_at = Instant::now();
    for n in 0..5 {
        net.send(numbered(broker(1), broker(2), n));
    }
    let mut arrived = Vec::new();
    for _ in 0..5 {
        arrived.push(next(&rx));
        assert!(
            sent_at.elapsed() >= min,
            "arrived after {:?}",
            sent_at.elapsed()
        );
    }
    arrived.sort_unstable();
    assert_eq!(arrived, [0, 1, 2, 3, 4]);
    assert_eq!(net.stats().delayed, 5);
}

#[test]
fn fixed_delay_keeps_the_order_of_a_link() {
    let net = FaultTransport::default();
    let rx = inbox(&net, broker(2));
    let latency = Duration::from_millis(5);
    net.delay(latency, latency).unwrap();
    for n in 0..50 {
        net.send(numbered(broker(1), broker(2), n));
    }
    let arrived: Vec<u64> = (0..50).map(|_| next(&rx)).collect();
    assert_eq!(arrived, (0..50).collect::<Vec<_>>());
}

#[test]
fn reorder_changes_the_order_but_loses_nothing() {
    let net = FaultTransport::default().seed(9);
    let rx = inbox(&net, broker(2));
    net.reorder_probability(1.0).unwrap();
    for n in 0..50 {
        net.send(numbered(broker(1), broker(2), n));
    }
    let arrived: Vec<u64> = (0..50).map(|_| next(&rx)).collect();
    let mut sorted = arrived.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "lost or duplicated");
    assert_ne!(arrived, sorted, "nothing overtook anything");
    assert_eq!(net.stats().reordered, 50);
}

#[test]
fn a_link_cut_while_a_message_is_in_flight_drops_it() {
    let net = FaultTransport::default();
    let rx2 = inbox(&net, broker(2));
    let rx3 = inbox(&net, broker(3));
    let latency = Duration::from_millis(10);
    net.delay(latency, latency).unwrap();
    net.send(numbered(broker(1), broker(2), 1));
    net.cut(broker(1), broker(2));
    // Due no earlier than the first, so once it arrives the first has been handled.
    net.send(numbered(broker(1), broker(3), 2));
    assert_eq!(next(&rx3), 2);
    assert_eq!(drain(&rx2), Vec::<u64>::new());
    assert_eq!(net.stats().dropped, 1);
}

#[test]
fn drop_kind_drops_only_that_kind() {
    let net = FaultTransport::default();
    let leader = inbox(&net, broker(1));
    net.drop_kind("Fetch"); // a stalled follower that still heartbeats
    net.send(fetch(broker(2), broker(1)));
    net.send(numbered(broker(2), broker(1), 1));
    let arrived: Vec<_> = leader.try_iter().map(kind).collect();
    assert_eq!(arrived, ["Heartbeat"]);

    net.allow_kind("Fetch");
    net.send(fetch(broker(2), broker(1)));
    let arrived: Vec<_> = leader.try_iter().map(kind).collect();
    assert_eq!(arrived, ["Fetch"]);
}

#[test]
fn invalid_settings_are_typed_errors_naming_the_setting() {
    let net = FaultTransport::default();
    let name_of = |result: crate::Result<()>| match result {
        Err(Error::InvalidConfig { name, .. }) => name,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(name_of(net.drop_probability(1.5)), "drop_probability");
    assert_eq!(name_of(net.drop_probability(-0.1)), "drop_probability");
    assert_eq!(
        name_of(net.duplicate_probability(f64::NAN)),
        "duplicate_probability"
    );
    assert_eq!(name_of(net.reorder_probability(2.0)), "reorder_probability");
    let (short, long) = (Duration::from_millis(1), Duration::from_millis(2));
    assert_eq!(name_of(net.delay(long, short)), "delay");
    assert_eq!(name_of(net.delay(short, Duration::MAX)), "delay");

    // A refused setting leaves the previous one in place.
    let rx = inbox(&net, broker(2));
    net.send(numbered(broker(1), broker(2), 1));
    assert_eq!(drain(&rx), [1]);
}

#[test]
fn clear_faults_turns_random_faults_off_and_keeps_cut_links() {
    let net = FaultTransport::default();
    let rx2 = inbox(&net, broker(2));
    let rx3 = inbox(&net, broker(3));
    net.drop_probability(1.0).unwrap();
    net.duplicate_probability(1.0).unwrap();
    net.reorder_probability(1.0).unwrap();
    net.delay(Duration::from_secs(60), Duration::from_secs(60))
        .unwrap();
    net.drop_kind("Heartbeat");
    net.cut(broker(1), broker(3));
    net.clear_faults();
    net.send(numbered(broker(1), broker(2), 1));
    net.send(numbered(broker(1), broker(3), 2));
    assert_eq!(drain(&rx2), [1]); // at once, once, not dropped
    assert_eq!(drain(&rx3), Vec::<u64>::new());
}

#[test]
fn timer_thread_starts_only_when_a_message_is_deferred() {
    let net = FaultTransport::default();
    let rx = inbox(&net, broker(2));
    net.send(numbered(broker(1), broker(2), 1));
    assert!(format!("{net:?}").contains("timer_started: false"));
    net.reorder_probability(1.0).unwrap();
    net.send(numbered(broker(1), broker(2), 2));
    assert!(format!("{net:?}").contains("timer_started: true"));
    assert_eq!(drain(&rx), [1]);
    assert_eq!(next(&rx), 2);
}

#[test]
fn stats_count_every_fate() {
    let net = FaultTransport::default();
    let rx2 = inbox(&net, broker(2));
    net.send(numbered(broker(1), broker(2), 1)); // delivered
    net.cut(broker(1), broker(3));
    net.send(numbered(broker(1), broker(3), 2)); // dropped by the cut
    net.duplicate_probability(1.0).unwrap();
    net.send(numbered(broker(1), broker(2), 3)); // delivered twice
    net.duplicate_probability(0.0).unwrap();
    net.reorder_probability(1.0).unwrap();
    net.send(numbered(broker(1), broker(2), 4)); // held back, then delivered
    assert_eq!(drain(&rx2), [1, 3, 3]);
    assert_eq!(next(&rx2), 4);
    assert_eq!(
        net.stats(),
        FaultStats {
            sent: 4,
            delivered: 4,
            dropped: 1,
            duplicated: 1,
            delayed: 0,
            reordered: 1,
        }
    );
}

#[test]
fn timer_thread_exits_when_the_last_clone_is_dropped() {
    let net = FaultTransport::default();
    // The inner transport holds the only sender of this inbox, and the timer
    // thread holds the inner transport: a disconnect proves the thread is gone.
    let rx = inbox(&net, broker(2));
    let handle = net.clone();
    net.delay(Duration::from_millis(1), Duration::from_millis(1))
        .unwrap();
    handle.send(numbered(broker(1), broker(2), 1));
    assert_eq!(next(&rx), 1); // the timer thread is running
    net.delay(Duration::from_secs(60), Duration::from_secs(60))
        .unwrap();
    handle.send(numbered(broker(1), broker(2), 2)); // pending when we drop
    drop(net);
    drop(handle);
    let waited = Instant::now();
    assert_eq!(
        rx.recv_timeout(PATIENCE).map(number),
        Err(RecvTimeoutError::Disconnected)
    );
    assert!(
        waited.elapsed() < Duration::from_secs(1),
        "waited for the pending delay"
    );
}
