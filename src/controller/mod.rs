//! The controller: the single authority for topics, replica assignment, leaders, ISR
//! and epochs. [`Controller`] is a pure state machine (no threads, no clock, no
//! files): the controller thread feeds it events and the current time, persists the
//! [`MetadataRecord`]s it returns, then sends the messages it returns.
//!
//! Rules it keeps (DESIGN.md, protocol rules 4, 5 and 7):
//!
//! - Election: the first replica in assignment order that is alive, in the ISR and
//!   eligible. None: the partition is offline (`leader: None`, ISR kept, so it waits
//!   for the last in-sync replica) unless the topic enables unclean election; then
//!   the first alive replica leads alone.
//! - A replica whose broker came back without its data is not eligible for a clean
//!   election until an AlterPartition puts it back into the ISR (KIP-966).
//! - The ISR never becomes empty; a fenced broker leaves every ISR it is not the
//!   last member of.
//! - Every change of leader or ISR bumps the partition epoch once; every change of
//!   leader (including to none) bumps the leader epoch.
//! - Every ISR change counts `isr_shrinks` when a member left and `isr_expands` when
//!   one joined, whoever caused it (an AlterPartition or a fenced broker), so the
//!   metrics show a dead follower at once.
//!
//! Counters are metrics of this process: they are not persisted, and start at zero
//! after a reopen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::config::TopicConfig;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{AlterPartitionError, Message, PartitionState};
use crate::{Error, Result};

pub(crate) mod assignment;
pub(crate) mod metadata_log;
pub(crate) use metadata_log::MetadataLog;
#[cfg(test)]
mod tests;

/// How many producer ids one [`MetadataRecord::ProducerIdsAllocated`] reserves: one
/// record per thousand producers, and a reopen skips at most that many ids.
pub(crate) const PRODUCER_ID_BLOCK: u64 = 1000;

/// The longest topic name Kafka accepts (it becomes a directory name with a suffix).
pub(crate) const MAX_TOPIC_NAME_LEN: usize = 249;

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

impl Default for ControllerConfig {
    /// Kafka's defaults: `broker.session.timeout.ms=9000`, auto rebalance on, checked
    /// every 300 s, at more than 10 % imbalance.
    fn default() -> Self {
        ControllerConfig {
            session_timeout: Duration::from_secs(9),
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            leader_imbalance_per_broker_percentage: 10,
        }
    }
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
    /// A topic was created; each partition starts led by its first replica, leader
    /// epoch 0, ISR = all replicas, partition epoch 0.
    TopicCreated {
        name: String,
        config: TopicConfig,
        assignments: Vec<Vec<BrokerId>>,
    },
    /// A topic was deleted.
    TopicDeleted { name: String },
    /// A partition's leader or ISR changed: its whole new state.
    PartitionChanged {
        tp: TopicPartition,
        leader: Option<BrokerId>,
        leader_epoch: u32,
        isr: Vec<BrokerId>,
        partition_epoch: u32,
    },
    /// Producer ids below `next` may have been handed out: never hand them out again.
    ProducerIdsAllocated { next: u64 },
    /// The replicas of `tp` that came back without their data and may not win a
    /// clean election until they rejoin the ISR (KIP-966); empty: all eligible.
    /// Persisted so that a broker whose damaged log was recreated empty, and so looks
    /// healthy after a reopen, still cannot be elected with nothing.
    ReplicasIneligible {
        tp: TopicPartition,
        brokers: Vec<BrokerId>,
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
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MetadataImage {
    pub topics: BTreeMap<String, TopicMeta>,
    pub brokers: BTreeMap<BrokerId, BrokerMeta>,
    pub counters: ControllerCounters,
    /// Replicas not eligible for a clean election (lost data, not yet back in the
    /// ISR). Only non-empty sets are kept.
    pub ineligible: BTreeMap<TopicPartition, BTreeSet<BrokerId>>,
}

impl MetadataImage {
    /// The state of `tp`, if its topic and partition exist.
    pub(crate) fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.topics
            .get(&tp.topic)?
            .partitions
            .get(tp.partition as usize)
    }

    /// Partitions without a live leader: `leader: None`, or a leader recorded before
    /// a reopen whose broker has not registered yet.
    pub(crate) fn offline_partitions(&self) -> usize {
        self.all_partitions()
            .filter(|p| !p.leader.is_some_and(|l| self.is_alive(l)))
            .count()
    }

    /// Partitions with a live leader whose ISR is smaller than their replica set
    /// (reported by leaders, as Kafka's `UnderReplicatedPartitions`).
    pub(crate) fn under_replicated_partitions(&self) -> usize {
        self.all_partitions()
            .filter(|p| p.leader.is_some_and(|l| self.is_alive(l)))
            .filter(|p| p.isr.len() < p.replicas.len())
            .count()
    }

    /// Rule 5's offline case: no leader, every in-sync replica has lost its data
    /// (ineligible), and unclean election is off. Staying offline is the designed
    /// outcome: electing any replica could lose committed records.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn offline_by_rule5(&self, p: &PartitionState) -> bool {
        p.leader.is_none()
            && !p.config.unclean_leader_election
            && p.isr
                .iter()
                .all(|b| self.ineligible.get(&p.tp).is_some_and(|s| s.contains(b)))
    }

