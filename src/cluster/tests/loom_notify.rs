//! The wake-up for whoever waits on cluster state ([`Notify`]): leader settling,
//! metadata changes. A waiter checks its condition under the version lock and
//! waits; bumpers change the condition and then bump. The waiter never misses the
//! change: a missed one leaves it blocked (waits have no time-out under loom) and
//! loom reports the deadlock.

use std::time::{Duration, Instant};

use loom::thread;

use super::Notify;
use crate::sync::{Arc, AtomicU64, Ordering};

/// One waiter, two bumpers each making half of the condition true.
#[test]
fn loom_notify_waiter_sees_every_change() {
    loom::model(|| {
        let notify = Arc::new(Notify::default());
        let done = Arc::new(AtomicU64::new(0));
        let bumpers: Vec<_> = (0..2)
            .map(|_| {
                let (notify, done) = (notify.clone(), done.clone());
                thread::spawn(move || {
                    done.fetch_add(1, Ordering::Release);
                    notify.bump();
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(3600);
        assert!(notify.wait_until(deadline, || done.load(Ordering::Acquire) == 2));
        for b in bumpers {
            b.join().unwrap();
        }
    });
}

/// Two waiters on one bump (every waiter is woken, not one).
#[test]
fn loom_notify_wakes_every_waiter() {
    loom::model(|| {
        let notify = Arc::new(Notify::default());
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(3600);
        let other = {
            let (notify, done) = (notify.clone(), done.clone());
            thread::spawn(move || notify.wait_until(deadline, || done.load(Ordering::Acquire) == 1))
        };
        let bumper = {
            let (notify, done) = (notify.clone(), done.clone());
            thread::spawn(move || {
                done.store(1, Ordering::Release);
                notify.bump();
            })
        };
        assert!(notify.wait_until(deadline, || done.load(Ordering::Acquire) == 1));
        assert!(other.join().unwrap());
        bumper.join().unwrap();
    });
}
