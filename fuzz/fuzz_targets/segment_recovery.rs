//! Segment log recovery on arbitrary directory contents (raw files, or a valid log
//! with damaged files): opening never fails on content, reads are dense and valid,
//! a second open repairs nothing, an append reads back. See
//! `replog::fuzz_support::segment_recovery`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir();
    replog::fuzz_support::segment_recovery(dir.path(), data);
});
