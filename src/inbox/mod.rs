//! A node's inbox: a crossbeam channel whose receiver waits in a way of its own
//! instead of in crossbeam's blocking `recv`.
//!
//! An empty inbox yields the core up to [`YIELDS`] times, looking again after each
//! yield, and then sleeps on a [`Parker`] until a sender wakes it. A yield hands the
//! core to a thread that has work, which on a small machine is often the very
//! thread about to send this one a message; the message then arrives without a
//! sleep and a wake-up (a futex round trip and two context switches). Measured on
//! 2 cores with 3 brokers (`examples/latency.rs`, acks=all, one record at a time):
//! crossbeam's `recv` gave a mean round trip of ~95 µs, sleeping at once ~180 µs,
//! this ~25 µs. It is bounded: an idle thread sleeps after [`YIELDS`] yields, and a
//! sender wakes a sleeping receiver only (one atomic swap per message otherwise).
//!
//! A receiver whose messages come seldom sleeps at once ([`Waits`]): a spin lasts
//! tens of microseconds, and where waits are several times longer it ends in the
//! sleep anyway, having spent the core for nothing. Measured as above at a steady
//! 1,000 records/s end to end, the process used 0.11 cores instead of 0.30, at no
//! higher latency.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendError, Sender, TryRecvError};

use crate::sync::{Arc, AtomicUsize, Condvar, Mutex, Ordering};

/// Creates an unbounded inbox.
pub(crate) fn inbox<T>() -> (InboxSender<T>, InboxReceiver<T>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let parker = Arc::new(Parker::default());
    (
        InboxSender {
            tx: Some(tx),
            parker: parker.clone(),
        },
        InboxReceiver {
            rx,
            parker,
            waits: Waits::default(),
        },
    )
}

/// The sending half; cheap to clone.
#[derive(Debug)]
pub(crate) struct InboxSender<T> {
    /// Always `Some` but in `drop`, which lets go of it before waking the receiver.
    tx: Option<Sender<T>>,
    parker: Arc<Parker>,
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        InboxSender {
            tx: self.tx.clone(),
            parker: self.parker.clone(),
        }
    }
}

impl<T> InboxSender<T> {
    /// Queues `message` and wakes the receiver if it sleeps.
    ///
    /// # Errors
    ///
    /// The receiver is gone; the message comes back.
    pub(crate) fn send(&self, message: T) -> Result<(), SendError<T>> {
        self.tx
            .as_ref()
            .expect("a live sender holds its channel")
            .send(message)?;
        self.parker.unpark();
        Ok(())
    }
}

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        // The last sender gone: a sleeping receiver must wake to see the disconnect,
        // so the channel is let go of first (woken earlier, the receiver would find
        // it still connected and sleep again).
        drop(self.tx.take());
        self.parker.unpark();
    }
}

/// The receiving half (one thread).
#[derive(Debug)]
pub(crate) struct InboxReceiver<T> {
    rx: Receiver<T>,
    parker: Arc<Parker>,
    waits: Waits,
}

impl<T> InboxReceiver<T> {
    /// A queued message, without waiting.
    ///
    /// # Errors
    ///
    /// Empty, or every sender is gone.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// Every queued message, without waiting.
    #[cfg(test)]
    pub(crate) fn try_iter(&self) -> crossbeam_channel::TryIter<'_, T> {
        self.rx.try_iter()
    }

    /// The next message, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// Nothing arrived in time, or every sender is gone.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let start = Instant::now();
        let got = self.recv_until(start.checked_add(timeout), self.waits.spin_first());
        self.waits.record(start.elapsed());
        got
    }

    /// [`recv_timeout`](Self::recv_timeout)'s wait, spinning before a sleep when
    /// `spin`.
    fn recv_until(&self, deadline: Option<Instant>, spin: bool) -> Result<T, RecvTimeoutError> {
        let yields = if spin { YIELDS } else { 0 };
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Ok(m),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvTimeoutError::Timeout);
            }
            let mut got = None;
            for _ in 0..yields {
                crate::sync::yield_now();
                if let Ok(m) = self.rx.try_recv() {
                    got = Some(m);
                    break;
                }
            }
            if let Some(m) = got {
                return Ok(m);
            }
            self.parker.park(deadline);
        }
    }
}

/// Yields before a thread that waits for a message or an answer sleeps: an empty
/// inbox, `Delivery::wait`.
pub(crate) const YIELDS: usize = 32;

/// Waits averaging this long or more skip the spin: [`YIELDS`] yields last tens of
/// microseconds on 2 cores, so a message that takes several times that mostly
/// arrives after the spin gave up.
const SPIN_WORTH: Duration = Duration::from_micros(250);

/// A receiver's recent waits, from which it decides whether its next wait spins
/// before it sleeps. An exponentially weighted mean (weight 1/8) of how long each
/// wait took, a message found at once counting as the moment between two clock
/// reads (about zero); each wait counts as at most
/// twice [`SPIN_WORTH`], so that after an idle spell (or under a steady load
/// after a burst) a handful of waits is enough to change the decision.
#[derive(Debug, Default)]
struct Waits {
    /// The mean in nanoseconds (one receiving thread: no atomics).
    mean_ns: Cell<u64>,
}

impl Waits {
    /// Whether the next wait should spin first.
    fn spin_first(&self) -> bool {
        self.mean_ns.get() < SPIN_WORTH.as_nanos() as u64
    }

