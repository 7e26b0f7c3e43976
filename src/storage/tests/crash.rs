//! Segment-log specific behaviour: torn tails, flipped bits, lost or garbage index and
//! checkpoint files, garbage segments, rolling, retention by segment, durability.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::support::*;
use crate::record::Batch;
use crate::storage::files::{segment_file_name, INDEX_SUFFIX, LOG_SUFFIX};
use crate::storage::{Log, SegmentConfig, SegmentLog};
use crate::{Error, FsyncPolicy};

fn config(segment_bytes: u64, index_interval_bytes: usize) -> SegmentConfig {
    SegmentConfig {
        segment_bytes,
        index_interval_bytes,
        fsync: FsyncPolicy::Never,
    }
}

fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_file_name(base, LOG_SUFFIX))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_file_name(base, INDEX_SUFFIX))
}

/// Copies every file of `from` into a fresh directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
    }
    to
}

/// A closed log of `n` batches in one segment; returns its directory and batches.
fn closed_log(n: usize, config: SegmentConfig) -> (tempfile::TempDir, Vec<Batch>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config).unwrap();
    let batches = append_batches(&mut log, n, 3, 40, 1);
    (dir, batches)
}

#[test]
fn every_torn_tail_length_of_the_last_batch_recovers_exactly_the_batches_before_it() {
    let (dir, batches) = closed_log(3, SegmentConfig::default());
    let file = fs::read(log_path(dir.path(), 0)).unwrap();
    let last = batches[2].len();
    for torn in 1..=last {
        let copy = copy_dir(dir.path());
        fs::write(log_path(copy.path(), 0), &file[..file.len() - torn]).unwrap();
        let (mut log, report) = SegmentLog::open(copy.path(), SegmentConfig::default()).unwrap();
        assert_eq!(log.log_end_offset(), 6, "torn {torn}");
        assert_eq!(read_all(&log), batches[..2], "torn {torn}");
        let partial = (last - torn) as u64;
        assert_eq!(report.truncated_bytes, partial, "torn {torn}");
        assert_eq!(
            report.truncated_batches,
            u64::from(partial > 0),
            "torn {torn}"
        );
        assert_eq!(
            fs::metadata(log_path(copy.path(), 0)).unwrap().len(),
            (file.len() - last) as u64
        );
        // The log goes on from there, and a second open finds nothing to cut.
        append_batches(&mut log, 1, 3, 40, 1);
        drop(log);
        let (log, report) = SegmentLog::open(copy.path(), SegmentConfig::default()).unwrap();
        assert!(report.is_clean(), "torn {torn}: {report:?}");
        assert_eq!(log.log_end_offset(), 9);
    }
}

/// Byte positions whose damage must be caught: all but the leader epoch, which lies
/// outside the CRC by design (so a leader can stamp it; Kafka's v2 batch does the
/// same) and carries no redundancy a reader could check.
fn detectable_bytes(batch_len: usize) -> impl Iterator<Item = usize> {
    (0..batch_len).filter(|i| !(12..16).contains(i))
}

#[test]
fn a_flipped_bit_in_any_byte_of_the_active_segment_is_cut_by_recovery() {
    let (dir, batches) = closed_log(3, SegmentConfig::default());
    let file = fs::read(log_path(dir.path(), 0)).unwrap();
    let at = batches[0].len();
    for i in detectable_bytes(batches[1].len()) {
        let copy = copy_dir(dir.path());
        let mut damaged = file.clone();
        damaged[at + i] ^= 1 << (i % 8);
        fs::write(log_path(copy.path(), 0), &damaged).unwrap();
        let (log, report) = SegmentLog::open(copy.path(), SegmentConfig::default()).unwrap();
        assert_eq!(log.log_end_offset(), 3, "byte {i}");
        assert_eq!(read_all(&log), batches[..1], "byte {i}");
        assert!(report.truncated_bytes > 0, "byte {i}");
    }
}

