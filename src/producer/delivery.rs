//! [`Delivery`]: the answer to one `send`, as a future or by blocking.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::slot_ref::{SlotRef, SlotRefs};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};
use crate::{Error, Result};

/// Where a record landed.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// use replog::{Cluster, ProducerConfig, Record, TopicConfig};
/// let cluster = Cluster::builder().build()?;
/// cluster.create_topic("t", TopicConfig::new(1, 3))?;
/// let meta = cluster.producer(ProducerConfig::new())?.send("t", Record::new("v")).wait()?;
/// assert_eq!((meta.partition, meta.offset), (0, Some(0)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The record's offset; `None` only with `Acks::None`, which waits for no answer.
    pub offset: Option<u64>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// Why the batch failed, once it has (the outcome word says `FAILED`).
    error: Option<Error>,
    /// Futures waiting on records of the batch.
    wakers: Vec<Waker>,
}

/// The outcome word's values besides a base offset (offsets stay far below them).
const PENDING: u64 = u64::MAX;
/// Failed: the error is in the slot's state.
const FAILED: u64 = u64::MAX - 1;
/// Succeeded without an offset (`Acks::None`).
const NO_OFFSET: u64 = u64::MAX - 2;

/// How many of a producer's [`Delivery`] futures are waiting, polled and not yet
/// resolved: shared by all its slots.
///
/// A future polled while no other waits yields its thread a few times before it
/// registers its waker, as [`Delivery::wait`] does: with one record in flight the
/// answer is microseconds away, and catching it awake saves the executor a sleep
/// and a wake-up (a parked worker woken from a broker thread). With more futures
/// waiting the executor has their tasks to run, and none of them holds it up.
#[derive(Debug, Default)]
pub(crate) struct Waiters(AtomicUsize);

impl Waiters {
    /// A future starts waiting; true when no other did (it is alone).
    fn join(&self) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// A waiting future stops waiting (resolved, dropped, or turned into `wait`).
    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// How many futures wait now.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The completion slot of one batch: every record's [`Delivery`] waits on its
/// batch's slot, so an answer costs one lock and one wake-up per batch, not per
/// record (as Kafka's `ProduceRequestResult`).
///
/// The outcome is also one atomic word, written once under the lock, so that a
/// record whose batch is done reads it without taking the lock.
#[derive(Debug)]
pub(crate) struct DeliverySlot {
    /// `PENDING`, `FAILED`, `NO_OFFSET` or the batch's base offset.
    outcome: AtomicU64,
    state: Mutex<SlotState>,
    cond: Condvar,
    topic: String,
    pub(crate) partition: u32,
    /// The producer's waiting futures.
    waiters: Arc<Waiters>,
}

impl DeliverySlot {
    /// A slot for a batch of `topic`-`partition` of the producer whose futures
    /// `waiters` counts, behind its first reference.
    pub(crate) fn shared(topic: &str, partition: u32, waiters: Arc<Waiters>) -> SlotRef {
        SlotRef::new(DeliverySlot::unshared(topic, partition, waiters))
    }

    /// As [`shared`](Self::shared), for an open batch: with counts for its records'
    /// deliveries taken in advance.
    pub(crate) fn for_batch(topic: &str, partition: u32, waiters: Arc<Waiters>) -> SlotRefs {
        SlotRefs::new(DeliverySlot::unshared(topic, partition, waiters))
    }

    fn unshared(topic: &str, partition: u32, waiters: Arc<Waiters>) -> Self {
        DeliverySlot {
            outcome: AtomicU64::new(PENDING),
            state: Mutex::new(SlotState::default()),
            cond: Condvar::new(),
            topic: topic.to_string(),
            partition,
            waiters,
        }
    }

