//! The workloads of the peer comparison, shared by `benches/peers.rs` (criterion) and
//! `examples/compare.rs` (one table and a plot). Every case implements [`Case`]: run
//! exactly `records` records and return the time they took, with any housekeeping
//! (deleting a full topic, replacing a full log) done outside the timed part.
//!
//! Record shape everywhere: a 100-byte value ([`VALUE_LEN`]), no key, no headers.
//! Batch shape wherever there is batching: 16 KiB (Kafka's default `batch.size`),
//! that is [`RECORDS_PER_BATCH`] = 132 records.
//!
//! The cases:
//!
//! - [`Fanout`]: `ceiling_fanout3` of `benches/acks.rs`, copied verbatim in behaviour
//!   (see that file's doc comment on why it is the fair ceiling).
//! - [`Pipelined`]: replog's normal producer, many records in flight (`linger.ms` 5,
//!   `batch.size` 16 KiB); any broker count, topic layout, `acks`, memory or disk.
//! - [`Writers`]: N threads, each `send(..).wait()` in a loop on one shared producer:
//!   one outstanding record per writer, like an openraft client awaiting each
//!   `client_write`.
//! - [`TaskWriters`]: the same on N tokio tasks awaiting each [`Delivery`], the
//!   executor and shape of the openraft writers.
//! - [`OpenRaft`]: a 3-node openraft 0.9 cluster on `openraft-memstore`, wired as
//!   openraft's `cluster_benchmark` wires it (a router that calls the target node's
//!   `Raft` handle directly, leader 0), N tokio tasks each awaiting `client_write`.
//! - [`CommitLogAppend`]: the `commitlog` crate, one thread appending 132-record
//!   batches to a log on disk.
//! - [`latency`]: acks=all end to end (send → a consumer sees it) at a steady rate.
#![allow(dead_code)] // each including target uses a different subset

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use replog::{
    Acks, Cluster, ConsumerConfig, Delivery, OffsetReset, Producer, ProducerConfig, Record, Topic,
    TopicConfig, TopicPartition,
};

/// Value size of every record.
pub const VALUE_LEN: usize = 100;
/// Kafka's default `batch.size`, used by every batching case.
pub const BATCH_BYTES: usize = 16 * 1024;
/// replog's per-record framing with no key and no headers: length, timestamp, key
/// length, value length, header count.
const RECORD_FRAMING: usize = 4 + 8 + 4 + 4 + 4;
/// Records in one full batch: as many 124-byte records as fit in `batch.size`.
pub const RECORDS_PER_BATCH: usize = BATCH_BYTES / (RECORD_FRAMING + VALUE_LEN);
/// Kafka's default `buffer.memory` (32 MiB) in batches: the ceiling's channel bound.
const CHANNEL_BATCHES: usize = (32 << 20) / BATCH_BYTES;
/// A ceiling replica clears its `Vec` past this size (keeping the capacity).
const CEILING_VEC_BYTES: usize = 64 << 20;
/// A memory-storage topic is deleted and created again after this many records
/// (untimed), as in `benches/acks.rs`: memory logs keep everything.
const ROTATE_RECORDS: u64 = 500_000;
/// A log on disk is replaced after this many bytes (untimed), to bound the footprint.
const ROTATE_DISK_BYTES: u64 = 512 << 20;
/// [`ROTATE_DISK_BYTES`] in records (of [`VALUE_LEN`]-byte values).
const ROTATE_DISK_RECORDS: u64 = ROTATE_DISK_BYTES / VALUE_LEN as u64;
/// `linger.ms` of the pipelined producer (Kafka 4.0's default).
pub const LINGER: Duration = Duration::from_millis(5);

/// The 100-byte value every case writes: one payload reused for every record, as
/// Kafka's `ProducerPerformance` reuses one `byte[]`. Static, so that neither side
/// pays for making values: replog's cases hand `&VALUE[..]` to `Record::new`
/// (`Bytes::from_static`, built inline, no reference count), the others borrow
/// [`value`].
pub static VALUE: [u8; VALUE_LEN] = [0xAB; VALUE_LEN];

/// [`VALUE`] as `Bytes`, for the cases that borrow it. (Cloning a static `Bytes`
/// for each record instead goes through its vtable, and the caller then waited on
/// the copy it wrote: 3–5 ns per record that no user has to pay.)
pub fn value() -> Bytes {
    Bytes::from_static(&VALUE)
}

/// A benchmark case: writes exactly `records` records and returns the time they took.
pub trait Case {
    /// Timed: `records` records written and confirmed as the case defines it.
    fn run(&mut self, records: u64) -> Duration;
}

