//! Hidden support for the fuzz targets in `fuzz/` (cargo-fuzz): the batch codec and
//! the logs are crate-private, so the targets reach them through these functions.
//! Each takes the fuzzer's bytes and panics when a property fails. Not part of the
//! API; may change at any time.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use bytes::Bytes;

use crate::record::{Batch, BatchBuilder, Record};
use crate::storage::model::{self, Choices};
use crate::storage::{Log, SegmentConfig, SegmentLog};
use crate::{Error, FsyncPolicy};

/// Offsets in the batch header (`docs/FORMAT.md`, 1.1) the targets patch.
const POS_LENGTH: usize = 8;
const POS_LEADER_EPOCH: usize = 12;
const POS_CRC: usize = 16;
const CRC_START: usize = 20;
const POS_ATTRIBUTES: usize = 21;
/// Bytes up to and including the length field.
const FRAME_PREFIX_LEN: usize = 12;
/// The leader-epoch checkpoint's file name (`docs/FORMAT.md`, 2.2).
const EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// The fuzzer's bytes as a source of decisions; used up, it answers 0 and ends runs.
#[derive(Debug)]
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let end = self.pos.saturating_add(n).min(self.data.len());
        let out = &self.data[self.pos..end];
        self.pos = end;
        out
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
}

impl Choices for Input<'_> {
    fn below(&mut self, n: u64) -> u64 {
        let v = match n {
            0 | 1 => return 0,
            2..=256 => u64::from(self.u8()),
            257..=65_536 => u64::from(self.u16()),
            _ => u64::from(self.u32()),
        };
        v % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = self.take(n).to_vec();
        out.resize(n, 0);
        out
    }

    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
}

/// Writes the CRC (and, with `fix_length`, the length field) a frame starting at
/// `frame[0]` would need to be valid, so the fuzzer gets past the checksum to the
/// checks behind it.
fn fix_frame(frame: &mut [u8], fix_length: bool) {
    if frame.len() < CRC_START {
        return;
    }
    if fix_length {
        let length = u32::try_from(frame.len() - FRAME_PREFIX_LEN).unwrap_or(u32::MAX);
        frame[POS_LENGTH..POS_LEADER_EPOCH].copy_from_slice(&length.to_le_bytes());
    }
    let crc = crc32fast::hash(&frame[CRC_START..]);
    frame[POS_CRC..CRC_START].copy_from_slice(&crc.to_le_bytes());
}

/// The frame length in the header at `buf[0]`, if the length field is there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let b = buf.get(POS_LENGTH..POS_LEADER_EPOCH)?;
    let length = u32::from_le_bytes(b.try_into().ok()?);
    FRAME_PREFIX_LEN.checked_add(usize::try_from(length).ok()?)
}

/// Fixes the CRC of every frame found by walking length fields from the start.
fn fix_frames(file: &mut [u8]) {
    let mut pos = 0;
    while let Some(len) = frame_len(&file[pos..]) {
        let Some(end) = pos.checked_add(len).filter(|&e| e <= file.len()) else {
            break;
        };
        fix_frame(&mut file[pos..end], false);
        pos = end;
    }
}

/// Target `batch_decode`: decodes `data` as one batch as given, then with its length
/// and CRC fixed up. `Batch::decode` must never panic; a batch it accepts must
/// iterate to exactly its record count at dense offsets, report the records'
/// largest timestamp, and re-encode from its decoded records to the same bytes
/// (the reserved attributes byte aside, which is written 0).
///
/// # Panics
///
/// When a property fails.
pub fn batch_decode(data: &[u8]) {
    check_decoded(data);
    let mut fixed = data.to_vec();
    fix_frame(&mut fixed, true);
    check_decoded(&fixed);
}