#[test]
fn a_flipped_bit_in_any_byte_of_an_inactive_segment_fails_the_read_at_that_batch() {
    // Every batch indexed, so open only scans the last batch of the old segment and
    // the damage in the middle is left for the read to find.
    let cfg = config(1, 1);
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), cfg).unwrap();
    let batches = append_batches(&mut log, 3, 3, 40, 1);
    drop(log);
    let cfg = config(10_000, 1);
    // Put the three batches in one inactive segment followed by an active one.
    let mut joined = Vec::new();
    for b in &batches {
        joined.extend_from_slice(b.as_bytes());
    }
    for base in [0, 3, 6] {
        fs::remove_file(log_path(dir.path(), base)).unwrap();
        let _ = fs::remove_file(index_path(dir.path(), base));
    }
    fs::write(log_path(dir.path(), 0), &joined).unwrap();
    fs::write(log_path(dir.path(), 9), b"").unwrap();
    let (log, report) = SegmentLog::open(dir.path(), cfg).unwrap();
    assert_eq!((log.segment_count(), report.indexes_rebuilt), (2, 1));
    drop(log);
    let at = batches[0].len();
    for i in detectable_bytes(batches[1].len()) {
        let copy = copy_dir(dir.path());
        let mut damaged = joined.clone();
        damaged[at + i] ^= 1 << (i % 8);
        fs::write(log_path(copy.path(), 0), &damaged).unwrap();
        let (log, _) = SegmentLog::open(copy.path(), cfg).unwrap();
        match log.read(0, usize::MAX) {
            Err(Error::Corrupt {
                offset: Some(3), ..
            }) => {}
            other => panic!("byte {i}: expected Corrupt at offset 3, got {other:?}"),
        }
        // Reading from the batch holding offset 3 fails the same way; after it, fine.
        assert!(
            matches!(
                log.read(4, usize::MAX),
                Err(Error::Corrupt {
                    offset: Some(3),
                    ..
                })
            ),
            "byte {i}"
        );
        assert_eq!(log.read(6, usize::MAX).unwrap(), batches[2..], "byte {i}");
    }
}

fn multi_segment_log(dir: &Path) -> Vec<Batch> {
    let (mut log, _) = SegmentLog::open(dir, config(600, 100)).unwrap();
    let batches = append_batches(&mut log, 12, 2, 60, 1);
    assert!(log.segment_count() >= 3);
    batches
}

#[test]
fn a_missing_index_is_rebuilt_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let batches = multi_segment_log(dir.path());
    fs::remove_file(index_path(dir.path(), 0)).unwrap();
    let (log, report) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
    assert_eq!(report.indexes_rebuilt, 1);
    assert!(index_path(dir.path(), 0).exists());
    for from in 0..24 {
        assert_eq!(
            log.read(from, usize::MAX).unwrap(),
            batches[(from / 2) as usize..]
        );
    }
}

#[test]
fn a_garbage_short_or_empty_index_is_rebuilt_and_reads_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let batches = multi_segment_log(dir.path());
    let good = fs::read(index_path(dir.path(), 0)).unwrap();
    let mut rng = SplitMix64::new(7);
    for damage in [
        rng.bytes(good.len()),
        good[..good.len() - 5].to_vec(),
        Vec::new(),
        rng.bytes(240),
    ] {
        fs::write(index_path(dir.path(), 0), &damage).unwrap();
        let (log, report) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
        assert_eq!(report.indexes_rebuilt, 1);
        assert_eq!(fs::read(index_path(dir.path(), 0)).unwrap(), good);
        assert_eq!(read_all(&log), batches);
    }
}

#[test]
fn segments_roll_at_segment_bytes_and_are_named_by_base_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(1000, 4096)).unwrap();
    let batches = append_batches(&mut log, 10, 2, 100, 0);
    let per_segment = 1000 / batches[0].len();
    let expected: Vec<u64> = (0..10).step_by(per_segment).map(|i| i as u64 * 2).collect();
    assert_eq!(log.segment_bases(), expected);
    for base in &expected {
        let len = fs::metadata(log_path(dir.path(), *base)).unwrap().len();
        assert!(len <= 1000, "segment {base} has {len} bytes");
    }
    // Inactive segments have an index file; the active one does not (FORMAT.md 2.1).
    let active = *expected.last().unwrap();
    assert!(expected[..expected.len() - 1]
        .iter()
        .all(|b| index_path(dir.path(), *b).exists()));
    assert!(!index_path(dir.path(), active).exists());
}

