//! The group coordinator's shell: loading offsets partitions on leadership, group
//! requests, and offset commits written to `__consumer_offsets` with `acks=all`.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::group::{Committer, OffsetRecord, OFFSETS_TOPIC};
use crate::ids::TopicPartition;
use crate::protocol::{GroupOp, GroupReply, GroupRequest};
use crate::record::{BatchBuilder, Record};
use crate::{Error, Result};

use super::replica::Role;
use super::{AckTarget, Broker, PendingAck};

impl Broker {
    /// Loads or unloads an offsets partition as this broker gains or loses its
    /// leadership: a new coordinator rebuilds its state from the log before it
    /// answers (rule 10).
    pub(super) fn sync_offsets_partition(&mut self, tp: &TopicPartition) {
        // Which groups a partition holds depends on the topic's real partition
        // count, which a reopened data dir may not share with the builder.
        let n = self.coordinator_partitions();
        self.coordinator.set_offsets_partitions(n);
        let leads = matches!(
            self.replicas.get(tp).map(|r| &r.role),
            Some(Role::Leader(_))
        );
        let loaded = self.loaded_offsets.contains(&tp.partition);
        if leads && !loaded {
            let Some(r) = self.replicas.get(tp) else {
                return;
            };
            let mut offset = r.log.log_start_offset();
            while offset < r.log.log_end_offset() {
                let Ok(batches) = r.log.read(offset, 1 << 20) else {
                    break;
                };
                let Some(last) = batches.last() else {
                    break;
                };
                offset = last.next_offset();
                for b in &batches {
                    for rec in b.records() {
                        let key = rec.key.as_deref().unwrap_or_default();
                        if let Ok(o) = OffsetRecord::decode(key, &rec.value) {
                            self.coordinator.replay(&o);
                        }
                    }
                }
            }
            self.loaded_offsets.insert(tp.partition);
        } else if !leads && loaded {
            self.loaded_offsets.remove(&tp.partition);
            self.coordinator.unload(tp.partition);
        }
    }

    pub(super) fn tick_coordinator(&mut self, now: Duration) {
        if self.loaded_offsets.is_empty() {
            return;
        }
        // Partition counts of topics, for assignment.
        let image = self.metadata.get();
        if self
            .seen_image
            .as_ref()
            .is_none_or(|seen| !Arc::ptr_eq(seen, &image))
        {
            let old = self.seen_image.take();
            for (name, t) in &image.topics {
                let n = t.partitions.len() as u32;
                let before = old
                    .as_ref()
                    .and_then(|o| o.topics.get(name))
                    .map(|t| t.partitions.len() as u32);
                if before != Some(n) {
                    self.coordinator.topic_partitions_changed(name, Some(n));
                }
            }
            if let Some(old) = &old {
                for name in old.topics.keys() {
                    if !image.topics.contains_key(name) {
                        self.coordinator.topic_partitions_changed(name, None);
                    }
                }
            }
            self.seen_image = Some(image);
        }
        if self.coordinator.next_deadline().is_some_and(|d| d <= now) {
            self.coordinator.tick(now);
        }
    }

    pub(super) fn group_request(&mut self, g: GroupRequest, now: Duration) {
        let n = self.coordinator_partitions();
        let p = crate::group::partition_for(&g.group, n);
        if !self.loaded_offsets.contains(&p) {
            let _ = g.reply.send(Err(Error::NotLeader {
                topic: OFFSETS_TOPIC.to_string(),
                partition: p,
                broker: self.config.id,
            }));
            return;
        }
        self.tick_coordinator(now);
        let result = match g.op {
            GroupOp::Join(req) => self.coordinator.join(req, now).map(GroupReply::Member),
            GroupOp::Heartbeat {
                member_id,
                generation,
                owned,
            } => self
                .coordinator
                .heartbeat(&g.group, &member_id, generation, &owned, now)
                .map(GroupReply::Member),
            GroupOp::Leave { member_id } => {
                self.coordinator.leave(&g.group, &member_id, now);
                Ok(GroupReply::Done)
            }
            GroupOp::Committed { partitions } => Ok(GroupReply::Committed(
                partitions
                    .into_iter()
                    .map(|tp| {
                        let o = self.coordinator.committed(&g.group, &tp);
                        (tp, o)
                    })
                    .collect(),
            )),
            GroupOp::Commit {
                member,
                offsets,
                timeout,
            } => {
                let committer = match &member {
                    Some((id, generation)) => Committer::Member {
                        member_id: id,
                        generation: *generation,
                    },
                    None => Committer::Standalone,
                };
                match self.coordinator.commit(&g.group, committer, &offsets, now) {
                    Err(e) => Err(e),
                    Ok(records) if records.is_empty() => Ok(GroupReply::Done),
                    Ok(records) => {
                        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
                        self.append_commit(tp, records, g.reply, now + timeout, now);
                        return;
                    }
                }
            }
        };
        let _ = g.reply.send(result);
    }

    fn coordinator_partitions(&self) -> u32 {
        self.metadata
            .get()
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(1, |t| t.partitions.len() as u32)
    }

    /// Writes offset commit records to the offsets partition with `acks=all`; the
    /// commit is answered (and applied) once they are committed.
    fn append_commit(
        &mut self,
        tp: TopicPartition,
        records: Vec<OffsetRecord>,
        reply: Sender<Result<GroupReply>>,
        deadline: Duration,
        now: Duration,
    ) {
        let Some(r) = self.replicas.get_mut(&tp) else {
            let _ = reply.send(Err(self.not_leader(&tp)));
            return;
        };
        let Role::Leader(leader) = &mut r.role else {
            let _ = reply.send(Err(self.not_leader(&tp)));
            return;
        };
        if let Err(isr) = leader.check_min_isr() {
            let _ = reply.send(Err(Error::NotEnoughReplicas {
                topic: tp.topic.clone(),
                partition: tp.partition,
                isr,
                required: leader.min_insync(),
            }));
            return;
        }
        let mut builder = BatchBuilder::new(None, 256 * records.len());
        let ts = crate::wall_clock::now_ms();
        for rec in &records {
            let (key, value) = rec.encode();
            builder.push(&Record::new(value).key(key), ts);
        }
        let epoch = leader.leader_epoch();
        let base = r.log.log_end_offset();
        let batch = builder.finish(None).stamped(base, epoch);
        if let Err(e) = r.append_local(&batch) {
            let _ = reply.send(Err(e));
            return;
        }
        let leo = r.log.log_end_offset();
        let Role::Leader(leader) = &mut r.role else {
            unreachable!("role checked above")
        };
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.pending_acks.insert(
            id,
            PendingAck {
                request_id: 0,
                tp: tp.clone(),
                base_offset: base,
                target: AckTarget::Commit { records, reply },
            },
        );
        let ready = leader.appended(leo, Some((id, deadline)), now);
        self.dirty.insert(tp.clone());
        self.apply_ready(&tp, ready);
    }
}