fn check_decoded(data: &[u8]) {
    let Ok(batch) = Batch::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let records: Vec<_> = batch.records().collect();
    assert_eq!(records.len(), batch.record_count() as usize, "record count");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, batch.base_offset() + i as u64, "dense offsets");
    }
    let max_timestamp = records.iter().map(|r| r.timestamp).max();
    assert_eq!(max_timestamp, Some(batch.max_timestamp()), "max timestamp");

    let mut builder = BatchBuilder::new(batch.producer_id(), data.len());
    for r in &records {
        let mut record = Record::new(r.value.clone()).timestamp(r.timestamp);
        if let Some(key) = &r.key {
            record = record.key(key.clone());
        }
        for (name, value) in &r.headers {
            record = record.header(name.clone(), value.clone());
        }
        builder.push(&record, 0);
    }
    let again = builder
        .finish(batch.base_sequence())
        .stamped(batch.base_offset(), batch.leader_epoch());
    let mut expected = data.to_vec();
    if expected[POS_ATTRIBUTES] != 0 {
        expected[POS_ATTRIBUTES] = 0;
        fix_frame(&mut expected, false);
    }
    assert_eq!(again.as_bytes()[..], expected[..], "re-encoding differs");
}

/// Target `segment_recovery`: a segment log directory `dir` (empty) is filled from
/// `data`, opened (recovered), read whole, reopened and appended to.
///
/// The first byte picks the mode. Odd: *structured*, a valid log is written with the
/// segment log itself from records drawn from `data`, closed, and the rest of `data`
/// damages its files (flip, cut or extend a file, delete one); every batch read
/// below the old log end must then be the one written there. Even: *raw*, `data`
/// is split into files (segments, indexes, the epoch checkpoint, leftovers) as
/// they are, with frame CRCs fixed up if bit 1 is set.
///
/// In both modes: opening never fails or panics on file content; reads return
/// dense, valid batches up to the log end, or `Error::Corrupt` (an index trusted
/// past a damaged frame: the replica truncates there); a second open finds nothing
/// to repair and the same log; an append at the end reads back.
///
/// # Panics
///
/// When a property fails.
pub fn segment_recovery(dir: &Path, data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let config = SegmentConfig {
        segment_bytes: 64 + u64::from(input.u8()) * 8,
        index_interval_bytes: 1 + usize::from(input.u8()) * 16,
        fsync: FsyncPolicy::Never,
    };
    let written = if mode & 1 == 1 {
        Some(write_and_damage(dir, config, &mut input))
    } else {
        write_raw(dir, &mut input, mode & 2 == 2);
        None
    };

    let (mut log, _) = SegmentLog::open(dir, config).expect("open must not fail on content");
    let (start, end, epochs) = (log.log_start_offset(), log.log_end_offset(), log.epochs());
    let read = read_everything(&log);
    if let Some((old_end, originals)) = &written {
        for b in &read {
            if b.base_offset() < *old_end {
                let original = originals
                    .get(&b.base_offset())
                    .expect("a batch read below the old end starts where one was written");
                assert!(
                    same_but_epoch(b, original),
                    "batch at {} changed",
                    b.base_offset()
                );
            }
        }
    }

    drop(log);
    let (reopened, report) = SegmentLog::open(dir, config).expect("second open");
    log = reopened;
    assert!(
        report.is_clean(),
        "the second open repaired again: {report:?}"
    );
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset(), log.epochs()),
        (start, end, epochs),
        "the second open found another log"
    );
    assert_eq!(
        read_everything(&log),
        read,
        "the second open reads differently"
    );

    let epoch = log.latest_epoch().unwrap_or(0);
    let batch = model::batch_of(&[Record::new("after").timestamp(1)], end, epoch);
    log.append(&batch).expect("append after recovery");
    assert_eq!(
        log.read(end, usize::MAX).expect("read the append"),
        vec![batch]
    );
}

