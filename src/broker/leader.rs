//! The leader's side: appending produce requests, answering follower fetches
//! (with the divergence check of OffsetForLeaderEpoch), and corruption found in
//! its own log.

use std::time::Duration;

use crate::config::Acks;
use crate::hash::{FxHashMap, FxHashSet};
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::protocol::{
    FetchData, FetchError, FetchPartition, FetchPartitionResponse, Message, ProduceRequest,
    ProduceResponse,
};
use crate::replication::SequenceCheck;
use crate::storage;
use crate::{Error, Result};

use super::replica::{Replica, Role};
use super::replica_map::Slots;
use super::{
    diverging_from_leader, mark_dirty, AckTarget, Broker, Damage, ParkedReplicaFetch, PendingAck,
    RESIGN_RETRY,
};

impl Broker {
    pub(super) fn handle_replica_fetch(
        &mut self,
        (follower, broker_epoch): (BrokerId, u64),
        request_id: u64,
        max_bytes: usize,
        partitions: Vec<FetchPartition>,
        deadline: Duration,
        now: Duration,
    ) {
        let memo = self.fetch_memos.entry(follower).or_default();
        let slots = self
            .replicas
            .resolve(memo, partitions.iter().map(|p| &p.tp));
        // Record every follower's position first: it may move the HW.
        let unheard =
            self.record_fetch_positions((follower, broker_epoch), &partitions, &slots, now);
        let parked = ParkedReplicaFetch {
            from: follower,
            broker_epoch,
            request_id,
            max_bytes,
            partitions,
            slots,
            deadline,
            unheard,
            index: None,
        };
        let (responses, has_news) = self.answer_replica_fetch(&parked);
        if has_news || deadline <= now {
            self.reply_fetch(&parked, responses);
        } else {
            self.parked_replica_fetches.push(parked);
        }
    }

    /// Records where `follower` stands in each partition of its fetch that this
    /// broker leads in the follower's epoch. True when some partition's epoch (or
    /// the partition itself) is not known here yet: once it is, the fetch, if it
    /// still waits, is recorded again (see `serve_parked`), so that the follower
    /// counts for the high watermark without another round trip.
    ///
    /// Each partition is found through `slots`, and looked up by name only where
    /// something came of it: a fetch covers every partition the follower follows
    /// here.
    pub(super) fn record_fetch_positions(
        &mut self,
        (follower, broker_epoch): (BrokerId, u64),
        partitions: &[FetchPartition],
        slots: &Slots,
        now: Duration,
    ) -> bool {
        let mut unheard = false;
        for (i, p) in partitions.iter().enumerate() {
            let Some(r) = self.replicas.get_at_mut(slots, i, &p.tp) else {
                unheard = true;
                continue;
            };
            // A fetch for another creation of the topic is no progress here: the
            // follower's log may hold the deleted topic's records.
            if !r.is_of(p.topic_id)
                || !matches!(&r.role, Role::Leader(l) if l.leader_epoch() == p.leader_epoch)
            {
                unheard |= !heard_of(r, p);
                continue;
            }
            let diverges = p.last_fetched_epoch.is_some_and(|e| {
                diverging_from_leader(r, p.leader_epoch, e, p.fetch_offset).is_some()
            });
            let Role::Leader(l) = &mut r.role else {
                unreachable!("checked above");
            };
            if diverges {
                // Not progress, but news of a restart all the same.
                l.incarnation(follower, broker_epoch);
                continue;
            }
            let ready = l.fetched(follower, broker_epoch, p.fetch_offset, now);
            if !ready.is_empty() {
                self.apply_ready(&p.tp, ready);
            }
        }
        unheard
    }

    /// Builds the answer to a replica fetch; `true` when it carries data or news that
    /// should not wait.
    ///
    /// A partition with nothing the follower does not already have (no batches, no
    /// divergence, no error, the high watermark and log start it sent) is left out,
    /// as in Kafka's incremental fetch sessions (KIP-227): a follower applies each
    /// partition of an answer on its own, so one left out is one with no change,
    /// and an answer stays as small as what changed however many partitions the
    /// fetch covers.
    pub(super) fn answer_replica_fetch(
        &mut self,
        f: &ParkedReplicaFetch,
    ) -> (Vec<FetchPartitionResponse>, bool) {
        let mut out = Vec::new();
        let mut news = false;
        let mut budget = f.max_bytes;
        let mut corrupt = Vec::new();
        for (i, p) in f.partitions.iter().enumerate() {
            let r = self.replicas.get_at(&f.slots, i, &p.tp);
            let Some((result, urgent)) = fetch_result(r, p, Some((&mut budget, &mut corrupt)))
            else {
                continue;
            };
            news |= urgent;
            out.push(FetchPartitionResponse {
                tp: p.tp.clone(),
                index: u32::try_from(i).expect("a fetch names fewer than 2^32 partitions"),
                topic_id: p.topic_id,
                result,
            });
        }
        for (tp, offset) in corrupt {
            self.found_corruption(&tp, offset);
        }
        (out, news)
    }

