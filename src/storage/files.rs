//! File naming, atomic replacement, directory sync and frame-header reads: the small
//! pieces of file handling the segment log, its index and its checkpoints share.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::record::{Batch, BATCH_HEADER_LEN};
use crate::{Error, Result};

/// Suffix of a segment's data file.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of a segment's offset index file.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of a file being written for an atomic rename; leftovers are deleted on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `00000000000000004711.log` style name: 20 digits, as Kafka, so names sort as
/// offsets do.
pub(crate) fn segment_file_name(base_offset: u64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset in a segment file name with this suffix, or `None` for any other
/// name (exactly 20 digits are required: other files are not ours).
pub(crate) fn parse_segment_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old or the new file,
/// never a mix: write `name.tmp`, optionally fsync it, rename, optionally fsync `dir`.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    if sync {
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    drop(file);
    fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory, so the creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Deletes a file; one that is already gone is fine (a crash may have got there first).
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Opens a segment file for positioned reads and appends (append mode: every write
/// lands at the end, also after `set_len` shortened the file).
pub(crate) fn open_segment_file(path: &Path, create: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// The fields of a frame header that walking a segment needs, read without checking
/// the CRC (the walk skips the frame; whoever returns it decodes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Base offset as written.
    pub(crate) base_offset: u64,
    /// Whole frame length, header included.
    pub(crate) frame_len: u64,
    /// Leader epoch as written.
    pub(crate) leader_epoch: u32,
    /// Records in the frame.
    pub(crate) record_count: u32,
    /// Largest record timestamp.
    pub(crate) max_timestamp: u64,
}

impl FrameHeader {
    /// Parses the header at the start of `buf`, or `None` when `buf` is too short.
    pub(crate) fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let header = buf.get(..BATCH_HEADER_LEN)?;
        let u64_at = |p: usize| u64::from_le_bytes(header[p..p + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |p: usize| u32::from_le_bytes(header[p..p + 4].try_into().unwrap_or([0; 4]));
        Some(FrameHeader {
            base_offset: u64_at(0),
            frame_len: Batch::frame_len(header)? as u64,
            leader_epoch: u32_at(12),
            record_count: u32_at(34),
            max_timestamp: u64_at(38),
        })
    }

    /// Offset after the frame's last record, as the header claims.
    pub(crate) fn next_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.record_count))
    }

    /// Whether the frame could be one: at least a header long, within `limit` bytes
    /// from `pos`, with at least one record.
    pub(crate) fn plausible_at(&self, pos: u64, limit: u64) -> bool {
        self.frame_len >= BATCH_HEADER_LEN as u64
            && pos
                .checked_add(self.frame_len)
                .is_some_and(|end| end <= limit)
            && self.record_count > 0
    }
}

/// Reads the frame header at `pos`, or `None` when fewer than a header's bytes are
/// left before `limit` (the end of the valid part of the file).
pub(crate) fn read_header(file: &File, pos: u64, limit: u64) -> io::Result<Option<FrameHeader>> {
    if limit.saturating_sub(pos) < BATCH_HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut buf = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    Ok(FrameHeader::parse(&buf))
}