#[test]
fn reopening_gives_back_byte_identical_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SplitMix64::new(42);
    let (mut log, _) = SegmentLog::open(dir.path(), config(2000, 300)).unwrap();
    let mut written = Vec::new();
    for _ in 0..40 {
        let records: Vec<_> = (0..1 + rng.below(5))
            .map(|_| random_record(&mut rng, 200))
            .collect();
        let b = batch_of(&records, log.log_end_offset(), 3);
        log.append(&b).unwrap();
        written.push(b);
    }
    drop(log);
    let (log, report) = SegmentLog::open(dir.path(), config(2000, 300)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(bytes_of(&read_all(&log)), bytes_of(&written));
    let got: Vec<_> = read_all(&log)
        .iter()
        .flat_map(|b| b.records().collect::<Vec<_>>())
        .collect();
    let expected: Vec<_> = written
        .iter()
        .flat_map(|b| b.records().collect::<Vec<_>>())
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn an_append_reaches_the_os_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), SegmentConfig::default()).unwrap();
    let b = append_batches(&mut log, 1, 2, 10, 0);
    // Read through another file handle while the log is open and unflushed.
    assert_eq!(
        fs::read(log_path(dir.path(), 0)).unwrap(),
        b[0].as_bytes().to_vec()
    );
    // A second log over the same files (what a restarted process sees) has it all.
    let copy = copy_dir(dir.path());
    let (other, _) = SegmentLog::open(copy.path(), SegmentConfig::default()).unwrap();
    assert_eq!(read_all(&other), b);
}

#[test]
fn every_fsync_policy_appends_reads_and_reopens() {
    for fsync in [
        FsyncPolicy::EveryBatch,
        FsyncPolicy::Interval(Duration::ZERO),
        FsyncPolicy::Never,
    ] {
        let cfg = SegmentConfig {
            fsync,
            ..config(500, 100)
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(dir.path(), cfg).unwrap();
        let b = append_batches(&mut log, 6, 2, 50, 2);
        log.truncate(10).unwrap();
        log.flush().unwrap();
        drop(log);
        let (log, report) = SegmentLog::open(dir.path(), cfg).unwrap();
        assert!(report.is_clean(), "{fsync:?}: {report:?}");
        assert_eq!(read_all(&log), b[..5], "{fsync:?}");
    }
}

#[test]
fn retention_by_size_deletes_only_whole_inactive_segments_and_advances_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(1000, 4096)).unwrap();
    let batches = append_batches(&mut log, 10, 2, 100, 0);
    let bases = log.segment_bases();
    let first_len = fs::metadata(log_path(dir.path(), bases[0])).unwrap().len();
    // Exactly one segment's worth too large: only the oldest segment goes.
    let start = log
        .apply_retention(Some(log.size_bytes() - first_len), None, 0, u64::MAX)
        .unwrap();
    assert_eq!(start, bases[1]);
    assert!(!log_path(dir.path(), bases[0]).exists() && !index_path(dir.path(), bases[0]).exists());
    assert_eq!(read_all(&log), batches[(bases[1] / 2) as usize..]);
    // Limit 0: every inactive segment goes, the active one stays whole.
    let start = log.apply_retention(Some(0), None, 0, u64::MAX).unwrap();
    assert_eq!(start, *bases.last().unwrap());
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), 20);
    drop(log);
    let (log, _) = SegmentLog::open(dir.path(), config(1000, 4096)).unwrap();
    assert_eq!(log.log_start_offset(), *bases.last().unwrap());
}

#[test]
fn delete_below_keeps_a_segment_holding_older_records_until_a_roll_starts_one_at_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(100_000, 4096)).unwrap();
    append_batches(&mut log, 4, 2, 100, 0);
    assert_eq!(log.segment_count(), 1);
    // One segment holding 0..8: nothing lies wholly below 8.
    assert_eq!(log.delete_below(8).unwrap(), 0);
    log.roll_segment().unwrap();
    log.roll_segment().unwrap(); // the new active segment is empty: no second roll
    assert_eq!(log.segment_bases(), vec![0, 8]);
    let kept = append_batches(&mut log, 2, 2, 100, 0);
    assert_eq!(log.delete_below(8).unwrap(), 8);
    assert!(!log_path(dir.path(), 0).exists());
    assert_eq!(read_all(&log), kept);
    drop(log);
    let (log, report) = SegmentLog::open(dir.path(), config(100_000, 4096)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (8, 12));
}

