//! A leader's answers to follower fetches: a partition with nothing new for the
//! follower is left out of the answer (as Kafka's incremental fetch sessions do),
//! a parked fetch is woken by data in a partition its follower replicates, not by
//! data elsewhere, and a fetch for a leadership the broker has not heard of yet
//! waits for the news instead of failing.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::test_support::{broker, FETCH_WAIT_MAX};
use super::Broker;
use crate::config::{Acks, TopicConfig};
use crate::ids::{BrokerId, NodeId, TopicPartition};
use crate::inbox::InboxReceiver;
use crate::protocol::{
    FetchPartition, Inbound, Mailbox, Message, PartitionState, ProduceReply, ProduceRequest,
    ProduceResponse, ReplyTo,
};
use crate::record::{BatchBuilder, Record};
use crate::transport::{ChannelTransport, Transport};

const ME: BrokerId = BrokerId(1);
const LEADER_EPOCH: u32 = 4;

fn tp(p: u32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Broker 1 hosting nothing yet, and the inboxes of brokers 2 and 3 (where its
/// answers go).
fn bare() -> (Broker, [InboxReceiver<Inbound>; 2]) {
    let net = Arc::new(ChannelTransport::new());
    let followers = [BrokerId(2), BrokerId(3)].map(|b| {
        let (tx, rx) = crate::inbox::inbox();
        net.register(NodeId::Broker(b), Mailbox { tx });
        rx
    });
    (broker(ME, None, net), followers)
}

/// The controller's word on `t-{p}` (one of `n` partitions): `replicas`, all in
/// sync, led by `leader` in `leader_epoch`.
fn state(
    p: u32,
    n: u32,
    replicas: &[BrokerId],
    leader: BrokerId,
    leader_epoch: u32,
) -> PartitionState {
    PartitionState {
        tp: tp(p),
        topic_id: 1,
        replicas: replicas.to_vec(),
        leader: Some(leader),
        leader_epoch,
        isr: replicas.to_vec(),
        partition_epoch: leader_epoch,
        config: Arc::new(TopicConfig::new(n, replicas.len() as u32)),
    }
}

/// Broker 1 leading `t-0` … `t-{n-1}`, partition `p` with replicas and ISR
/// `[1, follower_of(p)]`, and the inboxes of brokers 2 and 3.
fn leader(n: u32, follower_of: impl Fn(u32) -> BrokerId) -> (Broker, [InboxReceiver<Inbound>; 2]) {
    let (mut b, followers) = bare();
    for p in 0..n {
        let replicas = [ME, follower_of(p)];
        b.apply_partition_state(state(p, n, &replicas, ME, LEADER_EPOCH), Duration::ZERO);
    }
    (b, followers)
}

/// Appends `records` records to `t-{p}` with acks=1.
fn produce(b: &mut Broker, p: u32, records: u32) -> Receiver<ProduceResponse> {
    let mut builder = BatchBuilder::new(None, 1 << 12);
    for i in 0..records {
        builder.push(&Record::new(vec![i as u8; 10]), 1_000);
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    b.produce(
        ProduceRequest {
            id: u64::from(p),
            tp: tp(p),
            topic_id: 1,
            acks: Acks::Leader,
            batch: builder.finish(None),
            timeout: Duration::from_secs(30),
            reply: ProduceReply {
                to: ReplyTo::Channel(tx),
                slot: None,
            },
        },
        Duration::ZERO,
    );
    rx
}

/// What a follower at `fetch_offset`, knowing `high_watermark` and log start 0,
/// asks of `t-{p}`.
fn at(p: u32, fetch_offset: u64, high_watermark: u64) -> FetchPartition {
    FetchPartition {
        tp: Arc::new(tp(p)),
        topic_id: 1,
        fetch_offset,
        leader_epoch: LEADER_EPOCH,
        last_fetched_epoch: (fetch_offset > 0).then_some(LEADER_EPOCH),
        high_watermark,
        log_start: 0,
    }
}

/// `follower` fetches `partitions` at `now`, waiting for news until `deadline`.
fn fetch(
    b: &mut Broker,
    follower: BrokerId,
    id: u64,
    partitions: Vec<FetchPartition>,
    now: Duration,
    deadline: Duration,
) {
    b.handle_replica_fetch((follower, 1), id, 1 << 20, partitions, deadline, now);
}

/// A fetch answer: its request id and, per partition it carries, (partition,
/// high watermark, records).
type Answer = (u64, Vec<(u32, u64, u32)>);

/// The answer waiting in `inbox`.
fn answer(inbox: &InboxReceiver<Inbound>) -> Option<Answer> {
    let Ok(Inbound::Peer(env)) = inbox.try_recv() else {
        return None;
    };
    let Message::FetchReply {
        request_id,
        partitions,
    } = env.message
    else {
        panic!("not a fetch answer: {}", env.kind());
    };
    let parts = partitions
        .into_iter()
        .map(|r| {
            let d = r.result.expect("no error");
            let records = d.batches.iter().map(|b| b.record_count()).sum();
            (r.tp.partition, d.high_watermark, records)
        })
        .collect();
    Some((request_id, parts))
}

#[test]
fn a_fetch_answer_leaves_out_partitions_with_nothing_new_for_the_follower() {
    let (mut b, [to_2, _]) = leader(3, |_| BrokerId(2));
    let acked = produce(&mut b, 1, 3);
    assert_eq!(acked.try_recv().expect("acks=1").result.ok(), Some(0));
    // Broker 2 fetches all three partitions, answered at once (deadline now):
    // t-0 and t-2 empty with high watermark 0 known, t-1 from `offset` knowing
    // high watermark `hw`.
    let ask = |b: &mut Broker, id, offset, hw| {
        let now = Duration::ZERO;
        let partitions = vec![at(0, 0, 0), at(1, offset, hw), at(2, 0, 0)];
        fetch(b, BrokerId(2), id, partitions, now, now);
        answer(&to_2)
    };
    // t-1's records go; t-0 and t-2 have nothing the follower lacks.
    assert_eq!(ask(&mut b, 1, 0, 0), Some((1, vec![(1, 0, 3)])));
    // The follower has t-1's records: the high watermark moves to 3, which it
    // does not know yet, so t-1 is in the answer without records.
    assert_eq!(ask(&mut b, 2, 3, 0), Some((2, vec![(1, 3, 0)])));
    // Now it knows: an answer with no partition at all.
    assert_eq!(ask(&mut b, 3, 3, 3), Some((3, vec![])));
    // A follower behind on the high watermark is told, even with nothing to read.
    assert_eq!(ask(&mut b, 4, 3, 1), Some((4, vec![(1, 3, 0)])));
}

#[test]
fn a_parked_fetch_wakes_for_data_in_a_partition_its_follower_replicates_only() {
    // Broker 2 follows t-0 and t-1, broker 3 follows t-2 and t-3.
    let (mut b, [to_2, to_3]) = leader(4, |p| BrokerId(2 + p / 2));
    let now = Duration::ZERO;
    let deadline = now + FETCH_WAIT_MAX;
    // Both fetches find nothing new and park until the deadline.
    fetch(
        &mut b,
        BrokerId(2),
        1,
        vec![at(0, 0, 0), at(1, 0, 0)],
        now,
        deadline,
    );
    fetch(
        &mut b,
        BrokerId(3),
        2,
        vec![at(2, 0, 0), at(3, 0, 0)],
        now,
        deadline,
    );
    b.serve_parked(now);
    assert_eq!(answer(&to_2), None, "nothing new: parked");
    assert_eq!(answer(&to_3), None, "nothing new: parked");
    // Data for broker 3's t-3 answers its fetch and leaves broker 2's parked.
    let acked = produce(&mut b, 3, 2);
    assert!(acked.try_recv().is_ok());
    b.serve_parked(now);
    assert_eq!(answer(&to_3), Some((2, vec![(3, 0, 2)])));
    assert_eq!(answer(&to_2), None, "t-3 is not broker 2's: still parked");
    // Then data for t-1 answers broker 2's.
    let acked = produce(&mut b, 1, 1);
    assert!(acked.try_recv().is_ok());
    b.serve_parked(now);
    assert_eq!(answer(&to_2), Some((1, vec![(1, 0, 1)])));
    // The follower has t-3's records: the HW moves to 2. That alone does not cut
    // the wait short; the deadline answers with it, and nothing else.
    fetch(
        &mut b,
        BrokerId(3),
        3,
        vec![at(2, 0, 0), at(3, 2, 0)],
        now,
        deadline,
    );
    b.serve_parked(now);
    assert_eq!(answer(&to_3), None);
    b.serve_parked(deadline);
    assert_eq!(answer(&to_3), Some((3, vec![(3, 2, 0)])));
}

#[test]
fn a_parked_fetch_of_many_partitions_answers_with_every_change_since_it_came() {
    // Broker 2 follows all 40 partitions: a parked fetch is then looked at
    // through the partitions that changed, not all 40 each round.
    let n = 40;
    let (mut b, [to_2, _]) = leader(n, |_| BrokerId(2));
    let now = Duration::ZERO;
    let deadline = now + FETCH_WAIT_MAX;
    let acked = produce(&mut b, 5, 3);
    assert!(acked.try_recv().is_ok());
    let all = |at_5: u64| {
        (0..n)
            .map(|p| at(p, if p == 5 { at_5 } else { 0 }, 0))
            .collect()
    };
    fetch(&mut b, BrokerId(2), 1, all(0), now, deadline);
    assert_eq!(answer(&to_2), Some((1, vec![(5, 0, 3)])), "data: at once");
    // The follower has t-5's records: its HW moves to 3. Not news on its own:
    // the fetch waits, round after round.
    fetch(&mut b, BrokerId(2), 2, all(3), now, deadline);
    for _ in 0..3 {
        b.serve_parked(now);
        assert_eq!(answer(&to_2), None);
    }
    // Data in t-17 is: the answer carries it and the HW that moved rounds ago.
    let acked = produce(&mut b, 17, 2);
    assert!(acked.try_recv().is_ok());
    b.serve_parked(now);
    assert_eq!(answer(&to_2), Some((2, vec![(5, 3, 0), (17, 0, 2)])));
}

#[test]
fn a_fetch_for_a_leadership_not_yet_heard_of_waits_for_the_news_instead_of_failing() {
    // Broker 2 heard first that broker 1 leads in epoch 5. Broker 1 follows broker
    // 3 in epoch 4 for t-0, and has not heard of t-1 at all (just created). A
    // failed fetch would make broker 2 back off before it asks again, delaying
    // every acks=all write behind it (failover).
    let (mut b, [to_2, _]) = bare();
    let replicas = [ME, BrokerId(2), BrokerId(3)];
    b.apply_partition_state(state(0, 2, &replicas, BrokerId(3), 4), Duration::ZERO);
    let now = Duration::ZERO;
    let deadline = now + FETCH_WAIT_MAX;
    let newer = |p| FetchPartition {
        leader_epoch: 5,
        ..at(p, 0, 0)
    };
    fetch(
        &mut b,
        BrokerId(2),
        1,
        vec![newer(0), newer(1)],
        now,
        deadline,
    );
    b.serve_parked(now);
    assert!(to_2.try_recv().is_err(), "no answer, and no error: parked");
    // The news arrives; records written in the new epoch wake the fetch.
    for p in 0..2 {
        b.apply_partition_state(state(p, 2, &replicas, ME, 5), now);
    }
    b.serve_parked(now);
    assert_eq!(answer(&to_2), None, "still nothing new");
    for p in 0..2 {
        assert!(produce(&mut b, p, 2).try_recv().is_ok());
    }
    b.serve_parked(now);
    assert_eq!(answer(&to_2), Some((1, vec![(0, 0, 2), (1, 0, 2)])));
    // A fetch whose leadership the broker never hears of gets an answer at its
    // deadline that leaves the partition out: no error, the follower asks again.
    let unheard = |p| FetchPartition {
        leader_epoch: 6,
        ..at(p, 2, 0)
    };
    fetch(&mut b, BrokerId(2), 2, vec![unheard(0)], now, deadline);
    b.serve_parked(now);
    assert_eq!(answer(&to_2), None);
    b.serve_parked(deadline);
    assert_eq!(answer(&to_2), Some((2, vec![])));
}

#[test]
fn a_fetch_that_waited_for_the_news_counts_the_followers_position_once_it_arrives() {
    // Broker 1 leads t-0 in epoch 4 with broker 2 in sync; three records are
    // written, not yet committed. Broker 2 has them, heard of epoch 5 first and
    // fetches from its end.
    let (mut b, [to_2, _]) = bare();
    let replicas = [ME, BrokerId(2)];
    b.apply_partition_state(state(0, 1, &replicas, ME, 4), Duration::ZERO);
    assert!(produce(&mut b, 0, 3).try_recv().is_ok());
    let hw = |b: &Broker| b.replicas[&tp(0)].high_watermark();
    let now = Duration::ZERO;
    let fetch_at_end = FetchPartition {
        leader_epoch: 5,
        last_fetched_epoch: Some(4),
        ..at(0, 3, 0)
    };
    fetch(
        &mut b,
        BrokerId(2),
        1,
        vec![fetch_at_end],
        now,
        now + FETCH_WAIT_MAX,
    );
    b.serve_parked(now);
    assert_eq!(answer(&to_2), None);
    assert_eq!(hw(&b), 0);
    // Once broker 1 hears of epoch 5, the waiting fetch counts: broker 2 has
    // everything, so the records are committed now, without another round trip
    // or the fetch's deadline. As for any follower, the new high watermark alone
    // does not cut its wait short: the deadline answers with it.
    b.apply_partition_state(state(0, 1, &replicas, ME, 5), now);
    b.serve_parked(now);
    assert_eq!(hw(&b), 3);
    assert_eq!(answer(&to_2), None);
    b.serve_parked(now + FETCH_WAIT_MAX);
    assert_eq!(answer(&to_2), Some((1, vec![(0, 3, 0)])));
}
