//! The group coordinator's shell: loading offsets partitions on leadership, group
//! requests, and offset commits written to `__consumer_offsets` with `acks=all`.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::group::{read_offsets_log, Committer, OffsetRecord, OFFSETS_TOPIC};
use crate::ids::TopicPartition;
use crate::protocol::{GroupOp, GroupReply, GroupRequest};
use crate::record::{BatchBuilder, Record};
use crate::{Error, Result};

use super::replica::Role;
use super::{mark_dirty, AckTarget, Broker, OffsetsCompaction, PendingAck};

/// Bytes of offset records per batch of a snapshot (far below `max.message.bytes`).
const SNAPSHOT_BATCH_BYTES: usize = 64 * 1024;

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
            // A record that does not decode, or a read that fails, ends nothing
            // else: what could be read is what this coordinator knows.
            let coordinator = &mut self.coordinator;
            let _ = read_offsets_log(r.log.as_ref(), |_, o| {
                if let Ok(o) = o {
                    coordinator.replay(&o);
                }
            });
            self.loaded_offsets.insert(tp.partition);
        } else if !leads && loaded {
            self.loaded_offsets.remove(&tp.partition);
            self.offsets_compactions.remove(&tp.partition);
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
        self.leaders_due = self.leaders_due.min(deadline);
        mark_dirty(&mut self.dirty, &tp);
        self.apply_ready(&tp, ready);
    }

    /// Compacts the offsets partitions this broker leads, as Kafka's log cleaner
    /// compacts `__consumer_offsets`: once a partition's log holds `segment.bytes`
    /// and twice its last snapshot, the coordinator writes one record per live
    /// offset (a snapshot) at the log end, in a new segment; once the snapshot is
    /// committed, every segment before it is deleted, here and, through the log
    /// start offset in fetch answers, on the followers. A coordinator that takes
    /// over replays from the log start: the snapshot, then what came after it.
    ///
    /// The snapshot is written in one step of this thread, so no commit falls
    /// between its records, and it states the values of commits written but not
    /// yet acknowledged, which lie before it in the log.
    pub(super) fn compact_offsets(&mut self, now: Duration) {
        let mut partitions: Vec<u32> = self.loaded_offsets.iter().copied().collect();
        partitions.sort_unstable();
        self.offsets_compactions
            .retain(|p, _| partitions.binary_search(p).is_ok());
        for p in partitions {
            let tp = TopicPartition::new(OFFSETS_TOPIC, p);
            let Some(r) = self.replicas.get_mut(&tp) else {
                continue;
            };
            let Role::Leader(leader) = &r.role else {
                continue;
            };
            if let Some(c) = self.offsets_compactions.get(&p).copied() {
                if leader.leader_epoch() != c.epoch || r.log.log_end_offset() < c.end {
                    // Leadership moved since (and came back): the snapshot may have
                    // been truncated and its offsets reused. Start over later.
                    self.offsets_compactions.remove(&p);
                } else if leader.hw() >= c.end {
                    if r.log.delete_below(c.base).is_ok() {
                        r.publish();
                    }
                    self.offsets_snapshot_bytes.insert(p, c.bytes);
                    self.offsets_compactions.remove(&p);
                }
                continue;
            }
            let segment_bytes = r
                .state
                .as_ref()
                .map_or(crate::config::DEFAULT_SEGMENT_BYTES, |st| {
                    st.config.segment_bytes
                });
            let last = self.offsets_snapshot_bytes.get(&p).copied().unwrap_or(0);
            if r.log.size_bytes() < segment_bytes.max(2 * last) {
                continue;
            }
            if let Some(c) = self.write_offsets_snapshot(&tp, now) {
                self.offsets_compactions.insert(p, c);
            }
        }
    }

    /// Writes the snapshot of offsets partition `tp` at its log end, in a new
    /// segment; `None` if this broker does not lead it or the log refused.
    fn write_offsets_snapshot(
        &mut self,
        tp: &TopicPartition,
        now: Duration,
    ) -> Option<OffsetsCompaction> {
        let mut pending: Vec<(u64, &[OffsetRecord])> = self
            .pending_acks
            .values()
            .filter(|a| &a.tp == tp)
            .filter_map(|a| match &a.target {
                AckTarget::Commit { records, .. } => Some((a.base_offset, records.as_slice())),
                AckTarget::Producer(_) => None,
            })
            .collect();
        pending.sort_unstable_by_key(|(base, _)| *base);
        // The simulation's checker must catch a broken rule: pending commits left out.
        #[cfg(any(test, feature = "sim"))]
        if crate::sim::broken_rule() == crate::sim::BrokenRule::SnapshotWithoutPending {
            pending.clear();
        }
        let records = self
            .coordinator
            .snapshot(tp.partition, pending.iter().flat_map(|(_, r)| r.iter()));
        let r = self.replicas.get_mut(tp)?;
        let Role::Leader(leader) = &mut r.role else {
            return None;
        };
        let epoch = leader.leader_epoch();
        r.log.roll_segment().ok()?;
        let base = r.log.log_end_offset();
        let ts = crate::wall_clock::now_ms();
        let mut batches = Vec::new();
        let mut builder = BatchBuilder::new(None, SNAPSHOT_BATCH_BYTES);
        for rec in &records {
            let (key, value) = rec.encode();
            builder.push(&Record::new(value).key(key), ts);
            if builder.len_bytes() >= SNAPSHOT_BATCH_BYTES {
                let full =
                    std::mem::replace(&mut builder, BatchBuilder::new(None, SNAPSHOT_BATCH_BYTES));
                batches.push(full.finish(None));
            }
        }
        if builder.record_count() > 0 {
            batches.push(builder.finish(None));
        }
        let bytes = batches.iter().map(|b| b.len() as u64).sum();
        // A write error leaves what was written: it restates current values, which
        // is harmless, but it is no snapshot that may replace what lies below it.
        let written = batches.iter().all(|batch| {
            let at = r.log.log_end_offset();
            r.append_stamped(batch, at, epoch).is_ok()
        });
        let end = r.log.log_end_offset();
        let Role::Leader(leader) = &mut r.role else {
            unreachable!("role checked above")
        };
        let ready = leader.appended(end, None, now);
        mark_dirty(&mut self.dirty, tp);
        self.apply_ready(tp, ready);
        written.then_some(OffsetsCompaction {
            base,
            end,
            epoch,
            bytes,
        })
    }
}
