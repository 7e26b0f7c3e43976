//! The inbox's [`Parker`]: a receiver that finds nothing sleeps, a sender that
//! queues a message wakes it. No wake-up may be lost whatever the interleaving (a
//! lost one leaves the receiver asleep, and loom reports the deadlock: timed waits
//! are untimed under loom).

use loom::thread;

use crate::inbox::Parker;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// The receive loop of `InboxReceiver::recv_timeout` over a counter standing in
/// for the channel: look, sleep if empty, look again.
fn receive(queue: &AtomicUsize, parker: &Parker, want: usize) {
    while queue.load(Ordering::SeqCst) < want {
        parker.park(None);
    }
}

#[test]
fn loom_parker_a_message_wakes_the_sleeping_receiver() {
    loom::model(|| {
        let queue = Arc::new(AtomicUsize::new(0));
        let parker = Arc::new(Parker::default());
        let (q, p) = (queue.clone(), parker.clone());
        let sender = thread::spawn(move || {
            q.fetch_add(1, Ordering::SeqCst);
            p.unpark();
        });
        receive(&queue, &parker, 1);
        sender.join().unwrap();
    });
}

#[test]
fn loom_parker_two_senders_both_get_through() {
    loom::model(|| {
        let queue = Arc::new(AtomicUsize::new(0));
        let parker = Arc::new(Parker::default());
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (q, p) = (queue.clone(), parker.clone());
                thread::spawn(move || {
                    q.fetch_add(1, Ordering::SeqCst);
                    p.unpark();
                })
            })
            .collect();
        receive(&queue, &parker, 2);
        for s in senders {
            s.join().unwrap();
        }
    });
}
