//! The follower's side: fetching from leaders and applying their answers
//! (appending, truncating by leader epoch, resetting past the leader's log start).

use std::time::Duration;

use crate::ids::{BrokerId, NodeId};
use crate::protocol::{FetchError, FetchPartitionResponse, Message};

use super::replica::Role;
use super::Broker;

impl Broker {
    pub(super) fn handle_fetch_response(
        &mut self,
        leader: BrokerId,
        p: FetchPartitionResponse,
        now: Duration,
    ) {
        let me = self.config.id;
        // The answer names the partition by the follower's own `Arc`, at its place
        // in the fetch: found there without hashing, or else by name.
        let hint = self.fetchers.sent_slot(leader, p.index);
        let Some(r) = self.replicas.get_mut_hinted(hint, &p.tp) else {
            return;
        };
        let Role::Follower { leader: Some(l) } = r.role else {
            return;
        };
        if l != leader {
            return;
        }
        // An answer about a deleted topic's replica that this one replaced.
        if !r.is_of(p.topic_id) {
            return;
        }
        let epoch = r.state.as_ref().map_or(0, |s| s.leader_epoch);
        match p.result {
            Ok(data) => {
                if data.leader_epoch != epoch {
                    return;
                }
                if let Some(d) = data.diverging {
                    let to = r.divergence_point(d);
                    let _ = r.truncate_to(to);
                    self.fetchers.retry_now(leader);
                } else {
                    let _ = r.append_fetched(&data.batches);
                    r.set_follower_hw(data.high_watermark);
                    let _ = r.follow_log_start(data.log_start);
                }
            }
            Err(FetchError::OffsetOutOfRange { log_start }) => {
                let _ = r.reset_to(log_start);
            }
            Err(_) => {
                // Our view is stale (a leader that has not heard of our epoch yet
                // leaves the partition out instead): wait for the controller's word.
                self.fetchers.back_off(leader, now);
            }
        }
        let _ = me;
    }

    pub(super) fn send_fetches(&mut self, now: Duration) {
        let Some(broker_epoch) = self.broker_epoch else {
            return;
        };
        let me = self.config.id;
        let max_wait_ms = self.config.replica_fetch_wait_max.as_millis() as u64;
        let max_bytes = self.config.replica_fetch_max_bytes;
        for (leader, request_id, partitions) in self.fetchers.due(&self.replicas, now) {
            self.send(
                NodeId::Broker(leader),
                Message::Fetch {
                    request_id,
                    replica: me,
                    broker_epoch,
                    max_wait_ms,
                    max_bytes,
                    partitions,
                },
            );
        }
    }
}