    /// Whether the answer to the parked fetch `f` would be news now, looking only
    /// at its partitions in `dirty`: those that changed since it was last looked
    /// at (every change that makes news marks its partition). Reads no records:
    /// with many partitions a fetch covers hundreds, and only a handful change
    /// between two looks.
    pub(super) fn has_news(
        &self,
        f: &mut ParkedReplicaFetch,
        dirty: &FxHashSet<TopicPartition>,
    ) -> bool {
        let urgent = |i: usize, p: &FetchPartition| {
            let r = self.replicas.get_at(&f.slots, i, &p.tp);
            fetch_result(r, p, None).is_some_and(|(_, urgent)| urgent)
        };
        if f.partitions.len() <= dirty.len() {
            return f
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| dirty.contains(&*p.tp))
                .any(|(i, p)| urgent(i, p));
        }
        let index = f.index.get_or_insert_with(|| {
            let mut m = FxHashMap::default();
            for (i, p) in f.partitions.iter().enumerate() {
                m.insert(p.tp.clone(), i);
            }
            m
        });
        dirty
            .iter()
            .filter_map(|tp| index.get(tp))
            .any(|&i| urgent(i, &f.partitions[i]))
    }

    pub(super) fn reply_fetch(
        &self,
        f: &ParkedReplicaFetch,
        partitions: Vec<FetchPartitionResponse>,
    ) {
        self.send(
            NodeId::Broker(f.from),
            Message::FetchReply {
                request_id: f.request_id,
                partitions,
            },
        );
    }

    /// Rule 9: corrupt bytes are never served. A follower cuts its log at the bad
    /// batch and refetches; a leader that still has in-sync followers resigns (it
    /// proposes an ISR without itself) and cuts once it follows. A leader alone in
    /// the ISR holds the only copy: it keeps refusing to serve the bad range.
    pub(super) fn found_corruption(&mut self, tp: &TopicPartition, offset: Option<u64>) {
        let me = self.config.id;
        let now = self.now();
        let broker_epoch = self.broker_epoch.unwrap_or(0);
        let Some(r) = self.replicas.get_mut(tp) else {
            return;
        };
        let at = offset.unwrap_or(r.log.log_start_offset());
        let Role::Leader(l) = &r.role else {
            let end = r.log.log_end_offset();
            let topic_id = r.topic_id.unwrap_or(0);
            let _ = r.truncate_to(at);
            // It may have cut committed records: not electable until it has
            // refetched them and is back in the ISR. Kept on disk until then, so
            // that a restart reports it too (the cut log looks whole).
            if let Some(path) = self.partition_dir(tp) {
                let _ = storage::mark_loss(&path, self.config.fsync);
            }
            let report = self.note_damage(tp, end, topic_id);
            self.send(
                NodeId::Controller,
                Message::ReplicaDamaged {
                    broker_epoch,
                    tp: tp.clone(),
                    topic_id,
                    report,
                },
            );
            return;
        };
        r.corrupt_at = Some(r.corrupt_at.map_or(at, |c| c.min(at)));
        let others: Vec<BrokerId> = l.isr().iter().filter(|b| **b != me).copied().collect();
        let due = r.resign_sent.is_none_or(|t| now >= t + RESIGN_RETRY);
        if others.is_empty() || !due {
            return;
        }
        r.resign_sent = Some(now);
        let epochs = (l.leader_epoch(), l.partition_epoch());
        self.propose_isr(tp, epochs, others);
    }

    /// Notes that the follower of `tp` cut its log, which ended at `end`, and returns
    /// the number of the report to send. Every cut gets a new number, so that a
    /// late ack of an earlier report does not end the repeats of this one.
    pub(super) fn note_damage(&mut self, tp: &TopicPartition, end: u64, topic_id: u64) -> u64 {
        self.last_damage_report += 1;
        let report = self.last_damage_report;
        let d = self.damaged.entry(tp.clone()).or_insert(Damage {
            until: 0,
            report,
            topic_id,
        });
        d.until = d.until.max(end);
        d.report = report;
        d.topic_id = topic_id;
        report
    }

    /// Reports again every follower still missing records it cut over a bad CRC
    /// whose report the controller has not acknowledged (it may have been lost),
    /// and forgets those that have refetched up to where their log ended before
    /// the cut, or are gone.
    pub(super) fn report_damage(&mut self, broker_epoch: u64) {
        let mut healed = Vec::new();
        for (tp, d) in &self.damaged {
            // A replica of a later creation of the topic is not the one cut: gone.
            match self.replicas.get(tp).filter(|r| r.is_of(d.topic_id)) {
                Some(r) if r.log.log_end_offset() < d.until => self.send(
                    NodeId::Controller,
                    Message::ReplicaDamaged {
                        broker_epoch,
                        tp: tp.clone(),
                        topic_id: d.topic_id,
                        report: d.report,
                    },
                ),
                Some(_) => healed.push((tp.clone(), true)),
                None => healed.push((tp.clone(), false)),
            }
        }
        for (tp, hosted) in healed {
            self.damaged.remove(&tp);
            // A replica stopped without deleting keeps its marker for its next start.
            if hosted {
                self.clear_loss_marker(&tp);
            }
        }
    }

    pub(super) fn produce(&mut self, req: ProduceRequest, now: Duration) {
        if let Err(e) = self.check_produce(&req) {
            return answer(req, Err(e));
        }
        let r = self.replicas.get_mut(&req.tp).expect("checked: hosted");
        let Role::Leader(leader) = &mut r.role else {
            unreachable!("checked: leads")
        };
        // Rule 8: a retried idempotent batch is answered with its original offsets.
        if let (Some(pid), Some(seq)) = (req.batch.producer_id(), req.batch.base_sequence()) {
            match r.producers.check(pid, seq, req.batch.record_count()) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    if req.acks != Acks::All || last_offset < leader.hw() {
                        return answer(req, Ok(base_offset));
                    }
                    let id = self.next_waiter;
                    self.next_waiter += 1;
                    leader.wait_for(id, last_offset + 1, now + req.timeout);
                    self.leaders_due = self.leaders_due.min(now + req.timeout);
                    self.pending_acks.insert(
                        id,
                        PendingAck {
                            request_id: req.id,
                            tp: req.tp.clone(),
                            base_offset,
                            target: AckTarget::Producer(req.reply),
                        },
                    );
                    return;
                }
                SequenceCheck::OutOfOrder { expected } => {
                    let e = Error::OutOfOrderSequence {
                        topic: req.tp.topic.clone(),
                        partition: req.tp.partition,
                        producer_id: pid,
                        expected: expected as i64,
                        got: seq as i64,
                    };
                    return answer(req, Err(e));
                }
            }
        }
        self.append_checked(vec![req], now);
    }

    /// What every produce request must pass before its sequence is looked at:
    /// this broker leads the partition, the batch fits `max.message.bytes`, and
    /// with acks=all the ISR has `min.insync.replicas` members.
    fn check_produce(&self, req: &ProduceRequest) -> Result<()> {
        let Some(r) = self.replicas.get(&req.tp) else {
            return Err(self.not_leader(&req.tp));
        };
        let Role::Leader(leader) = &r.role else {
            return Err(self.not_leader(&req.tp));
        };
        if !r.is_of(req.topic_id) {
            // This broker has not yet heard that the topic was deleted and created
            // again (or the producer has not): not the leader of that creation.
            return Err(self.not_leader(&req.tp));
        }
        let config = &r.state.as_ref().expect("a leader has a state").config;
        if req.batch.len() > config.max_message_bytes {
            return Err(Error::RecordTooLarge {
                topic: req.tp.topic.clone(),
                size: req.batch.len(),
                max: config.max_message_bytes,
            });
        }
        if req.acks == Acks::All {
            if let Err(isr) = leader.check_min_isr() {
                return Err(Error::NotEnoughReplicas {
                    topic: req.tp.topic.clone(),
                    partition: req.tp.partition,
                    isr,
                    required: leader.min_insync(),
                });
            }
        }
        Ok(())
    }

    /// Produce requests for one partition that arrived one after another: the
    /// same as [`produce`](Self::produce) for each in turn, but the run of them
    /// that are plain appends (every check passed, the next sequence of their
    /// producer) goes to the log in one write ([`storage::Log::append_all`]).
    /// Anything else first writes the run gathered so far, then goes through
    /// `produce` on its own.
    pub(crate) fn produce_run(&mut self, reqs: Vec<ProduceRequest>) {
        let now = self.now();
        let mut run: Vec<ProduceRequest> = Vec::with_capacity(reqs.len());
        for req in reqs {
            if self.follows_as_append(&req, &run) {
                run.push(req);
            } else {
                self.append_checked(std::mem::take(&mut run), now);
                self.produce(req, now);
            }
        }
        self.append_checked(run, now);
    }

    /// Whether `produce` would append `req` after the requests of `run` (of the
    /// same partition, every one such an append) without answering it at once:
    /// it passes [`check_produce`](Self::check_produce), and an idempotent batch
    /// has its producer's next sequence.
    fn follows_as_append(&self, req: &ProduceRequest, run: &[ProduceRequest]) -> bool {
        if self.check_produce(req).is_err() {
            return false;
        }
        let (Some(pid), Some(seq)) = (req.batch.producer_id(), req.batch.base_sequence()) else {
            return true;
        };
        let r = &self.replicas[&req.tp];
        let check = r.producers.check(pid, seq, req.batch.record_count());
        // The table does not hold the run yet: after the producer's last batch in
        // it, the next sequence is an append (no batch of the run can equal it, and
        // the table's batches are checked for a duplicate).
        match run
            .iter()
            .rev()
            .find(|q| q.batch.producer_id() == Some(pid))
        {
            Some(last) => {
                let next = last
                    .batch
                    .base_sequence()
                    .expect("an idempotent batch has a sequence")
                    .wrapping_add(last.batch.record_count() as i32);
                seq == next && !matches!(check, SequenceCheck::Duplicate { .. })
            }
            None => check == SequenceCheck::Append,
        }
    }

    /// Appends `reqs`, checked by [`produce`](Self::produce) or
    /// [`follows_as_append`](Self::follows_as_append), in one write at the log end,
    /// then answers or parks each as `produce` does. A failed write fails those of
    /// them it did not leave in the log.
    fn append_checked(&mut self, reqs: Vec<ProduceRequest>, now: Duration) {
        let Some(tp) = reqs.first().map(|q| q.tp.clone()) else {
            return;
        };
        let r = self.replicas.get_mut(&tp).expect("checked: hosted");
        let Role::Leader(leader) = &r.role else {
            unreachable!("checked: leads")
        };
        let epoch = leader.leader_epoch();
        let first = r.log.log_end_offset();
        let mut at = first;
        let stamped: Vec<_> = reqs
            .iter()
            .map(|q| {
                let s = storage::Stamped::new(&q.batch, at, epoch);
                at = s.next_offset();
                s
            })
            .collect();
        let written = r.append_all(&stamped);
        drop(stamped);
        let leo = r.log.log_end_offset();
        let mut base = first;
        for req in reqs {
            let end = base + u64::from(req.batch.record_count());
            if end <= leo {
                self.appended(req, base, end, now);
            } else {
                let e = match &written {
                    Err(e) => e.duplicate(),
                    Ok(()) => unreachable!("a write that succeeded left every batch"),
                };
                answer(req, Err(e));
            }
            base = end;
        }
    }

    /// After `req`'s batch went to the log at `base..end`: answers it (acks 1), or
    /// parks it until the HW reaches `end` (acks=all), and moves the HW.
    fn appended(&mut self, req: ProduceRequest, base: u64, end: u64, now: Duration) {
        let tp = req.tp.clone();
        let r = self.replicas.get_mut(&tp).expect("appended: hosted");
        let Role::Leader(leader) = &mut r.role else {
            unreachable!("appended: leads")
        };
        let ready = if req.acks == Acks::All {
            let id = self.next_waiter;
            self.next_waiter += 1;
            let ready = leader.appended(end, Some((id, now + req.timeout)), now);
            self.leaders_due = self.leaders_due.min(now + req.timeout);
            self.pending_acks.insert(
                id,
                PendingAck {
                    request_id: req.id,
                    tp: req.tp,
                    base_offset: base,
                    target: AckTarget::Producer(req.reply),
                },
            );
            ready
        } else {
            let ready = leader.appended(end, None, now);
            if req.acks == Acks::Leader {
                answer(req, Ok(base));
            }
            ready
        };
        mark_dirty(&mut self.dirty, &tp);
        self.apply_ready(&tp, ready);
    }
}

