//! The ack waiter: a batch's [`DeliverySlot`] completed on one thread while a
//! record's [`Delivery`] is waited on (blocking or as a future) on another. The waiter sees
//! the result exactly once, the first completion wins, and no wake-up is lost (a
//! lost one leaves the waiter blocked and loom reports the deadlock).

use loom::thread;

use crate::producer::delivery::Waiters;
use crate::producer::{Delivery, DeliverySlot, RecordMetadata};
use crate::sync::Arc;
use crate::Error;

fn meta(offset: u64) -> RecordMetadata {
    RecordMetadata {
        topic: "t".into(),
        partition: 0,
        offset: Some(offset),
    }
}

/// `wait()` blocks on the condvar until the completer's result arrives.
#[test]
fn loom_delivery_wait_sees_the_result() {
    loom::model(|| {
        let slot = DeliverySlot::shared("t", 0, Default::default());
        let delivery = Delivery::new(slot.clone(), 0);
        let completer = thread::spawn(move || slot.complete(Ok(Some(7))));
        assert_eq!(delivery.wait().expect("completed Ok"), meta(7));
        completer.join().unwrap();
    });
}

/// Polled as a future, the waker registered under the lock is always woken.
#[test]
fn loom_delivery_future_is_woken() {
    loom::model(|| {
        let slot = DeliverySlot::shared("t", 0, Default::default());
        let delivery = Delivery::new(slot.clone(), 0);
        let completer = thread::spawn(move || slot.complete(Ok(Some(3))));
        assert_eq!(
            crate::sync::block_on(delivery).expect("completed Ok"),
            meta(3)
        );
        completer.join().unwrap();
    });
}

/// A lone future yields before registering its waker; an answer that comes only
/// after it stopped yielding still wakes it.
#[test]
fn loom_delivery_a_late_answer_wakes_a_lone_future() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::default());
        let slot = DeliverySlot::shared("t", 0, waiters.clone());
        let delivery = Delivery::new(slot.clone(), 0);
        let completer = thread::spawn(move || {
            // Longer than the future yields.
            for _ in 0..=crate::inbox::YIELDS {
                thread::yield_now();
            }
            slot.complete(Ok(Some(5)))
        });
        assert_eq!(
            crate::sync::block_on(delivery).expect("completed Ok"),
            meta(5)
        );
        completer.join().unwrap();
        assert_eq!(waiters.count(), 0);
    });
}

/// Two futures of one producer wait on one batch: whichever is alone yields
/// before registering its waker, the other registers at once. Both are woken with
/// their own record's offset, and neither stays counted as waiting.
#[test]
fn loom_delivery_two_futures_are_both_woken() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::default());
        let slot = DeliverySlot::shared("t", 0, waiters.clone());
        let first = Delivery::new(slot.clone(), 0);
        let second = Delivery::new(slot.clone(), 1);
        let completer = thread::spawn(move || slot.complete(Ok(Some(3))));
        let other = thread::spawn(move || crate::sync::block_on(second));
        assert_eq!(crate::sync::block_on(first).expect("completed Ok"), meta(3));
        assert_eq!(other.join().unwrap().expect("completed Ok"), meta(4));
        completer.join().unwrap();
        assert_eq!(waiters.count(), 0);
    });
}

/// Two completers race (an answer and a give-up, say) while the waiter waits: it
/// gets exactly one of the two results.
#[test]
fn loom_delivery_one_of_two_completions() {
    loom::model(|| {
        let slot = DeliverySlot::shared("t", 0, Default::default());
        let delivery = Delivery::new(slot.clone(), 0);
        let other = slot.clone();
        let ok = thread::spawn(move || slot.complete(Ok(Some(1))));
        let err = thread::spawn(move || other.complete(Err(timeout())));
        match delivery.wait() {
            Ok(m) => assert_eq!(m, meta(1)),
            Err(e) => assert!(matches!(e, Error::Timeout { .. }), "{e}"),
        }
        ok.join().unwrap();
        err.join().unwrap();
    });
}

/// A completed slot ignores a second completion: `is_done` holds and the first
/// result is the one delivered.
#[test]
fn loom_delivery_second_completion_is_ignored() {
    loom::model(|| {
        let slot = DeliverySlot::shared("t", 0, Default::default());
        let delivery = Delivery::new(slot.clone(), 0);
        let other = slot.clone();
        let first = thread::spawn(move || slot.complete(Ok(Some(1))));
        first.join().unwrap();
        let second = thread::spawn(move || other.complete(Err(timeout())));
        assert!(delivery.is_done());
        assert_eq!(
            crate::sync::block_on(delivery).expect("first wins"),
            meta(1)
        );
        second.join().unwrap();
    });
}

fn timeout() -> Error {
    Error::Timeout {
        what: "an answer".into(),
        after: std::time::Duration::from_secs(1),
    }
}
