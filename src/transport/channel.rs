//! The default transport: crossbeam channels, no serialisation.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::ids::NodeId;
use crate::protocol::{Envelope, Mailbox};
use crate::transport::Transport;

/// The default [`Transport`]: in-process channels, no serialisation.
///
/// A registry from [`NodeId`] to the node's [`Mailbox`]. Sending looks the addressee
/// up under a read lock and hands the envelope to its inbox: no copy, no allocation,
/// and senders on different threads do not wait for each other. Registering and
/// unregistering (broker start, stop, restart) take the write lock; they are rare.
///
/// Messages from one sender to one addressee arrive in the order they were sent, as
/// on one TCP connection. A message to a node that is not registered, or whose inbox
/// is closed, is dropped silently, as a network drops a packet to a dead host.
///
/// # Examples
///
/// ```
/// use replog::{ChannelTransport, Transport};
///
/// let net = ChannelTransport::new();
/// // Brokers register their mailboxes when they start; the transport is then shared
/// // by every node, usually behind an `Arc`.
/// let shared: std::sync::Arc<dyn Transport> = std::sync::Arc::new(net);
/// # let _ = shared;
/// ```
#[derive(Debug, Default)]
pub struct ChannelTransport {
    mailboxes: RwLock<HashMap<NodeId, Mailbox>>,
}

impl ChannelTransport {
    /// An empty transport: no node is registered yet.
    ///
    /// # Examples
    ///
    /// ```
    /// let net = replog::ChannelTransport::new();
    /// # let _ = net;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl Transport for ChannelTransport {
    fn register(&self, node: NodeId, mailbox: Mailbox) {
        self.mailboxes.write().insert(node, mailbox);
    }

    fn unregister(&self, node: NodeId) {
        self.mailboxes.write().remove(&node);
    }

    fn send(&self, envelope: Envelope) {
        // Clone the sender (an atomic increment, no allocation) and deliver outside
        // the lock: should an inbox ever be bounded and full, only this sender
        // waits, not registration nor every other sender behind a queued writer.
        let mailbox = self.mailboxes.read().get(&envelope.to()).cloned();
        if let Some(mailbox) = mailbox {
            // False means the node stopped without unregistering: a dead host.
            let _ = mailbox.deliver(envelope);
        }
    }
}