// ---------------------------------------------------------------------------------
// The ceiling (benches/acks.rs `ceiling_fanout3`)
// ---------------------------------------------------------------------------------

/// What the ceiling's sending thread hands to each replica thread.
enum Msg {
    Batch(Bytes),
    /// Answer once everything before it is copied.
    Sync(Sender<()>),
}

/// The ceiling: the sending thread encodes records as replog does into 16 KiB
/// batches; three threads copy every batch into their own `Vec`. A run ends when all
/// three have confirmed they copied everything.
pub struct Fanout {
    replicas: Vec<(Sender<Msg>, JoinHandle<()>)>,
    batch: BytesMut,
    in_batch: usize,
    value: Bytes,
    /// Batches handed over, oldest first: each one's buffer is written again once
    /// every replica let go of it, as replog's producer reuses answered batches'
    /// buffers. A fresh allocation per batch made the ceiling depend on the heap's
    /// state: with an idle replog cluster in the same process it ran 10–50% slower,
    /// which flattered the ratios measured against it.
    sent: VecDeque<Bytes>,
}

impl Fanout {
    /// `threads` replica threads (3 for `ceiling_fanout3`).
    pub fn new(threads: usize) -> Fanout {
        let replicas = (0..threads)
            .map(|i| {
                let (tx, rx) = crossbeam_channel::bounded::<Msg>(CHANNEL_BATCHES);
                let h = std::thread::Builder::new()
                    .name(format!("ceiling-replica-{i}"))
                    .spawn(move || ceiling_replica(rx))
                    .expect("spawn");
                (tx, h)
            })
            .collect();
        Fanout {
            replicas,
            batch: BytesMut::with_capacity(BATCH_BYTES),
            in_batch: 0,
            value: value(),
            sent: VecDeque::new(),
        }
    }

    /// Encodes one record the way replog's batch builder does (no key, no headers).
    fn push(&mut self, value: &Bytes, timestamp: u64) {
        self.batch
            .put_u32_le((RECORD_FRAMING - 4 + value.len()) as u32);
        self.batch.put_u64_le(timestamp);
        self.batch.put_i32_le(-1);
        self.batch.put_u32_le(value.len() as u32);
        self.batch.put_slice(value);
        self.batch.put_u32_le(0);
        self.in_batch += 1;
        if self.in_batch == RECORDS_PER_BATCH {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if self.in_batch == 0 {
            return;
        }
        let next = self.spare_buffer();
        let full = std::mem::replace(&mut self.batch, next);
        let bytes = full.freeze();
        for (tx, _) in &self.replicas {
            tx.send(Msg::Batch(bytes.clone())).expect("replica alive");
        }
        self.sent.push_back(bytes);
        self.in_batch = 0;
    }

    /// The oldest handed-over buffer if every replica is done with it, else a new one.
    /// At most the channel's bound plus one are kept: `buffer.memory`'s worth.
    fn spare_buffer(&mut self) -> BytesMut {
        if let Some(oldest) = self.sent.pop_front() {
            match oldest.try_into_mut() {
                Ok(mut b) if b.capacity() >= BATCH_BYTES => {
                    b.clear();
                    return b;
                }
                Ok(_) => {}
                Err(shared) if self.sent.len() < CHANNEL_BATCHES => self.sent.push_front(shared),
                Err(_) => {}
            }
        }
        BytesMut::with_capacity(BATCH_BYTES)
    }

    /// Sends the partial batch and waits until every replica copied everything.
    fn flush(&mut self) {
        self.send_batch();
        let (tx, rx) = crossbeam_channel::bounded(self.replicas.len());
        for (r, _) in &self.replicas {
            r.send(Msg::Sync(tx.clone())).expect("replica alive");
        }
        for _ in 0..self.replicas.len() {
            rx.recv().expect("replica answers");
        }
    }
}

impl Case for Fanout {
    fn run(&mut self, records: u64) -> Duration {
        let value = self.value.clone();
        let start = Instant::now();
        for _ in 0..records {
            self.push(&value, now_ms());
        }
        self.flush();
        start.elapsed()
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        for (tx, h) in self.replicas.drain(..) {
            drop(tx);
            let _ = h.join();
        }
    }
}

fn ceiling_replica(rx: Receiver<Msg>) {
    let mut log: Vec<u8> = Vec::with_capacity(CEILING_VEC_BYTES + BATCH_BYTES);
    for m in rx {
        match m {
            Msg::Batch(b) => {
                if log.len() + b.len() > CEILING_VEC_BYTES {
                    log.clear();
                }
                log.extend_from_slice(&b);
            }
            Msg::Sync(done) => {
                let _ = done.send(());
            }
        }
    }
    std::hint::black_box(&log);
}

/// A record timestamp, from the clock replog's producer reads once per record.
fn now_ms() -> u64 {
    replog::bench_support::now_ms()
}

// ---------------------------------------------------------------------------------
// replog
// ---------------------------------------------------------------------------------

/// A replog cluster with one topic that is replaced now and then (untimed) to bound
/// memory or disk.
struct Topics {
    cluster: Cluster,
    data_dir: Option<std::path::PathBuf>,
    config: TopicConfig,
    name: String,
    generation: u32,
    written: u64,
    rotate_after: u64,
}

impl Topics {
    fn new(brokers: u32, config: TopicConfig, data_dir: Option<&Path>) -> Topics {
        let mut b = Cluster::builder().brokers(brokers);
        let rotate_after = match data_dir {
            Some(dir) => {
                b = b.data_dir(dir);
                ROTATE_DISK_RECORDS
            }
            None => ROTATE_RECORDS,
        };
        let mut t = Topics {
            cluster: b.build().expect("cluster"),
            data_dir: data_dir.map(Path::to_path_buf),
            config,
            name: String::new(),
            generation: 0,
            written: 0,
            rotate_after,
        };
        t.new_topic();
        t
    }

