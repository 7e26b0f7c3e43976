//! The default transport: crossbeam channels, no serialisation.

use crate::ids::NodeId;
use crate::protocol::{Envelope, Mailbox};
use crate::transport::Transport;

/// The default [`Transport`]: in-process channels, no serialisation.
#[derive(Debug, Default)]
pub struct ChannelTransport {}

impl Transport for ChannelTransport {
    fn register(&self, _node: NodeId, _mailbox: Mailbox) {
        todo!()
    }
    fn unregister(&self, _node: NodeId) {
        todo!()
    }
    fn send(&self, _envelope: Envelope) {
        todo!()
    }
}
