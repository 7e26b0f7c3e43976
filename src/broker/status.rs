//! What a broker publishes for handles to read without asking its thread.

use std::collections::HashMap;

use crate::cluster::notify::Notify;
use crate::ids::TopicPartition;
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Ordering, RwLock};

/// One replica's offsets and role, updated by its broker thread.
///
/// Publication protocol (checked by `tests/loom_status.rs`): the one writer stores
/// the log end offset ([`set_offsets`](Self::set_offsets)) before any HW that it
/// covers ([`set_hw`](Self::set_hw)), both `Release`; readers load `Acquire`. A reader
/// that loads [`hw`](Self::hw) and then [`leo`](Self::leo) therefore never sees the HW
/// past the log end, and a leader's HW, which only grows, never goes backwards for it.
#[derive(Debug, Default)]
pub(crate) struct ReplicaStatus {
    leo: AtomicU64,
    hw: AtomicU64,
    log_start: AtomicU64,
    leader: AtomicBool,
    leader_epoch: AtomicU32,
}

impl ReplicaStatus {
    pub(crate) fn leo(&self) -> u64 {
        self.leo.load(Ordering::Acquire)
    }
    pub(crate) fn hw(&self) -> u64 {
        self.hw.load(Ordering::Acquire)
    }
    pub(crate) fn log_start(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }
    pub(crate) fn leader_epoch(&self) -> u32 {
        self.leader_epoch.load(Ordering::Acquire)
    }
    pub(crate) fn set_offsets(&self, log_start: u64, leo: u64) {
        self.log_start.store(log_start, Ordering::Release);
        self.leo.store(leo, Ordering::Release);
    }
    pub(crate) fn set_hw(&self, hw: u64) {
        self.hw.store(hw, Ordering::Release);
    }
    pub(crate) fn set_role(&self, leader: bool, leader_epoch: u32) {
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
    }
}

/// Every replica status of one broker, shared with the handles.
#[derive(Debug, Default)]
pub(crate) struct BrokerShared {
    replicas: RwLock<HashMap<TopicPartition, Arc<ReplicaStatus>>>,
    notify: Option<Arc<Notify>>,
}

impl BrokerShared {
    pub(crate) fn new(notify: Arc<Notify>) -> Self {
        BrokerShared {
            replicas: RwLock::default(),
            notify: Some(notify),
        }
    }

    /// A role changed: wake whoever waits for leaders to settle.
    pub(crate) fn changed(&self) {
        if let Some(n) = &self.notify {
            n.bump();
        }
    }

    /// The status of `tp`, created on first use.
    pub(crate) fn status(&self, tp: &TopicPartition) -> Arc<ReplicaStatus> {
        if let Some(s) = self.replicas.read().get(tp) {
            return s.clone();
        }
        self.replicas.write().entry(tp.clone()).or_default().clone()
    }

    /// The status of `tp`, if the broker hosts it.
    pub(crate) fn get(&self, tp: &TopicPartition) -> Option<Arc<ReplicaStatus>> {
        self.replicas.read().get(tp).cloned()
    }

    pub(crate) fn remove(&self, tp: &TopicPartition) {
        self.replicas.write().remove(tp);
    }

    /// Forgets everything (a restarted broker starts from its directory).
    pub(crate) fn clear(&self) {
        self.replicas.write().clear();
    }
}

#[cfg(all(test, loom))]
#[path = "tests/loom_status.rs"]
mod loom_status;
