//! Identifiers: brokers, nodes, topic-partitions.

use std::fmt;

/// A broker's id, as Kafka's `broker.id`.
///
/// # Examples
///
/// ```
/// use replog::BrokerId;
/// assert_eq!(BrokerId(2).to_string(), "2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(pub u32);

impl fmt::Display for BrokerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A topic and one of its partitions.
///
/// # Examples
///
/// ```
/// use replog::TopicPartition;
/// let tp = TopicPartition::new("orders", 3);
/// assert_eq!(tp.to_string(), "orders-3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number, from 0.
    pub partition: u32,
}

impl TopicPartition {
    /// Names partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// An endpoint of the [`Transport`](crate::Transport): the controller or a broker.
///
/// # Examples
///
/// ```
/// use replog::{BrokerId, NodeId};
/// assert_eq!(NodeId::Broker(BrokerId(1)).to_string(), "broker 1");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeId {
    /// The controller, the single authority for leaders, ISR and epochs.
    Controller,
    /// A broker.
    Broker(BrokerId),
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeId::Controller => write!(f, "controller"),
            NodeId::Broker(b) => write!(f, "broker {b}"),
        }
    }
}
