//! Storage across restarts: reopening a data dir, SIGKILL, torn tails, flipped
//! bytes (rule 9: corrupt bytes are never served, and heal from the other replicas).

mod common;

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use replog::*;

/// The segment files of `tp` on `broker`, oldest first.
fn segment_files(dir: &Path, broker: BrokerId, tp: &str) -> Vec<PathBuf> {
    let d = dir.join(format!("broker-{}", broker.0)).join(tp);
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// The active (newest) segment file of `tp` on `broker`.
fn segment_file(dir: &Path, broker: BrokerId, tp: &str) -> PathBuf {
    segment_files(dir, broker, tp)
        .pop()
        .expect("a segment file")
}

/// Three brokers on `dir`, leaders staying put, and topic `t` (1 partition, RF 3,
/// min.insync 2) configured by `config`.
fn disk_cluster(
    dir: &Path,
    config: impl FnOnce(TopicConfig) -> TopicConfig,
) -> (Cluster, Partition) {
    let c = Cluster::builder()
        .data_dir(dir)
        .auto_leader_rebalance(false)
        .build()
        .unwrap();
    let t = c
        .create_topic("t", config(TopicConfig::new(1, 3).min_insync_replicas(2)))
        .unwrap();
    let p = t.partition(0).unwrap();
    (c, p)
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5a]).unwrap();
}

fn produce(c: &Cluster, topic: &str, partition: u32, n: usize) -> Vec<(u32, u64, bytes::Bytes)> {
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let values = (0..n).map(|i| format!("{topic}-{partition}-{i:06}"));
    send_then_wait(&prod, topic, partition, values)
}

/// Sends `values` to `partition` of `topic`, every one before waiting for any;
/// returns each record's partition, offset and value.
fn send_then_wait(
    prod: &Producer,
    topic: &str,
    partition: u32,
    values: impl Iterator<Item = String>,
) -> Vec<(u32, u64, bytes::Bytes)> {
    let ds: Vec<_> = values
        .map(|v| {
            let v = bytes::Bytes::from(v);
            (v.clone(), prod.send_to(topic, partition, Record::new(v)))
        })
        .collect();
    ds.into_iter()
        .map(|(v, d)| {
            let m = d.wait().unwrap();
            (m.partition, m.offset.unwrap(), v)
        })
        .collect()
}

#[test]
fn reopening_a_data_dir_after_a_clean_shutdown_brings_back_topics_data_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let (acked, epochs) = {
        let c = Cluster::builder().data_dir(dir.path()).build().unwrap();
        let t = c
            .create_topic(
                "t",
                TopicConfig::new(2, 3)
                    .min_insync_replicas(2)
                    .segment_bytes(4096),
            )
            .unwrap();
        let mut acked = produce(&c, "t", 0, 300);
        acked.extend(produce(&c, "t", 1, 300));
        let epochs: Vec<u32> = t.partitions().iter().map(|p| p.leader_epoch()).collect();
        c.shutdown().unwrap();
        (acked, epochs)
    };
    let c = Cluster::builder().data_dir(dir.path()).build().unwrap();
    assert_eq!(c.topics(), vec!["t"]);
    let t = c.topic("t").unwrap();
    assert_eq!(t.partition_count(), 2);
    for (p, e) in t.partitions().iter().zip(epochs) {
        assert!(
            p.leader_epoch() > e,
            "a reopened partition gets a new leader epoch"
        );
        // Brokers register one by one; the others rejoin as they catch up.
        wait_until("every replica back in the ISR", || p.isr().len() == 3);
    }
    all_acked_present_once(&c, "t", &acked);
    // And it goes on from where it was.
    let more = produce(&c, "t", 0, 1);
    assert_eq!(more[0].1, 300);
}

