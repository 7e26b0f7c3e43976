//! The [`Transport`] between brokers and the controller: the default
//! [`ChannelTransport`] and the fault-injecting [`FaultTransport`].

use crate::ids::NodeId;
use crate::protocol::{Envelope, Mailbox};

mod channel;
mod fault;
#[cfg(test)]
mod tests;

pub use channel::ChannelTransport;
pub use fault::{FaultStats, FaultTransport};

/// Moves [`Envelope`]s between nodes (brokers and the controller), as a network does:
/// best effort, possibly lossy. Brokers talk to each other only through it.
///
/// Implementations must be cheap to call from many threads at once.
///
/// # Examples
///
/// A transport that counts messages on top of another:
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use replog::{ChannelTransport, Envelope, Mailbox, NodeId, Transport};
///
/// #[derive(Debug, Default)]
/// struct Counting { inner: ChannelTransport, sent: AtomicU64 }
///
/// impl Transport for Counting {
///     fn register(&self, node: NodeId, mailbox: Mailbox) { self.inner.register(node, mailbox) }
///     fn unregister(&self, node: NodeId) { self.inner.unregister(node) }
///     fn send(&self, envelope: Envelope) {
///         self.sent.fetch_add(1, Ordering::Relaxed);
///         self.inner.send(envelope)
///     }
/// }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// From now on, messages to `node` go to `mailbox` (replacing an earlier one:
    /// a restarted broker registers again).
    fn register(&self, node: NodeId, mailbox: Mailbox);

    /// `node` is gone: messages to it are dropped until it registers again.
    fn unregister(&self, node: NodeId);

    /// Sends `envelope` to `envelope.to()`. Never blocks for long and never fails
    /// loudly: a message to a node that is not registered is dropped, as a network
    /// drops a packet to a dead host.
    fn send(&self, envelope: Envelope);
}

impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    fn register(&self, node: NodeId, mailbox: Mailbox) {
        (**self).register(node, mailbox)
    }
    fn unregister(&self, node: NodeId) {
        (**self).unregister(node)
    }
    fn send(&self, envelope: Envelope) {
        (**self).send(envelope)
    }
}