#[test]
fn retention_by_age_deletes_only_whole_inactive_segments_older_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(900, 4096)).unwrap();
    // Three batches per segment, timestamps 100, 200, ... so segment k is newest at 300k.
    for i in 0..9u64 {
        let b = simple_batch(i * 2, 2, 100, 0, 100 * (i + 1));
        log.append(&b).unwrap();
    }
    assert_eq!(log.segment_bases(), vec![0, 6, 12]);
    // At 650 with 300 ms: segment 0 (newest 300) is 350 old, segment 1 (600) is 50.
    assert_eq!(
        log.apply_retention(None, Some(Duration::from_millis(300)), 650, u64::MAX)
            .unwrap(),
        6
    );
    // Far future: everything is old, but the active segment stays.
    assert_eq!(
        log.apply_retention(None, Some(Duration::from_millis(1)), 1_000_000, u64::MAX)
            .unwrap(),
        12
    );
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.read(12, usize::MAX).unwrap().len(), 3);
    // Reopened, the age of the surviving segment is known again (from its frames).
    drop(log);
    let (log, _) = SegmentLog::open(dir.path(), config(900, 4096)).unwrap();
    assert_eq!(log.log_start_offset(), 12);
}

#[test]
fn the_epoch_cache_is_persisted_across_reopen_and_cut_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(400, 100)).unwrap();
    append_batches(&mut log, 3, 2, 50, 1);
    append_batches(&mut log, 3, 2, 50, 4);
    log.assign_epoch(6, 12).unwrap();
    drop(log);
    let (mut log, report) = SegmentLog::open(dir.path(), config(400, 100)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(log.epochs(), vec![(1, 0), (4, 6), (6, 12)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((4, 12)));
    log.truncate(8).unwrap();
    drop(log);
    let (log, _) = SegmentLog::open(dir.path(), config(400, 100)).unwrap();
    assert_eq!(log.epochs(), vec![(1, 0), (4, 6)]);
}

#[test]
fn epoch_entries_past_the_recovered_end_are_removed_on_open() {
    let (dir, batches) = closed_log(2, SegmentConfig::default());
    let (mut log, _) = SegmentLog::open(dir.path(), SegmentConfig::default()).unwrap();
    append_batches(&mut log, 1, 3, 40, 9);
    assert_eq!(log.epochs(), vec![(1, 0), (9, 6)]);
    drop(log);
    // Damage the second batch: recovery cuts at offset 3, so epoch 9 (from 6) is past
    // the end. An entry starting exactly at the end is kept: a leader assigns its
    // epoch there before it appends anything.
    let path = log_path(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[batches[0].len() + 30] ^= 1;
    fs::write(&path, bytes).unwrap();
    let (log, _) = SegmentLog::open(dir.path(), SegmentConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.epochs(), vec![(1, 0)]);
}

#[test]
fn a_missing_or_garbage_epoch_checkpoint_is_rebuilt_from_batch_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(400, 100)).unwrap();
    append_batches(&mut log, 3, 2, 50, 1);
    append_batches(&mut log, 3, 2, 50, 4);
    drop(log);
    let checkpoint = dir.path().join("leader-epoch-checkpoint");
    for damage in [None, Some(b"garbage".to_vec())] {
        match damage {
            None => fs::remove_file(&checkpoint).unwrap(),
            Some(bytes) => fs::write(&checkpoint, bytes).unwrap(),
        }
        let (log, report) = SegmentLog::open(dir.path(), config(400, 100)).unwrap();
        assert!(report.epoch_cache_rebuilt);
        assert_eq!(log.epochs(), vec![(1, 0), (4, 6)]);
    }
}

#[test]
fn leftover_temp_files_are_removed_on_open() {
    let (dir, batches) = closed_log(2, SegmentConfig::default());
    fs::write(dir.path().join("leader-epoch-checkpoint.tmp"), b"half").unwrap();
    fs::write(dir.path().join("00000000000000000000.index.tmp"), b"half").unwrap();
    let (log, report) = SegmentLog::open(dir.path(), SegmentConfig::default()).unwrap();
    assert_eq!(report.temp_files_removed, 2);
    assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
    assert_eq!(read_all(&log), batches);
}

