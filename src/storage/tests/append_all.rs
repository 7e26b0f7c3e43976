//! `Log::append_all`: many batches in one call store exactly what one
//! `append_stamped` each stores, in both logs; the segment log writes the same
//! files, rolls inside a run, and refuses a run with a gap without writing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::support::*;
use crate::record::{Batch, BatchBuilder, Record};
use crate::storage::{Log, MemoryLog, SegmentConfig, SegmentLog, Stamped};
use crate::FsyncPolicy;

/// `n` unstamped batches as a producer sends them (offset 0, epoch 0, no CRC
/// yet), of 1 to 4 records of 30 to 200 bytes.
fn producer_batches(rng: &mut SplitMix64, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|_| {
            let count = 1 + rng.below(4) as u32;
            let len = 30 + rng.below(170) as usize;
            let mut b = BatchBuilder::new(None, 0);
            for i in 0..count {
                b.push(&Record::new(vec![i as u8; len]), 1_000 + rng.below(1_000));
            }
            b.finish_crc_later(None)
        })
        .collect()
}

/// `batches` cut into runs of 1 to `max` batches, in order.
fn runs<'a>(rng: &mut SplitMix64, batches: &'a [Batch], max: u64) -> Vec<&'a [Batch]> {
    let mut out = Vec::new();
    let mut rest = batches;
    while !rest.is_empty() {
        let (run, later) = rest.split_at((1 + rng.below(max) as usize).min(rest.len()));
        out.push(run);
        rest = later;
    }
    out
}

/// `batches` stamped from `log_end` on, with the epochs `epochs` gives in turn.
fn stamp<'a>(batches: &'a [Batch], log_end: u64, epochs: &[u32]) -> Vec<Stamped<'a>> {
    let mut at = log_end;
    batches
        .iter()
        .zip(epochs.iter().cycle())
        .map(|(batch, &leader_epoch)| {
            let s = Stamped::new(batch, at, leader_epoch);
            at = s.next_offset();
            s
        })
        .collect()
}

/// Every file of `dir` by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn append_one_each(log: &mut dyn Log, run: &[Stamped<'_>]) {
    for s in run {
        log.append_stamped(s.batch, s.base_offset, s.leader_epoch)
            .unwrap();
    }
}

#[test]
fn append_all_stores_what_one_append_stamped_each_stores() {
    let mut rng = SplitMix64::new(11);
    let batches = producer_batches(&mut rng, 40);
    let memory = || -> Box<dyn Log> { Box::new(MemoryLog::new()) };
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        fsync: FsyncPolicy::Never,
    };
    let made = std::cell::Cell::new(0);
    let segment = || -> Box<dyn Log> {
        made.set(made.get() + 1);
        let d = dir.path().join(made.get().to_string());
        Box::new(SegmentLog::open(&d, config).unwrap().0)
    };
    for make in [&memory as &dyn Fn() -> Box<dyn Log>, &segment] {
        let (mut one_each, mut all) = (make(), make());
        // Runs of 1 to 7 batches; epochs change inside some of them.
        let mut epoch = 1;
        for now in runs(&mut rng, &batches, 7) {
            let epochs: Vec<u32> = (0..now.len())
                .map(|_| {
                    epoch += u32::from(rng.chance(20));
                    epoch
                })
                .collect();
            let run = stamp(now, all.log_end_offset(), &epochs);
            all.append_all(&run).unwrap();
            append_one_each(one_each.as_mut(), &run);
            assert_eq!(all.log_end_offset(), one_each.log_end_offset());
        }
        assert_eq!(
            bytes_of(&read_all(all.as_ref())),
            bytes_of(&read_all(one_each.as_ref()))
        );
        assert_eq!(all.epochs(), one_each.epochs());
        assert_eq!(all.size_bytes(), one_each.size_bytes());
        for offset in 0..all.log_end_offset() {
            assert_eq!(
                bytes_of(&all.read(offset, 1).unwrap()),
                bytes_of(&one_each.read(offset, 1).unwrap()),
                "the batch holding offset {offset}"
            );
        }
    }
}

