//! A batch's slot referenced from three threads: the open batch hands out
//! references from counts taken in advance, deliveries are dropped on another
//! thread while the batch is sealed and its reference dropped. Whatever the
//! interleaving, the slot is freed exactly once, after the last reference.

use loom::thread;

use crate::producer::delivery::Waiters;
use crate::producer::slot_ref::ADVANCE;
use crate::producer::DeliverySlot;
use crate::sync::Arc;

#[test]
fn loom_slot_ref_freed_once_after_the_last_reference() {
    loom::model(|| {
        let waiters = Arc::new(Waiters::default());
        let mut open = DeliverySlot::for_batch("t", 0, waiters.clone());
        // Past the advance: one reference comes from a second addition.
        let mut refs: Vec<_> = (0..ADVANCE + 1).map(|_| open.take()).collect();
        let last = refs.pop().expect("taken");
        let dropper = thread::spawn(move || drop(refs));
        let reader = thread::spawn(move || {
            last.complete(Ok(Some(1)));
            drop(last);
        });
        let sealed = open.into_ref();
        drop(sealed);
        dropper.join().unwrap();
        reader.join().unwrap();
        assert_eq!(Arc::strong_count(&waiters), 1, "the slot was freed");
    });
}