    /// Completes the batch with its base offset or an error; a second completion
    /// is ignored.
    pub(crate) fn complete(&self, result: Result<Option<u64>>) {
        let wakers = {
            let mut s = self.state.lock();
            if self.outcome.load(Ordering::Relaxed) != PENDING {
                return;
            }
            let word = match result {
                Ok(Some(base)) => {
                    assert!(base < NO_OFFSET, "offset {base} out of range");
                    base
                }
                Ok(None) => NO_OFFSET,
                Err(e) => {
                    s.error = Some(e);
                    FAILED
                }
            };
            // Release: a reader that sees the word also sees the error beside it.
            self.outcome.store(word, Ordering::Release);
            std::mem::take(&mut s.wakers)
        };
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// The outcome word once the batch is done (`None` while pending).
    #[inline]
    fn settled(&self) -> Option<u64> {
        match self.outcome.load(Ordering::Acquire) {
            PENDING => None,
            word => Some(word),
        }
    }

    /// Record `index`'s offset from a settled outcome `word`.
    #[inline(always)]
    fn offset(&self, word: u64, index: u32) -> Result<Option<u64>> {
        match word {
            FAILED => Err(self.error()),
            NO_OFFSET => Ok(None),
            base => Ok(Some(base + index as u64)),
        }
    }

    /// Where a record of this batch landed, at `offset`.
    #[inline(always)]
    fn metadata(&self, offset: Option<u64>) -> RecordMetadata {
        // Not `clone()`: that writes the `String` through memory, field by field,
        // and the copy into the return place then stalled on store forwarding;
        // built here, its fields stay in registers.
        let mut topic = String::with_capacity(self.topic.len());
        topic.push_str(&self.topic);
        RecordMetadata {
            topic,
            partition: self.partition,
            offset,
        }
    }
}

impl DeliverySlot {
    /// Blocks until the batch is done; returns the outcome word. Out of line: a
    /// record waited on after its batch is done never comes here.
    #[inline(never)]
    fn wait_settled(&self) -> u64 {
        // An answer is often microseconds away: yielding the core a few times
        // before sleeping saves a futex sleep and wake-up.
        for _ in 0..crate::inbox::YIELDS {
            crate::sync::yield_now();
            if let Some(word) = self.settled() {
                return word;
            }
        }
        let mut s = self.state.lock();
        // Written under this lock: no completion slips in between.
        loop {
            match self.outcome.load(Ordering::Relaxed) {
                PENDING => self.cond.wait(&mut s),
                word => return word,
            }
        }
    }

    /// The error of a failed batch, for one of its records.
    #[cold]
    fn error(&self) -> Error {
        let s = self.state.lock();
        s.error
            .as_ref()
            .expect("a failed slot holds its error")
            .duplicate()
    }
}

/// The outcome of one [`Producer::send`](crate::Producer::send): a `Future` that any
/// executor can drive, or [`Delivery::wait`] to block.
///
/// # Durability
///
/// It resolves `Ok` only once the record is as safe as the producer's `acks`
/// promise: with `Acks::All`, in the log of every in-sync replica, with at least
/// `min.insync.replicas` of them.
///
/// # Waiting
///
/// An answer is often microseconds away, so a waiter first yields its thread a
/// few times (`sched_yield`, tens of microseconds at most) before it sleeps:
/// [`wait`](Delivery::wait) always, a polled future only while no other future of
/// the same producer waits (with more waiting, the executor has their tasks to run
/// instead). Catching the answer awake saves a sleep and a wake-up.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// use replog::{Cluster, ProducerConfig, Record, TopicConfig};
/// let cluster = Cluster::builder().build()?;
/// cluster.create_topic("t", TopicConfig::new(1, 3))?;
/// let producer = cluster.producer(ProducerConfig::new())?;
/// let pending: Vec<_> = (0..10).map(|i| producer.send("t", Record::new(format!("{i}")))).collect();
/// for d in pending {
///     d.wait()?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a Delivery tells whether the record was written"]
pub struct Delivery {
    /// The batch's slot; a record refused before it reached a batch gets a slot
    /// of its own, already failed.
    slot: SlotRef,
    /// The record's index in the batch (low 32 bits) and [`WAITING`].
    // Two words, not an enum: a `Delivery` is returned and stored once per
    // record, and a two-word struct comes back in registers, where an enum came
    // back through memory written field by field, and the caller's copy of it
    // then stalled on store forwarding.
    word: u64,
}

/// Set in [`Delivery::word`] once the future was polled and counted in the
/// producer's [`Waiters`].
const WAITING: u64 = 1 << 32;

impl Delivery {
    #[inline]
    pub(crate) fn new(slot: SlotRef, index: u32) -> Self {
        Delivery {
            slot,
            word: index as u64,
        }
    }

    /// A record refused before it reached a batch (unknown topic, too large …).
    #[cold]
    pub(crate) fn failed(e: Error) -> Self {
        let slot = DeliverySlot::shared("", 0, Arc::default());
        slot.complete(Err(e));
        Delivery::new(slot, 0)
    }

