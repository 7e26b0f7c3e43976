//! The hand-off between the threads that call `send`/`flush` and the sender thread:
//! the accumulator [`State`] under one mutex, a condvar for progress (records
//! finished, buffer memory freed) and a coalescing wake-up of the sender thread.
//!
//! All of the producer's cross-thread synchronisation goes through [`Handoff`], so
//! that `tests/loom_handoff.rs` checks the code the producer runs, with a loom-aware
//! [`Wake`] standing in for the crossbeam channel.

use std::time::Instant;

use crate::sync::{Condvar, Mutex, MutexGuard};

use super::accumulator::State;

/// Wakes the sender thread. Wake-ups coalesce: one pending wake-up stands for any
/// number, so the sender must take the wake-up *before* it looks at the state.
pub(crate) trait Wake {
    /// Makes the sender's next wait return (at once if it is waiting now).
    fn wake(&self);

    /// A leader's answer arrived while the producer waits for answers: settles
    /// it on the leader's thread when it can, else wakes the sender thread.
    fn answered(&self) {
        self.wake();
    }
}

/// The producer's wake-up: a `bounded(1)` channel the sender thread `select!`s on
/// with its other channels; a full channel already holds a wake-up.
impl Wake for crossbeam_channel::Sender<()> {
    fn wake(&self) {
        let _ = self.try_send(());
    }
}

/// Why [`Handoff::send`] appended nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused<E> {
    /// The producer is closing.
    Closed,
    /// `buffer.memory` stayed full until the deadline.
    BufferFull,
    /// The record's own check failed (unknown topic, too large …).
    Rejected(E),
}

/// The accumulator state shared by the producer's handles and its sender thread.
#[derive(Debug)]
pub(crate) struct Handoff<W> {
    state: Mutex<State>,
    /// Signalled when records finish (buffer memory freed, `outstanding` lower).
    progress: Condvar,
    wake: W,
}

impl<W: Wake> Handoff<W> {
    /// An empty accumulator whose sender thread is woken through `wake`.
    pub(crate) fn new(wake: W) -> Self {
        Handoff {
            state: Mutex::new(State::default()),
            progress: Condvar::new(),
            wake,
        }
    }

