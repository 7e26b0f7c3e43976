//! The persisted metadata log: the controller's [`MetadataRecord`]s, appended in
//! order to one file, read back in full on open.
//!
//! # Format
//!
//! The file `metadata.log` in the controller's directory, little-endian throughout:
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `RPLGMETA` |
//! | 4 | format version, 1 |
//!
//! then frames, one per record:
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | payload length `n` (at most [`MAX_RECORD_BYTES`]) |
//! | 4 | CRC32 (crc32fast, IEEE) of the payload |
//! | `n` | payload: a tag byte, then the record's fields |
//!
//! Payloads: strings are a u32 byte length and UTF-8; lists a u32 count and the
//! items; an `Option` a 0/1 byte then the value; broker ids u32. Tags:
//!
//! | tag | record | fields |
//! | --- | --- | --- |
//! | 1 | TopicCreated | name, config, assignments (list of lists of broker ids) |
//! | 2 | TopicDeleted | name |
//! | 3 | PartitionChanged | topic, partition u32, leader Option, leader epoch u32, ISR list, partition epoch u32 |
//! | 4 | ProducerIdsAllocated | next u64 |
//! | 5 | ReplicasIneligible | topic, partition u32, broker list |
//!
//! A config is partitions u32, replication factor u32, min ISR u32, unclean
//! election u8, max message bytes u64, segment bytes u64, retention bytes
//! `Option<u64>`, retention `Option<(secs u64, nanos u32)>`.
//!
//! # Recovery
//!
//! Open reads every frame in order and stops at the first one that is short, longer
//! than [`MAX_RECORD_BYTES`], or fails its CRC: that frame and everything after it
//! is a torn (or damaged) tail, cut off the file before anything is appended. A
//! frame whose CRC holds but whose payload does not decode was written whole by a
//! different format: open refuses with [`Error::Corrupt`] rather than drop metadata.
//!
//! # Durability
//!
//! `append` hands the bytes to the OS at once (a killed process loses nothing
//! appended); `sync` fsyncs them (the machine may go too).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::MetadataRecord;
use crate::config::TopicConfig;
use crate::ids::{BrokerId, TopicPartition};
use crate::{Error, Result};

/// The log's file name inside the controller's directory.
pub(crate) const FILE_NAME: &str = "metadata.log";
/// Magic and version at the start of the file.
const HEADER: &[u8; 12] = b"RPLGMETA\x01\x00\x00\x00";
/// Length and CRC before each payload.
const FRAME_HEADER: usize = 8;
/// The largest payload accepted; a larger length is a damaged tail. (A topic of
/// 100,000 partitions with RF 5 needs about 2.4 MB.)
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

const TAG_TOPIC_CREATED: u8 = 1;
const TAG_TOPIC_DELETED: u8 = 2;
const TAG_PARTITION_CHANGED: u8 = 3;
const TAG_PRODUCER_IDS: u8 = 4;
const TAG_REPLICAS_INELIGIBLE: u8 = 5;

/// The open metadata log, positioned to append after the last intact record.
#[derive(Debug)]
pub(crate) struct MetadataLog {
    path: PathBuf,
    file: File,
    /// Bytes of intact content; appends go here.
    len: u64,
}

