//! The storage model check (memory log, segment log and a `Vec` must agree) with
//! its operations drawn from the fuzzer's bytes. See
//! `replog::fuzz_support::storage_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/scratch.rs"]
mod scratch;

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir();
    replog::fuzz_support::storage_model(dir.path(), data);
});
