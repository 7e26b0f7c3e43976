//! loom models of the producer's cross-thread hand-offs (`cfg(loom)` only; see
//! `crate::sync` for how to run them).

mod loom_answers;
mod loom_delivery;
mod loom_handoff;
mod loom_slot_ref;

use crate::producer::handoff::Wake;
use crate::sync::{Arc, Condvar, Mutex};

/// The sender thread's wake-up as the models see it: a `bounded(1)` crossbeam
/// channel of `()` is not loom-aware, so this is the same thing built from loom's
/// primitives: one pending wake-up that any number of wakes coalesce into, taken
/// before the state is looked at.
#[derive(Debug, Default)]
struct Signal {
    pending: Mutex<bool>,
    cond: Condvar,
}

impl Signal {
    /// Blocks until a wake-up is pending and takes it.
    fn recv(&self) {
        let mut pending = self.pending.lock();
        while !*pending {
            self.cond.wait(&mut pending);
        }
        *pending = false;
    }
}

/// The sending side, held where the producer holds its channel's sender.
#[derive(Debug)]
struct SignalTx(Arc<Signal>);

impl Wake for SignalTx {
    fn wake(&self) {
        *self.0.pending.lock() = true;
        self.0.cond.notify_one();
    }
}