/// One partition's part of the answer to a replica fetch (`r`: its replica here),
/// and whether it is news that should not wait; `None` when it is left out
/// (nothing the follower does not have, or a leadership not heard of here yet).
/// `read` is the answer's byte budget and where a corrupt batch met is noted;
/// without it no records are read, and a partition with records to send is news
/// with none.
fn fetch_result(
    r: Option<&Replica>,
    p: &FetchPartition,
    read: Option<(&mut usize, &mut CorruptFound)>,
) -> Option<(std::result::Result<FetchData, FetchError>, bool)> {
    let r = r?;
    // Fetched for a deleted topic this broker knows was created again: the
    // follower's view is stale, as with an older leader epoch.
    let deleted = r.topic_id.is_some_and(|id| id > p.topic_id);
    if !deleted && !heard_of(r, p) {
        // The follower heard of this leadership (or partition) before this
        // broker did: the controller's word reaches brokers one by one. Not
        // news yet, so left out: the fetch waits until the word arrives
        // here (which marks the partition dirty and wakes it) or until its
        // deadline. An error would make the follower back off, and after a
        // failover every acks=all write would wait out that back-off.
        return None;
    }
    let mut unread = false;
    let result = match &r.role {
        _ if deleted => Err(FetchError::FencedLeaderEpoch),
        Role::Leader(l) => {
            if p.leader_epoch < l.leader_epoch() {
                Err(FetchError::FencedLeaderEpoch)
            } else if let Some(d) = p
                .last_fetched_epoch
                .and_then(|e| diverging_from_leader(r, l.leader_epoch(), e, p.fetch_offset))
            {
                Ok(FetchData {
                    high_watermark: l.hw(),
                    log_start: r.log.log_start_offset(),
                    leader_epoch: l.leader_epoch(),
                    diverging: Some(d),
                    batches: Vec::new(),
                })
            } else if p.fetch_offset < r.log.log_start_offset() {
                Err(FetchError::OffsetOutOfRange {
                    log_start: r.log.log_start_offset(),
                })
            } else {
                let more = p.fetch_offset < r.log.log_end_offset();
                // Records to send but none read (`read` is `None`): news all the same.
                unread = more && read.is_none();
                let batches = match read {
                    Some((budget, corrupt)) if more && *budget > 0 => {
                        let batches = match r.log.read(p.fetch_offset, *budget) {
                            Ok(b) => b,
                            Err(Error::Corrupt { offset, .. }) => {
                                corrupt.push((TopicPartition::clone(&p.tp), offset));
                                Vec::new()
                            }
                            Err(_) => Vec::new(),
                        };
                        *budget = budget.saturating_sub(batches.iter().map(|b| b.len()).sum());
                        batches
                    }
                    _ => Vec::new(),
                };
                Ok(FetchData {
                    high_watermark: l.hw(),
                    log_start: r.log.log_start_offset(),
                    leader_epoch: l.leader_epoch(),
                    diverging: None,
                    batches,
                })
            }
        }
        _ => Err(FetchError::NotLeader),
    };
    match &result {
        Ok(d) if d.batches.is_empty() && d.diverging.is_none() && !unread => {
            if d.high_watermark == p.high_watermark && d.log_start <= p.log_start {
                return None;
            }
            Some((result, false))
        }
        _ => Some((result, true)),
    }
}

/// Answers `req` with `result`. Its batch is dropped first: the producer may
/// settle the answer at once on this thread, and it reuses the batch's buffer
/// only if nothing else holds it by then.
fn answer(req: ProduceRequest, result: Result<u64>) {
    let ProduceRequest {
        id, reply, batch, ..
    } = req;
    drop(batch);
    reply.send(ProduceResponse { id, result });
}

/// Corrupt batches an answer met, by partition and offset: handled once it is built.
type CorruptFound = Vec<(TopicPartition, Option<u64>)>;

/// Whether this broker has heard of the leadership (or the partition) `p` was
/// fetched in: a follower may hear of it first. A fetch for another creation of
/// the topic (one side has not yet heard it was deleted and created again) is
/// not heard of either: the follower's log may hold the deleted topic's records.
fn heard_of(r: &Replica, p: &FetchPartition) -> bool {
    r.is_of(p.topic_id)
        && r.state
            .as_ref()
            .is_some_and(|st| st.leader_epoch >= p.leader_epoch)
}
