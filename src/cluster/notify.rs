//! Wake-ups for whoever waits on cluster state: handles waiting for a leader to take
//! over, producers waiting for metadata to change. No polling loops.

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::sync::{Condvar, Mutex};

/// A version counter with a condvar, plus channel watchers for threads that already
/// wait on a channel (`select!`).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    version: Mutex<u64>,
    cond: Condvar,
    watchers: Mutex<Vec<Sender<()>>>,
}

impl Notify {
    /// Something changed: wake every waiter.
    pub(crate) fn bump(&self) {
        *self.version.lock() += 1;
        self.cond.notify_all();
        self.watchers
            .lock()
            .retain(|w| !matches!(w.try_send(()), Err(TrySendError::Disconnected(_))));
    }

    /// A channel that receives (coalesced) signals on every change.
    pub(crate) fn watch(&self) -> Receiver<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.watchers.lock().push(tx);
        rx
    }

    /// Waits until `done()` holds or `deadline` passes; returns whether it held.
    pub(crate) fn wait_until(&self, deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
        let mut version = self.version.lock();
        loop {
            if done() {
                return true;
            }
            if self.cond.wait_until(&mut version, deadline).timed_out() {
                return done();
            }
        }
    }
}

#[cfg(all(test, loom))]
#[path = "tests/loom_notify.rs"]
mod loom_notify;
