//! Clients' side: consumer fetches and local reads (long-polls parked until data
//! or their deadline), offsets, and waking parked fetches.

use std::time::Duration;

use crate::hash::FxHashSet;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{
    ClientFetch, ClientFetchData, ClientFetchResponse, ClientRequest, OffsetsInfo, ReadLimit,
};
use crate::{Error, Result};

use super::replica::Role;
use super::{Broker, ParkedClientFetch};

impl Broker {
    pub(super) fn serve_parked(&mut self, now: Duration) {
        if self.dirty.is_empty()
            && !self
                .parked_replica_fetches
                .iter()
                .any(|p| p.deadline <= now)
            && !self.parked_client_fetches.iter().any(|p| p.deadline <= now)
        {
            return;
        }
        // Swapped out and back, so the set keeps its capacity between rounds.
        let mut dirty = std::mem::take(&mut self.dirty);
        let touched = self.followers_touched(&dirty);
        let parked = std::mem::take(&mut self.parked_replica_fetches);
        for mut f in parked {
            let touched = touched.as_ref().is_none_or(|t| t.contains(&f.from));
            if !touched && f.deadline > now {
                self.parked_replica_fetches.push(f);
                continue;
            }
            if f.unheard {
                // The news may have come: the follower's position then counts now.
                f.unheard = self.record_fetch_positions(
                    (f.from, f.broker_epoch),
                    &f.partitions,
                    &f.slots,
                    now,
                );
            }
            // It was looked at whole when it came and found no news: only what
            // changed since can make news now. The whole answer is built only to
            // be sent (it carries every high watermark that moved meanwhile).
            if f.deadline > now && !f.unheard && !self.has_news(&mut f, &dirty) {
                self.parked_replica_fetches.push(f);
                continue;
            }
            let (responses, news) = self.answer_replica_fetch(&f);
            if news || f.deadline <= now {
                self.reply_fetch(&f, responses);
            } else {
                self.parked_replica_fetches.push(f);
            }
        }
        let parked = std::mem::take(&mut self.parked_client_fetches);
        for f in parked {
            let touched = f.fetch.partitions.iter().any(|(tp, ..)| dirty.contains(tp));
            if !touched && f.deadline > now {
                self.parked_client_fetches.push(f);
                continue;
            }
            let (data, news) = self.answer_client_fetch(&f.fetch);
            if news || f.deadline <= now {
                let _ = f.fetch.reply.send(ClientFetchResponse { partitions: data });
            } else {
                self.parked_client_fetches.push(f);
            }
        }
        // Whatever was marked while answering stays for the next round.
        dirty.clear();
        dirty.extend(self.dirty.drain());
        self.dirty = dirty;
    }

    /// The followers with a parked fetch that covers a partition in `dirty` (`None`:
    /// take every parked fetch as touched).
    ///
    /// A follower's fetch covers every partition it follows here, so each dirty
    /// partition's replicas name the fetches it touches: a few lookups per round,
    /// where looking each of a fetch's partitions up in `dirty` took hundreds with
    /// many partitions. Replica sets do not change, so a fetch that covers a dirty
    /// partition is always found; a follower named without its fetch covering one
    /// only has its answer looked at once more. A dirty partition gone meanwhile
    /// (deleted) touches every fetch: its followers learn now.
    fn followers_touched(&self, dirty: &FxHashSet<TopicPartition>) -> Option<Vec<BrokerId>> {
        let mut waiting: Vec<BrokerId> =
            self.parked_replica_fetches.iter().map(|f| f.from).collect();
        waiting.sort_unstable();
        waiting.dedup();
        let mut touched = Vec::with_capacity(waiting.len());
        for tp in dirty {
            if touched.len() == waiting.len() {
                break;
            }
            let st = self.replicas.get(tp).and_then(|r| r.state.as_ref())?;
            for b in &st.replicas {
                if waiting.contains(b) && !touched.contains(b) {
                    touched.push(*b);
                }
            }
        }
        Some(touched)
    }

