//! The producer's sender thread: seals batches whose linger ran out, sends what the
//! calling threads left (batches behind others in flight, retries), and completes,
//! retries or fails every batch on its answer.

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::controller::MetadataImage;
use crate::ids::TopicPartition;
use crate::protocol::ClientRequest;
use crate::sync::Arc;
use crate::{Error, Result};

use super::accumulator::{State, TopicIndex};
use super::dispatch::{Dispatch, InFlight};
use super::Shared;

/// Extra time past `request.timeout.ms` before a request with no answer is given up.
const REQUEST_SLACK: Duration = Duration::from_millis(500);
/// Longest sleep with nothing scheduled (metadata changes wake the thread anyway).
const IDLE: Duration = Duration::from_secs(1);

pub(crate) struct Sender {
    shared: Arc<Shared>,
    wake: Receiver<()>,
    metadata: Receiver<()>,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>, wake: Receiver<()>) -> Self {
        let metadata = shared.cluster.notify.watch();
        Sender {
            shared,
            wake,
            metadata,
        }
    }

    /// Sleeps at once when there is nothing to do, without yielding first as the
    /// brokers' inboxes do: the calling threads send what is ready themselves and
    /// a leader's thread settles the answers, so this thread's work (linger
    /// deadlines, retries, answers the leader could not settle) is rarely
    /// microseconds away. Yielding here measured no faster round trip, and under a
    /// pipelined load its yields were tens of thousands of context switches a
    /// second taken from the threads doing the work.
    pub(crate) fn run(mut self) {
        let mut next = Instant::now();
        loop {
            let timeout = next.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.wake) -> _ => {}
                recv(self.metadata) -> _ => {}
                default(timeout) => {}
            }
            match self.step() {
                Some(d) => next = d,
                None => return,
            }
        }
    }

    /// One pass under one hold of the accumulator lock: answers, requests given up
    /// on, what is ready to send, and when to look again (`None`: closed and done).
    /// One hold, not one per task: every hold is a moment a calling thread's `send`
    /// finds the lock taken and gives up its core.
    fn step(&mut self) -> Option<Instant> {
        let shared = self.shared.clone();
        let image = shared.cluster.metadata.get();
        let now = Instant::now();
        let mut state = shared.handoff.lock();
        take_answers(&shared, &mut state);
        check_in_flight(&shared, &image, &mut state, now);
        send_ready(&shared, &image, &mut state, now);
        if state.closed && state.outstanding == 0 && state.in_flight.is_empty() {
            return None;
        }
        let wanted = state.needs_answers(shared.config.linger, now);
        shared.answers.set_wanted(wanted);
        let next = next_deadline(&shared, &state, now);
        state.sender_wakes_at = Some(next);
        Some(next)
    }
}

/// When the sender must look again at the latest: a linger running out, a batch's
/// delivery timeout or retry backoff, a request's timeout.
fn next_deadline(shared: &Shared, state: &State, now: Instant) -> Instant {
    let config = &shared.config;
    let mut d = now + IDLE;
    if let Some(l) = state.next_linger_deadline(config.linger, now) {
        d = d.min(l);
    }
    for q in state.topics.values().flat_map(|t| t.partitions.iter()) {
        if let Some(by) = q.look_by(config.delivery_timeout) {
            d = d.min(by);
        }
    }
    for f in state.in_flight.values() {
        d = d.min(f.sent + config.request_timeout + REQUEST_SLACK);
    }
    d.max(now)
}

/// Settles the answers queued and sends what they free, on a leader's thread
/// whose answer the producer waits for ([`super::AnswerWake`]). Only if the
/// accumulator lock is free now (a leader never waits for a producer), and only
/// the partitions the answers free: a leader's work per answer does not grow
/// with the producer's partitions. What may block (asking the controller for a
/// producer id) and what is timed (retries, delivery timeouts) stay with the
/// sender thread, woken when it must look sooner than it planned. Leaves
/// `wanted` as it is: the sender's next pass decides it again. False: the lock
/// was taken, the sender thread must do it.
pub(super) fn settle(shared: &Shared) -> bool {
    let Some(mut state) = shared.handoff.try_lock() else {
        return false;
    };
    let config = &shared.config;
    let mut freed: Vec<(TopicIndex, u32)> = Vec::new();
    take_answers_then(shared, &mut state, |state, tp| {
        if let Some(at) = state.topics.find(&tp.topic) {
            if !freed.contains(&(at, tp.partition)) {
                freed.push((at, tp.partition));
            }
        }
    });
    let image = shared.cluster.metadata.get();
    let now = Instant::now();
    let all = state.sending_all();
    let mut dispatch = Dispatch::new(shared, &image, now);
    let mut look_by: Option<Instant> = None;
    let State {
        topics,
        in_flight,
        next_request,
        ..
    } = &mut *state;
    for (at, p) in freed {
        let (topic, t) = topics.at(at);
        let Some(q) = t.partitions.get_mut(p as usize) else {
            continue;
        };
        q.seal_if_due(now, config.linger, all, shared.producer_id);
        q.end_retry_if_idle();
        if q.retry_at.is_none() && !q.needs_reset {
            dispatch.send_queue(topic, p, q, in_flight, next_request);
        }
        look_by = look_by
            .into_iter()
            .chain(q.look_by(config.delivery_timeout))
            .min();
    }
    dispatch.finish(&mut state);
    // Closing: only the sender thread ends the producer once nothing is left.
    if state.closed || look_by.is_some_and(|d| state.sender_wakes_at.is_none_or(|at| d < at)) {
        shared.handoff.wake_sender();
    }
    true
}

