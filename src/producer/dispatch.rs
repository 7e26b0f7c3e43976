//! Handing sealed batches to partition leaders: shared by the sender thread (which
//! sends whatever is due) and a calling thread whose record found its partition
//! idle (which sends it at once, sparing the hop through the sender thread).
//! Either way it runs under the accumulator lock, so the batches in flight are one
//! table.

use std::time::{Duration, Instant};

use crate::config::Acks;
use crate::controller::MetadataImage;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{ClientRequest, Inbound, ProduceReply, ProduceRequest, ReplyTo};
use crate::Result;

use super::accumulator::{Queue, Sealed, State};
use super::Shared;

/// Pause before resending a batch after a retriable error (`retry.backoff.ms`;
/// Kafka's 100 ms is tuned for networks, leaders here move in milliseconds). It
/// doubles with each failure in a row, up to [`RETRY_BACKOFF_MAX`], as Kafka's
/// `retry.backoff.max.ms` (KIP-580): the usual failure, a leader that has not yet
/// heard it was elected, is over within microseconds, while a partition that
/// stays unavailable is not asked more than every [`RETRY_BACKOFF_MAX`].
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_micros(250);
/// The longest pause between retries (`retry.backoff.max.ms`).
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(2);

/// A batch sent and not yet answered.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) tp: TopicPartition,
    pub(crate) sealed: Sealed,
    pub(crate) leader: BrokerId,
    pub(crate) sent: Instant,
}

/// One pass of sending: what it needs and what it leaves to finish afterwards.
pub(crate) struct Dispatch<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) image: &'a MetadataImage,
    pub(crate) now: Instant,
    /// `acks=0` batches, done at hand-off: completed once the pass is over.
    pub(crate) done: Vec<(Sealed, Result<Option<u64>>)>,
    /// Bytes and records of `done`.
    pub(crate) released: (usize, usize),
}

impl<'a> Dispatch<'a> {
    pub(crate) fn new(shared: &'a Shared, image: &'a MetadataImage, now: Instant) -> Self {
        Dispatch {
            shared,
            image,
            now,
            done: Vec::new(),
            released: (0, 0),
        }
    }

    /// Completes what the pass finished at once (`acks=0` batches at hand-off,
    /// batches whose delivery timeout ran out) and frees their buffer memory.
    /// Under the accumulator lock, once the pass is over.
    pub(crate) fn finish(self, state: &mut State) {
        if self.done.is_empty() {
            return;
        }
        for (s, outcome) in self.done {
            s.slot.complete(outcome);
        }
        let (bytes, records) = self.released;
        self.shared.handoff.finished(state, bytes, records);
    }

    /// Sends `q`'s ready batches (partition `p` of `topic`) to its leader while
    /// fewer than `max.in.flight` are out and no retry is being sequenced.
    pub(crate) fn send_queue(
        &mut self,
        topic: &str,
        p: u32,
        q: &mut Queue,
        in_flight: &mut crate::hash::FxHashMap<u64, InFlight>,
        next_id: &mut u64,
    ) {
        let shared = self.shared;
        let config = &shared.config;
        while !q.ready.is_empty()
            && q.in_flight < config.max_in_flight
            && !(q.retrying && q.in_flight > 0)
        {
            let tp = TopicPartition::new(topic, p);
            let route = self.image.partition(&tp).map(|p| (p.leader, p.topic_id));
            let Some((Some(leader), topic_id)) = route else {
                break; // offline: wait for an election (metadata wakes the sender)
            };
            if q.in_flight > 0 && q.in_flight_leader != Some(leader) {
                // The leader moved under batches in flight: they are given up and
                // retried first (the sender thread sees to it), in sequence order.
                break;
            }
            let Some(tx) = shared.cluster.broker_tx(leader) else {
                q.back_off(self.now);
                break;
            };
            let sealed = q.ready.pop_front().expect("not empty");
            let id = *next_id;
            *next_id += 1;
            let request = ProduceRequest {
                id,
                tp: tp.clone(),
                topic_id,
                acks: config.acks,
                batch: sealed.batch.clone(),
                timeout: config.request_timeout,
                reply: ProduceReply {
                    to: ReplyTo::Producer(shared.answers.clone()),
                    slot: Some(sealed.slot.clone()),
                },
            };
            if tx
                .send(Inbound::Client(ClientRequest::Produce(request)))
                .is_err()
            {
                q.ready.push_front(sealed);
                q.back_off(self.now);
                break;
            }
            if config.acks == Acks::None {
                // acks=0: done at hand-off, no offset known.
                self.released.0 += sealed.bytes;
                self.released.1 += sealed.count as usize;
                self.done.push((sealed, Ok(None)));
            } else {
                q.in_flight += 1;
                q.in_flight_leader = Some(leader);
                in_flight.insert(
                    id,
                    InFlight {
                        tp,
                        sealed,
                        leader,
                        sent: self.now,
                    },
                );
            }
        }
        if !q.ready.is_empty() && q.in_flight > 0 {
            // Held back by the batches in flight: their answers free the way.
            shared.answers.want();
        }
    }
}