    /// Locks the accumulator.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Locks the accumulator if no other thread holds it now.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.try_lock()
    }

    /// Wakes the sender thread.
    pub(crate) fn wake_sender(&self) {
        self.wake.wake();
    }

    /// `send`'s half: runs `check` (the record against the topic, under the same
    /// lock as the append, so that what it caches in the state is read once), waits
    /// (until `deadline()`) while `buffer_memory` is full (always admitting one
    /// record of `size` bytes into an empty buffer), runs `append` with what `check`
    /// found (it returns whether it left something for the sender to send now: a
    /// full batch, or a record to send at once, that the caller could not hand over
    /// itself, and what the caller gets back) and wakes the sender if so or if a
    /// `flush` waits.
    ///
    /// # Errors
    ///
    /// [`Refused::Closed`] once [`close`](Self::close) was called,
    /// [`Refused::Rejected`] with `check`'s error (at once, full buffer or not),
    /// [`Refused::BufferFull`] if memory did not free up by `deadline`; nothing was
    /// appended then.
    // Inlined into `Producer::send`, once per record: see `send_inner`.
    #[inline]
    pub(crate) fn send<C, E, R>(
        &self,
        size: usize,
        buffer_memory: usize,
        deadline: impl Fn() -> Instant,
        check: impl FnOnce(&mut State) -> Result<C, E>,
        append: impl FnOnce(&mut State, C) -> (bool, R),
    ) -> Result<R, Refused<E>> {
        let mut state = self.state.lock();
        let (now, r) = self.append_one(
            &mut state,
            (),
            size,
            buffer_memory,
            &deadline,
            |state, ()| check(state),
            |state, (), checked, _| append(state, checked),
        )?;
        // A flush in progress ignores linger: the sender must see this record now,
        // or the flush would wait out the linger for it.
        let wake = now || state.flushes > 0;
        drop(state);
        if wake {
            self.wake_sender();
        }
        Ok(r)
    }

    /// `send_all`'s half: as [`send`](Self::send) for each item in turn, in order,
    /// with the lock taken once for up to `per_lock` items rather than once for
    /// each. `begin` runs whenever the lock is taken (and again after a wait for
    /// buffer memory) and makes what `check` and `append` share while it is held;
    /// `size` gives an item's bytes, `check` and `append` are `send`'s with the item
    /// and its size, and `refused` says what an item that was not appended gets.
    /// What `append` and `refused` return is pushed onto `out`, one entry per item
    /// in order. An item that has to wait for buffer memory waits until
    /// `deadline()` read when it starts waiting, as with `send`: a long call under
    /// backpressure fails no item for the time the items before it took.
    ///
    /// After each lock hold the sender is woken if an `append` asked for it or a
    /// flush waits, so that it never waits for a batch longer than the hold.
    ///
    /// The items of a hold are read where they were gathered, by reference, and
    /// dropped after the lock is let go: moving each (a `Record` is over 100 bytes)
    /// once more under the lock, and dropping it there, made a call cost more per
    /// record than one `send` each.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_many<T, H, C, E, D>(
        &self,
        items: impl IntoIterator<Item = T>,
        per_lock: usize,
        size: impl Fn(&T) -> usize,
        buffer_memory: usize,
        deadline: impl Fn() -> Instant,
        mut begin: impl FnMut(&mut State) -> H,
        mut check: impl FnMut(&mut State, &mut H, &T, usize) -> Result<C, E>,
        mut append: impl FnMut(&mut State, &H, &T, C, usize) -> (bool, D),
        mut refused: impl FnMut(Refused<E>) -> D,
        out: &mut Vec<D>,
    ) {
        let per_lock = per_lock.max(1);
        let mut items = items.into_iter();
        let mut chunk = Vec::with_capacity(per_lock.min(items.size_hint().0));
        loop {
            // Taken from the caller's iterator before locking: it may block (a
            // channel's receiver) or send through this producer itself.
            chunk.extend(items.by_ref().take(per_lock));
            if chunk.is_empty() {
                return;
            }
            let mut state = self.state.lock();
            let mut hold = begin(&mut state);
            let mut wake = false;
            for item in &chunk {
                let size = size(item);
                let appended = self.append_one(
                    &mut state,
                    (&mut hold, item),
                    size,
                    buffer_memory,
                    &deadline,
                    |state, (hold, item)| check(state, hold, item, size),
                    |state, (hold, item), checked, waited| {
                        if waited {
                            *hold = begin(state);
                        }
                        append(state, hold, item, checked, size)
                    },
                );
                out.push(match appended {
                    Ok((now, d)) => {
                        wake |= now;
                        d
                    }
                    Err(r) => refused(r),
                });
            }
            // As `send`: a flush in progress must see these records now.
            wake |= state.flushes > 0;
            drop(state);
            if wake {
                self.wake_sender();
            }
            chunk.clear();
        }
    }

    /// One item of `send` or `send_many`, under the lock: refused once closed,
    /// then `check`, the wait for buffer memory ([`admit`](Self::admit)) and
    /// `append`, which is told whether the lock was let go for that wait. `item`
    /// is what `check` looks at and `append` then takes.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn append_one<X, C, E, R>(
        &self,
        state: &mut MutexGuard<'_, State>,
        mut item: X,
        size: usize,
        buffer_memory: usize,
        deadline: &impl Fn() -> Instant,
        check: impl FnOnce(&mut State, &mut X) -> Result<C, E>,
        append: impl FnOnce(&mut State, X, C, bool) -> R,
    ) -> Result<R, Refused<E>> {
        if state.closed {
            return Err(Refused::Closed);
        }
        let checked = check(state, &mut item).map_err(Refused::Rejected)?;
        let waited = self
            .admit(state, size, buffer_memory, deadline)
            .map_err(|()| Refused::BufferFull)?;
        Ok(append(state, item, checked, waited))
    }

    /// Waits (until `deadline()`, read when the wait begins) while `buffer_memory`
    /// cannot take `size` more bytes, always admitting an item into an empty
    /// buffer. Whether it waited, or `Err` if it timed out. The clock is read only
    /// when the buffer is full: not on the hot path.
    #[inline]
    fn admit(
        &self,
        state: &mut MutexGuard<'_, State>,
        size: usize,
        buffer_memory: usize,
        deadline: &impl Fn() -> Instant,
    ) -> Result<bool, ()> {
        let mut until = None;
        let mut waited = false;
        while state.buffered > 0 && state.buffered + size > buffer_memory {
            // Counted, so the sender thread asks for every answer while this waits.
            state.waiting += 1;
            self.wake_sender();
            let until = *until.get_or_insert_with(deadline);
            let timed_out = self.progress.wait_until(state, until).timed_out();
            state.waiting -= 1;
            if timed_out {
                return Err(());
            }
            waited = true;
        }
        Ok(waited)
    }

    /// `flush`'s half: makes the sender send everything now (linger is ignored
    /// while a flush waits) and waits until no record is outstanding. `done` then
    /// runs under the same hold of the lock.
    pub(crate) fn flush(&self, done: impl FnOnce(&mut State)) {
        let mut state = self.state.lock();
        state.flushes += 1;
        self.wake_sender();
        while state.outstanding > 0 {
            self.progress.wait(&mut state);
        }
        state.flushes -= 1;
        done(&mut state);
    }

    /// Stops taking records and wakes the sender to send what is buffered.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake_sender();
    }

    /// The sender's half: `records` holding `bytes` finished (completed or failed).
    /// Frees their memory and wakes blocked `send`s, and `flush` once nothing is
    /// outstanding. Takes the locked state so that the wake-up cannot slip between a
    /// waiter's check and its wait.
    pub(crate) fn finished(&self, state: &mut State, bytes: usize, records: usize) {
        state.release(bytes, records);
        // Only a blocked `send` or a `flush` with nothing left can go on: waking a
        // flush for every finished batch would only send it back to sleep.
        if state.waiting > 0 || state.outstanding == 0 {
            self.progress.notify_all();
        }
    }
}
