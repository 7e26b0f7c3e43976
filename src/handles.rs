//! Live views of topics, partitions and replicas: each call reads the current state.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::ClusterInner;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{ClientFetch, ClientRequest, Inbound, PartitionState, ReadLimit};
use crate::record::ConsumedRecord;
use crate::{Error, Result};

/// A live view of a topic.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// let cluster = replog::Cluster::builder().build()?;
/// let topic = cluster.create_topic("t", replog::TopicConfig::new(2, 3))?;
/// assert_eq!(topic.name(), "t");
/// assert_eq!(topic.partitions().len(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Topic {
    cluster: Arc<ClusterInner>,
    name: String,
}

impl Topic {
    pub(crate) fn new(cluster: Arc<ClusterInner>, name: String) -> Self {
        Topic { cluster, name }
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of partitions (0 once the topic is deleted).
    pub fn partition_count(&self) -> u32 {
        self.cluster
            .metadata
            .get()
            .topics
            .get(&self.name)
            .map_or(0, |t| t.partitions.len() as u32)
    }

    /// A live view of one partition.
    ///
    /// # Errors
    ///
    /// `UnknownPartition` (or `UnknownTopic` once deleted).
    pub fn partition(&self, id: u32) -> Result<Partition> {
        let count = self.partition_count();
        if !self.cluster.metadata.get().topics.contains_key(&self.name) {
            return Err(Error::UnknownTopic {
                topic: self.name.clone(),
            });
        }
        if id >= count {
            return Err(Error::UnknownPartition {
                topic: self.name.clone(),
                partition: id,
                partitions: count,
            });
        }
        Ok(Partition {
            cluster: self.cluster.clone(),
            tp: TopicPartition::new(self.name.clone(), id),
        })
    }

    /// Every partition, in order.
    pub fn partitions(&self) -> Vec<Partition> {
        (0..self.partition_count())
            .map(|id| Partition {
                cluster: self.cluster.clone(),
                tp: TopicPartition::new(self.name.clone(), id),
            })
            .collect()
    }
}

/// A live view of a partition.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// let cluster = replog::Cluster::builder().build()?;
/// let topic = cluster.create_topic("t", replog::TopicConfig::new(1, 3))?;
/// let p = topic.partition(0)?;
/// assert_eq!(p.leader(), Some(p.replicas()[0]));
/// assert_eq!(p.isr().len(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Partition {
    cluster: Arc<ClusterInner>,
    tp: TopicPartition,
}

impl Partition {
    fn state(&self) -> Option<PartitionState> {
        self.cluster
            .metadata
            .get()
            .topics
            .get(&self.tp.topic)?
            .partitions
            .get(self.tp.partition as usize)
            .cloned()
    }

    /// The partition number.
    pub fn id(&self) -> u32 {
        self.tp.partition
    }

    /// The topic and partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The leader, as the controller decided; `None` while the partition is offline.
    pub fn leader(&self) -> Option<BrokerId> {
        self.state().and_then(|s| s.leader)
    }

    /// The leader epoch: rises on every leader change.
    pub fn leader_epoch(&self) -> u32 {
        self.state().map_or(0, |s| s.leader_epoch)
    }

    /// The assigned replicas; the first is the preferred leader.
    pub fn replicas(&self) -> Vec<BrokerId> {
        self.state().map(|s| s.replicas).unwrap_or_default()
    }

    /// The in-sync replicas, as the controller last accepted them.
    pub fn isr(&self) -> Vec<BrokerId> {
        self.state().map(|s| s.isr).unwrap_or_default()
    }

    /// The high watermark at the leader: consumers see offsets below it. While the
    /// partition is offline, the highest a live replica knows.
    pub fn high_watermark(&self) -> u64 {
        let st = self.state();
        if let Some(l) = st.as_ref().and_then(|s| s.leader) {
            if let Some(s) = self.cluster.broker_shared(l).and_then(|b| b.get(&self.tp)) {
                if s.is_leader() {
                    return s.hw();
                }
            }
        }
        st.map(|s| s.replicas)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| self.cluster.broker_shared(b)?.get(&self.tp))
            .map(|s| s.hw())
            .max()
            .unwrap_or(0)
    }

    /// The first offset still in the leader's log (retention moves it).
    pub fn log_start_offset(&self) -> u64 {
        self.leader()
            .and_then(|l| self.cluster.broker_shared(l)?.get(&self.tp))
            .map_or(0, |s| s.log_start())
    }

    /// A view of the replica on `broker`, if it is one of the partition's replicas.
    pub fn replica(&self, broker: BrokerId) -> Option<Replica> {
        self.replicas().contains(&broker).then(|| Replica {
            cluster: self.cluster.clone(),
            tp: self.tp.clone(),
            broker,
        })
    }
}