    fn new_topic(&mut self) {
        if !self.name.is_empty() {
            self.cluster.delete_topic(&self.name).expect("delete topic");
            self.wait_files_gone();
        }
        self.generation += 1;
        self.name = format!("peers-{}", self.generation);
        let t = self
            .cluster
            .create_topic(&self.name, self.config.clone())
            .expect("create topic");
        let rf = self.config.replication_factor() as usize;
        for p in t.partitions() {
            assert!(
                p.leader().is_some(),
                "{}-{} has no leader",
                self.name,
                p.id()
            );
            assert_eq!(p.isr().len(), rf, "{}-{} starts in sync", self.name, p.id());
        }
        self.wait_leaders_applied(&t);
        self.written = 0;
    }

    /// Waits until the leader of every partition of `topic` has taken up its
    /// leadership. The brokers do that in the background, after the controller
    /// has answered, and before it they remove the deleted topic's replicas (each
    /// broker takes the controller's messages in order): with 1000 partitions that
    /// is tens of milliseconds of broker time, which belongs to the untimed
    /// rotation, not to the next timed part.
    fn wait_leaders_applied(&self, topic: &Topic) {
        let partitions = topic.partitions();
        let applied = || {
            partitions.iter().all(|p| {
                p.leader()
                    .and_then(|l| p.replica(l))
                    .is_some_and(|r| r.is_leader())
            })
        };
        wait_until(applied, || format!("{}: leaders not in place", self.name));
    }

    /// Waits until the brokers removed the deleted topic's directories, which they
    /// do in the background: freeing its files is part of the untimed rotation, as
    /// the commitlog case removes its old log before its timed part too.
    fn wait_files_gone(&self) {
        let Some(dir) = &self.data_dir else {
            return;
        };
        let prefix = format!("{}-", self.name);
        let left = || {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|broker| std::fs::read_dir(broker.path()).ok())
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        };
        wait_until(|| !left(), || format!("{} still on disk", self.name));
    }

    /// [`in_parts`] for the topic: `timed` gets the topic's name and the part's
    /// record count.
    fn in_parts(&mut self, records: u64, mut timed: impl FnMut(&str, u64) -> Duration) -> Duration {
        in_parts(self, records, |t, part| timed(&t.name, part))
    }
}