impl MetadataLog {
    /// Opens (creating if needed) the log in `dir` and reads back every intact
    /// record, cutting a torn or damaged tail.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the directory or file cannot be used; [`Error::Corrupt`]
    /// when the file is not a replog metadata log of this version, or a whole frame
    /// does not decode.
    pub(crate) fn open(dir: &Path) -> Result<(MetadataLog, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(FILE_NAME);
        let io = |e| Error::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;

        if bytes.len() < HEADER.len() {
            if !HEADER.starts_with(&bytes) {
                return Err(not_ours(&path));
            }
            // New, or torn while the header was written: nothing was ever recorded.
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(HEADER).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_dir(dir)?;
            let log = MetadataLog {
                path,
                file,
                len: HEADER.len() as u64,
            };
            return Ok((log, Vec::new()));
        }
        if &bytes[..HEADER.len()] != HEADER {
            return Err(not_ours(&path));
        }

        let mut records = Vec::new();
        let mut pos = HEADER.len();
        while let Some(payload) = frame_at(&bytes, pos) {
            let record = decode(payload).map_err(|reason| Error::Corrupt {
                location: format!("{} at byte {pos}", path.display()),
                offset: None,
                reason: format!(
                    "a record with a valid CRC does not decode ({reason}); the file was \
                     written by another version of replog"
                ),
            })?;
            records.push(record);
            pos += FRAME_HEADER + payload.len();
        }
        if pos < bytes.len() {
            // Cut the torn tail now, durably, so later appends are not hidden behind it.
            file.set_len(pos as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(pos as u64)).map_err(io)?;
        let log = MetadataLog {
            path,
            file,
            len: pos as u64,
        };
        Ok((log, records))
    }

    /// Appends `records`, handing them to the OS at once (no fsync: see [`sync`]).
    ///
    /// [`sync`]: MetadataLog::sync
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the write fails; the file is cut back to its previous end
    /// so that no half-written frame hides later appends.
    pub(crate) fn append(&mut self, records: &[MetadataRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            encode_frame(r, &mut buf);
        }
        if let Err(e) = self.file.write_all(&buf) {
            // Best effort: if even this fails, the next open cuts the torn frame.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(Error::io(&self.path, e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// fsyncs everything appended so far.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the fsync fails.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

fn not_ours(path: &Path) -> Error {
    Error::corrupt(
        path.display().to_string(),
        "the file does not start with the replog metadata log header (version 1); move \
         it away or point data_dir elsewhere",
    )
}

/// Makes a newly created file's directory entry durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The payload of the intact frame at `pos`, or `None` if it is short, too long or
/// fails its CRC (the tail starts there).
fn frame_at(bytes: &[u8], pos: usize) -> Option<&[u8]> {
    let header = bytes.get(pos..pos + FRAME_HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let start = pos + FRAME_HEADER;
    let payload = bytes.get(start..start + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Appends one frame (length, CRC, payload) to `buf`.
fn encode_frame(record: &MetadataRecord, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    encode(record, buf);
    let len = buf.len() - start - FRAME_HEADER;
    assert!(
        len <= MAX_RECORD_BYTES,
        "metadata record of {len} bytes exceeds {MAX_RECORD_BYTES}"
    );
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

// ---- encoding ----

fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}
fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}
fn put_len(buf: &mut Vec<u8>, n: usize) {
    put_u32(buf, u32::try_from(n).expect("metadata lengths fit in u32"));
}
fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}
fn put_brokers(buf: &mut Vec<u8>, brokers: &[BrokerId]) {
    put_len(buf, brokers.len());
    for b in brokers {
        put_u32(buf, b.0);
    }
}
fn put_tp(buf: &mut Vec<u8>, tp: &TopicPartition) {
    put_str(buf, &tp.topic);
    put_u32(buf, tp.partition);
}

fn put_config(buf: &mut Vec<u8>, c: &TopicConfig) {
    put_u32(buf, c.partitions);
    put_u32(buf, c.replication_factor);
    put_u32(buf, c.min_insync_replicas);
    put_u8(buf, c.unclean_leader_election as u8);
    put_u64(buf, c.max_message_bytes as u64);
    put_u64(buf, c.segment_bytes);
    match c.retention_bytes {
        None => put_u8(buf, 0),
        Some(b) => {
            put_u8(buf, 1);
            put_u64(buf, b);
        }
    }
    match c.retention {
        None => put_u8(buf, 0),
        Some(d) => {
            put_u8(buf, 1);
            put_u64(buf, d.as_secs());
            put_u32(buf, d.subsec_nanos());
        }
    }
}

/// Appends `record`'s payload (tag and fields) to `buf`.
fn encode(record: &MetadataRecord, buf: &mut Vec<u8>) {
    match record {
        MetadataRecord::TopicCreated {
            name,
            config,
            assignments,
        } => {
            put_u8(buf, TAG_TOPIC_CREATED);
            put_str(buf, name);
            put_config(buf, config);
            put_len(buf, assignments.len());
            for replicas in assignments {
                put_brokers(buf, replicas);
            }
        }
        MetadataRecord::TopicDeleted { name } => {
            put_u8(buf, TAG_TOPIC_DELETED);
            put_str(buf, name);
        }
        MetadataRecord::PartitionChanged {
            tp,
            leader,
            leader_epoch,
            isr,
            partition_epoch,
        } => {
            put_u8(buf, TAG_PARTITION_CHANGED);
            put_tp(buf, tp);
            match leader {
                None => put_u8(buf, 0),
                Some(b) => {
                    put_u8(buf, 1);
                    put_u32(buf, b.0);
                }
            }
            put_u32(buf, *leader_epoch);
            put_brokers(buf, isr);
            put_u32(buf, *partition_epoch);
        }
        MetadataRecord::ProducerIdsAllocated { next } => {
            put_u8(buf, TAG_PRODUCER_IDS);
            put_u64(buf, *next);
        }
        MetadataRecord::ReplicasIneligible { tp, brokers } => {
            put_u8(buf, TAG_REPLICAS_INELIGIBLE);
            put_tp(buf, tp);
            put_brokers(buf, brokers);
        }
    }
}

// ---- decoding ----

/// Reads fields off a payload; every error names what was short or wrong.
struct Reader<'a> {
    bytes: &'a [u8],
}

type Decoded<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Decoded<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(format!("{what} needs {n} bytes, {} left", self.bytes.len()));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Decoded<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Decoded<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Decoded<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn flag(&mut self, what: &str) -> Decoded<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("{what} is {v}, not 0 or 1")),
        }
    }
    /// A count of items at least `item_bytes` each, checked against what is left so
    /// that a bad count cannot ask for a huge allocation.
    fn count(&mut self, item_bytes: usize, what: &str) -> Decoded<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(item_bytes) > self.bytes.len() {
            return Err(format!("{what} of {n} exceeds the record"));
        }
        Ok(n)
    }
    fn string(&mut self, what: &str) -> Decoded<String> {
        let n = self.count(1, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
    fn brokers(&mut self, what: &str) -> Decoded<Vec<BrokerId>> {
        let n = self.count(4, what)?;
        (0..n).map(|_| Ok(BrokerId(self.u32(what)?))).collect()
    }
    fn tp(&mut self) -> Decoded<TopicPartition> {
        let topic = self.string("topic")?;
        let partition = self.u32("partition")?;
        Ok(TopicPartition { topic, partition })
    }
    fn config(&mut self) -> Decoded<TopicConfig> {
        let partitions = self.u32("partitions")?;
        let replication_factor = self.u32("replication factor")?;
        let min_insync_replicas = self.u32("min.insync.replicas")?;
        let unclean_leader_election = self.flag("unclean election flag")?;
        let max_message_bytes = usize::try_from(self.u64("max.message.bytes")?)
            .map_err(|_| "max.message.bytes exceeds this platform".to_string())?;
        let segment_bytes = self.u64("segment.bytes")?;
        let retention_bytes = if self.flag("retention.bytes flag")? {
            Some(self.u64("retention.bytes")?)
        } else {
            None
        };
        let retention = if self.flag("retention.ms flag")? {
            let secs = self.u64("retention seconds")?;
            let nanos = self.u32("retention nanos")?;
            if nanos >= 1_000_000_000 {
                return Err(format!("retention nanos {nanos} out of range"));
            }
            Some(Duration::new(secs, nanos))
        } else {
            None
        };
        Ok(TopicConfig {
            partitions,
            replication_factor,
            min_insync_replicas,
            unclean_leader_election,
            max_message_bytes,
            segment_bytes,
            retention_bytes,
            retention,
        })
    }
}

/// Decodes one payload; every byte must be used.
fn decode(payload: &[u8]) -> Decoded<MetadataRecord> {
    let mut r = Reader { bytes: payload };
    let record = match r.u8("tag")? {
        TAG_TOPIC_CREATED => {
            let name = r.string("topic name")?;
            let config = r.config()?;
            let n = r.count(4, "partition count")?;
            let assignments = (0..n)
                .map(|_| r.brokers("replicas"))
                .collect::<Decoded<_>>()?;
            MetadataRecord::TopicCreated {
                name,
                config,
                assignments,
            }
        }
        TAG_TOPIC_DELETED => MetadataRecord::TopicDeleted {
            name: r.string("topic name")?,
        },
        TAG_PARTITION_CHANGED => {
            let tp = r.tp()?;
            let leader = if r.flag("leader flag")? {
                Some(BrokerId(r.u32("leader")?))
            } else {
                None
            };
            MetadataRecord::PartitionChanged {
                tp,
                leader,
                leader_epoch: r.u32("leader epoch")?,
                isr: r.brokers("ISR")?,
                partition_epoch: r.u32("partition epoch")?,
            }
        }
        TAG_PRODUCER_IDS => MetadataRecord::ProducerIdsAllocated {
            next: r.u64("next producer id")?,
        },
        TAG_REPLICAS_INELIGIBLE => MetadataRecord::ReplicasIneligible {
            tp: r.tp()?,
            brokers: r.brokers("ineligible brokers")?,
        },
        tag => return Err(format!("unknown record tag {tag}")),
    };
    if !r.bytes.is_empty() {
        return Err(format!("{} bytes left after the record", r.bytes.len()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<MetadataRecord> {
        let full = TopicConfig::new(3, 2)
            .min_insync_replicas(2)
            .unclean_leader_election(true)
            .max_message_bytes(4096)
            .segment_bytes(1 << 20)
            .retention_bytes(Some(123_456_789))
            .retention(Some(Duration::new(3600, 250)));
        let bare = TopicConfig::new(1, 1).retention_bytes(None).retention(None);
        let b = |ids: &[u32]| ids.iter().map(|&i| BrokerId(i)).collect::<Vec<_>>();
        vec![
            MetadataRecord::TopicCreated {
                name: "orders".into(),
                config: full,
                assignments: vec![b(&[0, 1]), b(&[1, 2]), b(&[2, 0])],
            },
            MetadataRecord::TopicCreated {
                name: "__consumer_offsets".into(),
                config: bare,
                assignments: vec![b(&[4_000_000_000])],
            },
            MetadataRecord::PartitionChanged {
                tp: TopicPartition::new("orders", 2),
                leader: Some(BrokerId(0)),
                leader_epoch: 7,
                isr: b(&[0]),
                partition_epoch: 9,
            },
            MetadataRecord::PartitionChanged {
                tp: TopicPartition::new("orders", 1),
                leader: None,
                leader_epoch: u32::MAX,
                isr: b(&[1, 2]),
                partition_epoch: 0,
            },
            MetadataRecord::ProducerIdsAllocated { next: u64::MAX },
            MetadataRecord::ReplicasIneligible {
                tp: TopicPartition::new("orders", 0),
                brokers: b(&[1]),
            },
            MetadataRecord::ReplicasIneligible {
                tp: TopicPartition::new("orders", 0),
                brokers: vec![],
            },
            MetadataRecord::TopicDeleted {
                name: "orders".into(),
            },
        ]
    }

    fn file_bytes(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(FILE_NAME)).unwrap()
    }

    #[test]
    fn every_record_kind_round_trips_through_encoding() {
        for r in every_kind() {
            let mut buf = Vec::new();
            encode(&r, &mut buf);
            assert_eq!(decode(&buf), Ok(r.clone()));
            // Every strict prefix fails to decode rather than panicking.
            for cut in 0..buf.len() {
                assert!(decode(&buf[..cut]).is_err(), "{r:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn reopen_after_append_reads_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, read) = MetadataLog::open(dir.path()).unwrap();
        assert!(read.is_empty());
        let all = every_kind();
        log.append(&all[..3]).unwrap();
        log.sync().unwrap();
        drop(log);
        let (mut log, read) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(read, all[..3]);
        log.append(&all[3..]).unwrap();
        log.append(&[]).unwrap();
        drop(log);
        let (_, read) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(read, all);
    }

    /// Frame end offsets in a file holding `records`.
    fn frame_ends(records: &[MetadataRecord]) -> Vec<usize> {
        let mut end = HEADER.len();
        records
            .iter()
            .map(|r| {
                let mut buf = Vec::new();
                encode_frame(r, &mut buf);
                end += buf.len();
                end
            })
            .collect()
    }

    #[test]
    fn every_torn_tail_length_recovers_the_whole_records_before_it() {
        let all = every_kind();
        let src = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(src.path()).unwrap();
        log.append(&all).unwrap();
        drop(log);
        let full = file_bytes(src.path());
        let ends = frame_ends(&all);
        assert_eq!(*ends.last().unwrap(), full.len());

        let dir = tempfile::tempdir().unwrap();
        for cut in 0..full.len() {
            std::fs::write(dir.path().join(FILE_NAME), &full[..cut]).unwrap();
            let (mut log, read) = MetadataLog::open(dir.path()).unwrap();
            let whole = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(read, all[..whole], "cut at {cut}");
            // The tail is gone from the file, and appends land after the good part.
            let good = if whole == 0 {
                HEADER.len()
            } else {
                ends[whole - 1]
            };
            assert_eq!(file_bytes(dir.path()).len(), good, "cut at {cut}");
            log.append(&all[..1]).unwrap();
            drop(log);
            let (_, read) = MetadataLog::open(dir.path()).unwrap();
            let mut want = all[..whole].to_vec();
            want.push(all[0].clone());
            assert_eq!(read, want, "append after cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_is_detected_and_never_returned() {
        let all = every_kind();
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        log.append(&all).unwrap();
        drop(log);
        let full = file_bytes(dir.path());
        let ends = frame_ends(&all);
        for pos in HEADER.len()..full.len() {
            let mut bad = full.clone();
            bad[pos] ^= 0x40;
            std::fs::write(dir.path().join(FILE_NAME), &bad).unwrap();
            let (_, read) = MetadataLog::open(dir.path()).unwrap();
            // The damaged frame and everything after it are cut.
            let intact = ends.iter().filter(|e| **e <= pos).count();
            assert_eq!(read, all[..intact], "flip at {pos}");
        }
    }

    #[test]
    fn a_foreign_or_damaged_header_is_refused_and_a_torn_one_restarted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"hello, world, not a log").unwrap();
        let err = MetadataLog::open(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        // The file is left alone for the user to inspect.
        assert_eq!(file_bytes(dir.path()), b"hello, world, not a log");

        std::fs::write(dir.path().join(FILE_NAME), &HEADER[..5]).unwrap();
        let (_, read) = MetadataLog::open(dir.path()).unwrap();
        assert!(read.is_empty());
        assert_eq!(file_bytes(dir.path()), HEADER);
    }

    #[test]
    fn a_whole_frame_that_does_not_decode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = HEADER.to_vec();
        let payload = [99u8, 1, 2, 3];
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        std::fs::write(dir.path().join(FILE_NAME), &bytes).unwrap();
        match MetadataLog::open(dir.path()) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("tag 99"), "{reason}"),
            other => panic!("undecodable frame accepted: {other:?}"),
        }
    }
}