/// Four threads keep many small batches in flight to one partition on disk: the
/// leader appends the produce requests queued behind each other in one write, the
/// followers each fetch's batches in one. Every acknowledged record is there once,
/// each thread's records in the order it sent them, the same on every replica, and
/// again after a restart.
#[test]
fn pipelined_writes_from_many_threads_land_once_and_in_order_on_disk_and_after_a_restart() {
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let acked = {
        // Small segments: writes of several batches cross rolls.
        let (c, p) = disk_cluster(dir.path(), |t| t.segment_bytes(16 * 1024));
        let producer = c
            .producer(
                ProducerConfig::new()
                    .batch_size(1024)
                    .linger(Duration::from_millis(1)),
            )
            .unwrap();
        let acked: Vec<Vec<(u32, u64, bytes::Bytes)>> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let producer = producer.clone();
                    s.spawn(move || {
                        let values = (0..PER_WRITER).map(|i| format!("w{w}-{i:05}"));
                        send_then_wait(&producer, "t", 0, values)
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for records in &acked {
            assert!(
                records.windows(2).all(|w| w[0].1 < w[1].1),
                "one thread's records keep their order"
            );
        }
        let acked: Vec<_> = acked.into_iter().flatten().collect();
        all_acked_present_once(&c, "t", &acked);
        let n = WRITERS * PER_WRITER;
        wait_until("every replica to hold every record", || {
            p.replicas()
                .into_iter()
                .all(|b| p.replica(b).unwrap().log_end_offset() == Some(n as u64))
        });
        let read = |b: BrokerId| p.replica(b).unwrap().read(0, n).unwrap();
        let leader = read(p.leader().unwrap());
        assert_eq!(leader.len(), n);
        for b in p.replicas() {
            assert_eq!(read(b), leader, "replica on {b}");
        }
        c.shutdown().unwrap();
        acked
    };
    let c = Cluster::builder().data_dir(dir.path()).build().unwrap();
    all_acked_present_once(&c, "t", &acked);
}

#[test]
fn a_second_live_cluster_on_a_data_dir_gets_data_dir_locked_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::builder().data_dir(dir.path()).build().unwrap();
    c.create_topic("t", TopicConfig::new(1, 3)).unwrap();
    // Each replica writes its files as its broker learns of the topic: compare
    // against the settled directory, not one caught halfway.
    wait_until("every replica has its epoch checkpoint", || {
        walk(dir.path())
            .iter()
            .filter(|(p, _)| p.ends_with("leader-epoch-checkpoint"))
            .count()
            == 3
    });
    let before: Vec<_> = walk(dir.path());
    let err = Cluster::builder().data_dir(dir.path()).build().unwrap_err();
    assert!(matches!(err, Error::DataDirLocked { .. }), "{err}");
    // The live cluster may append meanwhile; the refused one created, removed or
    // cut nothing.
    let after = walk(dir.path());
    let names = |v: &[(PathBuf, u64)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    for ((_, a), (_, b)) in after.iter().zip(&before) {
        assert!(a >= b, "a file shrank");
    }
    c.shutdown().unwrap();
    Cluster::builder().data_dir(dir.path()).build().unwrap();
}

/// Every file under `dir` with its size. A live cluster replaces checkpoint files
/// through a `.tmp` file and a rename: those come and go, so they are left out, as
/// is a file that vanished between the listing and its size.
fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "tmp") {
            continue;
        } else if let Ok(meta) = e.metadata() {
            out.push((p.clone(), meta.len()));
        }
    }
    out.sort();
    out
}

/// The child side of the SIGKILL test: writes acks=all records forever, printing
/// each acknowledged one. Run only by the parent test.
#[test]
#[ignore = "child process of a_sigkilled_process_loses_no_acknowledged_write"]
fn sigkill_child() {
    let Ok(dir) = std::env::var("REPLOG_SIGKILL_DIR") else {
        return;
    };
    let c = Cluster::builder().data_dir(&dir).build().unwrap();
    c.create_topic("t", TopicConfig::new(2, 3).min_insync_replicas(2))
        .unwrap();
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let v = format!("v{i}");
        let m = prod.send("t", Record::new(v.clone())).wait().unwrap();
        writeln!(out, "ACK {} {} {v}", m.partition, m.offset.unwrap()).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_sigkilled_process_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REPLOG_SIGKILL_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        acked.push((
            f[0].parse::<u32>().unwrap(),
            f[1].parse::<u64>().unwrap(),
            bytes::Bytes::from(f[2].to_string()),
        ));
        if acked.len() == 500 {
            child.kill().unwrap(); // SIGKILL: no destructor, no flush
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 500);
    let c = Cluster::builder().data_dir(dir.path()).build().unwrap();
    all_acked_present_once(&c, "t", &acked);
    replicas_agree_below_hw(&c, "t");
}

/// Kills a follower, damages its segment file with `damage`, restarts it, and
/// checks that it comes back byte for byte equal to the leader.
fn follower_heals_after(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = disk_cluster(dir.path(), |t| t);
    produce(&c, "t", 0, 200);
    let f = p.replicas()[2];
    wait_until("the follower to hold everything", || {
        p.replica(f).unwrap().log_end_offset() == Some(200)
    });
    c.kill_broker(f).unwrap();
    damage(&segment_file(dir.path(), f, "t-0"));
    c.restart_broker(f).unwrap();
    wait_until("the damaged follower to rejoin the ISR", || {
        p.isr().contains(&f)
    });
    let leader = p.leader().unwrap();
    let a = p.replica(leader).unwrap().read(0, 1000).unwrap();
    let b = p.replica(f).unwrap().read(0, 1000).unwrap();
    assert_eq!(a.len(), 200);
    assert_eq!(a, b);
}