/// Takes the answers leaders left and settles each (under the accumulator lock).
pub(super) fn take_answers(shared: &Shared, state: &mut State) {
    take_answers_then(shared, state, |_, _| {});
}

/// As [`take_answers`], telling `answered` the partition of each batch answered
/// before it is settled. Answers arrive in order per leader; an answer to a
/// request given up on is ignored.
fn take_answers_then(
    shared: &Shared,
    state: &mut State,
    mut answered: impl FnMut(&mut State, &TopicPartition),
) {
    let mut answers = std::mem::take(&mut state.answers);
    shared.answers.take_into(&mut answers);
    for r in answers.drain(..) {
        let Some(f) = state.in_flight.remove(&r.id) else {
            continue;
        };
        answered(state, &f.tp);
        finish(shared, state, f, r.result);
    }
    state.answers = answers;
}

/// Gives up on requests whose leader moved or died, or that had no answer in time:
/// they are retried (idempotence keeps the retry from duplicating).
fn check_in_flight(shared: &Shared, image: &MetadataImage, state: &mut State, now: Instant) {
    if state.in_flight.is_empty() {
        return;
    }
    let timeout = shared.config.request_timeout + REQUEST_SLACK;
    let lost: Vec<u64> = state
        .in_flight
        .iter()
        .filter(|(_, f)| {
            let leader = image.partition(&f.tp).and_then(|p| p.leader);
            leader != Some(f.leader)
                || !shared.cluster.is_alive(f.leader)
                || now >= f.sent + timeout
        })
        .map(|(id, _)| *id)
        .collect();
    for id in lost {
        if let Some(f) = state.in_flight.remove(&id) {
            let e = Error::NotLeader {
                topic: f.tp.topic.clone(),
                partition: f.tp.partition,
                broker: f.leader,
            };
            finish(shared, state, f, Err(e));
        }
    }
}

/// Seals batches whose linger ran out, fails those whose delivery timeout ran out
/// unsent, and sends what each partition may have in flight.
fn send_ready(shared: &Shared, image: &MetadataImage, state: &mut State, now: Instant) {
    let config = &shared.config;
    state.seal_due(now, config.linger, shared.producer_id);
    let mut dispatch = Dispatch::new(shared, image, now);
    let State {
        topics,
        in_flight,
        next_request,
        ..
    } = &mut *state;
    for (topic, t) in topics.iter_mut() {
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
                dispatch.released.0 += s.bytes;
                dispatch.released.1 += s.count as usize;
                dispatch.done.push((s, Err(e)));
            }
            q.end_retry_if_idle();
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
                        q.back_off(now);
                        continue;
                    }
                }
            }
            // Written only when it changes, as `Queue::end_retry_if_idle`.
            if q.retry_at.is_some() {
                q.retry_at = None;
            }
            dispatch.send_queue(topic, p, q, in_flight, next_request);
        }
    }
    dispatch.finish(state);
}

/// Completes, retries or fails a batch on its answer. Under the accumulator lock.
fn finish(shared: &Shared, state: &mut State, f: InFlight, result: Result<u64>) {
    // An earlier batch of the partition still awaiting its answer (only looked up
    // on the rare error path).
    let earlier_out = result.is_err()
        && state
            .in_flight
            .values()
            .any(|o| o.tp == f.tp && o.sealed.base_seq < f.sealed.base_seq);
    let Some(q) = state.queue_mut(&f.tp.topic, f.tp.partition) else {
        unreachable!("a batch in flight has its queue");
    };
    q.in_flight = q.in_flight.saturating_sub(1);
    let mut sealed = f.sealed;
    let outcome = match result {
        Ok(base) => {
            q.succeeded();
            Ok(Some(base))
        }
        Err(e) => {
            let gap = matches!(e, Error::OutOfOrderSequence { .. });
            // A gap while an earlier batch is retried or still out is expected. A
            // gap out of the blue means the leader lost records this producer wrote
            // (an unclean election): start over with a fresh producer id.
            if gap && !q.retrying && !earlier_out {
                q.needs_reset = true;
            }
            let retriable = e.is_retriable() || gap;
            // The clock only here: a success, once per batch, needs none.
            let now = Instant::now();
            if retriable && now < sealed.created + shared.config.delivery_timeout {
                sealed.last_error = Some(e);
                q.retrying = true;
                q.back_off(now);
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
        .finished(state, sealed.bytes, sealed.count as usize);
    // Twice batch.size: a batch of one record above it is not kept.
    let config = &shared.config;
    state.recycle(
        sealed.batch,
        sealed.bytes,
        2 * config.batch_size,
        config.buffer_memory,
    );
}
