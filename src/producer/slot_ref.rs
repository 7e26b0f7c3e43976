//! [`SlotRef`]: the counted reference to a batch's [`DeliverySlot`] that each of
//! the batch's [`Delivery`](super::Delivery)s holds. It is `Arc` with one thing
//! added: an open batch takes the counts for its records' deliveries in advance,
//! [`ADVANCE`] at a time ([`SlotRefs`]), instead of one atomic increment each.
//!
//! With `Arc`, each `send` would clone it under the producer's lock: an atomic
//! read-modify-write per record on the calling thread, which first waits for the
//! record's own writes into the batch to drain. Profiled on 2 cores with
//! `acks=1`, that increment was about a fifth of `send`'s own time and a third of
//! `send_all`'s; without it, pipelined `send` moved about 9% more records per
//! second with `acks=1` and 16% more with `acks=all` (means of 40 runs of 500,000
//! records). Dropping a `Delivery` still gives its count back on its own, as
//! dropping an `Arc` does: that happens on the caller's thread, outside the lock.
//!
//! The counting follows `std`'s `Arc`: increments are `Relaxed` (the incrementing
//! thread already holds a count, so the slot cannot go away meanwhile),
//! decrements `Release`, and the thread that takes the count to zero reads it once
//! more with `Acquire` before freeing, so every other holder's use of the slot
//! happens before the free. Counts taken in advance are counted like any other:
//! while a [`SlotRefs`] has spares the count cannot reach zero.
//!
//! Checked by the loom model `loom_slot_ref` and, for undefined behaviour, by
//! Miri: `cargo +nightly miri test --lib slot_ref`.
// The counted allocation is managed by hand: `Arc` has no way to add more than
// one count with one atomic operation.
#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use super::DeliverySlot;
use crate::sync::{AtomicUsize, Ordering};

/// Counts an open batch takes in advance, the first ones as it is created and
/// the rest with one atomic addition each time they run out: one per record. A
/// 16 KiB batch of 100-byte records (132) makes two additions, and gives back
/// what is left with one subtraction when it is sealed.
pub(crate) const ADVANCE: usize = 64;

/// Above this many counts the process aborts, as `Arc` does: only leaked
/// references get there, and wrapping around would free a slot still in use.
const MAX_REFS: usize = isize::MAX as usize;

/// The allocation a [`SlotRef`] points to.
struct Counted {
    refs: AtomicUsize,
    slot: DeliverySlot,
}

/// A counted, shared reference to a [`DeliverySlot`], as `Arc<DeliverySlot>`.
pub(crate) struct SlotRef {
    ptr: NonNull<Counted>,
    /// Dropping a `SlotRef` may drop a `Counted`.
    _owns: PhantomData<Counted>,
}

// SAFETY: a `SlotRef` gives out only `&DeliverySlot`, and its counts are atomic, so
// sending or sharing one is sending or sharing a `&DeliverySlot` (or the slot
// itself, for the last holder), as for `Arc<DeliverySlot>`.
unsafe impl Send for SlotRef where DeliverySlot: Send + Sync {}
// SAFETY: as for `Send`.
unsafe impl Sync for SlotRef where DeliverySlot: Send + Sync {}

impl SlotRef {
    /// `slot`, counted once: this reference.
    pub(crate) fn new(slot: DeliverySlot) -> Self {
        SlotRef::counted(slot, 1)
    }

    /// `slot` with `refs` counts, the first of them this reference's.
    fn counted(slot: DeliverySlot, refs: usize) -> Self {
        let counted = Box::new(Counted {
            refs: AtomicUsize::new(refs),
            slot,
        });
        SlotRef {
            ptr: NonNull::from(Box::leak(counted)),
            _owns: PhantomData,
        }
    }