#[test]
fn a_torn_tail_in_one_replica_heals_from_the_others() {
    follower_heals_after(|seg| {
        let len = std::fs::metadata(seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(len - 37).unwrap();
    });
}

#[test]
fn a_flipped_byte_in_one_replica_heals_from_the_others() {
    follower_heals_after(|seg| flip_byte(seg, 100));
}

#[test]
fn a_leader_that_finds_a_bad_crc_gives_up_leadership_and_corrupt_bytes_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = disk_cluster(dir.path(), |t| t);
    let acked = produce(&c, "t", 0, 200);
    wait_until("every replica to hold everything", || {
        p.replicas()
            .iter()
            .all(|b| p.replica(*b).unwrap().log_end_offset() == Some(200))
    });
    let leader = p.leader().unwrap();
    flip_byte(&segment_file(dir.path(), leader, "t-0"), 100);
    // A consumer reading from the start meets the bad batch at the leader.
    let consumer = consumer_from_start(&c, "t");
    let got = consume_n(&consumer, 200);
    assert_eq!(got.len(), 200);
    for (r, (_, o, v)) in got.iter().zip(&acked) {
        assert_eq!(
            (&r.offset, &r.value),
            (o, v),
            "a corrupt or wrong record was served"
        );
    }
    assert_ne!(p.leader(), Some(leader), "the corrupt leader kept leading");
    // It cut its log at the bad batch, refetched, and is back in sync.
    wait_until("the old leader to heal and rejoin", || {
        p.isr().contains(&leader)
    });
    let healed = p.replica(leader).unwrap().read(0, 1000).unwrap();
    assert_eq!(healed.len(), 200);
    replicas_agree_below_hw(&c, "t");
}

/// `n` records to partition 0 of `t` in batches of about 512 bytes (many per
/// 4 KiB segment), every one acknowledged.
fn produce_in_small_batches(c: &Cluster, n: usize) {
    let prod = c.producer(ProducerConfig::new().batch_size(512)).unwrap();
    let ds: Vec<_> = (0..n)
        .map(|i| prod.send_to("t", 0, Record::new(format!("t-0-{i:06}"))))
        .collect();
    for d in ds {
        d.wait().unwrap();
    }
}

/// The replicas on `a` and `b` hold the same `n` records.
fn assert_replicas_equal(p: &Partition, a: BrokerId, b: BrokerId, n: usize) {
    let ra = p.replica(a).unwrap().read(0, 1000).unwrap();
    let rb = p.replica(b).unwrap().read(0, 1000).unwrap();
    assert_eq!(ra.len(), n);
    assert_eq!(ra, rb);
}

#[test]
fn a_follower_that_finds_rot_below_its_hw_leaves_the_isr_until_it_has_refetched() {
    // Rot in an old (inactive) segment is not scanned at open: it is found when the
    // range is read. The follower cuts there, and since it lost committed records it
    // must not stay electable until it has fetched them again (rule 9 with KIP-966).
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = disk_cluster(dir.path(), |t| t.segment_bytes(4096));
    // Small batches, so segments of 4 KiB roll many times whatever the timing.
    produce_in_small_batches(&c, 300);
    let f = p.replicas()[2];
    wait_until("the follower to hold everything", || {
        p.replica(f).unwrap().log_end_offset() == Some(300)
    });
    let shrinks = c.metrics().isr_shrinks;
    // The follower's oldest segment rots while it runs.
    let segments = segment_files(dir.path(), f, "t-0");
    assert!(segments.len() > 2, "the test needs inactive segments");
    flip_byte(&segments[0], 100);
    // A read meets the bad batch: an error, never the bytes.
    let err = p.replica(f).unwrap().read(0, 1000).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    wait_until("the damaged follower to leave the ISR", || {
        c.metrics().isr_shrinks > shrinks
    });
    wait_until("the follower to refetch and rejoin", || {
        p.isr().contains(&f)
    });
    let leader = p.leader().unwrap();
    assert_replicas_equal(&p, leader, f, 300);
}

/// A transport that drops every `ReplicaDamaged` report while `dropping` is set,
/// counting what it dropped.
#[derive(Debug, Default)]
struct LosesDamageReports {
    inner: ChannelTransport,
    dropping: std::sync::atomic::AtomicBool,
    dropped: std::sync::atomic::AtomicU64,
}

impl Transport for LosesDamageReports {
    fn register(&self, node: NodeId, mailbox: Mailbox) {
        self.inner.register(node, mailbox)
    }
    fn unregister(&self, node: NodeId) {
        self.inner.unregister(node)
    }
    fn send(&self, envelope: Envelope) {
        use std::sync::atomic::Ordering::SeqCst;
        if envelope.kind() == "ReplicaDamaged" && self.dropping.load(SeqCst) {
            self.dropped.fetch_add(1, SeqCst);
            return;
        }
        self.inner.send(envelope)
    }
}