/// Polls `done` every millisecond until it holds; panics with `what` and the
/// time waited if it does not within 60 s.
fn wait_until(done: impl Fn() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{} after 60 s", what());
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Rotates for Topics {
    fn capacity(&self) -> u64 {
        self.rotate_after
    }

    fn written(&mut self) -> &mut u64 {
        &mut self.written
    }

    fn rotate(&mut self) {
        self.new_topic();
    }
}

/// A log or topic that is replaced by an empty one (untimed) once it holds
/// [`capacity`](Rotates::capacity) records, to bound the footprint.
trait Rotates {
    /// Records the current one holds before it is replaced.
    fn capacity(&self) -> u64;
    /// Records written to the current one.
    fn written(&mut self) -> &mut u64;
    /// Replaces the current one with an empty one (`written` back to 0).
    fn rotate(&mut self);
}

/// Runs `timed` for `records` records in all, in parts that each fit in `r`'s
/// current log or topic: between parts, untimed, a fresh one replaces one that
/// holds enough. `timed` gets the part's record count and returns the part's time;
/// the sum is returned.
fn in_parts<R: Rotates>(
    r: &mut R,
    records: u64,
    mut timed: impl FnMut(&mut R, u64) -> Duration,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = records;
    while left > 0 {
        if *r.written() >= r.capacity() {
            r.rotate();
        }
        let part = left.min(r.capacity() - *r.written());
        elapsed += timed(r, part);
        *r.written() += part;
        left -= part;
    }
    elapsed
}

impl Drop for Topics {
    fn drop(&mut self) {
        let _ = self.cluster.clone().shutdown();
    }
}

/// replog's normal producer: unkeyed records handed to `send` as fast as it takes
/// them (sticky partitioner, `linger.ms` 5, `batch.size` 16 KiB, up to 5 batches in
/// flight per partition), then `flush` and every delivery checked with
/// `Delivery::wait_offset` (acks 1/all). As
/// `benches/acks.rs` `produce`. With [`in_calls_of`](Pipelined::in_calls_of) the
/// records go to `send_all` in calls of that many instead.
pub struct Pipelined {
    topics: Topics,
    producer: Producer,
    acks: Acks,
    /// `Some(n)`: records go to `Producer::send_all` in calls of `n`.
    calls_of: Option<usize>,
    deliveries: Vec<Delivery>,
    _dir: Option<tempfile::TempDir>,
}

impl Pipelined {
    /// `brokers` brokers with memory storage, one topic of `config`, `acks`.
    pub fn memory(brokers: u32, config: TopicConfig, acks: Acks) -> Pipelined {
        Pipelined::build(brokers, config, acks, None)
    }

    /// As [`Pipelined::memory`], with segment files in a fresh temporary directory
    /// (`FsyncPolicy::Never`, the default: writes reach the OS, no fsync).
    pub fn disk(brokers: u32, config: TopicConfig, acks: Acks) -> Pipelined {
        let dir = tempfile::tempdir().expect("tempdir");
        Pipelined::build(brokers, config, acks, Some(dir))
    }

    fn build(
        brokers: u32,
        config: TopicConfig,
        acks: Acks,
        dir: Option<tempfile::TempDir>,
    ) -> Pipelined {
        let topics = Topics::new(brokers, config, dir.as_ref().map(|d| d.path()));
        let producer = topics
            .cluster
            .producer(
                ProducerConfig::new()
                    .acks(acks)
                    .linger(LINGER)
                    .batch_size(BATCH_BYTES),
            )
            .expect("producer");
        Pipelined {
            topics,
            producer,
            acks,
            calls_of: None,
            deliveries: Vec::new(),
            _dir: dir,
        }
    }

    /// Records go to [`Producer::send_all`] in calls of `n` instead of one `send`
    /// each.
    pub fn in_calls_of(mut self, n: usize) -> Pipelined {
        self.calls_of = Some(n);
        self
    }
}

impl Case for Pipelined {
    fn run(&mut self, records: u64) -> Duration {
        let check = self.acks != Acks::None;
        // Closures borrow only the fields they use: `topics` apart from the rest.
        self.topics.in_parts(records, |topic, records| {
            if check {
                self.deliveries.reserve(records as usize);
            }
            let start = Instant::now();
            match self.calls_of {
                Some(n) => {
                    let mut left = records as usize;
                    while left > 0 {
                        let call = left.min(n);
                        let ds = self
                            .producer
                            .send_all(topic, (0..call).map(|_| Record::new(&VALUE[..])));
                        if check {
                            self.deliveries.extend(ds);
                        }
                        left -= call;
                    }
                }
                None => {
                    for _ in 0..records {
                        let d = self.producer.send(topic, Record::new(&VALUE[..]));
                        if check {
                            self.deliveries.push(d);
                        }
                    }
                }
            }
            self.producer.flush().expect("flush");
            // `wait_offset`, not `wait`: the same check without a `String` of the
            // topic's name allocated and freed for every record.
            for d in self.deliveries.drain(..) {
                let offset = d.wait_offset().expect("an acknowledged record");
                assert!(offset.is_some(), "acks 1/all report an offset");
            }
            start.elapsed()
        })
    }
}

/// N writer threads on one shared producer, each `send(..).wait()` in a loop: one
/// record outstanding per writer. `linger.ms` 0 (the default): a record goes out at
/// once, and records of writers that arrive while a request is in flight share the
/// next batch.
pub struct Writers {
    topics: Topics,
    producer: Producer,
    writers: usize,
}

impl Writers {
    /// 3 brokers with memory storage, a topic of `partitions` partitions with
    /// replication factor 3 and `min.insync.replicas` 2, `acks=all`.
    pub fn new(writers: usize, partitions: u32) -> Writers {
        let config = TopicConfig::new(partitions, 3).min_insync_replicas(2);
        let topics = Topics::new(3, config, None);
        let producer = topics
            .cluster
            .producer(ProducerConfig::new().acks(Acks::All))
            .expect("producer");
        Writers {
            topics,
            producer,
            writers,
        }
    }
}

impl Case for Writers {
    fn run(&mut self, records: u64) -> Duration {
        // Closures borrow only the fields they use: `topics` apart from the rest.
        self.topics.in_parts(records, |topic, records| {
            let tickets = AtomicU64::new(records);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..self.writers {
                    s.spawn(|| {
                        while take_ticket(&tickets) {
                            let meta = self
                                .producer
                                .send(topic, Record::new(&VALUE[..]))
                                .wait()
                                .expect("an acknowledged record");
                            debug_assert!(meta.offset.is_some());
                        }
                    });
                }
            });
            start.elapsed()
        })
    }
}

