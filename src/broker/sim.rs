//! Read-only views of a broker's replicas for the deterministic simulation's
//! invariant checker (`crate::sim`). Test support only: nothing here changes state.

use crate::ids::{BrokerId, TopicPartition};
use crate::storage::Log;

use super::replica::Role;
use super::Broker;

/// What the checker sees of one hosted replica.
pub(crate) struct ReplicaView<'a> {
    /// The replica's log.
    pub(crate) log: &'a dyn Log,
    /// `Some((leader epoch, HW))` while this broker leads the partition.
    pub(crate) leader: Option<(u32, u64)>,
    /// The replica's own high watermark (a follower's as last heard from its leader).
    pub(crate) hw: u64,
    /// The creation of the topic the replica's log belongs to, once known.
    pub(crate) topic_id: Option<u64>,
}

impl Broker {
    /// The broker's id.
    pub(crate) fn id(&self) -> BrokerId {
        self.config.id
    }

    /// Every partition this broker hosts a replica of, in order.
    pub(crate) fn hosted(&self) -> Vec<TopicPartition> {
        self.replicas.keys().cloned().collect()
    }

    /// A view of the replica of `tp`, if hosted.
    pub(crate) fn replica_view(&self, tp: &TopicPartition) -> Option<ReplicaView<'_>> {
        let r = self.replicas.get(tp)?;
        let leader = match &r.role {
            Role::Leader(l) => Some((l.leader_epoch(), l.hw())),
            _ => None,
        };
        let hw = leader.map_or_else(|| r.status.hw(), |(_, hw)| hw);
        Some(ReplicaView {
            log: r.log.as_ref(),
            leader,
            hw,
            topic_id: r.topic_id,
        })
    }
}
