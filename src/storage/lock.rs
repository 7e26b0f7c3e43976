//! The data directory lock: one live owner per `data_dir`, as Kafka's `.lock` file.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Name of the lock file inside the guarded directory.
const LOCK_FILE: &str = ".lock";

/// An exclusive OS lock (`flock`) on `dir/.lock`, held while this value lives.
///
/// The lock belongs to the open file, so it is released when the file is closed:
/// on drop, and by the OS when the process dies. A directory left by a crashed
/// process therefore opens normally; there is no stale-lock cleanup to get wrong.
#[allow(dead_code)] // Held by the cluster for each data_dir.
#[derive(Debug)]
pub(crate) struct DirLock {
    path: PathBuf,
    // Held for its lock; closing it releases the lock.
    _file: File,
}

#[allow(dead_code)] // Called by the cluster builder.
impl DirLock {
    /// Creates `dir` if needed and locks it.
    ///
    /// # Errors
    ///
    /// `Error::DataDirLocked` when another owner (another `DirLock`, in this process or
    /// another) holds it; nothing is touched then. `Error::Io` when the directory or
    /// the lock file cannot be created or opened.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        // No truncate: the file's content is irrelevant and another owner may hold it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { path, _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::DataDirLocked {
                path: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_of_a_held_dir_fails_with_data_dir_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path()).unwrap();
        // Same process, second open file description: flock must still refuse it.
        match DirLock::acquire(dir.path()) {
            Err(Error::DataDirLocked { path }) => assert_eq!(path, dir.path()),
            other => panic!("expected DataDirLocked, got {other:?}"),
        }
    }

    #[test]
    fn acquire_succeeds_again_after_the_holder_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        drop(held);
        let again = DirLock::acquire(dir.path()).unwrap();
        assert_eq!(again.path(), dir.path().join(LOCK_FILE));
    }

    #[test]
    fn acquire_creates_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let _lock = DirLock::acquire(&nested).unwrap();
        assert!(nested.join(LOCK_FILE).exists());
    }

    #[test]
    fn a_refused_acquire_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path()).unwrap();
        let before: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(DirLock::acquire(dir.path()).is_err());
        let after: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before, after);
    }
}