    /// One wait took `waited`.
    fn record(&self, waited: Duration) {
        let sample = waited.min(2 * SPIN_WORTH).as_nanos() as u64;
        let mean = self.mean_ns.get();
        self.mean_ns.set(mean - mean / 8 + sample / 8);
    }
}

/// No wake-up pending, receiver awake.
const EMPTY: usize = 0;
/// The receiver sleeps (or is about to, holding the lock).
const PARKED: usize = 1;
/// A wake-up is pending: the next `park` returns at once.
const NOTIFIED: usize = 2;

/// One thread's sleep and wake-up, as `std::thread::park` (and tokio's parker) does
/// it: a state word so that a wake-up costs one atomic swap when nobody sleeps, and
/// a lock and condvar for the sleep itself. A wake-up is never lost: one that comes
/// before the sleep makes it return at once.
#[derive(Debug, Default)]
pub(crate) struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Parker {
    /// Sleeps until [`Parker::unpark`] (possibly called before this) or `deadline`.
    /// May return early; callers re-check what they wait for.
    pub(crate) fn park(&self, deadline: Option<Instant>) {
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = self.lock.lock();
        if let Err(actual) =
            self.state
                .compare_exchange(EMPTY, PARKED, Ordering::SeqCst, Ordering::SeqCst)
        {
            // A wake-up arrived in between: take it.
            debug_assert_eq!(actual, NOTIFIED, "one receiver parks");
            self.state.store(EMPTY, Ordering::SeqCst);
            return;
        }
        loop {
            let timed_out = match deadline {
                Some(d) => self.cond.wait_until(&mut guard, d).timed_out(),
                None => {
                    self.cond.wait(&mut guard);
                    false
                }
            };
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return;
            }
            if timed_out {
                // No wake-up came: back to EMPTY (a racing one is taken next time).
                let _ =
                    self.state
                        .compare_exchange(PARKED, EMPTY, Ordering::SeqCst, Ordering::SeqCst);
                return;
            }
            // A spurious wake-up: sleep again.
        }
    }

    /// Wakes the sleeping thread, or makes its next [`Parker::park`] return at once.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Ordering::SeqCst) == PARKED {
            // Taking the lock waits until the sleeper is inside `wait`, so the
            // notification cannot slip in before it.
            drop(self.lock.lock());
            self.cond.notify_one();
        }
    }
}

#[cfg(all(test, loom))]
mod tests;

#[cfg(all(test, not(loom)))]
mod unit_tests {
    use super::*;

    #[test]
    fn a_message_sent_while_the_receiver_sleeps_wakes_it() {
        let (tx, rx) = inbox::<u32>();
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20)); // let it sleep (not for sync)
        tx.send(7).expect("receiver alive");
        assert_eq!(t.join().expect("no panic"), Ok(7));
    }

    #[test]
    fn an_empty_inbox_times_out() {
        let (_tx, rx) = inbox::<u32>();
        let start = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn dropping_every_sender_wakes_a_sleeping_receiver() {
        let (tx, rx) = inbox::<u32>();
        let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)));
        drop(tx);
        assert_eq!(
            t.join().expect("no panic"),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn dropping_the_last_of_several_senders_wakes_the_receiver_every_time() {
        for _ in 0..200 {
            let (tx, rx) = inbox::<u32>();
            let other = tx.clone();
            let t = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(30)));
            drop(other);
            let dropper = std::thread::spawn(move || drop(tx));
            let start = Instant::now();
            assert_eq!(
                t.join().expect("no panic"),
                Err(RecvTimeoutError::Disconnected)
            );
            assert!(start.elapsed() < Duration::from_secs(5), "woke late");
            dropper.join().expect("no panic");
        }
    }

    #[test]
    fn waits_too_long_for_a_spin_make_the_receiver_sleep_at_once() {
        let waits = Waits::default();
        assert!(waits.spin_first(), "a new receiver spins");
        let mut n = 0;
        while waits.spin_first() {
            waits.record(Duration::from_millis(100));
            n += 1;
        }
        assert!(n <= 6, "{n} long waits before sleeping at once");
        // Waits a spin would cover bring the spin back as quickly.
        let mut n = 0;
        while !waits.spin_first() {
            waits.record(Duration::from_micros(5));
            n += 1;
        }
        assert!(n <= 6, "{n} short waits before spinning again");
    }

    #[test]
    fn waits_averaging_under_the_limit_keep_spinning() {
        let waits = Waits::default();
        for _ in 0..1_000 {
            // Messages found at once, and waits of half the limit.
            waits.record(Duration::ZERO);
            waits.record(SPIN_WORTH / 2);
            assert!(waits.spin_first());
        }
    }

    #[test]
    fn an_inbox_that_keeps_timing_out_sleeps_without_spinning() {
        let (tx, rx) = inbox::<u32>();
        for _ in 0..6 {
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(1)),
                Err(RecvTimeoutError::Timeout)
            );
        }
        assert!(!rx.waits.spin_first());
        // Messages waiting at once: spinning again after a few (more only if this
        // thread loses its core between looking at the clock and the inbox).
        let mut n = 0;
        while !rx.waits.spin_first() {
            tx.send(n).expect("receiver alive");
            assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(n));
            n += 1;
            assert!(
                n < 100,
                "still sleeping at once after {n} messages found at once"
            );
        }
    }

    #[test]
    fn messages_arrive_in_order() {
        let (tx, rx) = inbox::<u32>();
        for i in 0..100 {
            tx.send(i).expect("receiver alive");
        }
        for i in 0..100 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(i));
        }
    }
}
