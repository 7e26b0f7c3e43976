//! Model test: the memory log, the segment log and a plain `Vec` of batches, driven by
//! the same seeded random operation sequences, must never disagree. The model itself
//! is `storage::model`, shared with the `storage_model` fuzz target.

use super::support::SplitMix64;
use crate::storage::model;

#[test]
fn memory_log_segment_log_and_a_vec_agree_on_random_operation_sequences() {
    for seed in 0..200 {
        let dir = tempfile::tempdir().unwrap();
        model::run(
            &mut SplitMix64::new(seed),
            dir.path(),
            200,
            &format!("seed {seed}"),
        );
    }
}
