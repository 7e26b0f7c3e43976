//! The scratch directory of the fuzz targets that write files.

/// A fresh directory, in memory where there is a tmpfs: the targets write files on
/// every run.
pub fn dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a scratch directory")
}
