//! The accumulator hand-off: threads `send` (append under the lock, wake the
//! sender) and `flush` (wait for `outstanding == 0`) while a drainer does what the
//! sender thread does (take the wake-up, seal, take the ready batches, complete
//! them and report progress). Every appended record is completed, `flush` returns
//! only once its records are, and no wake-up is lost: a lost one leaves a thread
//! blocked for good and loom reports the deadlock (waits have no time-out here).
//!
//! The sender thread's `bounded(1)` crossbeam channel is not loom-aware; the
//! models use [`Signal`] instead.

use std::time::{Duration, Instant};

use loom::thread;

use crate::producer::accumulator::{BatchLimits, Sealed, State};
use crate::producer::handoff::Handoff;
use crate::producer::Delivery;
use crate::record::{BatchBuilder, Record};
use crate::sync::Arc;

use super::{Signal, SignalTx};

const BATCH_SIZE: usize = 16 * 1024;
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Long enough that nothing is sealed by its linger running out in a model.
const LONG_LINGER: Duration = Duration::from_secs(3600);

type Model = Handoff<SignalTx>;

fn model() -> (Arc<Model>, Arc<Signal>) {
    let signal = Arc::new(Signal::default());
    (Arc::new(Handoff::new(SignalTx(signal.clone()))), signal)
}

/// A model and a thread running [`drain`] on it with `linger`.
fn model_with_drainer(linger: Duration) -> (Arc<Model>, thread::JoinHandle<()>) {
    let (h, signal) = model();
    let drainer = {
        let h = h.clone();
        thread::spawn(move || drain(&h, &signal, linger))
    };
    (h, drainer)
}

fn far() -> Instant {
    Instant::now() + LONG_LINGER
}

fn record_size() -> usize {
    BatchBuilder::encoded_len(&Record::new("v"))
}

/// `Producer::send_to` minus metadata: one record to partition 0.
fn send(h: &Model, buffer_memory: usize, linger_zero: bool) -> Delivery {
    let record = Record::new("v");
    let size = BatchBuilder::encoded_len(&record);
    let limits = BatchLimits {
        batch_size: BATCH_SIZE,
        max_message_bytes: MAX_MESSAGE_BYTES,
        producer_id: None,
        crc_at_seal: false,
    };
    let check = |state: &mut State| Ok::<_, ()>(state.topics.index("t"));
    h.send(size, buffer_memory, far, check, |state, t| {
        let a = state.append(t, Some(0), 1, &record, 0, size, limits);
        let now = a.full || (a.idle && linger_zero);
        (now, Delivery::new(a.slot, a.index))
    })
    .expect("the producer is open")
}

/// `Producer::send_all` minus metadata: `n` records to partition 0 in one call,
/// `per_lock` of them under each lock hold.
fn send_many(
    h: &Model,
    n: usize,
    per_lock: usize,
    buffer_memory: usize,
    linger_zero: bool,
) -> Vec<Delivery> {
    let limits = BatchLimits {
        batch_size: BATCH_SIZE,
        max_message_bytes: MAX_MESSAGE_BYTES,
        producer_id: None,
        crc_at_seal: false,
    };
    let mut out = Vec::new();
    h.send_many(
        (0..n).map(|_| Record::new("v")),
        per_lock,
        BatchBuilder::encoded_len,
        buffer_memory,
        far,
        |_| (),
        |state, _, _, _| Ok::<_, ()>(state.topics.index("t")),
        |state, _, record, t, size| {
            let a = state.append(t, Some(0), 1, record, 0, size, limits);
            let now = a.full || (a.idle && linger_zero);
            (now, Delivery::new(a.slot, a.index))
        },
        |refused| panic!("refused: {refused:?}"),
        &mut out,
    );
    out
}

/// The sender thread's loop without the network: wait for a wake-up, seal what is
/// due, take the ready batches (`send_ready`), answer them under the lock
/// (`finish`), stop once closed and nothing is outstanding (`run`).
fn drain(h: &Model, signal: &Signal, linger: Duration) {
    loop {
        signal.recv();
        let batches: Vec<Sealed> = {
            let mut state = h.lock();
            state.seal_due(Instant::now(), linger, None);
            let mut batches = Vec::new();
            if let Some(q) = state.queue_mut("t", 0) {
                batches.extend(q.ready.drain(..));
            }
            batches
        };
        for b in batches {
            let mut state = h.lock();
            b.slot.complete(Ok(Some(0)));
            h.finished(&mut state, b.bytes, b.count as usize);
        }
        let state = h.lock();
        if state.closed && state.outstanding == 0 {
            return;
        }
    }
}

/// With a long linger only `flush` (or close) gets records sent. One thread sends
/// and flushes, another sends meanwhile: the flush returns only once every record
/// is completed, including one appended while it waited.
#[test]
fn loom_handoff_flush_waits_for_everything() {
    loom::model(|| {
        let (h, drainer) = model_with_drainer(LONG_LINGER);
        let other = {
            let h = h.clone();
            thread::spawn(move || send(&h, usize::MAX, false))
        };
        let mine = send(&h, usize::MAX, false);
        h.flush(|_| {});
        assert!(mine.is_done(), "flush returned before its record completed");
        let theirs = other.join().unwrap();
        h.close();
        drainer.join().unwrap();
        mine.wait().expect("completed");
        theirs.wait().expect("completed");
        assert_eq!(h.lock().buffered, 0);
    });
}

/// `linger.ms=0` and a `buffer.memory` of one record: the second `send` blocks
/// until the first record is completed and its memory freed, then goes out at once;
/// its delivery, awaited as a future, resolves.
#[test]
fn loom_handoff_backpressure_and_linger_zero() {
    loom::model(|| {
        let (h, drainer) = model_with_drainer(Duration::ZERO);
        let first = send(&h, record_size(), true);
        let second = send(&h, record_size(), true);
        assert!(
            first.is_done(),
            "the second record was admitted over buffer.memory"
        );
        crate::sync::block_on(second).expect("completed");
        h.close();
        drainer.join().unwrap();
        let state = h.lock();
        assert_eq!((state.outstanding, state.buffered), (0, 0));
    });
}

/// `send_all` with `linger.ms=0` and a `buffer.memory` of one record: each record
/// after the first waits in the middle of the call, lock released, for the one
/// before it to be completed, then goes out; the wake-ups after each lock hold and
/// before each wait get every record sent.
#[test]
fn loom_handoff_send_many_waits_for_memory_mid_call() {
    loom::model(|| {
        let (h, drainer) = model_with_drainer(Duration::ZERO);
        let deliveries = send_many(&h, 2, 1, record_size(), true);
        for d in deliveries {
            crate::sync::block_on(d).expect("completed");
        }
        h.close();
        drainer.join().unwrap();
        let state = h.lock();
        assert_eq!((state.outstanding, state.buffered), (0, 0));
    });
}

/// `send_all` alongside a `flush` on another thread, one record to each lock hold:
/// a flush waiting for the first record must not wait out the linger for the
/// second, appended after it began (the hold's end wakes the sender for it).
#[test]
fn loom_handoff_send_many_and_flush() {
    loom::model(|| {
        let (h, drainer) = model_with_drainer(LONG_LINGER);
        let flusher = {
            let h = h.clone();
            thread::spawn(move || h.flush(|_| {}))
        };
        let deliveries = send_many(&h, 2, 1, usize::MAX, false);
        flusher.join().unwrap();
        h.flush(|_| {});
        assert!(
            deliveries.iter().all(Delivery::is_done),
            "flush returned early"
        );
        h.close();
        drainer.join().unwrap();
    });
}