#[test]
fn an_interrupted_reset_leaves_the_new_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    multi_segment_log(dir.path());
    // The state after reset(100) created its segment but before it deleted the rest.
    fs::write(log_path(dir.path(), 100), b"").unwrap();
    let (log, report) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
    assert!(report.segments_deleted >= 3);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (100, 100, 1)
    );
}

#[test]
fn a_bad_frame_in_an_inactive_segment_cuts_the_log_there_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let batches = multi_segment_log(dir.path());
    // Tear the last frame of the first segment: later segments can no longer be trusted.
    let path = log_path(dir.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (log, report) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
    assert_eq!(log.segment_count(), 1);
    let kept = read_all(&log);
    assert_eq!(kept, batches[..kept.len()]);
    assert_eq!(log.log_end_offset(), kept.last().unwrap().next_offset());
    assert!(report.truncated_bytes > 0 && report.segments_deleted >= 2);
}

#[test]
fn recovery_never_panics_on_garbage_empty_or_huge_length_files() {
    let mut rng = SplitMix64::new(99);
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let valid = simple_batch(0, 2, 30, 1, 5);
        for base in [0u64, 2, 7] {
            let content = match rng.below(6) {
                0 => Vec::new(),
                1 => {
                    let len = rng.below(400) as usize;
                    rng.bytes(len)
                }
                2 => {
                    // A header claiming a ~4 GiB frame.
                    let mut v = valid.as_bytes().to_vec();
                    v[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
                    v
                }
                3 => valid.as_bytes()[..rng.below(valid.len() as u64) as usize].to_vec(),
                _ => valid.clone().stamped(base, 1).as_bytes().to_vec(),
            };
            fs::write(log_path(dir.path(), base), content).unwrap();
            if rng.chance(50) {
                let len = rng.below(100) as usize;
                fs::write(index_path(dir.path(), base), rng.bytes(len)).unwrap();
            }
        }
        if rng.chance(50) {
            let len = rng.below(64) as usize;
            fs::write(dir.path().join("leader-epoch-checkpoint"), rng.bytes(len)).unwrap();
        }
        let (mut log, _) = SegmentLog::open(dir.path(), SegmentConfig::default())
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        for from in start..=end {
            match log.read(from, usize::MAX) {
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => panic!("round {round}: read({from}): {e}"),
            }
        }
        let next = simple_batch(end, 1, 10, 2, 5);
        log.append(&next).unwrap();
        assert!(
            log.epochs()
                .iter()
                .all(|&(_, s)| s >= start && s <= end + 1),
            "round {round}"
        );
    }
}

/// The `.log` files in `dir`, sorted.
fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(LOG_SUFFIX))
        .collect();
    v.sort();
    v
}

#[test]
fn removed_segments_leave_the_directory_at_once_and_their_files_are_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
    append_batches(&mut log, 30, 2, 60, 1);
    let before = log.segment_count();
    assert!(before >= 6, "{before} segments");
    assert!(log.take_retired().is_empty(), "nothing removed yet");

    // Retention: the oldest segments' names go now, their open files are handed over.
    log.apply_retention(Some(1), None, 0, u64::MAX).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(log.take_retired().len(), before - 1);
    assert!(log.take_retired().is_empty(), "handed over once");

    // Truncation removes later segments the same way.
    append_batches(&mut log, 30, 2, 60, 1);
    let count = log.segment_count();
    log.truncate(log.log_start_offset() + 4).unwrap();
    assert_eq!(segment_files(dir.path()).len(), log.segment_count());
    assert_eq!(log.take_retired().len(), count - log.segment_count());

    // So does a reset, and the log reopens as it was left.
    append_batches(&mut log, 30, 2, 60, 1);
    let count = log.segment_count();
    log.reset(10_000).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        [segment_file_name(10_000, LOG_SUFFIX)]
    );
    assert_eq!(log.take_retired().len(), count);
    drop(log);
    let (log, _) = SegmentLog::open(dir.path(), config(600, 100)).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (10_000, 10_000)
    );
}
