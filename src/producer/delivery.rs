//! [`Delivery`]: the answer to one `send`, as a future or by blocking.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering};
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
}

impl DeliverySlot {
    /// A slot for a batch of `topic`-`partition`.
    pub(crate) fn new(topic: &str, partition: u32) -> Arc<Self> {
        Arc::new(DeliverySlot {
            outcome: AtomicU64::new(PENDING),
            state: Mutex::new(SlotState::default()),
            cond: Condvar::new(),
            topic: topic.to_string(),
            partition,
        })
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

    /// Record `index` of the batch, once the batch is done (`None` before).
    fn outcome(&self, index: u32) -> Option<Result<RecordMetadata>> {
        let base = match self.outcome.load(Ordering::Acquire) {
            PENDING => return None,
            FAILED => {
                let s = self.state.lock();
                let e = s.error.as_ref().expect("a failed slot holds its error");
                return Some(Err(e.duplicate()));
            }
            NO_OFFSET => None,
            base => Some(base + index as u64),
        };
        Some(Ok(RecordMetadata {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: base,
        }))
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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// Failed before it reached a batch (unknown topic, too large …). Boxed: a
    /// `Delivery` is returned and stored per record, so it stays three words.
    Failed(Option<Box<Error>>),
    /// Record `index` of the batch behind `slot`.
    InBatch { slot: Arc<DeliverySlot>, index: u32 },
}

impl Delivery {
    pub(crate) fn new(slot: Arc<DeliverySlot>, index: u32) -> Self {
        Delivery {
            inner: Inner::InBatch { slot, index },
        }
    }

    pub(crate) fn failed(e: Error) -> Self {
        Delivery {
            inner: Inner::Failed(Some(Box::new(e))),
        }
    }

    /// Blocks until the record is acknowledged or has failed.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`, `UnknownPartition`, `RecordTooLarge` at once; after retries
    /// within `delivery.timeout.ms`: `NotEnoughReplicas`, `Timeout`,
    /// `LeaderNotAvailable` and the like.
    pub fn wait(self) -> Result<RecordMetadata> {
        match self.inner {
            Inner::Failed(mut e) => Err(*e.take().expect("a failed delivery holds its error")),
            Inner::InBatch { slot, index } => {
                // An answer is often microseconds away: yielding the core a few
                // times before sleeping saves a futex sleep and wake-up.
                for _ in 0..crate::inbox::YIELDS {
                    if let Some(r) = slot.outcome(index) {
                        return r;
                    }
                    crate::sync::yield_now();
                }
                let mut s = slot.state.lock();
                // Written under this lock: no completion slips in between.
                while slot.outcome.load(Ordering::Relaxed) == PENDING {
                    slot.cond.wait(&mut s);
                }
                drop(s);
                slot.outcome(index).expect("done")
            }
        }
    }

    /// Whether the outcome is known (a following `wait` will not block).
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Failed(_) => true,
            Inner::InBatch { slot, .. } => slot.outcome.load(Ordering::Acquire) != PENDING,
        }
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Failed(e) => Poll::Ready(Err(*e
                .take()
                .expect("a completed Delivery is not polled again"))),
            Inner::InBatch { slot, index } => {
                if let Some(r) = slot.outcome(*index) {
                    return Poll::Ready(r);
                }
                let mut s = slot.state.lock();
                // Checked again under the lock the completion writes under: a
                // waker registered here is always woken.
                if slot.outcome.load(Ordering::Relaxed) != PENDING {
                    drop(s);
                    return Poll::Ready(slot.outcome(*index).expect("done"));
                }
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