/// N tokio tasks on one shared producer, each awaiting `send(..)` (a [`Delivery`] is a
/// `Future`) in a loop: the same executor and the same shape as the [`OpenRaft`]
/// writers, one record outstanding per task. Same cluster and producer as
/// [`Writers`].
pub struct TaskWriters {
    rt: tokio::runtime::Runtime,
    topics: Topics,
    producer: Producer,
    writers: usize,
}

impl TaskWriters {
    /// `writers` tasks on a multi-threaded tokio runtime with `worker_threads`
    /// workers (as [`OpenRaft::new`]); 3 brokers, `partitions` partitions, RF 3,
    /// `min.insync.replicas` 2, `acks=all`.
    pub fn new(writers: usize, partitions: u32, worker_threads: usize) -> TaskWriters {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .enable_all()
            .thread_name("replog-bench")
            .build()
            .expect("tokio runtime");
        let w = Writers::new(writers, partitions);
        TaskWriters {
            rt,
            topics: w.topics,
            producer: w.producer,
            writers,
        }
    }
}

impl Case for TaskWriters {
    fn run(&mut self, records: u64) -> Duration {
        self.topics.in_parts(records, |topic, records| {
            let tickets = Arc::new(AtomicU64::new(records));
            let topic: Arc<str> = topic.into();
            let start = Instant::now();
            self.rt.block_on(async {
                let mut tasks = Vec::with_capacity(self.writers);
                for _ in 0..self.writers {
                    let tickets = tickets.clone();
                    let producer = self.producer.clone();
                    let topic = topic.clone();
                    tasks.push(tokio::spawn(async move {
                        while take_ticket(&tickets) {
                            let meta = producer
                                .send(&topic, Record::new(&VALUE[..]))
                                .await
                                .expect("an acknowledged record");
                            debug_assert!(meta.offset.is_some());
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("writer task");
                }
            });
            start.elapsed()
        })
    }
}

/// Takes one record to write from the shared count; false when none is left.
fn take_ticket(tickets: &AtomicU64) -> bool {
    tickets
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

// ---------------------------------------------------------------------------------
// openraft 0.9 + openraft-memstore
// ---------------------------------------------------------------------------------

mod raft {
    use super::*;
    use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft_memstore::{MemNodeId, TypeConfig};

    pub(super) type MemRaft = openraft::Raft<TypeConfig>;

    /// The in-memory network of openraft's `cluster_benchmark`: every node's `Raft`
    /// handle in a table; an RPC is a direct call on the target's handle.
    #[derive(Clone, Default)]
    pub(super) struct Router {
        pub(super) table: Arc<Mutex<BTreeMap<MemNodeId, MemRaft>>>,
    }

    impl RaftNetworkFactory<TypeConfig> for Router {
        type Network = Network;

        async fn new_client(&mut self, target: MemNodeId, _node: &()) -> Network {
            let raft = self.table.lock().unwrap()[&target].clone();
            Network { target, raft }
        }
    }

    pub(super) struct Network {
        target: MemNodeId,
        raft: MemRaft,
    }

    type Rpc<T, E = openraft::error::Infallible> =
        Result<T, RPCError<MemNodeId, (), RaftError<MemNodeId, E>>>;

    impl RaftNetwork<TypeConfig> for Network {
        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<TypeConfig>,
            _option: RPCOption,
        ) -> Rpc<AppendEntriesResponse<MemNodeId>> {
            self.raft
                .append_entries(rpc)
                .await
                .map_err(|e| RemoteError::new(self.target, e).into())
        }

        async fn install_snapshot(
            &mut self,
            rpc: InstallSnapshotRequest<TypeConfig>,
            _option: RPCOption,
        ) -> Rpc<InstallSnapshotResponse<MemNodeId>, InstallSnapshotError> {
            self.raft
                .install_snapshot(rpc)
                .await
                .map_err(|e| RemoteError::new(self.target, e).into())
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<MemNodeId>,
            _option: RPCOption,
        ) -> Rpc<VoteResponse<MemNodeId>> {
            self.raft
                .vote(rpc)
                .await
                .map_err(|e| RemoteError::new(self.target, e).into())
        }
    }
}

/// A 3-node openraft cluster (memstore, in-memory router, node 0 the leader) on a
/// multi-threaded tokio runtime; N tasks each awaiting `client_write` in a loop.
///
/// Config as openraft's `cluster_benchmark`: election timeout 200–2000 ms,
/// `purge_batch_size` 1024, the rest default (heartbeat 50 ms, a snapshot every 5000
/// logs, which lets the memstore purge its log). Each write is a memstore
/// `ClientRequest` whose `status` is the 100-byte value (as a `String`) and whose
/// `client` is the writer's id; memstore stores each log entry serialized as JSON and
/// applies it to a `HashMap` (that is openraft-memstore's cost, part of the peer).
pub struct OpenRaft {
    rt: tokio::runtime::Runtime,
    rafts: Vec<raft::MemRaft>,
    writers: usize,
    serial: Arc<AtomicU64>,
}

impl OpenRaft {
    /// `writers` concurrent writers; `worker_threads` tokio workers (openraft's
    /// benchmark uses 32 on big machines; [`OpenRaft::default_workers`] is the core
    /// count here).
    pub fn new(writers: usize, worker_threads: usize) -> OpenRaft {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .enable_all()
            .thread_name("openraft-bench")
            .build()
            .expect("tokio runtime");
        let rafts = rt.block_on(async {
            let config = Arc::new(
                openraft::Config {
                    election_timeout_min: 200,
                    election_timeout_max: 2000,
                    purge_batch_size: 1024,
                    ..Default::default()
                }
                .validate()
                .expect("openraft config"),
            );
            let router = raft::Router::default();
            let members: BTreeSet<u64> = [0, 1, 2].into();
            let mut rafts = Vec::new();
            for id in &members {
                let store = openraft_memstore::MemStore::new_async().await;
                let (log, sm) = openraft::storage::Adaptor::new(store);
                let r = openraft::Raft::new(*id, config.clone(), router.clone(), log, sm)
                    .await
                    .expect("raft node");
                router.table.lock().unwrap().insert(*id, r.clone());
                rafts.push(r);
            }
            rafts[0].initialize(members).await.expect("initialize");
            for r in &rafts {
                r.wait(Some(Duration::from_secs(10)))
                    .applied_index(Some(1), "membership applied")
                    .await
                    .expect("cluster up");
            }
            rafts
        });
        assert_eq!(
            rafts[0].metrics().borrow().current_leader,
            Some(0),
            "node 0 leads"
        );
        OpenRaft {
            rt,
            rafts,
            writers,
            serial: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The core count of this machine.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

impl Case for OpenRaft {
    fn run(&mut self, records: u64) -> Duration {
        let tickets = Arc::new(AtomicU64::new(records));
        let status = String::from_utf8(vec![b'a'; VALUE_LEN]).expect("ascii");
        let start = Instant::now();
        self.rt.block_on(async {
            let mut tasks = Vec::with_capacity(self.writers);
            for w in 0..self.writers {
                let leader = self.rafts[0].clone();
                let tickets = tickets.clone();
                let serial = self.serial.clone();
                let status = status.clone();
                tasks.push(tokio::spawn(async move {
                    let client = format!("w{w}");
                    while take_ticket(&tickets) {
                        let req = openraft_memstore::ClientRequest {
                            client: client.clone(),
                            serial: serial.fetch_add(1, Ordering::Relaxed),
                            status: status.clone(),
                        };
                        leader.client_write(req).await.expect("client_write");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("writer task");
            }
        });
        start.elapsed()
    }
}

impl Drop for OpenRaft {
    fn drop(&mut self) {
        let rafts = std::mem::take(&mut self.rafts);
        self.rt.block_on(async {
            for r in rafts {
                let _ = r.shutdown().await;
            }
        });
    }
}

// ---------------------------------------------------------------------------------
// commitlog
// ---------------------------------------------------------------------------------

/// The `commitlog` crate (0.2): one thread encodes [`RECORDS_PER_BATCH`] records of
/// 100 B into a `MessageBuf` (its framing and CRC32C) and appends the batch to a log
/// on disk with default options (1 GB segments, an index entry per message, no
/// fsync: `flush` is never called, as replog's `FsyncPolicy::Never`).
pub struct CommitLogAppend {
    dir: tempfile::TempDir,
    log: Option<commitlog::CommitLog>,
    generation: u32,
    /// Records in the current log.
    written: u64,
    value: Bytes,
}

impl CommitLogAppend {
    /// A log in a fresh temporary directory.
    pub fn new() -> CommitLogAppend {
        let mut c = CommitLogAppend {
            dir: tempfile::tempdir().expect("tempdir"),
            log: None,
            generation: 0,
            written: 0,
            value: value(),
        };
        c.new_log();
        c
    }

    fn new_log(&mut self) {
        if self.log.take().is_some() {
            let old = self.dir.path().join(format!("log-{}", self.generation));
            std::fs::remove_dir_all(old).expect("remove old log");
        }
        self.generation += 1;
        let path = self.dir.path().join(format!("log-{}", self.generation));
        let opts = commitlog::LogOptions::new(path);
        self.log = Some(commitlog::CommitLog::new(opts).expect("commitlog"));
        self.written = 0;
    }
}

impl Default for CommitLogAppend {
    fn default() -> Self {
        Self::new()
    }
}

impl Rotates for CommitLogAppend {
    fn capacity(&self) -> u64 {
        ROTATE_DISK_RECORDS
    }

    fn written(&mut self) -> &mut u64 {
        &mut self.written
    }

    fn rotate(&mut self) {
        self.new_log();
    }
}

impl Case for CommitLogAppend {
    fn run(&mut self, records: u64) -> Duration {
        // In parts that each fit in the current log, as replog's topics rotate.
        in_parts(self, records, |c, part| {
            let log = c.log.as_mut().expect("open log");
            let mut buf = commitlog::message::MessageBuf::default();
            let mut todo = part;
            let start = Instant::now();
            while todo > 0 {
                let n = todo.min(RECORDS_PER_BATCH as u64);
                buf.clear();
                for _ in 0..n {
                    buf.push(&c.value).expect("push");
                }
                log.append(&mut buf).expect("append");
                todo -= n;
            }
            start.elapsed()
        })
    }
}

// ---------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------

/// A throughput figure: `records` in `elapsed`, with the slowest and fastest slice.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Records written in the measured runs.
    pub records: u64,
    /// Time the measured runs took.
    pub elapsed: Duration,
    /// records/s of the slowest measured slice.
    pub min: f64,
    /// records/s of the fastest measured slice.
    pub max: f64,
}

impl Rate {
    /// Records per second over all measured slices.
    pub fn per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// Megabytes (10^6 B) of values per second.
    pub fn mb_per_sec(&self) -> f64 {
        self.per_sec() * VALUE_LEN as f64 / 1e6
    }

    fn add(&mut self, records: u64, elapsed: Duration) {
        let r = records as f64 / elapsed.as_secs_f64();
        if self.records == 0 {
            self.min = r;
            self.max = r;
        }
        self.min = self.min.min(r);
        self.max = self.max.max(r);
        self.records += records;
        self.elapsed += elapsed;
    }
}

/// Length of one measured slice.
const SLICE: Duration = Duration::from_millis(250);

/// Measures `cases` side by side so that a change in the machine's load falls on all
/// of them alike: each is first run unmeasured for about `warm_up` (which also sizes
/// its slice to about 250 ms), then the cases take turns, one slice each, until every
/// case has been measured for `measure`.
pub fn measure_interleaved(
    cases: &mut [Box<dyn Case>],
    warm_up: Duration,
    measure: Duration,
) -> Vec<Rate> {
    let sizes: Vec<u64> = cases
        .iter_mut()
        .map(|case| {
            let mut n = 1000u64;
            let start = Instant::now();
            while start.elapsed() < warm_up {
                let t = case.run(n);
                let per_record = t.as_nanos() / u128::from(n);
                n = (SLICE.as_nanos() / per_record.max(1)).clamp(100, 4_000_000) as u64;
            }
            n
        })
        .collect();
    let mut rates = vec![
        Rate {
            records: 0,
            elapsed: Duration::ZERO,
            min: 0.0,
            max: 0.0,
        };
        cases.len()
    ];
    while rates.iter().any(|r| r.elapsed < measure) {
        for (i, case) in cases.iter_mut().enumerate() {
            if rates[i].elapsed < measure {
                let t = case.run(sizes[i]);
                rates[i].add(sizes[i], t);
            }
        }
    }
    rates
}

/// End-to-end latencies (send → a consumer sees the record), sorted.
pub struct Latencies {
    /// Every sample after the warm-up, ascending.
    pub samples: Vec<Duration>,
    /// The send rate reached (records/s).
    pub achieved_rate: f64,
    /// The whole process's CPU time over the run (warm-up included) divided by its
    /// wall time, in cores; `None` where `/proc/self/stat` is not there to read.
    pub process_cores: Option<f64>,
}

impl Latencies {
    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.samples.len();
        self.samples[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
    }
}

/// acks=all end to end at a steady `rate` records/s for `duration` (after `warm_up`,
/// whose records are not counted): 3 brokers, memory storage, one partition with
/// replication factor 3 and `min.insync.replicas` 2, the producer's defaults
/// (`acks=all`, `linger.ms` 0), one consumer assigned to the partition polling in its
/// own thread. Each value carries its send time (ns since the start) in its first 8
/// bytes; a sample is the time from just before `send` to the consumer's `poll`
/// returning it (the record is visible to consumers once the high watermark passes
/// it, i.e. once every ISR member has it). Sends are paced on a schedule of one per
/// 1/`rate` s (a late sender catches up; it never waits to send).
pub fn latency(rate: u64, warm_up: Duration, duration: Duration) -> Latencies {
    let cluster = Cluster::builder().brokers(3).build().expect("cluster");
    let topic = "latency";
    cluster
        .create_topic(topic, TopicConfig::new(1, 3).min_insync_replicas(2))
        .expect("topic");
    let producer = cluster
        .producer(ProducerConfig::new().acks(Acks::All))
        .expect("producer");
    let consumer = cluster
        .consumer(ConsumerConfig::new().auto_offset_reset(OffsetReset::Earliest))
        .expect("consumer");
    consumer
        .assign(&[TopicPartition::new(topic, 0)])
        .expect("assign");

    let warm_records = (rate as f64 * warm_up.as_secs_f64()) as u64;
    let total = warm_records + (rate as f64 * duration.as_secs_f64()) as u64;
    let cpu_before = process_cpu();
    let origin = Instant::now();
    let done = AtomicBool::new(false);
    let (samples, send_elapsed) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut samples = Vec::with_capacity(total as usize);
            let mut seen = 0u64;
            let deadline_after_done = Duration::from_secs(10);
            let mut done_at: Option<Instant> = None;
            while seen < total {
                for r in consumer.poll(Duration::from_millis(100)).expect("poll") {
                    let now = origin.elapsed();
                    let sent = u64::from_le_bytes(r.value[..8].try_into().expect("8 bytes"));
                    let seq = u64::from_le_bytes(r.value[8..16].try_into().expect("8 bytes"));
                    if seq >= warm_records {
                        samples.push(now.saturating_sub(Duration::from_nanos(sent)));
                    }
                    seen += 1;
                }
                if done.load(Ordering::Relaxed) {
                    let at = *done_at.get_or_insert_with(Instant::now);
                    assert!(
                        at.elapsed() < deadline_after_done,
                        "consumer saw {seen} of {total} records"
                    );
                }
            }
            samples
        });
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut deliveries = Vec::with_capacity(total as usize);
        let mut value = vec![0xAB; VALUE_LEN];
        let start = Instant::now();
        for i in 0..total {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let sent = origin.elapsed().as_nanos() as u64;
            value[..8].copy_from_slice(&sent.to_le_bytes());
            value[8..16].copy_from_slice(&i.to_le_bytes());
            deliveries.push(producer.send_to(topic, 0, Record::new(value.clone())));
        }
        let send_elapsed = start.elapsed();
        for d in deliveries {
            d.wait().expect("an acknowledged record");
        }
        done.store(true, Ordering::Relaxed);
        (reader.join().expect("reader"), send_elapsed)
    });
    let process_cores = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| (after - before).as_secs_f64() / origin.elapsed().as_secs_f64());
    let mut samples = samples;
    samples.sort_unstable();
    drop(consumer);
    drop(producer);
    let _ = cluster.shutdown();
    Latencies {
        samples,
        achieved_rate: total as f64 / send_elapsed.as_secs_f64(),
        process_cores,
    }
}

/// CPU time of the whole process so far (every thread, user and system), from
/// `/proc/self/stat` (Linux; its clock ticks are USER_HZ, 100 per second).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 12th and 13th of them.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}
