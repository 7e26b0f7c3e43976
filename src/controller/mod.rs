//! The controller: the single authority for topics, replica assignment, leaders, ISR
//! and epochs. [`Controller`] is a pure state machine (no threads, no clock, no
//! files): the controller thread feeds it events and the current time, persists the
//! [`MetadataRecord`]s it returns, then sends the messages it returns.

// The controller thread that drives this core is written on another branch; until
// it lands, nothing outside the tests calls in here.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::TopicConfig;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{Message, PartitionState};
use crate::Result;

pub(crate) mod assignment;
pub(crate) mod metadata_log;

/// Settings of the controller core.
#[derive(Clone, Debug)]
pub(crate) struct ControllerConfig {
    /// A broker not heard from (heartbeat) for this long is fenced: dead to the controller.
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval: Duration,
    /// `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_per_broker_percentage: u32,
}

/// What the controller decided: persist `records` first, then send `messages`.
#[derive(Debug, Default)]
pub(crate) struct ControllerOutput {
    pub records: Vec<MetadataRecord>,
    pub messages: Vec<(BrokerId, Message)>,
}

/// A durable change to the metadata image; replaying them in order rebuilds it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MetadataRecord {
    TopicCreated {
        name: String,
        config: TopicConfig,
        assignments: Vec<Vec<BrokerId>>,
    },
    TopicDeleted {
        name: String,
    },
    PartitionChanged {
        tp: TopicPartition,
        leader: Option<BrokerId>,
        leader_epoch: u32,
        isr: Vec<BrokerId>,
        partition_epoch: u32,
    },
    ProducerIdsAllocated {
        next: u64,
    },
}

/// One broker as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BrokerMeta {
    pub rack: Option<String>,
    pub alive: bool,
    pub broker_epoch: u64,
}

/// One topic in the image.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TopicMeta {
    pub config: Arc<TopicConfig>,
    pub partitions: Vec<PartitionState>,
}

/// Counters the controller keeps (surfaced in `ClusterMetrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ControllerCounters {
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leader_elections: u64,
    pub unclean_leader_elections: u64,
}

/// The metadata image: what handles and clients read.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetadataImage {
    pub topics: BTreeMap<String, TopicMeta>,
    pub brokers: BTreeMap<BrokerId, BrokerMeta>,
    pub counters: ControllerCounters,
}

/// The controller state machine.
#[derive(Debug)]
pub(crate) struct Controller {}

impl Controller {
    /// A controller for these brokers (id, rack), all of them not yet registered (dead).
    pub(crate) fn new(config: ControllerConfig, brokers: &[(BrokerId, Option<String>)]) -> Self {
        let _ = (config, brokers);
        todo!()
    }

    /// Applies a persisted record (reopening a data dir), before any broker registers.
    pub(crate) fn replay(&mut self, record: &MetadataRecord) {
        let _ = record;
        todo!()
    }

    /// Validates and creates a topic: rack-aware assignment over live brokers, the
    /// first replica leads, ISR = all replicas, leader epoch 0.
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        config: TopicConfig,
        now: Duration,
    ) -> Result<ControllerOutput> {
        let _ = (name, config, now);
        todo!()
    }

    /// Deletes a topic; its replicas get StopReplica { delete: true }.
    pub(crate) fn delete_topic(&mut self, name: &str, now: Duration) -> Result<ControllerOutput> {
        let _ = (name, now);
        todo!()
    }

    /// A message from a broker: RegisterBroker, Heartbeat, AlterPartition.
    pub(crate) fn handle(
        &mut self,
        from: BrokerId,
        message: Message,
        now: Duration,
    ) -> ControllerOutput {
        let _ = (from, message, now);
        todo!()
    }

    /// The broker's thread exited (kill or crash): fence it at once.
    pub(crate) fn broker_stopped(&mut self, broker: BrokerId, now: Duration) -> ControllerOutput {
        let _ = (broker, now);
        todo!()
    }

    /// Session timeouts and the periodic preferred-leader check.
    pub(crate) fn tick(&mut self, now: Duration) -> ControllerOutput {
        let _ = now;
        todo!()
    }

    /// Moves leadership to the preferred replica wherever it is alive, in the ISR
    /// and eligible.
    pub(crate) fn elect_preferred_leaders(&mut self, now: Duration) -> ControllerOutput {
        let _ = now;
        todo!()
    }

    /// Hands out a block of producer ids (persisted, so they are never reused).
    pub(crate) fn allocate_producer_id(&mut self) -> (u64, ControllerOutput) {
        todo!()
    }

    /// The current image.
    pub(crate) fn image(&self) -> &MetadataImage {
        todo!()
    }

    /// When `tick` next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        todo!()
    }
}
