//! A run of produce requests for one partition, queued one behind another, is
//! answered exactly as the same requests one at a time: the same result for each,
//! the same log, and on disk the same files after a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::test_support::broker;
use super::Broker;
use crate::config::{Acks, TopicConfig};
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{PartitionState, ProduceReply, ProduceRequest, ProduceResponse, ReplyTo};
use crate::record::{Batch, BatchBuilder, Record};
use crate::storage::tests::support::{bytes_of, read_all};
use crate::transport::ChannelTransport;

const ME: BrokerId = BrokerId(1);
const MAX_MESSAGE_BYTES: usize = 2_000;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

/// A broker with a data dir in `dir` (memory storage without), leading partition
/// `t-0` alone (replicas and ISR: itself), so that acks=all is answered at append.
fn sole_leader(dir: Option<&Path>) -> Broker {
    let mut b = broker(ME, dir, Arc::new(ChannelTransport::new()));
    let topic = TopicConfig::new(1, 1).max_message_bytes(MAX_MESSAGE_BYTES);
    b.apply_partition_state(
        PartitionState {
            tp: tp(),
            topic_id: 1,
            replicas: vec![ME],
            leader: Some(ME),
            leader_epoch: 3,
            isr: vec![ME],
            partition_epoch: 1,
            config: Arc::new(topic),
        },
        Duration::ZERO,
    );
    b
}

/// A batch of `count` records of `len` bytes; idempotent with `(pid, seq)`.
fn batch(idempotent: Option<(u64, i32)>, count: u32, len: usize) -> Batch {
    let mut builder = BatchBuilder::new(idempotent.map(|(pid, _)| pid), 1 << 16);
    for i in 0..count {
        builder.push(&Record::new(vec![i as u8; len]), 1_000);
    }
    builder.finish(idempotent.map(|(_, seq)| seq))
}

/// The requests of the run, in order, as (acks, batch): appends of two producers
/// and a plain one, a retried duplicate, a sequence gap, a batch over
/// `max.message.bytes` and a request for a partition this broker does not host.
fn requests() -> Vec<(Acks, Batch, TopicPartition)> {
    let t = tp();
    vec![
        (Acks::All, batch(Some((7, 0)), 3, 20), t.clone()),
        (Acks::Leader, batch(Some((7, 3)), 2, 20), t.clone()),
        // The first batch again (a retry after a lost answer).
        (Acks::All, batch(Some((7, 0)), 3, 20), t.clone()),
        (Acks::Leader, batch(Some((7, 9)), 1, 20), t.clone()),
        (Acks::None, batch(None, 2, 30), t.clone()),
        (Acks::Leader, batch(None, 1, 3_000), t.clone()),
        (Acks::Leader, batch(Some((8, 0)), 1, 10), t.clone()),
        (Acks::All, batch(Some((7, 5)), 4, 10), t.clone()),
        // A duplicate of a batch of this very run.
        (Acks::Leader, batch(Some((8, 0)), 1, 10), t.clone()),
        (
            Acks::Leader,
            batch(None, 1, 10),
            TopicPartition::new("u", 0),
        ),
        (Acks::All, batch(Some((8, 1)), 2, 10), t.clone()),
    ]
}

fn produce_request(
    id: u64,
    (acks, batch, tp): (Acks, Batch, TopicPartition),
) -> (ProduceRequest, Receiver<ProduceResponse>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let req = ProduceRequest {
        id,
        tp,
        topic_id: 1,
        acks,
        batch,
        timeout: Duration::from_secs(30),
        reply: ProduceReply {
            to: ReplyTo::Channel(tx),
            slot: None,
        },
    };
    (req, rx)
}

/// Each request's answer: its base offset, or its error's message, or none
/// (acks=0 is not answered).
fn answers(replies: &[Receiver<ProduceResponse>]) -> Vec<Option<Result<u64, String>>> {
    replies
        .iter()
        .map(|rx| {
            rx.try_recv()
                .ok()
                .map(|r| r.result.map_err(|e| e.to_string()))
        })
        .collect()
}

/// Sends `requests()` to `b`, as runs of `run` requests, and returns the answers
/// and the log.
fn produce(b: &mut Broker, run: usize) -> (Vec<Option<Result<u64, String>>>, Vec<Batch>) {
    let (reqs, replies): (Vec<_>, Vec<_>) = requests()
        .into_iter()
        .enumerate()
        .map(|(id, r)| produce_request(id as u64, r))
        .unzip();
    let mut reqs = reqs.into_iter().peekable();
    while reqs.peek().is_some() {
        // A run holds requests of one partition only, as the inbox gives them.
        let first = reqs.next().expect("peeked");
        let mut group = vec![first];
        while group.len() < run && reqs.peek().is_some_and(|q| q.tp == group[0].tp) {
            group.push(reqs.next().expect("peeked"));
        }
        b.produce_run(group);
    }
    let r = b.replicas.get(&tp()).expect("hosted");
    (answers(&replies), read_all(r.log.as_ref()))
}

#[test]
fn a_run_of_produce_requests_is_answered_as_one_request_at_a_time() {
    for disk in [false, true] {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let dir = |i: usize| disk.then(|| dirs[i].path());
        let (one_each, log_one_each) = produce(&mut sole_leader(dir(0)), 1);
        let (in_runs, log_in_runs) = produce(&mut sole_leader(dir(1)), usize::MAX);
        assert_eq!(in_runs, one_each, "disk: {disk}");
        assert_eq!(
            bytes_of(&log_in_runs),
            bytes_of(&log_one_each),
            "disk: {disk}"
        );
        // What Kafka's rules give each request.
        let ok = |offset| Some(Ok(offset));
        let expected_offsets = [
            ok(0),
            ok(3),
            ok(0),
            None,
            None,
            None,
            ok(7),
            ok(8),
            ok(7),
            None,
            ok(12),
        ];
        for (i, (got, want)) in one_each.iter().zip(&expected_offsets).enumerate() {
            match want {
                Some(_) => assert_eq!(got, want, "request {i}"),
                // Acks=0 (request 4) is not answered; the others fail.
                None if i == 4 => assert_eq!(got, &None, "request {i}"),
                None => assert!(matches!(got, Some(Err(_))), "request {i}: {got:?}"),
            }
        }
        assert!(matches!(&one_each[3], Some(Err(e)) if e.contains("sequence")));
        assert!(matches!(&one_each[5], Some(Err(e)) if e.contains("max.message.bytes")));
        // Appended: 3 + 2 records of producer 7, 2 plain, 1 of producer 8, 4 of
        // producer 7, 2 of producer 8.
        let bases: Vec<u64> = log_in_runs.iter().map(Batch::base_offset).collect();
        assert_eq!(bases, [0, 3, 5, 7, 8, 12]);
        if disk {
            // Restarted on its directory, the broker reads the same log back.
            let again = sole_leader(dir(1));
            let r = again.replicas.get(&tp()).expect("hosted");
            assert_eq!(bytes_of(&read_all(r.log.as_ref())), bytes_of(&log_in_runs));
        }
    }
}
