//! Segment log recovery on arbitrary directory contents (raw files, or a valid log
//! with damaged files): opening never fails on content, reads are dense and valid,
//! a second open repairs nothing, an append reads back. See
//! `replog::fuzz_support::segment_recovery`.
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
    replog::fuzz_support::segment_recovery(dir.path(), data);
});