    /// Every partition.
    pub(crate) fn partition_count(&self) -> usize {
        self.all_partitions().count()
    }

    /// Whether the broker is registered and not fenced.
    pub(crate) fn is_alive(&self, broker: BrokerId) -> bool {
        self.brokers.get(&broker).is_some_and(|b| b.alive)
    }

    fn all_partitions(&self) -> impl Iterator<Item = &PartitionState> {
        self.topics.values().flat_map(|t| t.partitions.iter())
    }
}

/// What one call changed; turned into records and messages at its end.
#[derive(Debug, Default)]
struct Changes {
    /// Partitions whose leader or ISR changed.
    partitions: BTreeSet<TopicPartition>,
    /// Partitions whose set of ineligible replicas changed.
    eligibility: BTreeSet<TopicPartition>,
}

/// A new leader and ISR for one partition.
#[derive(Debug)]
struct Decision {
    leader: Option<BrokerId>,
    isr: Vec<BrokerId>,
    /// The leader was chosen outside the ISR.
    unclean: bool,
    /// Bump the leader epoch even if the leader is the same broker: it comes back
    /// from the dead (a reopen), so its followers must see a new epoch.
    new_leader_epoch: bool,
}

/// The controller state machine.
#[derive(Debug)]
pub(crate) struct Controller {
    config: ControllerConfig,
    image: MetadataImage,
    /// When each alive broker was last heard from (registration or heartbeat).
    last_heartbeat: BTreeMap<BrokerId, Duration>,
    /// The incarnation each broker last registered with.
    incarnations: BTreeMap<BrokerId, u64>,
    /// The last broker epoch handed out; strictly increasing for this controller's
    /// life. Not persisted: after a reopen every broker registers again, and no
    /// message from a broker of the previous process can arrive.
    last_broker_epoch: u64,
    /// The next producer id to hand out.
    next_producer_id: u64,
    /// Ids below this are reserved by a persisted record.
    producer_id_limit: u64,
    /// When `tick` next checks leader imbalance. The first check is one interval
    /// after time zero (`now` counts from the controller's start).
    next_imbalance_check: Duration,
    /// The last AlterPartition processed per partition, as (leader epoch, broker
    /// epoch, request id): an older one is a delayed or duplicated copy and is
    /// refused.
    last_alter: BTreeMap<TopicPartition, (u32, u64, u64)>,
    /// Topics created so far, deleted ones included: the last topic id handed out.
    /// Not persisted as such: replaying the metadata log creates the same topics in
    /// the same order, so they get the same ids again.
    topics_created: u64,
}

impl Controller {
    /// A controller for these brokers (id, rack), all of them not yet registered (dead).
    pub(crate) fn new(config: ControllerConfig, brokers: &[(BrokerId, Option<String>)]) -> Self {
        let brokers = brokers
            .iter()
            .map(|(id, rack)| {
                let meta = BrokerMeta {
                    rack: rack.clone(),
                    alive: false,
                    broker_epoch: 0,
                };
                (*id, meta)
            })
            .collect();
        Controller {
            next_imbalance_check: config.leader_imbalance_check_interval,
            config,
            image: MetadataImage {
                brokers,
                ..MetadataImage::default()
            },
            last_heartbeat: BTreeMap::new(),
            incarnations: BTreeMap::new(),
            last_alter: BTreeMap::new(),
            last_broker_epoch: 0,
            next_producer_id: 0,
            topics_created: 0,
            producer_id_limit: 0,
        }
    }

    /// Applies a persisted record (reopening a data dir), before any broker registers.
    /// Brokers stay not alive; a partition whose recorded leader is not alive is
    /// elected again when one of its replicas registers.
    pub(crate) fn replay(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::TopicCreated {
                name,
                config,
                assignments,
            } => self.insert_topic(name, config.clone(), assignments.clone()),
            MetadataRecord::TopicDeleted { name } => self.remove_topic(name),
            MetadataRecord::PartitionChanged {
                tp,
                leader,
                leader_epoch,
                isr,
                partition_epoch,
            } => {
                let p = self.partition_mut(tp);
                debug_assert!(p.is_some(), "PartitionChanged for unknown {tp}");
                if let Some(p) = p {
                    p.leader = *leader;
                    p.leader_epoch = *leader_epoch;
                    p.isr = isr.clone();
                    p.partition_epoch = *partition_epoch;
                }
            }
            MetadataRecord::ProducerIdsAllocated { next } => {
                self.producer_id_limit = self.producer_id_limit.max(*next);
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::ReplicasIneligible { tp, brokers } => {
                if brokers.is_empty() {
                    self.image.ineligible.remove(tp);
                } else {
                    let set = brokers.iter().copied().collect();
                    self.image.ineligible.insert(tp.clone(), set);
                }
            }
        }
    }