#[test]
fn rule9_a_lost_damage_report_is_sent_again_until_the_controller_answers() {
    // A follower that cut committed records must not stay electable until it has
    // them again. Its report to the controller crosses a lossy network: it is sent
    // again with every heartbeat while the records are still missing.
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let lossy = std::sync::Arc::new(LosesDamageReports::default());
    let net = FaultTransport::new(lossy.clone());
    let c = Cluster::builder()
        .data_dir(dir.path())
        .auto_leader_rebalance(false)
        .transport(net.clone())
        // Long enough that no lag-based shrink can stand in for the report.
        .replica_lag_time_max(Duration::from_secs(60))
        .build()
        .unwrap();
    let t = c
        .create_topic(
            "t",
            TopicConfig::new(1, 3)
                .min_insync_replicas(2)
                .segment_bytes(4096),
        )
        .unwrap();
    let p = t.partition(0).unwrap();
    produce_in_small_batches(&c, 300);
    let (leader, f) = (p.leader().unwrap(), p.replicas()[2]);
    assert_ne!(leader, f);
    wait_until("the follower to hold everything", || {
        p.replica(f).unwrap().log_end_offset() == Some(300)
    });
    // The follower cannot refetch, and its first reports are lost.
    lossy.dropping.store(true, SeqCst);
    net.cut(NodeId::Broker(f), NodeId::Broker(leader));
    let segments = segment_files(dir.path(), f, "t-0");
    assert!(segments.len() > 2, "the test needs inactive segments");
    flip_byte(&segments[0], 100);
    let err = p.replica(f).unwrap().read(0, 1000).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    wait_until("a damage report to be lost", || {
        lossy.dropped.load(SeqCst) > 0
    });
    assert!(p.isr().contains(&f), "nothing told the controller yet");
    // Kept on disk too: a restart before the refetch reports the loss again.
    let marker = dir
        .path()
        .join(format!("broker-{}", f.0))
        .join("t-0")
        .join("unreported-loss");
    wait_until("the loss to be marked on disk", || marker.exists());
    lossy.dropping.store(false, SeqCst);
    wait_until(
        "a report sent again to take the follower out of the ISR",
        || !p.isr().contains(&f),
    );
    // Still cut off, so not healed: only the controller's answer clears the marker
    // (and stops the repeats).
    wait_until("the acknowledged loss to be cleared on disk", || {
        !marker.exists()
    });
    // Healed once it can fetch again: back in the ISR with every record.
    net.restore(NodeId::Broker(f), NodeId::Broker(leader));
    wait_until("the follower to refetch and rejoin", || {
        p.isr().contains(&f)
    });
    assert_replicas_equal(&p, leader, f, 300);
}

/// Files under `dir` this process still holds open after they were unlinked.
fn open_deleted_files(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(&dir) && t.ends_with(" (deleted)"))
        .collect()
}

#[test]
fn retention_removes_old_segments_on_every_replica_and_closes_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = disk_cluster(dir.path(), |t| {
        t.segment_bytes(1024).retention_bytes(Some(2048))
    });
    // One record per batch, so that segments stay near segment.bytes.
    let prod = c.producer(ProducerConfig::new()).unwrap();
    let mut end = 0;
    for i in 0..300 {
        let v = format!("record-{i:04}-{}", "x".repeat(50));
        end = prod
            .send("t", Record::new(v))
            .wait()
            .unwrap()
            .offset
            .unwrap()
            + 1;
    }
    // A file may go between listing and reading its size: it counts as gone.
    let bytes_on = |b| -> u64 {
        segment_files(dir.path(), b, "t-0")
            .iter()
            .map(|f| f.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    // Retention runs once a second on each broker, so the writes can outlast a
    // pass: wait for one that came after them. No more than one segment beyond
    // retention.bytes stays (the active one may be partly full).
    wait_until(
        "retention to leave every replica at most one segment above retention.bytes",
        || {
            c.brokers().into_iter().all(|b| {
                p.replica(b).is_some_and(|r| {
                    r.log_start_offset().is_some_and(|s| s > 0) && r.log_end_offset() == Some(end)
                }) && bytes_on(b) <= 2048 + 2 * 1024
            })
        },
    );
    for b in c.brokers() {
        // And at least retention.bytes stays: a segment goes only if the rest
        // still holds that much.
        let bytes = bytes_on(b);
        assert!(bytes >= 2048, "{b:?} keeps only {bytes} bytes");
    }
    wait_until("the removed segments' files to be closed", || {
        open_deleted_files(dir.path()).is_empty()
    });
    // What is left reads back from the log start.
    let r = p.replica(p.leader().unwrap()).unwrap();
    let read = r.read(r.log_start_offset().unwrap(), usize::MAX).unwrap();
    assert_eq!(read.last().map(|m| m.offset), Some(end - 1));
}