    fn index(&self) -> u32 {
        self.word as u32
    }

    /// Uncounts a waiting future (resolved, dropped, or turned into `wait`).
    fn stop_waiting(&mut self) {
        if self.word & WAITING != 0 {
            self.word &= !WAITING;
            self.slot.waiters.leave();
        }
    }

    /// This record's offset from a settled outcome `word`; a failed slot only
    /// this delivery holds (a record refused on its own) gives up its error
    /// rather than a copy.
    #[inline(always)]
    fn offset(&self, word: u64) -> Result<Option<u64>> {
        if word == FAILED && SlotRef::strong_count(&self.slot) == 1 {
            if let Some(e) = self.slot.state.lock().error.take() {
                return Err(e);
            }
        }
        self.slot.offset(word, self.index())
    }

    /// This record's result from a settled outcome `word`.
    #[inline(always)]
    fn result(&self, word: u64) -> Result<RecordMetadata> {
        Ok(self.slot.metadata(self.offset(word)?))
    }

    /// A polled future's result once settled: it stops counting as waiting.
    fn resolve(&mut self, word: u64) -> Result<RecordMetadata> {
        self.stop_waiting();
        self.result(word)
    }

    /// Blocks until the record is acknowledged or has failed.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`, `UnknownPartition`, `RecordTooLarge` at once; after retries
    /// within `delivery.timeout.ms`: `NotEnoughReplicas`, `Timeout`,
    /// `LeaderNotAvailable` and the like.
    pub fn wait(mut self) -> Result<RecordMetadata> {
        let word = self.settle();
        self.result(word)
    }

    /// Blocks until the record is acknowledged or has failed, as
    /// [`wait`](Self::wait), and gives only its offset (`None` with
    /// `Acks::None`), as rust-rdkafka's delivery result does.
    ///
    /// It builds no [`RecordMetadata`], so it allocates nothing: `wait` copies the
    /// topic's name into a new `String` for every record, which costs three to
    /// four times the rest of checking a record that is already acknowledged. For
    /// loops that check many records.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> replog::Result<()> {
    /// use replog::{Cluster, ProducerConfig, Record, TopicConfig};
    /// let cluster = Cluster::builder().build()?;
    /// cluster.create_topic("t", TopicConfig::new(1, 3))?;
    /// let producer = cluster.producer(ProducerConfig::new())?;
    /// let pending: Vec<_> = (0..10).map(|i| producer.send("t", Record::new(format!("{i}")))).collect();
    /// producer.flush()?;
    /// for (i, d) in pending.into_iter().enumerate() {
    ///     assert_eq!(d.wait_offset()?, Some(i as u64));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_offset(mut self) -> Result<Option<u64>> {
        let word = self.settle();
        self.offset(word)
    }

    /// Blocks until the batch is done; returns the outcome word. No longer
    /// counted as a waiting future.
    #[inline(always)]
    fn settle(&mut self) -> u64 {
        self.stop_waiting();
        match self.slot.settled() {
            Some(word) => word,
            None => self.slot.wait_settled(),
        }
    }

