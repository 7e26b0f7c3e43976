//! One behaviour suite, written once against `Log` and run for the memory log and the
//! segment log (one batch per segment, so retention granularity matches).

use std::time::Duration;

use super::support::*;
use crate::storage::Log;
use crate::Error;

fn append_then_read_returns_the_same_batches(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 5, 3, 20, 0);
    assert_eq!(h.log().log_end_offset(), 15);
    assert_eq!(read_all(h.log()), written);
    h.reopen();
    assert_eq!(bytes_of(&read_all(h.log())), bytes_of(&written));
}

fn read_at_log_end_is_empty_and_outside_the_log_is_out_of_range(h: &mut dyn Harness) {
    assert!(h.log().read(0, 100).unwrap().is_empty());
    append_batches(h.log(), 2, 2, 10, 0);
    assert!(h.log().read(4, 100).unwrap().is_empty());
    match h.log().read(5, 100) {
        Err(Error::OffsetOutOfRange {
            offset: 5,
            log_start: 0,
            log_end: 4,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    h.log().reset(10).unwrap();
    assert!(matches!(
        h.log().read(9, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

fn read_from_inside_a_batch_starts_with_the_batch_holding_it(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 4, 5, 10, 0);
    for from in 0..20u64 {
        let got = h.log().read(from, usize::MAX).unwrap();
        assert_eq!(got, written[(from / 5) as usize..], "from {from}");
    }
}

fn read_stays_within_max_bytes_but_returns_at_least_one_batch(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 6, 2, 50, 0);
    let one = written[0].len();
    assert_eq!(h.log().read(0, 0).unwrap(), written[..1]);
    assert_eq!(h.log().read(0, one * 2).unwrap(), written[..2]);
    assert_eq!(h.log().read(0, one * 2 + one / 2).unwrap(), written[..2]);
    assert_eq!(h.log().read(4, one * 3).unwrap(), written[2..5]);
}

fn append_that_is_not_at_the_log_end_is_refused_and_writes_nothing(h: &mut dyn Harness) {
    append_batches(h.log(), 2, 2, 10, 0);
    for base in [0, 3, 5] {
        let b = simple_batch(base, 1, 10, 0, 1);
        assert!(
            matches!(h.log().append(&b), Err(Error::Corrupt { .. })),
            "base {base}"
        );
    }
    assert_eq!(h.log().log_end_offset(), 4);
    h.reopen();
    assert_eq!(h.log().log_end_offset(), 4);
}

fn truncate_then_append_keeps_offsets_dense(h: &mut dyn Harness) {
    append_batches(h.log(), 4, 3, 10, 0);
    h.log().truncate(7).unwrap(); // inside the third batch: it goes whole
    assert_eq!(h.log().log_end_offset(), 6);
    let more = append_batches(h.log(), 2, 3, 10, 0);
    assert_eq!(more[0].base_offset(), 6);
    let offsets: Vec<u64> = read_all(h.log())
        .iter()
        .flat_map(|b| b.records().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..12).collect::<Vec<_>>());
    h.reopen();
    assert_eq!(h.log().log_end_offset(), 12);
}

fn truncate_at_or_past_the_end_changes_nothing_and_below_the_start_empties(h: &mut dyn Harness) {
    append_batches(h.log(), 2, 2, 10, 0);
    let size = h.log().size_bytes();
    h.log().truncate(4).unwrap();
    h.log().truncate(100).unwrap();
    assert_eq!((h.log().log_end_offset(), h.log().size_bytes()), (4, size));
    h.log().truncate(0).unwrap();
    assert_eq!(
        (
            h.log().log_start_offset(),
            h.log().log_end_offset(),
            h.log().size_bytes()
        ),
        (0, 0, 0)
    );
    assert!(read_all(h.log()).is_empty());
}

fn reset_restarts_an_empty_log_at_the_offset_and_clears_epochs(h: &mut dyn Harness) {
    append_batches(h.log(), 3, 2, 10, 4);
    h.log().reset(100).unwrap();
    let check = |log: &mut dyn Log| {
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.size_bytes()
            ),
            (100, 100, 0)
        );
        assert_eq!(log.epochs(), vec![]);
    };
    check(h.log());
    h.reopen();
    check(h.log());
    let b = append_batches(h.log(), 1, 2, 10, 5);
    assert_eq!(read_all(h.log()), b);
    assert_eq!(h.log().epochs(), vec![(5, 100)]);
}

fn size_bytes_counts_appended_and_truncated_batches(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 3, 2, 30, 0);
    let total: u64 = written.iter().map(|b| b.len() as u64).sum();
    assert_eq!(h.log().size_bytes(), total);
    h.log().truncate(2).unwrap();
    assert_eq!(h.log().size_bytes(), written[0].len() as u64);
    h.reopen();
    assert_eq!(h.log().size_bytes(), written[0].len() as u64);
}

fn batches_with_a_newer_epoch_start_epoch_entries(h: &mut dyn Harness) {
    append_batches(h.log(), 2, 2, 10, 1);
    append_batches(h.log(), 1, 2, 10, 3);
    append_batches(h.log(), 1, 2, 10, 3);
    h.log().assign_epoch(2, 8).unwrap(); // not newer: ignored
    h.log().assign_epoch(7, 8).unwrap();
    let expected = vec![(1, 0), (3, 4), (7, 8)];
    assert_eq!(h.log().epochs(), expected);
    assert_eq!(h.log().latest_epoch(), Some(7));
    h.reopen();
    assert_eq!(h.log().epochs(), expected);
}

fn end_offset_for_epoch_is_the_next_epochs_start_or_the_log_end(h: &mut dyn Harness) {
    assert_eq!(h.log().end_offset_for_epoch(0), None);
    append_batches(h.log(), 2, 2, 10, 2);
    append_batches(h.log(), 2, 2, 10, 5);
    // Older than every epoch held: that epoch, ending where the first one starts.
    let table = [
        (0, Some((0, 0))),
        (1, Some((1, 0))),
        (2, Some((2, 4))),
        (4, Some((2, 4))),
        (5, Some((5, 8))),
        (9, Some((5, 8))),
    ];
    for (asked, expected) in table {
        assert_eq!(
            h.log().end_offset_for_epoch(asked),
            expected,
            "epoch {asked}"
        );
    }
}

fn truncation_removes_epoch_entries_at_or_after_the_new_end(h: &mut dyn Harness) {
    append_batches(h.log(), 1, 2, 10, 1);
    append_batches(h.log(), 1, 2, 10, 2);
    append_batches(h.log(), 1, 2, 10, 3);
    h.log().truncate(3).unwrap();
    assert_eq!(h.log().epochs(), vec![(1, 0)]);
    h.reopen();
    assert_eq!(h.log().epochs(), vec![(1, 0)]);
    assert_eq!(h.log().end_offset_for_epoch(3), Some((1, 2)));
}

/// A replica that led an epoch briefly and appended nothing has that epoch at its log
/// end; truncating to the log end (the divergence point a new leader names) must drop
/// it, or the follower fetches with it and is told to truncate again, forever.
fn truncation_at_the_end_removes_an_empty_epoch_starting_there(h: &mut dyn Harness) {
    append_batches(h.log(), 1, 2, 10, 1);
    h.log().assign_epoch(2, 2).unwrap();
    assert_eq!(h.log().latest_epoch(), Some(2));
    h.log().truncate(2).unwrap();
    assert_eq!(h.log().epochs(), vec![(1, 0)]);
    assert_eq!(h.log().log_end_offset(), 2);
    h.reopen();
    assert_eq!(h.log().epochs(), vec![(1, 0)]);
}

fn retention_by_size_keeps_at_least_the_limit_and_advances_the_log_start(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 5, 2, 40, 0);
    let one = written[0].len() as u64;
    // Room for 2.5 batches: the log keeps 3 (never below the limit), drops 2.
    let start = h
        .log()
        .apply_retention(Some(one * 5 / 2), None, 0, u64::MAX)
        .unwrap();
    assert_eq!(start, 4);
    assert_eq!(h.log().log_start_offset(), 4);
    assert_eq!(h.log().size_bytes(), one * 3);
    assert!(matches!(
        h.log().read(3, 10),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(h.log()), written[2..]);
    h.reopen();
    assert_eq!(h.log().log_start_offset(), 4);
}

fn retention_never_removes_the_newest_data(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 3, 2, 40, 0);
    let start = h
        .log()
        .apply_retention(Some(0), Some(Duration::ZERO), u64::MAX, u64::MAX)
        .unwrap();
    assert_eq!(start, 4);
    assert_eq!(read_all(h.log()), written[2..]);
    assert_eq!(h.log().log_end_offset(), 6);
}

