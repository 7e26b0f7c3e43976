//! Partition leaders' answers on their way to the producer, and whether the
//! producer needs them at once.
//!
//! A leader completes a batch's deliveries itself on success, so an answer is
//! mostly bookkeeping (the batch leaves the in-flight table, its buffer memory is
//! freed). Waking the sender thread for each one would cost a thread wake-up per
//! request. Instead an answer waits here until the sender thread or a calling thread
//! next holds the accumulator lock, and wakes the sender only when it failed (a
//! retry or an error to report) or when the producer has said it is waiting for
//! answers ([`Answers::want`]): a flush, a full buffer, or records queued behind a
//! batch in flight that only an answer lets go out.
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
        if urgent || self.wanted.load(Ordering::Relaxed) {
            self.wake.wake();
        }
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