    pub(super) fn handle_client(&mut self, req: ClientRequest) {
        let now = self.now();
        match req {
            ClientRequest::Produce(p) => self.produce(p, now),
            ClientRequest::Fetch(f) => {
                let (data, news) = self.answer_client_fetch(&f);
                if news || f.max_wait.is_zero() {
                    let _ = f.reply.send(ClientFetchResponse { partitions: data });
                } else {
                    let deadline = now + f.max_wait;
                    self.parked_client_fetches
                        .push(ParkedClientFetch { fetch: f, deadline });
                }
            }
            ClientRequest::Group(g) => self.group_request(g, now),
            ClientRequest::ListOffsets {
                tp,
                topic_id,
                reply,
            } => {
                let result = match self.replicas.get(&tp) {
                    Some(r) if matches!(r.role, Role::Leader(_)) && r.is_of(topic_id) => {
                        Ok(OffsetsInfo {
                            log_start: r.log.log_start_offset(),
                            high_watermark: r.status.hw(),
                            log_end: r.log.log_end_offset(),
                        })
                    }
                    _ => Err(self.not_leader(&tp)),
                };
                let _ = reply.send(result);
            }
            // Controller requests never reach a broker.
            ClientRequest::CreateTopic { .. }
            | ClientRequest::DeleteTopic { .. }
            | ClientRequest::ElectPreferredLeaders { .. }
            | ClientRequest::AllocateProducerId { .. }
            | ClientRequest::BrokerStopped(_) => {}
        }
    }

    pub(super) fn not_leader(&self, tp: &TopicPartition) -> Error {
        Error::NotLeader {
            topic: tp.topic.clone(),
            partition: tp.partition,
            broker: self.config.id,
        }
    }

    pub(super) fn answer_client_fetch(
        &mut self,
        f: &ClientFetch,
    ) -> (Vec<(TopicPartition, Result<ClientFetchData>)>, bool) {
        let mut out = Vec::with_capacity(f.partitions.len());
        let mut news = false;
        let mut budget = f.max_bytes;
        let mut corrupt = Vec::new();
        for (tp, offset, topic_id) in &f.partitions {
            let result = match self.replicas.get(tp) {
                None => Err(self.not_leader(tp)),
                // Another creation of the topic than the reader's: not its leader.
                Some(r) if topic_id.is_some_and(|id| !r.is_of(id)) => Err(self.not_leader(tp)),
                Some(r) => {
                    let upto = match (f.limit, &r.role) {
                        (ReadLimit::HighWatermark, Role::Leader(l)) => Some(l.hw()),
                        (ReadLimit::HighWatermark, _) => None,
                        (ReadLimit::LogEnd, _) => Some(r.log.log_end_offset()),
                    };
                    match upto {
                        None => Err(self.not_leader(tp)),
                        Some(upto) => {
                            let start = r.log.log_start_offset();
                            let end = r.log.log_end_offset();
                            if *offset < start || *offset > end {
                                Err(Error::OffsetOutOfRange {
                                    topic: tp.topic.clone(),
                                    partition: tp.partition,
                                    offset: *offset,
                                    log_start: start,
                                    log_end: end,
                                })
                            } else if *offset >= upto || budget == 0 {
                                Ok(ClientFetchData {
                                    batches: Vec::new(),
                                    upto,
                                })
                            } else {
                                match r.log.read(*offset, budget) {
                                    Ok(mut batches) => {
                                        batches.retain(|b| b.base_offset() < upto);
                                        budget = budget
                                            .saturating_sub(batches.iter().map(|b| b.len()).sum());
                                        Ok(ClientFetchData { batches, upto })
                                    }
                                    Err(e) => {
                                        if let Error::Corrupt { offset, .. } = &e {
                                            corrupt.push((tp.clone(), *offset));
                                        }
                                        Err(e)
                                    }
                                }
                            }
                        }
                    }
                }
            };
            match &result {
                Ok(d) if d.batches.is_empty() => {}
                _ => news = true,
            }
            out.push((tp.clone(), result));
        }
        for (tp, offset) in corrupt {
            self.found_corruption(&tp, offset);
        }
        (out, news)
    }
}