fn retention_by_age_deletes_batches_older_than_the_limit(h: &mut dyn Harness) {
    for (i, ts) in [100u64, 200, 300, 400].into_iter().enumerate() {
        let b = simple_batch(i as u64 * 2, 2, 10, 0, ts);
        h.log().append(&b).unwrap();
    }
    // At 350 with 100 ms retention: 100 and 200 are older than 250, 300 is not.
    let start = h
        .log()
        .apply_retention(None, Some(Duration::from_millis(100)), 350, u64::MAX)
        .unwrap();
    assert_eq!(start, 4);
    assert_eq!(
        h.log()
            .apply_retention(None, None, u64::MAX, u64::MAX)
            .unwrap(),
        4
    );
}

fn retention_never_deletes_records_at_or_above_the_bound(h: &mut dyn Harness) {
    let written = append_batches(h.log(), 5, 2, 40, 0);
    // Everything is due, but only what lies wholly below offset 5 (the HW) goes.
    let start = h.log().apply_retention(Some(0), None, 0, 5).unwrap();
    assert_eq!(start, 4);
    assert_eq!(read_all(h.log()), written[2..]);
    assert_eq!(h.log().apply_retention(Some(0), None, 0, 3).unwrap(), 4);
}

fn retention_moves_the_first_epoch_entry_up_to_the_log_start(h: &mut dyn Harness) {
    append_batches(h.log(), 2, 2, 10, 1);
    append_batches(h.log(), 2, 2, 10, 2);
    h.log().apply_retention(Some(0), None, 0, u64::MAX).unwrap();
    assert_eq!(h.log().log_start_offset(), 6);
    assert_eq!(h.log().epochs(), vec![(2, 6)]);
    h.reopen();
    assert_eq!(h.log().epochs(), vec![(2, 6)]);
}

