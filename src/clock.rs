//! Time for the broker and controller threads: the real monotonic clock, or a
//! virtual one that a deterministic simulation advances by hand. The cores never
//! read time themselves; the shells ask this clock and pass `now` in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock measured from an arbitrary start.
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// Real time since the cluster started.
    Real(Instant),
    /// Virtual time in nanoseconds, moved only by [`Clock::advance`].
    #[allow(dead_code)] // Used by the simulation.
    Virtual(Arc<AtomicU64>),
}

impl Clock {
    /// Real time, starting now.
    pub(crate) fn real() -> Self {
        Clock::Real(Instant::now())
    }

    /// Virtual time, starting at zero.
    #[allow(dead_code)] // Used by the simulation.
    pub(crate) fn virtual_clock() -> Self {
        Clock::Virtual(Arc::new(AtomicU64::new(0)))
    }

    /// Time since the start.
    pub(crate) fn now(&self) -> Duration {
        match self {
            Clock::Real(start) => start.elapsed(),
            Clock::Virtual(nanos) => Duration::from_nanos(nanos.load(Ordering::Acquire)),
        }
    }

    /// Moves virtual time forward to `to` (never back); real time ignores it.
    #[allow(dead_code)] // Used by the simulation.
    pub(crate) fn advance_to(&self, to: Duration) {
        if let Clock::Virtual(nanos) = self {
            nanos.fetch_max(to.as_nanos() as u64, Ordering::AcqRel);
        }
    }
}