#[test]
fn append_all_writes_the_files_one_append_each_writes_and_rolls_inside_a_run() {
    let mut rng = SplitMix64::new(12);
    let batches = producer_batches(&mut rng, 60);
    // Small segments and index intervals: most runs cross a roll and add index
    // entries in the middle.
    let config = SegmentConfig {
        segment_bytes: 1_500,
        index_interval_bytes: 300,
        fsync: FsyncPolicy::Never,
    };
    let (dir_all, dir_each) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut all, _) = SegmentLog::open(dir_all.path(), config).unwrap();
    let (mut each, _) = SegmentLog::open(dir_each.path(), config).unwrap();
    let mut epoch = 1;
    for now in runs(&mut rng, &batches, 12) {
        epoch += u32::from(rng.chance(30));
        let run = stamp(now, all.log_end_offset(), &[epoch]);
        all.append_all(&run).unwrap();
        append_one_each(&mut each, &run);
    }
    assert!(all.segment_count() > 5, "the runs crossed rolls");
    assert_eq!(all.segment_bases(), each.segment_bases());
    assert_eq!(files(dir_all.path()), files(dir_each.path()));
    // Reopened (recovered), it still reads the same.
    let expected = bytes_of(&read_all(&each));
    drop(all);
    let (all, report) = SegmentLog::open(dir_all.path(), config).unwrap();
    assert_eq!(report, Default::default(), "recovery found nothing to cut");
    assert_eq!(bytes_of(&read_all(&all)), expected);
}

#[test]
fn append_all_with_a_batch_that_does_not_follow_on_is_refused_and_writes_nothing() {
    let mut rng = SplitMix64::new(13);
    let batches = producer_batches(&mut rng, 4);
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), SegmentConfig::default()).unwrap();
    log.append_all(&stamp(&batches[..1], 0, &[1])).unwrap();
    let before = files(dir.path());
    let end = log.log_end_offset();
    let mut run = stamp(&batches[1..], end, &[1]);
    run[2].base_offset += 1; // a gap before the last batch
    let e = log.append_all(&run).unwrap_err();
    assert!(e.to_string().contains("offsets must stay dense"), "{e}");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(files(dir.path()), before);
    // Nor one that does not start at the log end.
    let run = stamp(&batches[1..], end + 1, &[1]);
    assert!(log.append_all(&run).is_err());
    assert_eq!(files(dir.path()), before);
}

#[test]
fn append_all_keeps_a_batch_that_carries_its_stamp_without_a_copy() {
    // A follower appends what its leader stamped: the memory log keeps those bytes.
    let fetched = simple_batch(0, 3, 40, 2, 1_000);
    let mut log = MemoryLog::new();
    log.append_all(&[Stamped::as_is(&fetched)]).unwrap();
    let stored = read_all(&log);
    assert_eq!(stored[0].as_bytes().as_ptr(), fetched.as_bytes().as_ptr());
    // A leader's stamp changes the header: the log keeps a stamped copy.
    let produced = simple_batch(0, 2, 40, 0, 1_000);
    log.append_all(&[Stamped::new(&produced, 3, 2)]).unwrap();
    let stored = read_all(&log);
    assert_ne!(stored[1].as_bytes().as_ptr(), produced.as_bytes().as_ptr());
    assert_eq!((stored[1].base_offset(), stored[1].leader_epoch()), (3, 2));
}

#[test]
fn a_producers_batch_is_crc_valid_once_a_leader_stamps_it_even_with_the_stamp_it_carries() {
    // A producer's batch comes without a CRC; the leader's stamp writes it, also
    // at offset 0 in epoch 0, which the batch carries already.
    let mut rng = SplitMix64::new(14);
    let produced = producer_batches(&mut rng, 3);
    assert!(
        Batch::decode(produced[0].as_bytes().clone()).is_err(),
        "no CRC yet"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = SegmentConfig::default();
    let (mut segment, _) = SegmentLog::open(dir.path(), config).unwrap();
    let mut memory = MemoryLog::new();
    for log in [&mut segment as &mut dyn Log, &mut memory] {
        log.append_all(&stamp(&produced[..1], 0, &[0])).unwrap();
        log.append_stamped(&produced[1], log.log_end_offset(), 0)
            .unwrap();
        log.append_all(&stamp(&produced[2..], log.log_end_offset(), &[1]))
            .unwrap();
        for b in read_all(log) {
            Batch::decode(b.as_bytes().clone()).expect("CRC-valid in the log");
        }
    }
    // Recovery checks every CRC and cuts nothing.
    let expected = bytes_of(&read_all(&segment));
    drop(segment);
    let (segment, report) = SegmentLog::open(dir.path(), config).unwrap();
    assert_eq!(report, Default::default(), "recovery found nothing to cut");
    assert_eq!(bytes_of(&read_all(&segment)), expected);
    assert_eq!(bytes_of(&read_all(&memory)), expected);
}