    fn inner(&self) -> &Counted {
        // SAFETY: this reference holds a count, so the allocation is alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Adds `n` counts, aborting past [`MAX_REFS`].
    fn add(&self, n: usize) {
        let old = self.inner().refs.fetch_add(n, Ordering::Relaxed);
        if old > MAX_REFS - n {
            std::process::abort();
        }
    }

    /// Another reference to the slot, owning a count the caller already holds.
    ///
    /// # Safety
    ///
    /// The caller holds one count that nothing else will give back, and hands it
    /// to the new reference.
    unsafe fn for_held_count(&self) -> SlotRef {
        SlotRef {
            ptr: self.ptr,
            _owns: PhantomData,
        }
    }

    /// Gives back `n` counts, one of which may be this reference's own; frees the
    /// slot if they were the last.
    ///
    /// # Safety
    ///
    /// The caller holds `n` counts and uses none of them afterwards. If one is this
    /// reference's own, `self` is not used afterwards either.
    unsafe fn release(&self, n: usize) {
        if self.inner().refs.fetch_sub(n, Ordering::Release) != n {
            return;
        }
        // Every other holder's last use happened before its `Release` decrement;
        // this `Acquire` read orders them all before the free, as `Arc` does.
        self.inner().refs.load(Ordering::Acquire);
        // SAFETY: the count reached zero, so no other reference exists, and the
        // allocation came from `Box::leak` in `counted`.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }

    /// How many counts the slot has: references, and counts a [`SlotRefs`] took
    /// in advance. 1 means this is the only reference.
    pub(crate) fn strong_count(this: &Self) -> usize {
        this.inner().refs.load(Ordering::Acquire)
    }
}

impl Clone for SlotRef {
    fn clone(&self) -> Self {
        self.add(1);
        // SAFETY: the count just added.
        unsafe { self.for_held_count() }
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        // SAFETY: this reference's own count, and `self` is not used afterwards.
        unsafe { self.release(1) }
    }
}

impl Deref for SlotRef {
    type Target = DeliverySlot;

    fn deref(&self) -> &DeliverySlot {
        &self.inner().slot
    }
}

impl fmt::Debug for SlotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An open batch's reference to its slot, with counts taken in advance for the
/// deliveries of records still to come. The spare counts go back when it is
/// dropped or [sealed](SlotRefs::into_ref).
pub(crate) struct SlotRefs {
    slot: SlotRef,
    /// Counts held beyond `slot`'s own, each to become one [`SlotRef`].
    spare: usize,
}

impl SlotRefs {
    /// `slot`, with [`ADVANCE`] counts taken at once (no atomic operation).
    pub(crate) fn new(slot: DeliverySlot) -> Self {
        SlotRefs {
            slot: SlotRef::counted(slot, 1 + ADVANCE),
            spare: ADVANCE,
        }
    }

    /// A reference for one more delivery: a spare count, or [`ADVANCE`] more
    /// taken with one atomic addition when none is left.
    #[inline]
    pub(crate) fn take(&mut self) -> SlotRef {
        if self.spare == 0 {
            self.slot.add(ADVANCE);
            self.spare = ADVANCE;
        }
        self.spare -= 1;
        // SAFETY: a spare count, which `spare` no longer holds.
        unsafe { self.slot.for_held_count() }
    }

    /// The batch's own reference, the spare counts given back.
    pub(crate) fn into_ref(self) -> SlotRef {
        self.slot.clone()
        // `self` drops here: its spares, and the count its `slot` held.
    }
}

impl Drop for SlotRefs {
    fn drop(&mut self) {
        if self.spare > 0 {
            // SAFETY: the spares are counts this value holds and never hands out
            // after this; `self.slot` still holds its own, so the slot stays.
            unsafe { self.slot.release(std::mem::take(&mut self.spare)) }
        }
    }
}

impl fmt::Debug for SlotRefs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotRefs")
            .field("slot", &self.slot)
            .field("spare", &self.spare)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::producer::delivery::Waiters;
    use crate::producer::Delivery;
    use crate::sync::Arc;

    /// A batch's slot and the witness of its drop: the slot holds a clone of
    /// `waiters`, so `Arc::strong_count(&waiters)` is 1 once the slot is freed.
    fn batch() -> (SlotRefs, Arc<Waiters>) {
        let waiters = Arc::new(Waiters::default());
        (DeliverySlot::for_batch("t", 0, waiters.clone()), waiters)
    }

    fn freed(waiters: &Arc<Waiters>) -> bool {
        Arc::strong_count(waiters) == 1
    }

    #[test]
    fn a_sealed_batch_counts_exactly_its_deliveries_and_itself() {
        for records in [0, 1, 3, ADVANCE - 1, ADVANCE, ADVANCE + 1, 3 * ADVANCE + 5] {
            let (mut open, _w) = batch();
            let refs: Vec<SlotRef> = (0..records).map(|_| open.take()).collect();
            let sealed = open.into_ref();
            assert_eq!(
                SlotRef::strong_count(&sealed),
                records + 1,
                "{records} records: the spare counts went back at the seal"
            );
            drop(refs);
            assert_eq!(SlotRef::strong_count(&sealed), 1);
        }
    }

    #[test]
    fn the_slot_is_freed_by_whichever_reference_goes_last() {
        // The batch sealed and dropped first, deliveries after; and the other way.
        let (mut open, w) = batch();
        let refs: Vec<SlotRef> = (0..ADVANCE + 2).map(|_| open.take()).collect();
        drop(open.into_ref());
        assert!(!freed(&w), "deliveries still hold the slot");
        drop(refs);
        assert!(freed(&w));

        let (mut open, w) = batch();
        let refs: Vec<SlotRef> = (0..5).map(|_| open.take()).collect();
        let sealed = open.into_ref();
        drop(refs);
        assert!(!freed(&w), "the sealed batch still holds the slot");
        drop(sealed);
        assert!(freed(&w));
    }

    #[test]
    fn an_open_batch_dropped_unsealed_gives_its_spares_back() {
        let (mut open, w) = batch();
        let d = Delivery::new(open.take(), 0);
        drop(open);
        assert!(!freed(&w), "the delivery still holds the slot");
        assert!(!d.is_done(), "and reads it: nothing completed it");
        drop(d);
        assert!(freed(&w));

        let (open, w) = batch();
        drop(open);
        assert!(freed(&w), "no delivery: the spares were all there was");
    }

    #[test]
    fn a_delivery_completed_through_the_sealed_batch_sees_the_outcome() {
        let (mut open, w) = batch();
        let first = Delivery::new(open.take(), 0);
        let second = Delivery::new(open.take(), 1);
        let sealed = open.into_ref();
        sealed.complete(Ok(Some(40)));
        drop(sealed);
        assert_eq!(first.wait_offset().expect("completed"), Some(40));
        assert_eq!(second.wait_offset().expect("completed"), Some(41));
        assert!(freed(&w));
    }

    #[test]
    fn references_dropped_on_many_threads_free_the_slot_once() {
        for _ in 0..50 {
            let (mut open, w) = batch();
            let refs: Vec<SlotRef> = (0..4 * ADVANCE).map(|_| open.take()).collect();
            let sealed = open.into_ref();
            let mut chunks: Vec<Vec<SlotRef>> = Vec::new();
            let mut refs = refs.into_iter();
            for _ in 0..4 {
                chunks.push(refs.by_ref().take(ADVANCE).collect());
            }
            let threads: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    std::thread::spawn(move || {
                        for r in chunk {
                            assert_eq!(r.partition, 0);
                            drop(r);
                        }
                    })
                })
                .collect();
            drop(sealed);
            for t in threads {
                t.join().expect("no panic");
            }
            assert!(freed(&w));
        }
    }
}
