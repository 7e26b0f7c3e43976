//! The one way into synchronisation primitives, switched under `cfg(loom)`.
//!
//! Code that shares memory between threads takes its locks, condvars and atomics
//! from here, never from `parking_lot` or `std::sync` directly, so that the
//! [loom](https://docs.rs/loom) models in `src/**/tests/loom_*.rs` check the real
//! code, as tokio's `src/loom/mod.rs` does. Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test --release --lib loom
//! ```
//!
//! The API is `parking_lot`'s in both builds:
//!
//! - [`Mutex::lock`] returns the guard itself (no poisoning);
//! - [`Condvar::wait`] takes `&mut MutexGuard`; [`Condvar::wait_until`] and
//!   [`Condvar::wait_for`] return a [`WaitTimeoutResult`];
//! - [`RwLock::read`] and [`RwLock::write`] return their guards;
//! - atomics and [`Ordering`] are `std`'s.
//!
//! Under `cfg(all(test, loom))` (loom is a dev-dependency, so a non-test build with
//! `--cfg loom` keeps the real primitives, as tokio's shim does):
//!
//! - the locks, condvars and atomics are loom's, wrapped to that API;
//! - timed waits are *untimed*: loom has no clock, so `wait_until`/`wait_for` block
//!   until notified and never report a time-out. A model that needs a time-out to
//!   make progress therefore deadlocks and loom reports it: the wake-ups alone must
//!   be enough, which is what the models are there to prove;
//! - `notify_one`/`notify_all` return `()` (nothing here uses parking_lot's counts);
//! - [`Arc`] stays `std`'s: loom runs a model's threads on one OS thread, so `std`'s
//!   is sound there, and loom's cannot be coerced to `Arc<dyn Trait>` nor passed to
//!   code outside the shim. What loom's `Arc` would add is only a leak check.
//!
//! In a loom test build, a loom type used outside `loom::model` panics: run only the
//! loom models there (`cargo test --lib loom`). Code not yet routed through this
//! module (`static`s, the rest of the crate) keeps its real primitives.

// A shim: not every re-export and wrapper is used in both builds.
#![allow(unused_imports, dead_code)]

pub(crate) use std::sync::atomic::Ordering;
pub(crate) use std::sync::Arc;

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

#[cfg(not(all(test, loom)))]
pub(crate) use parking_lot::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

#[cfg(all(test, loom))]
pub(crate) use self::loom_impl::{
    Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, WaitTimeoutResult,
};

/// Gives up the core to another runnable thread (loom's scheduler under loom).
#[cfg(not(all(test, loom)))]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// Gives up the core to another runnable thread (loom's scheduler under loom).
#[cfg(all(test, loom))]
pub(crate) fn yield_now() {
    loom::thread::yield_now();
}

/// loom's primitives behind `parking_lot`'s API.
#[cfg(all(test, loom))]
mod loom_impl {
    use std::ops::{Deref, DerefMut};
    use std::time::{Duration, Instant};

    /// A mutex whose `lock` returns the guard (loom's, under `cfg(loom)`).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of a [`Mutex`]. It holds loom's guard in an `Option` so that
    /// [`Condvar::wait`] can hand it to loom by value through `&mut`.
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        /// A new unlocked mutex.
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        /// Blocks until the lock is held.
        #[track_caller]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(
                self.0.lock().expect("loom mutexes are never poisoned"),
            ))
        }

        /// The lock if it is free now.
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock().ok().map(|g| MutexGuard(Some(g)))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard is held outside a wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard is held outside a wait")
        }
    }

    /// Whether a timed wait ran out; under loom never (waits are untimed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        /// Always `false` under loom: there is no clock to run out.
        pub(crate) fn timed_out(self) -> bool {
            self.0
        }
    }

    /// A condvar with `parking_lot`'s `&mut guard` API.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        /// A new condvar.
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        /// Releases the lock, blocks until notified, takes the lock again.
        #[track_caller]
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard is held");
            let inner = self.0.wait(inner).expect("loom mutexes are never poisoned");
            guard.0 = Some(inner);
        }

        /// As [`Condvar::wait`]: loom has no clock, the deadline is ignored and the
        /// result never says it timed out.
        #[track_caller]
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: Instant,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        /// As [`Condvar::wait`]: loom has no clock, the timeout is ignored and the
        /// result never says it timed out.
        #[track_caller]
        pub(crate) fn wait_for<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _timeout: Duration,
        ) -> WaitTimeoutResult {
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        /// Wakes one waiter.
        #[track_caller]
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        /// Wakes every waiter.
        #[track_caller]
        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// A reader-writer lock whose `read`/`write` return the guards.
    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    /// Shared access to a [`RwLock`].
    pub(crate) type RwLockReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
    /// Exclusive access to a [`RwLock`].
    pub(crate) type RwLockWriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

    impl<T> RwLock<T> {
        /// A new unlocked lock.
        pub(crate) fn new(value: T) -> Self {
            RwLock(loom::sync::RwLock::new(value))
        }

        /// Blocks until shared access is held.
        #[track_caller]
        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().expect("loom locks are never poisoned")
        }

        /// Blocks until exclusive access is held.
        #[track_caller]
        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().expect("loom locks are never poisoned")
        }
    }
}

/// Drives a future to completion on the current loom thread, parking on a loom
/// condvar between polls (loom's own `block_on` needs its `futures` feature). A
/// waker that is never woken leaves the thread blocked, and loom reports it.
#[cfg(all(test, loom))]
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};

    /// Set by the waker, taken by the parked thread.
    #[derive(Default)]
    struct Unpark {
        woken: Mutex<bool>,
        cond: Condvar,
    }

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            *self.woken.lock() = true;
            self.cond.notify_all();
        }
    }

    let mut future = std::pin::pin!(future);
    let unpark = Arc::new(Unpark::default());
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        let mut woken = unpark.woken.lock();
        while !*woken {
            unpark.cond.wait(&mut woken);
        }
        *woken = false;
    }
}