    /// Whether the outcome is known (a following `wait` will not block).
    pub fn is_done(&self) -> bool {
        self.slot.settled().is_some()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop_waiting();
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(word) = this.slot.settled() {
            return Poll::Ready(this.resolve(word));
        }
        if this.word & WAITING == 0 {
            this.word |= WAITING;
            // Alone: see `Waiters`. Bounded, like `wait`'s.
            if this.slot.waiters.join() {
                for _ in 0..crate::inbox::YIELDS {
                    crate::sync::yield_now();
                    if let Some(word) = this.slot.settled() {
                        return Poll::Ready(this.resolve(word));
                    }
                }
            }
        }
        let mut s = this.slot.state.lock();
        // Checked again under the lock the completion writes under: a waker
        // registered here is always woken.
        let word = this.slot.outcome.load(Ordering::Relaxed);
        if word != PENDING {
            drop(s);
            return Poll::Ready(this.resolve(word));
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn poll(d: &mut Delivery) -> Poll<Result<RecordMetadata>> {
        pin!(d).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_polled_future_counts_as_waiting_until_it_resolves() {
        let waiters = Arc::new(Waiters::default());
        let slot = DeliverySlot::shared("t", 0, waiters.clone());
        let mut d = Delivery::new(slot.clone(), 2);
        assert!(poll(&mut d).is_pending());
        assert_eq!(waiters.count(), 1);
        // Polled again: still one waiter, not two.
        assert!(poll(&mut d).is_pending());
        assert_eq!(waiters.count(), 1);
        slot.complete(Ok(Some(10)));
        let Poll::Ready(Ok(meta)) = poll(&mut d) else {
            panic!("a completed slot resolves its future");
        };
        assert_eq!(meta.offset, Some(12));
        assert_eq!(waiters.count(), 0);
        drop(d);
        assert_eq!(waiters.count(), 0, "a resolved future is uncounted once");
    }

    #[test]
    fn a_record_refused_on_its_own_gives_its_error_by_wait_and_by_poll() {
        let too_large = || Error::RecordTooLarge {
            topic: "t".into(),
            size: 10,
            max: 5,
        };
        let d = Delivery::failed(too_large());
        assert!(d.is_done());
        assert!(matches!(
            d.wait(),
            Err(Error::RecordTooLarge { size: 10, .. })
        ));
        let mut d = Delivery::failed(too_large());
        let Poll::Ready(Err(e)) = poll(&mut d) else {
            panic!("a refused record's future is ready at once");
        };
        assert!(matches!(e, Error::RecordTooLarge { max: 5, .. }));
    }

    #[test]
    fn every_record_of_a_failed_batch_gets_the_error() {
        let slot = DeliverySlot::shared("t", 0, Arc::default());
        let first = Delivery::new(slot.clone(), 0);
        let second = Delivery::new(slot.clone(), 1);
        drop(slot);
        first.slot.complete(Err(Error::Timeout {
            what: "an answer".into(),
            after: std::time::Duration::from_secs(1),
        }));
        assert!(matches!(first.wait(), Err(Error::Timeout { .. })));
        assert!(matches!(second.wait(), Err(Error::Timeout { .. })));
    }

    #[test]
    fn wait_offset_gives_the_offset_or_the_error_that_wait_gives() {
        let acked = DeliverySlot::shared("t", 1, Arc::default());
        let unanswered = DeliverySlot::shared("t", 1, Arc::default());
        let failed = DeliverySlot::shared("t", 1, Arc::default());
        acked.complete(Ok(Some(40)));
        unanswered.complete(Ok(None));
        failed.complete(Err(Error::NotEnoughReplicas {
            topic: "t".into(),
            partition: 1,
            isr: 1,
            required: 2,
        }));
        for (slot, index, offset) in [(&acked, 3, Some(43)), (&unanswered, 3, None)] {
            let meta = Delivery::new(slot.clone(), index)
                .wait()
                .expect("completed");
            let alone = Delivery::new(slot.clone(), index).wait_offset();
            assert_eq!((meta.offset, alone.expect("completed")), (offset, offset));
        }
        let waited = Delivery::new(failed.clone(), 0).wait();
        let alone = Delivery::new(failed.clone(), 1).wait_offset();
        assert!(matches!(
            waited,
            Err(Error::NotEnoughReplicas { isr: 1, .. })
        ));
        assert!(matches!(
            alone,
            Err(Error::NotEnoughReplicas { isr: 1, .. })
        ));
        let refused = Delivery::failed(Error::RecordTooLarge {
            topic: "t".into(),
            size: 10,
            max: 5,
        });
        assert!(matches!(
            refused.wait_offset(),
            Err(Error::RecordTooLarge { size: 10, .. })
        ));
    }

    #[test]
    fn a_waiting_future_dropped_or_waited_on_stops_counting() {
        let waiters = Arc::new(Waiters::default());
        let slot = DeliverySlot::shared("t", 0, waiters.clone());
        let mut first = Delivery::new(slot.clone(), 0);
        let mut second = Delivery::new(slot.clone(), 1);
        let never_polled = Delivery::new(slot.clone(), 2);
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut second).is_pending());
        assert_eq!(waiters.count(), 2);
        drop(first);
        assert_eq!(waiters.count(), 1);
        slot.complete(Ok(Some(0)));
        assert_eq!(second.wait().expect("completed").offset, Some(1));
        assert_eq!(waiters.count(), 0);
        drop(never_polled);
        assert_eq!(waiters.count(), 0);
    }
}