fn delete_below_removes_only_whole_batches_below_the_offset_and_never_the_newest(
    h: &mut dyn Harness,
) {
    let written = append_batches(h.log(), 5, 2, 40, 1);
    // 5 holds records 4 and 5: the batch at 4 stays, the two before it go.
    assert_eq!(h.log().delete_below(5).unwrap(), 4);
    assert_eq!(read_all(h.log()), written[2..]);
    assert_eq!(h.log().epochs(), vec![(1, 4)]);
    assert!(matches!(
        h.log().read(3, 10),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // Past the end: everything but the newest batch.
    assert_eq!(h.log().delete_below(100).unwrap(), 8);
    assert_eq!(read_all(h.log()), written[4..]);
    assert_eq!(h.log().size_bytes(), written[4].len() as u64);
    h.reopen();
    assert_eq!(h.log().log_start_offset(), 8);
    assert_eq!(h.log().log_end_offset(), 10);
}

fn append_stamped_stores_what_append_of_the_stamped_batch_stores(h: &mut dyn Harness) {
    // A leader's append: the producer's batch (offset 0, epoch 0), stamped on the
    // way in. The segment log writes the stamped header beside the unchanged rest.
    append_batches(h.log(), 2, 3, 10, 1);
    let unstamped = simple_batch(0, 4, 25, 0, 1_000);
    let shared = unstamped.clone(); // the producer keeps its copy for retries
    h.log().append_stamped(&unstamped, 6, 3).unwrap();
    assert_eq!(
        shared.as_bytes(),
        unstamped.as_bytes(),
        "the batch itself is untouched"
    );
    let want = unstamped.clone().stamped(6, 3);
    assert_eq!(h.log().log_end_offset(), 10);
    assert_eq!(h.log().epochs(), vec![(1, 0), (3, 6)]);
    let read = h.log().read(6, 1 << 20).unwrap();
    assert_eq!(bytes_of(&read), bytes_of(std::slice::from_ref(&want)));
    assert_eq!((read[0].base_offset(), read[0].leader_epoch()), (6, 3));
    // Not at the log end: refused, nothing written.
    assert!(h.log().append_stamped(&unstamped, 11, 3).is_err());
    assert_eq!(h.log().log_end_offset(), 10);
    h.reopen();
    assert_eq!(
        bytes_of(&h.log().read(6, 1 << 20).unwrap()),
        bytes_of(&[want])
    );
    assert_eq!(h.log().epochs(), vec![(1, 0), (3, 6)]);
}

macro_rules! run_for_both_logs {
    ($($name:ident),* $(,)?) => {
        mod memory_log {
            $( #[test] fn $name() { super::$name(&mut super::MemoryHarness::new()) } )*
        }
        mod segment_log {
            $( #[test] fn $name() { super::$name(&mut super::SegmentHarness::one_batch_per_segment()) } )*
        }
    };
}

run_for_both_logs!(
    append_then_read_returns_the_same_batches,
    read_at_log_end_is_empty_and_outside_the_log_is_out_of_range,
    read_from_inside_a_batch_starts_with_the_batch_holding_it,
    read_stays_within_max_bytes_but_returns_at_least_one_batch,
    append_that_is_not_at_the_log_end_is_refused_and_writes_nothing,
    truncate_then_append_keeps_offsets_dense,
    truncate_at_or_past_the_end_changes_nothing_and_below_the_start_empties,
    reset_restarts_an_empty_log_at_the_offset_and_clears_epochs,
    size_bytes_counts_appended_and_truncated_batches,
    batches_with_a_newer_epoch_start_epoch_entries,
    end_offset_for_epoch_is_the_next_epochs_start_or_the_log_end,
    truncation_removes_epoch_entries_at_or_after_the_new_end,
    truncation_at_the_end_removes_an_empty_epoch_starting_there,
    retention_by_size_keeps_at_least_the_limit_and_advances_the_log_start,
    retention_never_removes_the_newest_data,
    retention_by_age_deletes_batches_older_than_the_limit,
    retention_moves_the_first_epoch_entry_up_to_the_log_start,
    retention_never_deletes_records_at_or_above_the_bound,
    delete_below_removes_only_whole_batches_below_the_offset_and_never_the_newest,
    append_stamped_stores_what_append_of_the_stamped_batch_stores,
);
