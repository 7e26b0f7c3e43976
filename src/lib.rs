//! # replog
//!
//! Kafka's replication model inside one process: topics, partitions, replicas hosted
//! by broker threads that talk through a pluggable [`Transport`], ISR, `acks` 0/1/all,
//! `min.insync.replicas`, leader epochs, clean and unclean leader election, consumer
//! groups, and segment files with CRC32.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// Two exceptions, each allowed where it stands and argued there: reading the TSC in
// `wall_clock`, and the delivery slot's reference count in `producer::slot_ref`.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod bench_support;
/// Prints a line to stderr when `REPLOG_TRACE` is set, in debug builds only: a
/// debugging aid for the threads of a cluster, free in release builds.
macro_rules! trace {
    ($($arg:tt)*) => {
        if cfg!(debug_assertions) && $crate::trace_enabled() {
            eprintln!($($arg)*);
        }
    };
}

fn trace_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("REPLOG_TRACE").is_some())
}

mod broker;
mod clock;
mod cluster;
mod config;
mod consumer;
mod controller;
mod error;
#[doc(hidden)]
pub mod fuzz_support;
mod group;
mod handles;
mod hash;
mod ids;
mod inbox;
mod producer;
mod protocol;
mod record;
mod replication;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod storage;
mod sync;
mod transport;
mod wall_clock;

pub use cluster::{Cluster, ClusterBuilder, ClusterMetrics};
pub use config::{
    Acks, AssignmentStrategy, ConsumerConfig, FsyncPolicy, OffsetReset, ProducerConfig,
    TopicConfig, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_SEGMENT_BYTES,
};
pub use consumer::{Consumer, RebalanceListener};
pub use error::{Error, Result};
pub use handles::{Partition, Replica, Topic};
pub use ids::{BrokerId, NodeId, TopicPartition};
pub use producer::{Delivery, Producer, RecordMetadata};
pub use protocol::{Envelope, Mailbox};
pub use record::{ConsumedRecord, Record};
pub use transport::{ChannelTransport, FaultStats, FaultTransport, Transport};
