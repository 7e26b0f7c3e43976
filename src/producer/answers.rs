//! Partition leaders' answers on their way to the producer, and whether the
//! producer needs them at once.
//!
//! A leader completes a batch's deliveries itself on success, so an answer is
//! mostly bookkeeping (the batch leaves the in-flight table, its buffer memory is
//! freed). Waking the sender thread for each one would cost a thread wake-up per
//! request. Instead an answer waits here until the sender thread or a calling thread
//! next holds the accumulator lock, and wakes the sender only when it failed (a
//! retry or an error to report). When the producer has said it is waiting for
//! answers ([`Answers::want`]: a flush, a full buffer, or records queued behind a
//! batch in flight that only an answer lets go out), a successful answer is
//! settled at once by the leader that gave it if the accumulator lock is free
//! ([`Wake::answered`]), which sends what it frees without a thread wake-up, and
//! wakes the sender otherwise.
//!
//! No wake-up is lost: a leader queues its answer under the lock and then reads
//! `wanted`; [`Answers::want`] sets `wanted` and then looks at the queue under the
//! same lock. Whichever comes second sees the other (`tests/loom_answers.rs`).

use crate::sync::{AtomicBool, AtomicUsize, Mutex, Ordering};

use super::handoff::Wake;

/// Answers queued for the producer; see the module docs.
#[derive(Debug)]
pub(crate) struct Answers<T, W> {
    queue: Mutex<Vec<T>>,
    /// How many are queued: a hint read without the lock, so that a `send` with
    /// nothing to take pays no lock for looking.
    queued: AtomicUsize,
    /// Whether the producer waits for answers. Written only with the accumulator
    /// lock held, so a thread holding that lock reads it exactly.
    wanted: AtomicBool,
    wake: W,
}

impl<T, W: Wake> Answers<T, W> {
    /// An empty queue that wakes the sender thread through `wake`.
    pub(crate) fn new(wake: W) -> Self {
        Answers {
            queue: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
            wake,
        }
    }

    /// A leader's answer. Wakes the sender thread if the answer is `urgent` (a
    /// failure) or the producer waits for answers.
    pub(crate) fn push(&self, answer: T, urgent: bool) {
        {
            let mut q = self.queue.lock();
            q.push(answer);
            self.queued.store(q.len(), Ordering::Relaxed);
        }
        // Read after queueing under the lock: see the module docs.
        if urgent {
            self.wake.wake();
        } else if self.wanted.load(Ordering::Relaxed) {
            self.wake.answered();
        }
    }

    /// Whether the producer waits for answers now.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Whether anything may be queued. A hint: an answer queued a moment ago may be
    /// missed, which only means it is taken by a later look.
    pub(crate) fn maybe_queued(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > 0
    }

    /// Moves every queued answer to the end of `out`.
    pub(crate) fn take_into(&self, out: &mut Vec<T>) {
        let mut q = self.queue.lock();
        if out.is_empty() {
            // Swapped, not copied: both vectors keep their capacity.
            std::mem::swap(&mut *q, out);
        } else {
            out.append(&mut q);
        }
        self.queued.store(0, Ordering::Relaxed);
    }

    /// The producer waits for answers: from now on each one wakes the sender
    /// thread, and so does one already queued. Called with the accumulator lock
    /// held.
    pub(crate) fn want(&self) {
        if !self.wanted.load(Ordering::Relaxed) {
            self.set_wanted(true);
        }
    }

    /// The sender thread's verdict after a pass over the accumulator: whether
    /// answers are needed at once. Called with the accumulator lock held.
    pub(crate) fn set_wanted(&self, wanted: bool) {
        // Written before looking at the queue under its lock: see the module docs.
        self.wanted.store(wanted, Ordering::Relaxed);
        if wanted && !self.queue.lock().is_empty() {
            self.wake.wake();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    use super::*;

    /// Counts how the sender was called on: woken, or asked to settle.
    #[derive(Debug, Default)]
    struct Calls {
        woken: AtomicU32,
        answered: AtomicU32,
    }

    impl Wake for Arc<Calls> {
        fn wake(&self) {
            self.woken.fetch_add(1, Ordering::Relaxed);
        }

        fn answered(&self) {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(c: &Calls) -> (u32, u32) {
        (
            c.woken.load(Ordering::Relaxed),
            c.answered.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn a_wanted_answer_asks_to_settle_and_a_failure_wakes_the_sender() {
        let calls = Arc::new(Calls::default());
        let answers = Answers::new(calls.clone());
        // Nobody waits: the answer waits for the next look.
        answers.push(1, false);
        assert_eq!(counts(&calls), (0, 0));
        // A failure needs the sender thread (a retry, a backoff), wanted or not.
        answers.push(2, true);
        assert_eq!(counts(&calls), (1, 0));
        // Wanting answers with some queued wakes the sender for them.
        answers.want();
        assert_eq!(counts(&calls), (2, 0));
        // A success while wanted may be settled where it is given.
        answers.push(3, false);
        assert_eq!(counts(&calls), (2, 1));
        answers.push(4, true);
        assert_eq!(counts(&calls), (3, 1));
        let mut got = Vec::new();
        answers.take_into(&mut got);
        assert_eq!(got, vec![1, 2, 3, 4]);
    }
}
