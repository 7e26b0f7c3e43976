//! The storage model check (memory log, segment log and a `Vec` must agree) with
//! its operations drawn from the fuzzer's bytes. See
//! `replog::fuzz_support::storage_model`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // In memory where there is a tmpfs: the target writes files on every run.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a scratch directory");
    replog::fuzz_support::storage_model(dir.path(), data);
});