/// A live view of one replica of a partition.
///
/// # Examples
///
/// ```
/// # fn main() -> replog::Result<()> {
/// use replog::{Cluster, ProducerConfig, Record, TopicConfig};
/// let cluster = Cluster::builder().build()?;
/// let topic = cluster.create_topic("t", TopicConfig::new(1, 3))?;
/// cluster.producer(ProducerConfig::new())?.send_to("t", 0, Record::new("x")).wait()?;
/// let p = topic.partition(0)?;
/// let leader = p.replica(p.leader().unwrap()).unwrap();
/// assert_eq!(leader.read(0, 10)?[0].value, "x");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Replica {
    cluster: Arc<ClusterInner>,
    tp: TopicPartition,
    broker: BrokerId,
}

impl Replica {
    /// The broker hosting it.
    pub fn broker(&self) -> BrokerId {
        self.broker
    }

    /// Whether its broker is alive and leads the partition.
    pub fn is_leader(&self) -> bool {
        self.cluster
            .broker_shared(self.broker)
            .and_then(|b| b.get(&self.tp))
            .is_some_and(|s| s.is_leader())
    }

    /// Whether the controller counts it in the ISR.
    pub fn is_in_sync(&self) -> bool {
        let image = self.cluster.metadata.get();
        image
            .topics
            .get(&self.tp.topic)
            .and_then(|t| t.partitions.get(self.tp.partition as usize))
            .is_some_and(|p| p.isr.contains(&self.broker))
    }

    /// The first offset still in its log (retention moves it); `None` while its
    /// broker is dead.
    pub fn log_start_offset(&self) -> Option<u64> {
        let shared = self.cluster.broker_shared(self.broker)?;
        Some(shared.get(&self.tp).map_or(0, |s| s.log_start()))
    }

    /// Its log end offset; `None` while its broker is dead.
    pub fn log_end_offset(&self) -> Option<u64> {
        let shared = self.cluster.broker_shared(self.broker)?;
        Some(shared.get(&self.tp).map_or(0, |s| s.leo()))
    }

    /// Reads this replica's own log from `from`, ignoring the high watermark: what
    /// the replica holds, committed or not.
    ///
    /// # Errors
    ///
    /// `ShuttingDown` when its broker is dead; `OffsetOutOfRange` outside its log;
    /// `Corrupt` where its bytes fail their CRC.
    pub fn read(&self, from: u64, max_records: usize) -> Result<Vec<ConsumedRecord>> {
        let tx = self
            .cluster
            .broker_tx(self.broker)
            .ok_or(Error::ShuttingDown {
                what: format!("broker {}", self.broker),
            })?;
        let mut out = Vec::new();
        let mut offset = from;
        while out.len() < max_records {
            let (reply, rx) = crossbeam_channel::bounded(1);
            tx.send(Inbound::Client(ClientRequest::Fetch(ClientFetch {
                // This replica's own log, whichever creation it holds.
                partitions: vec![(self.tp.clone(), offset, None)],
                max_wait: Duration::ZERO,
                max_bytes: 1 << 20,
                limit: ReadLimit::LogEnd,
                reply,
            })))
            .map_err(|_| Error::ShuttingDown {
                what: format!("broker {}", self.broker),
            })?;
            let resp = rx.recv().map_err(|_| Error::ShuttingDown {
                what: format!("broker {}", self.broker),
            })?;
            let Some((_, data)) = resp.partitions.into_iter().next() else {
                break;
            };
            let data = data?;
            let before = out.len();
            for b in &data.batches {
                for r in b.records() {
                    if r.offset >= offset && r.offset < data.upto && out.len() < max_records {
                        out.push(r.into_consumed(&self.tp));
                    }
                }
            }
            if out.len() == before {
                break;
            }
            offset = out.last().map_or(offset, |r| r.offset + 1);
        }
        Ok(out)
    }
}