    /// Validates and creates a topic: rack-aware assignment over live brokers, the
    /// first replica leads, ISR = all replicas, leader epoch 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopicName`], [`Error::TopicExists`], and what
    /// `TopicConfig::validate` and [`assignment::assign_replicas`] refuse
    /// ([`Error::InvalidReplicationFactor`] when it exceeds the live brokers,
    /// [`Error::InvalidConfig`]).
    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        config: TopicConfig,
        now: Duration,
    ) -> Result<ControllerOutput> {
        let _ = now; // creation does not depend on time
        validate_topic_name(name)?;
        if self.image.topics.contains_key(name) {
            return Err(Error::TopicExists { topic: name.into() });
        }
        let live: Vec<(BrokerId, Option<&str>)> = self
            .image
            .brokers
            .iter()
            .filter(|(_, m)| m.alive)
            .map(|(id, m)| (*id, m.rack.as_deref()))
            .collect();
        config.validate(live.len() as u32)?;
        let (start, shift) = assignment::start_for_topic(name, live.len());
        let assignments = assignment::assign_replicas(
            &live,
            config.partitions,
            config.replication_factor,
            start,
            shift,
        )?;
        self.insert_topic(name, config.clone(), assignments.clone());
        let mut per_broker: BTreeMap<BrokerId, Vec<PartitionState>> = BTreeMap::new();
        for p in &self.image.topics[name].partitions {
            for r in &p.replicas {
                per_broker.entry(*r).or_default().push(p.clone());
            }
        }
        Ok(ControllerOutput {
            records: vec![MetadataRecord::TopicCreated {
                name: name.into(),
                config,
                assignments,
            }],
            messages: per_broker
                .into_iter()
                .map(|(b, partitions)| {
                    let m = Message::LeaderAndIsr {
                        partitions,
                        complete_as_of: None,
                    };
                    (b, m)
                })
                .collect(),
        })
    }

    /// Deletes a topic; its replicas get StopReplica { delete: true }.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] when there is no such topic.
    pub(crate) fn delete_topic(&mut self, name: &str, now: Duration) -> Result<ControllerOutput> {
        let _ = now; // deletion does not depend on time
        let Some(topic) = self.image.topics.get(name) else {
            return Err(Error::UnknownTopic { topic: name.into() });
        };
        let mut per_broker: BTreeMap<BrokerId, Vec<(TopicPartition, u64)>> = BTreeMap::new();
        for p in &topic.partitions {
            for r in p.replicas.iter().filter(|r| self.image.is_alive(**r)) {
                per_broker
                    .entry(*r)
                    .or_default()
                    .push((p.tp.clone(), p.topic_id));
            }
        }
        self.remove_topic(name);
        Ok(ControllerOutput {
            records: vec![MetadataRecord::TopicDeleted { name: name.into() }],
            messages: per_broker
                .into_iter()
                .map(|(b, partitions)| {
                    let m = Message::StopReplica {
                        partitions,
                        delete: true,
                    };
                    (b, m)
                })
                .collect(),
        })
    }

    /// A message from a broker: RegisterBroker, Heartbeat, AlterPartition. `from` (the
    /// transport's sender) names the broker; messages meant for brokers are ignored.
    pub(crate) fn handle(
        &mut self,
        from: BrokerId,
        message: Message,
        now: Duration,
    ) -> ControllerOutput {
        match message {
            Message::RegisterBroker {
                broker,
                rack,
                lost_data,
                lost_all,
                incarnation,
            } => {
                debug_assert_eq!(broker, from, "a broker registers itself");
                self.register(from, rack, &lost_data, lost_all, incarnation, now)
            }
            Message::Heartbeat { broker_epoch, .. } => {
                let current = self
                    .image
                    .brokers
                    .get(&from)
                    .is_some_and(|m| m.alive && m.broker_epoch == broker_epoch);
                if current {
                    self.last_heartbeat.insert(from, now);
                }
                ControllerOutput {
                    records: Vec::new(),
                    messages: vec![(
                        from,
                        Message::HeartbeatReply {
                            broker_epoch,
                            fenced: !current,
                        },
                    )],
                }
            }
            Message::AlterPartition {
                broker_epoch,
                tp,
                topic_id,
                leader_epoch,
                partition_epoch,
                new_isr,
                member_epochs,
                request_id,
            } => {
                let mut changes = Changes::default();
                let result = self.alter_partition(
                    from,
                    (broker_epoch, request_id),
                    (&tp, topic_id),
                    (leader_epoch, partition_epoch),
                    (&new_isr, &member_epochs),
                    &mut changes,
                );
                // The leader learns the outcome from the reply; followers need no
                // news of an ISR change (they learn of leader changes).
                let mut out = ControllerOutput {
                    records: self.records_for(&changes),
                    messages: Vec::new(),
                };
                out.messages.push((
                    from,
                    Message::AlterPartitionReply {
                        tp,
                        request_id,
                        result,
                    },
                ));
                out
            }
            Message::ReplicaDamaged {
                broker_epoch,
                tp,
                topic_id,
                report,
            } => {
                let current = self
                    .image
                    .brokers
                    .get(&from)
                    .is_some_and(|m| m.alive && m.broker_epoch == broker_epoch);
                let mut changes = Changes::default();
                let partition = self.image.partition(&tp).cloned();
                if let Some(p) = partition.filter(|p| current && p.topic_id == topic_id) {
                    self.replica_damaged(&p, from, &mut changes);
                }
                // Acknowledged either way. From a stale epoch the report is moot:
                // the broker was fenced, so it left every ISR and rejoins one only
                // after catching up, i.e. after refetching what it cut.
                let mut out = self.finish(&changes, None);
                out.messages
                    .push((from, Message::ReplicaDamagedAck { tp, report }));
                out
            }
            // Controller-to-broker and broker-to-broker messages: not ours to act on.
            Message::Registered { .. }
            | Message::HeartbeatReply { .. }
            | Message::LeaderAndIsr { .. }
            | Message::StopReplica { .. }
            | Message::AlterPartitionReply { .. }
            | Message::Fetch { .. }
            | Message::FetchReply { .. }
            | Message::ReplicaDamagedAck { .. } => ControllerOutput::default(),
        }
    }

    /// The broker's thread exited (kill or crash): fence it at once.
    pub(crate) fn broker_stopped(&mut self, broker: BrokerId, now: Duration) -> ControllerOutput {
        let _ = now; // fencing is immediate
        let mut changes = Changes::default();
        if self.image.is_alive(broker) {
            self.fence(broker, &mut changes);
        }
        self.finish(&changes, None)
    }

    /// Session timeouts and the periodic preferred-leader check. A broker not heard
    /// from for `session_timeout` (at or after `last_heartbeat + session_timeout`, the
    /// instant [`Controller::next_deadline`] reports) is fenced.
    pub(crate) fn tick(&mut self, now: Duration) -> ControllerOutput {
        let mut changes = Changes::default();
        let expired: Vec<BrokerId> = self
            .image
            .brokers
            .iter()
            .filter(|(id, m)| m.alive && self.session_deadline(**id).is_some_and(|d| now >= d))
            .map(|(id, _)| *id)
            .collect();
        for b in expired {
            self.fence(b, &mut changes);
        }
        if self.config.auto_leader_rebalance && now >= self.next_imbalance_check {
            self.rebalance_imbalanced(&mut changes);
            self.next_imbalance_check = now + self.config.leader_imbalance_check_interval;
        }
        self.finish(&changes, None)
    }

    /// Moves leadership to the preferred replica wherever it is alive, in the ISR
    /// and eligible.
    pub(crate) fn elect_preferred_leaders(&mut self, now: Duration) -> ControllerOutput {
        let _ = now; // on demand, not on a schedule
        let mut changes = Changes::default();
        let tps: Vec<TopicPartition> = self.image.all_partitions().map(|p| p.tp.clone()).collect();
        for tp in &tps {
            self.move_to_preferred(tp, &mut changes);
        }
        self.finish(&changes, None)
    }

    /// Hands out a fresh producer id. Ids are reserved in blocks of
    /// [`PRODUCER_ID_BLOCK`] by a [`MetadataRecord::ProducerIdsAllocated`], so most
    /// calls return no record and no id is reused after a reopen.
    ///
    /// # Durability
    ///
    /// The id is safe to hand to a producer once the returned records are persisted.
    pub(crate) fn allocate_producer_id(&mut self) -> (u64, ControllerOutput) {
        let mut out = ControllerOutput::default();
        if self.next_producer_id >= self.producer_id_limit {
            self.producer_id_limit = self.next_producer_id + PRODUCER_ID_BLOCK;
            out.records.push(MetadataRecord::ProducerIdsAllocated {
                next: self.producer_id_limit,
            });
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        (id, out)
    }

    /// The current image.
    pub(crate) fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Topics created so far, deleted ones included: every topic id handed out is
    /// at most this.
    pub(crate) fn topics_created(&self) -> u64 {
        self.topics_created
    }

    /// Every partition `broker` hosts, as the image has them: what a complete
    /// LeaderAndIsr as of [`topics_created`](Self::topics_created) lists.
    pub(crate) fn states_of(&self, broker: BrokerId) -> Vec<PartitionState> {
        self.hosted_states(broker).cloned().collect()
    }

    /// The states of the partitions `broker` hosts a replica of, in place.
    pub(crate) fn hosted_states(&self, broker: BrokerId) -> impl Iterator<Item = &PartitionState> {
        self.image
            .all_partitions()
            .filter(move |p| p.replicas.contains(&broker))
    }

    /// `tp`'s state if `broker` hosts a replica of it: one of
    /// [`hosted_states`](Self::hosted_states), without passing over the rest.
    pub(crate) fn hosted_state(
        &self,
        broker: BrokerId,
        tp: &TopicPartition,
    ) -> Option<&PartitionState> {
        self.image
            .partition(tp)
            .filter(|p| p.replicas.contains(&broker))
    }

    /// When `tick` next has something to do: the earliest session expiry of an alive
    /// broker, or the next imbalance check when auto rebalance is on.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let sessions = self
            .image
            .brokers
            .iter()
            .filter(|(_, m)| m.alive)
            .filter_map(|(id, _)| self.session_deadline(*id));
        let check = self
            .config
            .auto_leader_rebalance
            .then_some(self.next_imbalance_check);
        sessions.chain(check).min()
    }

    // ---- events ----

    /// A broker (re)registers: fence its previous incarnation if the controller still
    /// thinks it alive, give it a new epoch, strip lost replicas of their
    /// eligibility, and elect leaders where it makes that possible.
    fn register(
        &mut self,
        broker: BrokerId,
        rack: Option<String>,
        lost_data: &[TopicPartition],
        lost_all: bool,
        incarnation: u64,
        now: Duration,
    ) -> ControllerOutput {
        if !self.image.brokers.contains_key(&broker) {
            // Not a broker of this cluster: the shell only starts known ids.
            return ControllerOutput::default();
        }
        match self.incarnations.get(&broker) {
            // From a start of the broker that a later one replaced: stale.
            Some(&known) if incarnation < known => return ControllerOutput::default(),
            // A retry whose answer was lost, or a late duplicate, of the live
            // incarnation: answer again. Taking it for a restart would fence the
            // broker and, with `lost_all`, strip it of data it has since rebuilt.
            Some(&known) if incarnation == known && self.image.is_alive(broker) => {
                let broker_epoch = self.image.brokers[&broker].broker_epoch;
                self.last_heartbeat.insert(broker, now);
                return ControllerOutput {
                    records: Vec::new(),
                    messages: vec![(
                        broker,
                        Message::Registered {
                            broker_epoch,
                            incarnation,
                        },
                    )],
                };
            }
            _ => {}
        }
        self.incarnations.insert(broker, incarnation);
        let mut changes = Changes::default();
        if self.image.is_alive(broker) {
            // A restart the controller did not see end: the old incarnation's
            // leaderships must not survive into the new one.
            self.fence(broker, &mut changes);
        }
        self.last_broker_epoch += 1;
        let broker_epoch = self.last_broker_epoch;
        let meta = self.image.brokers.get_mut(&broker).expect("checked above");
        meta.alive = true;
        meta.broker_epoch = broker_epoch;
        if rack.is_some() {
            // The broker reports its own `broker.rack`, as in Kafka's registration.
            meta.rack = rack;
        }
        self.last_heartbeat.insert(broker, now);

        let mine = self.partitions_of(broker);
        let lost: BTreeSet<&TopicPartition> = if lost_all {
            mine.iter().collect()
        } else {
            lost_data.iter().filter(|tp| mine.contains(tp)).collect()
        };
        for tp in &mine {
            let p = self.partition(tp).clone();
            let mut isr = p.isr.clone();
            if lost.contains(tp) {
                self.set_eligible(tp, broker, false, &mut changes);
                if isr.len() > 1 {
                    isr.retain(|b| *b != broker);
                }
            }
            // Its own leadership, if recorded, belongs to an incarnation that is gone
            // (fenced above, or dead since a reopen).
            let leader_alive = p
                .leader
                .is_some_and(|l| l != broker && self.image.is_alive(l));
            let decision = if leader_alive {
                Decision {
                    leader: p.leader,
                    isr,
                    unclean: false,
                    new_leader_epoch: false,
                }
            } else {
                // Offline, or led by a broker dead since a reopen.
                let mut d = self.elect(&p, isr);
                d.new_leader_epoch = p.leader.is_some();
                d
            };
            self.apply(tp, decision, &mut changes);
        }

        let mut out = self.finish(&changes, Some(broker));
        out.messages.insert(
            0,
            (
                broker,
                Message::Registered {
                    broker_epoch,
                    incarnation,
                },
            ),
        );
        out
    }

    /// Marks `broker` dead; it leaves every ISR it is not the last member of, and
    /// partitions it led get a new leader (or go offline).
    fn fence(&mut self, broker: BrokerId, changes: &mut Changes) {
        if let Some(m) = self.image.brokers.get_mut(&broker) {
            m.alive = false;
        }
        self.last_heartbeat.remove(&broker);
        for tp in self.partitions_of(broker) {
            let p = self.partition(&tp).clone();
            let mut isr = p.isr.clone();
            if isr.len() > 1 {
                isr.retain(|b| *b != broker);
            }
            let decision = if p.leader == Some(broker) {
                self.elect(&p, isr)
            } else {
                Decision {
                    leader: p.leader,
                    isr,
                    unclean: false,
                    new_leader_epoch: false,
                }
            };
            self.apply(&tp, decision, changes);
        }
    }

    /// Rule 9 for a follower: it cut records it had (a bad CRC), so it leaves the
    /// ISR (unless it is the last member) and is not eligible for a clean election
    /// until an AlterPartition brings it back in, caught up.
    fn replica_damaged(&mut self, p: &PartitionState, broker: BrokerId, changes: &mut Changes) {
        if !p.replicas.contains(&broker) || p.leader == Some(broker) {
            return; // a leader resigns through AlterPartition instead
        }
        self.set_eligible(&p.tp, broker, false, changes);
        if p.isr.contains(&broker) && p.isr.len() > 1 {
            let isr = p.isr.iter().copied().filter(|b| *b != broker).collect();
            let decision = Decision {
                leader: p.leader,
                isr,
                unclean: false,
                new_leader_epoch: false,
            };
            self.apply(&p.tp, decision, changes);
        }
    }

    /// KIP-497: validates and applies a leader's proposed ISR.
    #[allow(clippy::too_many_arguments)] // the request's fields, one by one
    fn alter_partition(
        &mut self,
        from: BrokerId,
        (broker_epoch, request_id): (u64, u64),
        (tp, topic_id): (&TopicPartition, u64),
        (leader_epoch, partition_epoch): (u32, u32),
        (new_isr, member_epochs): (&[BrokerId], &[(BrokerId, u64)]),
        changes: &mut Changes,
    ) -> std::result::Result<PartitionState, AlterPartitionError> {
        // A late proposal for a deleted topic is about no partition of the topic
        // created again under its name.
        let Some(p) = self.image.partition(tp).filter(|p| p.topic_id == topic_id) else {
            return Err(AlterPartitionError::UnknownTopicOrPartition);
        };
        let current_broker = self
            .image
            .brokers
            .get(&from)
            .is_some_and(|m| m.alive && m.broker_epoch == broker_epoch);
        if !current_broker {
            return Err(AlterPartitionError::StaleBrokerEpoch);
        }
        if p.leader != Some(from) || p.leader_epoch != leader_epoch {
            return Err(AlterPartitionError::FencedLeaderEpoch);
        }
        let proposed: BTreeSet<BrokerId> = new_isr.iter().copied().collect();
        let current: BTreeSet<BrokerId> = p.isr.iter().copied().collect();
        if proposed.len() == new_isr.len() && proposed == current {
            // Already the state (a retry whose reply was lost, or a no-op): say so,
            // with the current epochs, whatever partition epoch it carried.
            return Ok(p.clone());
        }
        // A refusal does not bump the partition epoch, so a delayed copy of a
        // refused proposal could otherwise pass later, when its facts are stale
        // (a follower caught up then, not now).
        let order = (leader_epoch, broker_epoch, request_id);
        if self.last_alter.get(tp).is_some_and(|last| order <= *last) {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        self.last_alter.insert(tp.clone(), order);
        let p = self.image.partition(tp).expect("looked up above");
        if partition_epoch != p.partition_epoch {
            return Err(AlterPartitionError::InvalidUpdateVersion);
        }
        // The proposal in assignment order, so that equal ISRs look equal everywhere.
        let isr: Vec<BrokerId> = p
            .replicas
            .iter()
            .filter(|b| proposed.contains(b))
            .copied()
            .collect();
        // Rule 9: a leader that proposes an ISR without itself found its log corrupt
        // and resigns. The rest must be in-sync replicas already; it becomes
        // ineligible until it has refetched and rejoined the ISR.
        if !proposed.contains(&from)
            && !proposed.is_empty()
            && proposed.len() == new_isr.len()
            && proposed.is_subset(&current)
        {
            let p = p.clone();
            self.set_eligible(tp, from, false, changes);
            let decision = self.elect(&p, isr);
            self.apply(tp, decision, changes);
            return Ok(self.partition(tp).clone());
        }
        let valid = !new_isr.is_empty()
            && proposed.len() == new_isr.len()
            && proposed.contains(&from)
            && proposed
                .iter()
                .all(|b| p.replicas.contains(b) && self.image.is_alive(*b));
        if !valid {
            return Err(AlterPartitionError::IneligibleReplica);
        }
        // KIP-903: a member joins only on what the leader saw of its current
        // incarnation. Progress reported before a restart (a memory replica comes
        // back empty) would otherwise put a replica without the records in the ISR.
        let stale_member = proposed
            .iter()
            .filter(|b| **b != from && !current.contains(b))
            .any(|b| {
                let seen = member_epochs.iter().find(|(m, _)| m == b).map(|(_, e)| *e);
                let now = self.image.brokers.get(b).map(|m| m.broker_epoch);
                seen.is_none() || seen != now
            });
        if stale_member {
            return Err(AlterPartitionError::StaleMemberEpoch);
        }
        let decision = Decision {
            leader: p.leader,
            isr,
            unclean: false,
            new_leader_epoch: false,
        };
        self.apply(tp, decision, changes);
        Ok(self.partition(tp).clone())
    }

    /// Auto rebalance: for each broker that should lead more than
    /// `leader_imbalance_per_broker_percentage` % more partitions than it does, move
    /// those back to it where it is eligible.
    fn rebalance_imbalanced(&mut self, changes: &mut Changes) {
        let mut per_broker: BTreeMap<BrokerId, (usize, Vec<TopicPartition>)> = BTreeMap::new();
        for p in self.image.all_partitions() {
            let preferred = p.replicas[0];
            let entry = per_broker.entry(preferred).or_default();
            entry.0 += 1;
            if p.leader != Some(preferred) {
                entry.1.push(p.tp.clone());
            }
        }
        let pct = self.config.leader_imbalance_per_broker_percentage as usize;
        for (_, (total, not_led)) in per_broker {
            if not_led.len() * 100 > pct * total {
                for tp in &not_led {
                    self.move_to_preferred(tp, changes);
                }
            }
        }
    }

    /// Makes the first replica lead `tp` if it is alive, in the ISR, eligible, and
    /// does not lead already.
    fn move_to_preferred(&mut self, tp: &TopicPartition, changes: &mut Changes) {
        let p = self.partition(tp);
        let preferred = p.replicas[0];
        if p.leader != Some(preferred)
            && self.image.is_alive(preferred)
            && p.isr.contains(&preferred)
            && self.is_eligible(tp, preferred)
        {
            let decision = Decision {
                leader: Some(preferred),
                isr: p.isr.clone(),
                unclean: false,
                new_leader_epoch: false,
            };
            self.apply(tp, decision, changes);
        }
    }

    // ---- rules ----

    /// Rule 5: the first replica in assignment order that is alive, in `isr` and
    /// eligible; else, with unclean election, the first alive replica alone; else
    /// offline with `isr` kept.
    fn elect(&self, p: &PartitionState, isr: Vec<BrokerId>) -> Decision {
        // The simulation's checker must catch a broken rule: any live replica leads.
        #[cfg(any(test, feature = "sim"))]
        if crate::sim::broken_rule() == crate::sim::BrokenRule::ElectAnyLive {
            if let Some(leader) = p.replicas.iter().copied().find(|b| self.image.is_alive(*b)) {
                let mut isr = isr;
                if !isr.contains(&leader) {
                    isr.insert(0, leader);
                }
                return Decision {
                    leader: Some(leader),
                    isr,
                    unclean: false,
                    new_leader_epoch: false,
                };
            }
        }
        let clean =
            p.replicas.iter().copied().find(|b| {
                self.image.is_alive(*b) && isr.contains(b) && self.is_eligible(&p.tp, *b)
            });
        if let Some(leader) = clean {
            return Decision {
                leader: Some(leader),
                isr,
                unclean: false,
                new_leader_epoch: false,
            };
        }
        if p.config.unclean_leader_election {
            if let Some(leader) = p.replicas.iter().copied().find(|b| self.image.is_alive(*b)) {
                return Decision {
                    leader: Some(leader),
                    isr: vec![leader],
                    unclean: true,
                    new_leader_epoch: false,
                };
            }
        }
        Decision {
            leader: None,
            isr,
            unclean: false,
            new_leader_epoch: false,
        }
    }

    /// Applies a decision: one partition-epoch bump if anything changed, a leader
    /// epoch bump if the leader changed, the counters, and eligibility restored to
    /// replicas that joined the ISR.
    fn apply(&mut self, tp: &TopicPartition, d: Decision, changes: &mut Changes) {
        assert!(!d.isr.is_empty(), "{tp}: the ISR must never become empty");
        let (leader_changed, removed, added) = {
            let p = self
                .partition_mut(tp)
                .expect("decided on an existing partition");
            let leader_changed = p.leader != d.leader || d.new_leader_epoch;
            let removed = p.isr.iter().any(|b| !d.isr.contains(b));
            let added: Vec<BrokerId> = d
                .isr
                .iter()
                .filter(|b| !p.isr.contains(b))
                .copied()
                .collect();
            if !leader_changed && !removed && added.is_empty() {
                return;
            }
            p.leader = d.leader;
            p.isr = d.isr;
            p.partition_epoch += 1;
            if leader_changed {
                p.leader_epoch += 1;
            }
            (leader_changed, removed, added)
        };
        let counters = &mut self.image.counters;
        if leader_changed && d.leader.is_some() {
            counters.leader_elections += 1;
            if d.unclean {
                counters.unclean_leader_elections += 1;
            }
        }
        if removed {
            counters.isr_shrinks += 1;
        }
        if !added.is_empty() {
            counters.isr_expands += 1;
        }
        changes.partitions.insert(tp.clone());
        for b in added {
            self.set_eligible(tp, b, true, changes);
        }
        if let (true, Some(leader)) = (d.unclean, d.leader) {
            // It leads and is the whole ISR now: whatever it holds is the log.
            self.set_eligible(tp, leader, true, changes);
        }
    }

    fn is_eligible(&self, tp: &TopicPartition, broker: BrokerId) -> bool {
        !self
            .image
            .ineligible
            .get(tp)
            .is_some_and(|s| s.contains(&broker))
    }

    fn set_eligible(
        &mut self,
        tp: &TopicPartition,
        broker: BrokerId,
        eligible: bool,
        changes: &mut Changes,
    ) {
        let changed = if eligible {
            let Some(set) = self.image.ineligible.get_mut(tp) else {
                return;
            };
            let changed = set.remove(&broker);
            if set.is_empty() {
                self.image.ineligible.remove(tp);
            }
            changed
        } else {
            self.image
                .ineligible
                .entry(tp.clone())
                .or_default()
                .insert(broker)
        };
        if changed {
            changes.eligibility.insert(tp.clone());
        }
    }

    // ---- image helpers ----

    fn insert_topic(&mut self, name: &str, config: TopicConfig, assignments: Vec<Vec<BrokerId>>) {
        let config = Arc::new(config);
        self.topics_created += 1;
        let topic_id = self.topics_created;
        let partitions = assignments
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| PartitionState {
                tp: TopicPartition::new(name, i as u32),
                topic_id,
                leader: replicas.first().copied(),
                leader_epoch: 0,
                isr: replicas.clone(),
                replicas,
                partition_epoch: 0,
                config: Arc::clone(&config),
            })
            .collect();
        self.image
            .topics
            .insert(name.into(), TopicMeta { config, partitions });
    }

    fn remove_topic(&mut self, name: &str) {
        self.image.topics.remove(name);
        self.image.ineligible.retain(|tp, _| tp.topic != name);
        // A topic created again under the name starts over in leader epoch 0: the
        // deleted one's proposals must not make its own look old.
        self.last_alter.retain(|tp, _| tp.topic != name);
    }

    /// The state of an existing partition (a broken invariant if it is missing).
    fn partition(&self, tp: &TopicPartition) -> &PartitionState {
        self.image
            .partition(tp)
            .unwrap_or_else(|| panic!("{tp} is not in the image"))
    }

    fn partition_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionState> {
        self.image
            .topics
            .get_mut(&tp.topic)?
            .partitions
            .get_mut(tp.partition as usize)
    }

    /// Every partition `broker` is a replica of, in topic and partition order.
    fn partitions_of(&self, broker: BrokerId) -> Vec<TopicPartition> {
        self.hosted_states(broker).map(|p| p.tp.clone()).collect()
    }

    fn session_deadline(&self, broker: BrokerId) -> Option<Duration> {
        self.last_heartbeat
            .get(&broker)
            .map(|t| *t + self.config.session_timeout)
    }

    // ---- output ----

    /// Records for every changed partition and eligibility set.
    fn records_for(&self, changes: &Changes) -> Vec<MetadataRecord> {
        let partitions = changes.partitions.iter().map(|tp| {
            let p = self.partition(tp);
            MetadataRecord::PartitionChanged {
                tp: tp.clone(),
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                isr: p.isr.clone(),
                partition_epoch: p.partition_epoch,
            }
        });
        let eligibility = changes
            .eligibility
            .iter()
            .map(|tp| MetadataRecord::ReplicasIneligible {
                tp: tp.clone(),
                brokers: self
                    .image
                    .ineligible
                    .get(tp)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            });
        partitions.chain(eligibility).collect()
    }

    /// Records, plus one LeaderAndIsr per live broker hosting a changed partition.
    /// A registering broker gets the state of every partition it hosts instead (even
    /// none), marked complete: it removes what it still holds of deleted topics.
    fn finish(&self, changes: &Changes, registering: Option<BrokerId>) -> ControllerOutput {
        let mut per_broker: BTreeMap<BrokerId, Vec<PartitionState>> = BTreeMap::new();
        for tp in &changes.partitions {
            let p = self.partition(tp);
            for r in &p.replicas {
                if Some(*r) != registering && self.image.is_alive(*r) {
                    per_broker.entry(*r).or_default().push(p.clone());
                }
            }
        }
        if let Some(b) = registering {
            per_broker.insert(b, self.states_of(b));
        }
        ControllerOutput {
            records: self.records_for(changes),
            messages: per_broker
                .into_iter()
                .map(|(b, partitions)| {
                    let complete_as_of = (Some(b) == registering).then_some(self.topics_created);
                    let m = Message::LeaderAndIsr {
                        partitions,
                        complete_as_of,
                    };
                    (b, m)
                })
                .collect(),
        }
    }
}

/// Kafka's topic-name rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or
/// `..`. Names starting with `__` (internal topics) are allowed.
///
/// # Errors
///
/// [`Error::InvalidTopicName`], naming the rule broken and how to fix it.
pub(crate) fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: String| {
        Err(Error::InvalidTopicName {
            name: name.into(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid(
            "it is empty; use 1 to 249 characters of ASCII letters, digits, '.', '_' and '-'"
                .into(),
        );
    }
    if name == "." || name == ".." {
        return invalid(
            "'.' and '..' are reserved (they name directories); add other characters".into(),
        );
    }
    let len = name.chars().count();
    if len > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "it is {len} characters long, the limit is {MAX_TOPIC_NAME_LEN}; shorten it"
        ));
    }
    if let Some((i, c)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "character {c:?} at position {i} is not allowed; use only ASCII letters, digits, \
             '.', '_' and '-'"
        ));
    }
    Ok(())
}
