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
    result: Option<Result<RecordMetadata>>,
    waker: Option<Waker>,
}

/// The completion slot one record's [`Delivery`] waits on.
#[derive(Debug, Default)]
pub(crate) struct DeliverySlot {
    state: Mutex<SlotState>,
    cond: Condvar,
}

impl DeliverySlot {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(DeliverySlot::default())
    }

    /// Completes the delivery; a second completion is ignored.
    pub(crate) fn complete(&self, result: Result<RecordMetadata>) {
        let waker = {
            let mut s = self.state.lock();
            if s.result.is_some() {
                return;
            }
            s.result = Some(result);
            s.waker.take()
        };
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
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
    slot: Arc<DeliverySlot>,
}

impl Delivery {
    pub(crate) fn new(slot: Arc<DeliverySlot>) -> Self {
        Delivery { slot }
    }

    pub(crate) fn failed(e: Error) -> Self {
        let slot = DeliverySlot::new();
        slot.complete(Err(e));
        Delivery { slot }
    }

    /// Blocks until the record is acknowledged or has failed.
    ///
    /// # Errors
    ///
    /// `UnknownTopic`, `UnknownPartition`, `RecordTooLarge` at once; after retries
    /// within `delivery.timeout.ms`: `NotEnoughReplicas`, `Timeout`,
    /// `LeaderNotAvailable` and the like.
    pub fn wait(self) -> Result<RecordMetadata> {
        let mut s = self.slot.state.lock();
        loop {
            if let Some(r) = s.result.take() {
                return r;
            }
            self.slot.cond.wait(&mut s);
        }
    }

    /// Whether the outcome is known (a following `wait` will not block).
    pub fn is_done(&self) -> bool {
        self.slot.state.lock().result.is_some()
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.state.lock();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