/// Every batch from the log start, checked dense and valid, up to the log end or
/// the first `Error::Corrupt`.
fn read_everything(log: &SegmentLog) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut from = log.log_start_offset();
    loop {
        match log.read(from, 1 << 16) {
            Ok(batches) if batches.is_empty() => {
                assert_eq!(
                    from,
                    log.log_end_offset(),
                    "a read ended before the log end"
                );
                return out;
            }
            Ok(batches) => {
                for b in batches {
                    assert_eq!(b.base_offset(), from, "offsets are not dense");
                    assert!(
                        Batch::decode(b.as_bytes().clone()).is_ok(),
                        "served an invalid batch"
                    );
                    from = b.next_offset();
                    out.push(b);
                }
            }
            Err(Error::Corrupt {
                offset: Some(o), ..
            }) => {
                assert!(
                    o >= from,
                    "corruption reported at {o} below the read from {from}"
                );
                return out;
            }
            Err(e) => panic!("read({from}): {e}"),
        }
    }
}

/// Equal bytes apart from the leader epoch, which no checksum covers (FORMAT.md 1.1).
fn same_but_epoch(a: &Batch, b: &Batch) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len()
        && a[..POS_LEADER_EPOCH] == b[..POS_LEADER_EPOCH]
        && a[POS_CRC..] == b[POS_CRC..]
}

/// Raw mode: up to eight files of the kinds recovery looks at, bytes as given.
fn write_raw(dir: &Path, input: &mut Input<'_>, fix_crcs: bool) {
    for _ in 0..8 {
        if !input.more() {
            break;
        }
        let kind = input.u8();
        let base = u64::from(input.u8()) * 4;
        let len = usize::from(input.u16());
        let mut bytes = input.take(len).to_vec();
        let name = match kind % 5 {
            0 | 1 => {
                if fix_crcs {
                    fix_frames(&mut bytes);
                }
                format!("{base:020}.log")
            }
            2 => format!("{base:020}.index"),
            3 => EPOCH_CHECKPOINT.to_string(),
            _ => format!("{base:020}.log.tmp"),
        };
        fs::write(dir.join(name), bytes).expect("write a file");
    }
}

/// Structured mode: writes a valid log, closes it, damages its files. Returns the
/// old log end and the batches written, by base offset.
fn write_and_damage(
    dir: &Path,
    config: SegmentConfig,
    input: &mut Input<'_>,
) -> (u64, HashMap<u64, Batch>) {
    let (mut log, _) = SegmentLog::open(dir, config).expect("open an empty directory");
    let mut written = HashMap::new();
    let mut epoch = 0;
    for _ in 0..1 + input.below(24) {
        if input.chance(15) {
            epoch += 1;
        }
        let records: Vec<Record> = (0..1 + input.below(3))
            .map(|_| model::random_record(input, 48))
            .collect();
        let batch = model::batch_of(&records, log.log_end_offset(), epoch);
        log.append(&batch).expect("append");
        written.insert(batch.base_offset(), batch);
    }
    let end = log.log_end_offset();
    drop(log);

    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("list the log")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for _ in 0..4 {
        if !input.more() || files.is_empty() {
            break;
        }
        let path = &files[usize::from(input.u8()) % files.len()];
        let mut bytes = fs::read(path).unwrap_or_default();
        match input.u8() % 4 {
            0 if !bytes.is_empty() => {
                let at = input.u32() as usize % bytes.len();
                bytes[at] ^= input.u8().max(1);
            }
            1 => bytes.truncate(input.u32() as usize % (bytes.len() + 1)),
            2 => {
                let n = usize::from(input.u8());
                bytes.extend_from_slice(input.take(n));
            }
            _ => {
                let _ = fs::remove_file(path);
                continue;
            }
        }
        fs::write(path, bytes).expect("damage a file");
    }
    (end, written)
}

/// Target `storage_model`: the storage model check (`storage::model`, also run by
/// the seeded test) with its operations drawn from `data`, on a segment log in the
/// empty directory `dir`.
///
/// # Panics
///
/// When the memory log, the segment log and the model disagree.
pub fn storage_model(dir: &Path, data: &[u8]) {
    model::run(&mut Input::new(data), dir, 256, "fuzz input");
}
