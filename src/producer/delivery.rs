//! [`Delivery`]: the answer to one `send`, as a future or by blocking.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, Condvar, Mutex};
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
    /// The batch's base offset (`None` with `Acks::None`), or why it failed.
    result: Option<Result<Option<u64>>>,
    /// Futures waiting on records of the batch.
    wakers: Vec<Waker>,
}

/// The completion slot of one batch: every record's [`Delivery`] waits on its
/// batch's slot, so an answer costs one lock and one wake-up per batch, not per
/// record (as Kafka's `ProduceRequestResult`).
#[derive(Debug)]
pub(crate) struct DeliverySlot {
    state: Mutex<SlotState>,
    cond: Condvar,
    topic: String,
    pub(crate) partition: u32,
}

impl DeliverySlot {
    /// A slot for a batch of `topic`-`partition`.
    pub(crate) fn new(topic: &str, partition: u32) -> Arc<Self> {
        Arc::new(DeliverySlot {
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
            if s.result.is_some() {
                return;
            }
            s.result = Some(result);
            std::mem::take(&mut s.wakers)
        };
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// Record `index` of the batch, from a completed result.
    fn outcome(&self, result: &Result<Option<u64>>, index: u32) -> Result<RecordMetadata> {
        match result {
            Ok(base) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: base.map(|b| b + index as u64),
            }),
            Err(e) => Err(e.duplicate()),
        }
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
    /// Failed before it reached a batch (unknown topic, too large …).
    Failed(Option<Error>),
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
            inner: Inner::Failed(Some(e)),
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
            Inner::Failed(mut e) => Err(e.take().expect("a failed delivery holds its error")),
            Inner::InBatch { slot, index } => {
                let mut yields = 0;
                let mut s = slot.state.lock();
                loop {
                    if let Some(r) = &s.result {
                        return slot.outcome(r, index);
                    }
                    if yields < crate::inbox::YIELDS {
                        // An answer is often microseconds away: yielding the core a
                        // few times before sleeping saves a futex sleep and wake-up.
                        yields += 1;
                        drop(s);
                        crate::sync::yield_now();
                        s = slot.state.lock();
                    } else {
                        slot.cond.wait(&mut s);
                    }
                }
            }
        }
    }

    /// Whether the outcome is known (a following `wait` will not block).
    pub fn is_done(&self) -> bool {
        match &self.inner {
            Inner::Failed(_) => true,
            Inner::InBatch { slot, .. } => slot.state.lock().result.is_some(),
        }
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.inner {
            Inner::Failed(e) => Poll::Ready(Err(e
                .take()
                .expect("a completed Delivery is not polled again"))),
            Inner::InBatch { slot, index } => {
                let mut s = slot.state.lock();
                match &s.result {
                    Some(r) => Poll::Ready(slot.outcome(r, *index)),
                    None => {
                        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                            s.wakers.push(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}
