//! The producer's sender thread: seals batches whose linger ran out, sends them to
//! partition leaders, and completes, retries or fails them on the answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender as ChanSender};

use crate::config::Acks;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{ClientRequest, Inbound, ProduceReply, ProduceRequest, ProduceResponse};
use crate::sync::Arc;
use crate::{Error, Result};

use super::accumulator::Sealed;
use super::Shared;

/// Pause before resending a batch after a retriable error (`retry.backoff.ms`;
/// Kafka's 100 ms is tuned for networks, leaders here move in milliseconds).
const RETRY_BACKOFF: Duration = Duration::from_millis(2);
/// Extra time past `request.timeout.ms` before a request with no answer is given up.
const REQUEST_SLACK: Duration = Duration::from_millis(500);
/// Longest sleep with nothing scheduled (metadata changes wake the thread anyway).
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct InFlight {
    tp: TopicPartition,
    sealed: Sealed,
    leader: BrokerId,
    sent: Instant,
}

pub(crate) struct Sender {
    shared: Arc<Shared>,
    wake: Receiver<()>,
    metadata: Receiver<()>,
    responses: Receiver<ProduceResponse>,
    reply_to: ChanSender<ProduceResponse>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>, wake: Receiver<()>) -> Self {
        let (reply_to, responses) = crossbeam_channel::unbounded();
        let metadata = shared.cluster.notify.watch();
        Sender {
            shared,
            wake,
            metadata,
            responses,
            reply_to,
            in_flight: HashMap::new(),
            next_id: 1,
        }
    }

    pub(crate) fn run(mut self) {
        loop {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            if !timeout.is_zero() {
                self.yield_for_work();
            }
            crossbeam_channel::select! {
                recv(self.responses) -> r => {
                    if let Ok(r) = r { self.on_response(r); }
                }
                recv(self.wake) -> _ => {}
                recv(self.metadata) -> _ => {}
                default(timeout) => {}
            }
            while let Ok(r) = self.responses.try_recv() {
                self.on_response(r);
            }
            self.check_in_flight();
            self.send_ready();
            let state = self.shared.handoff.lock();
            if state.closed && state.outstanding == 0 && self.in_flight.is_empty() {
                return;
            }
        }
    }

    /// Yields the core a few times while nothing has arrived, before `select!`
    /// sleeps: an answer or a record is often microseconds away, and catching it
    /// awake spares a sleep and a wake-up (see `crate::inbox`).
    fn yield_for_work(&self) {
        for _ in 0..crate::inbox::YIELDS {
            if !self.responses.is_empty() || !self.wake.is_empty() || !self.metadata.is_empty() {
                return;
            }
            crate::sync::yield_now();
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let config = &self.shared.config;
        let state = self.shared.handoff.lock();
        let mut d = now + IDLE;
        if let Some(l) = state.next_linger_deadline(config.linger) {
            d = d.min(l);
        }
        for q in state.topics.values().flat_map(|t| t.partitions.iter()) {
            if let Some(front) = q.ready.front() {
                d = d.min(front.created + config.delivery_timeout);
                if let Some(r) = q.retry_at {
                    d = d.min(r);
                }
            }
        }
        for f in self.in_flight.values() {
            d = d.min(f.sent + config.request_timeout + REQUEST_SLACK);
        }
        d.max(now)
    }

    /// Answers arrive in order per leader; an answer to a request given up on is
    /// ignored.
    fn on_response(&mut self, r: ProduceResponse) {
        let Some(f) = self.in_flight.remove(&r.id) else {
            return;
        };
        self.finish(f, r.result);
    }

    fn finish(&mut self, f: InFlight, result: Result<u64>) {
        let shared = &self.shared;
        let mut state = shared.handoff.lock();
        let Some(q) = state.queue_mut(&f.tp.topic, f.tp.partition) else {
            unreachable!("a batch in flight has its queue");
        };
        q.in_flight = q.in_flight.saturating_sub(1);
        let now = Instant::now();
        let mut sealed = f.sealed;
        let outcome = match result {
            Ok(base) => Ok(Some(base)),
            Err(e) => {
                let gap = matches!(e, Error::OutOfOrderSequence { .. });
                // A gap while an earlier batch is retried is expected. A gap out of
                // the blue means the leader lost records this producer wrote (an
                // unclean election): start over with a fresh producer id.
                if gap && !q.retrying {
                    q.needs_reset = true;
                }
                let retriable = e.is_retriable() || gap;
                if retriable && now < sealed.created + shared.config.delivery_timeout {
                    sealed.last_error = Some(e);
                    q.retrying = true;
                    q.retry_at = Some(now + RETRY_BACKOFF);
                    q.requeue(sealed);
                    return;
                }
                Err(e)
            }
        };
        // Completed before its records stop counting as outstanding: a `flush`
        // that returns finds every delivery done. One completion per batch.
        sealed.slot.complete(outcome);
        shared
            .handoff
            .finished(&mut state, sealed.bytes, sealed.count as usize);
    }

    /// Gives up on requests whose leader moved or died, or that had no answer in
    /// time: they are retried (idempotence keeps the retry from duplicating).
    fn check_in_flight(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let image = self.shared.cluster.metadata.get();
        let now = Instant::now();
        let timeout = self.shared.config.request_timeout + REQUEST_SLACK;
        let lost: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| {
                let leader = image
                    .topics
                    .get(&f.tp.topic)
                    .and_then(|t| t.partitions.get(f.tp.partition as usize))
                    .and_then(|p| p.leader);
                leader != Some(f.leader)
                    || !self.shared.cluster.is_alive(f.leader)
                    || now >= f.sent + timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(f) = self.in_flight.remove(&id) {
                let e = Error::NotLeader {
                    topic: f.tp.topic.clone(),
                    partition: f.tp.partition,
                    broker: f.leader,
                };
                self.finish(f, Err(e));
            }
        }
    }

    fn send_ready(&mut self) {
        let shared = self.shared.clone();
        let config = &shared.config;
        let image = shared.cluster.metadata.get();
        let now = Instant::now();
        let mut state = shared.handoff.lock();
        state.seal_due(now, config.linger, shared.producer_id);
        let mut completed = false;
        let mut released = (0usize, 0usize);
        let mut done: Vec<(Sealed, crate::Result<Option<u64>>)> = Vec::new();
        for (topic, t) in state.topics.iter_mut() {
            for (p, q) in t.partitions.iter_mut().enumerate() {
                let p = p as u32;
                // Batches whose delivery timeout ran out before they could be sent.
                while q
                    .ready
                    .front()
                    .is_some_and(|s| now >= s.created + config.delivery_timeout)
                {
                    let mut s = q.ready.pop_front().expect("front exists");
                    let e = s.last_error.take().unwrap_or_else(|| Error::Timeout {
                        what: format!("a leader for {topic}-{p} to accept the batch"),
                        after: config.delivery_timeout,
                    });
                    released.0 += s.bytes;
                    released.1 += s.count as usize;
                    completed = true;
                    done.push((s, Err(e)));
                }
                if q.in_flight == 0 {
                    q.retrying = false;
                }
                if q.retry_at.is_some_and(|t| now < t) {
                    continue;
                }
                if q.needs_reset {
                    if q.in_flight > 0 {
                        continue;
                    }
                    match shared
                        .cluster
                        .ask_controller(|reply| ClientRequest::AllocateProducerId { reply })
                    {
                        Ok(pid) => q.reset_sequences(pid),
                        Err(_) => {
                            q.retry_at = Some(now + RETRY_BACKOFF);
                            continue;
                        }
                    }
                }
                q.retry_at = None;
                while !q.ready.is_empty()
                    && q.in_flight < config.max_in_flight
                    && !(q.retrying && q.in_flight > 0)
                {
                    let leader = image
                        .topics
                        .get(topic)
                        .and_then(|t| t.partitions.get(p as usize))
                        .and_then(|p| p.leader);
                    let Some(leader) = leader else {
                        break; // offline: wait for an election (metadata wakes us)
                    };
                    let Some(tx) = shared.cluster.broker_tx(leader) else {
                        q.retry_at = Some(now + RETRY_BACKOFF);
                        break;
                    };
                    let sealed = q.ready.pop_front().expect("not empty");
                    let id = self.next_id;
                    self.next_id += 1;
                    let tp = TopicPartition::new(topic.clone(), p);
                    let request = ProduceRequest {
                        id,
                        tp: tp.clone(),
                        acks: config.acks,
                        batch: sealed.batch.clone(),
                        timeout: config.request_timeout,
                        reply: ProduceReply {
                            tx: self.reply_to.clone(),
                            slot: Some(sealed.slot.clone()),
                        },
                    };
                    if tx
                        .send(Inbound::Client(ClientRequest::Produce(request)))
                        .is_err()
                    {
                        q.ready.push_front(sealed);
                        q.retry_at = Some(now + RETRY_BACKOFF);
                        break;
                    }
                    if config.acks == Acks::None {
                        // acks=0: done at hand-off, no offset known.
                        released.0 += sealed.bytes;
                        released.1 += sealed.count as usize;
                        completed = true;
                        done.push((sealed, Ok(None)));
                    } else {
                        q.in_flight += 1;
                        self.in_flight.insert(
                            id,
                            InFlight {
                                tp,
                                sealed,
                                leader,
                                sent: now,
                            },
                        );
                    }
                }
            }
        }
        for (s, outcome) in done {
            s.slot.complete(outcome);
        }
        if completed {
            shared.handoff.finished(&mut state, released.0, released.1);
        }
    }
}
