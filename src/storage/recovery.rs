//! Opening a segment log directory: the recovery procedure of `docs/FORMAT.md`,
//! section 4. Nothing here may panic on file content: every length is checked
//! against the file before it is used.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::epoch::{read_checkpoint, write_checkpoint, Checkpoint, EpochCache};
use super::files::{
    open_segment_file, parse_segment_name, read_header, remove_if_exists, segment_file_name,
    write_atomically, INDEX_SUFFIX, LOG_SUFFIX, TMP_SUFFIX,
};
use super::index::OffsetIndex;
use super::segment::{Segment, SegmentConfig};
use crate::record::Batch;
use crate::{Error, Result};

/// What recovery found and changed when a segment log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RecoveryReport {
    /// Bytes cut from the log: the bad tail of a segment plus any later segments.
    pub(crate) truncated_bytes: u64,
    /// Frames (whole or partial) in the bytes cut.
    pub(crate) truncated_batches: u64,
    /// Inactive segments whose index file was missing or inconsistent and was rebuilt.
    pub(crate) indexes_rebuilt: u32,
    /// Segment files deleted: empty inactive ones, ones after a cut, leftovers of an
    /// interrupted reset.
    pub(crate) segments_deleted: u32,
    /// Leftover `*.tmp` files removed.
    pub(crate) temp_files_removed: u32,
    /// The epoch checkpoint was missing or invalid and was rebuilt from batch headers.
    pub(crate) epoch_cache_rebuilt: bool,
}

impl RecoveryReport {
    /// Whether any index was rebuilt.
    #[allow(dead_code)] // Reported by the broker when it opens its logs.
    pub(crate) fn index_rebuilt(&self) -> bool {
        self.indexes_rebuilt > 0
    }

    /// Whether the directory was exactly as a clean run leaves it (nothing cut,
    /// rebuilt or deleted).
    #[allow(dead_code)] // Reported by the broker when it opens its logs.
    pub(crate) fn is_clean(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

/// Where a scan of frames stopped.
struct ScanEnd {
    /// Position after the last good frame.
    pos: u64,
    /// Offset after the last good frame.
    offset: u64,
    /// Largest timestamp seen (including the starting value).
    max_timestamp: u64,
    /// Why the scan stopped before the end of the file, if it did.
    failure: Option<&'static str>,
}

/// Walks and fully decodes the frames in `start_pos..limit`, expecting the first to
/// start at `start_offset`; stops at the first frame that is short, oversized, fails
/// `Batch::decode`, or has an unexpected base offset.
fn scan(
    file: &File,
    path: &Path,
    limit: u64,
    start: (u64, u64, u64),
    mut on_batch: impl FnMut(u64, &Batch),
) -> Result<ScanEnd> {
    let (mut pos, mut offset, mut max_timestamp) = start;
    let failure = loop {
        if pos == limit {
            break None;
        }
        let header = match read_header(file, pos, limit).map_err(|e| Error::io(path, e))? {
            None => break Some("a partial frame header at the end"),
            Some(h) => h,
        };
        if !header.plausible_at(pos, limit) {
            break Some("a frame length past the end of the file");
        }
        // Bounded by the file size just checked: the allocation is justified by bytes
        // that exist.
        let mut buf = vec![0u8; header.frame_len as usize];
        file.read_exact_at(&mut buf, pos)
            .map_err(|e| Error::io(path, e))?;
        let Ok(batch) = Batch::decode(buf.into()) else {
            break Some("a frame failing its CRC or framing checks");
        };
        if batch.base_offset() != offset {
            break Some("a frame with an unexpected base offset");
        }
        on_batch(pos, &batch);
        max_timestamp = max_timestamp.max(batch.max_timestamp());
        offset = batch.next_offset();
        pos += header.frame_len;
    };
    Ok(ScanEnd {
        pos,
        offset,
        max_timestamp,
        failure,
    })
}

/// Frames (whole or partial) in `pos..limit`, walking length fields; for the report.
fn count_frames(file: &File, mut pos: u64, limit: u64) -> u64 {
    let mut count = 0;
    while pos < limit {
        count += 1;
        match read_header(file, pos, limit) {
            Ok(Some(h)) if h.plausible_at(pos, limit) => pos += h.frame_len,
            _ => break,
        }
    }
    count
}

/// Opens and recovers `dir`: returns its segments (oldest first, never empty, the
/// last active), its epoch cache, and what was done.
pub(crate) fn recover(
    dir: &Path,
    config: &SegmentConfig,
) -> Result<(Vec<Segment>, EpochCache, RecoveryReport)> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let sync = config.fsync.syncs();
    let mut report = RecoveryReport::default();
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            remove_if_exists(&entry.path())?;
            report.temp_files_removed += 1;
        } else if let Some(base) = parse_segment_name(&name, LOG_SUFFIX) {
            bases.push(base);
        } else if let Some(base) = parse_segment_name(&name, INDEX_SUFFIX) {
            indexes.push(base);
        }
    }
    bases.sort_unstable();
    for orphan in indexes.iter().filter(|b| bases.binary_search(b).is_err()) {
        remove_if_exists(&dir.join(segment_file_name(*orphan, INDEX_SUFFIX)))?;
    }

    let mut segments: Vec<Segment> = Vec::new();
    let mut active_epochs = Vec::new();
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        let path = dir.join(segment_file_name(base, LOG_SUFFIX));
        let file = open_segment_file(&path, false)?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let last = i + 1 == bases.len();
        if !last && len == 0 {
            delete_segment_files(dir, base)?;
            report.segments_deleted += 1;
            bases.remove(i);
            continue;
        }
        if !last {
            if let Some(segment) = load_inactive(dir, base, file, len, config, &mut report)? {
                segments.push(segment);
                i += 1;
                continue;
            }
            // A bad frame in an inactive segment: nothing after it is trusted. Delete
            // every later segment; this one becomes the active one and is cut below.
            for &later in bases[i + 1..].iter().rev() {
                let later_path = dir.join(segment_file_name(later, LOG_SUFFIX));
                if let Ok(f) = open_segment_file(&later_path, false) {
                    let later_len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    report.truncated_bytes += later_len;
                    report.truncated_batches += count_frames(&f, 0, later_len);
                }
                delete_segment_files(dir, later)?;
                report.segments_deleted += 1;
            }
            bases.truncate(i + 1);
            continue;
        }
        segments.push(load_active(
            dir,
            base,
            file,
            len,
            sync,
            config,
            &mut report,
            &mut active_epochs,
        )?);
        i += 1;
    }

    // Only an interrupted reset leaves a segment not starting where the one before it
    // ends; the newer side is the truth (docs/FORMAT.md, 4.1).
    if let Some(gap) = (1..segments.len())
        .rev()
        .find(|&k| segments[k].base != segments[k - 1].end)
    {
        for old in segments.drain(..gap).rev() {
            delete_segment_files(dir, old.base)?;
            report.segments_deleted += 1;
        }
    }
    if segments.is_empty() {
        segments.push(Segment::create(dir, 0)?);
    }
    if sync && !report.is_clean() {
        super::files::sync_dir(dir)?;
    }

    let log_start = segments[0].base;
    let log_end = segments[segments.len() - 1].end;
    let (mut epochs, loaded) = match read_checkpoint(dir)? {
        Checkpoint::Valid(cache) => (cache.clone(), Some(cache)),
        Checkpoint::Missing if log_start == log_end => (EpochCache::default(), None),
        Checkpoint::Missing | Checkpoint::Invalid => {
            report.epoch_cache_rebuilt = true;
            (epochs_from_headers(&segments)?, None)
        }
    };
    for (epoch, base) in active_epochs {
        epochs.assign(epoch, base);
    }
    epochs.truncate_from_end(log_end.saturating_add(1));
    epochs.truncate_from_start(log_start);
    if loaded.as_ref() != Some(&epochs) {
        write_checkpoint(dir, &epochs, sync)?;
    }
    Ok((segments, epochs, report))
}

fn delete_segment_files(dir: &Path, base: u64) -> Result<()> {
    remove_if_exists(&dir.join(segment_file_name(base, INDEX_SUFFIX)))?;
    remove_if_exists(&dir.join(segment_file_name(base, LOG_SUFFIX)))
}

/// An inactive segment: its index file if consistent (else rebuilt), and a scan of
/// the frames after the last entry. `None` when a frame there is bad.
fn load_inactive(
    dir: &Path,
    base: u64,
    file: File,
    len: u64,
    config: &SegmentConfig,
    report: &mut RecoveryReport,
) -> Result<Option<Segment>> {
    let path = dir.join(segment_file_name(base, LOG_SUFFIX));
    let index_path = dir.join(segment_file_name(base, INDEX_SUFFIX));
    let stored = match fs::read(&index_path) {
        Ok(bytes) => OffsetIndex::decode(&bytes, base, len),
        Err(_) => None,
    };
    let (index, end) = match stored {
        Some(index) => {
            let last = index.last().expect("a decoded index has an entry");
            let end = scan(
                &file,
                &path,
                len,
                (last.position, last.offset, last.max_timestamp),
                |_, _| {},
            )?;
            (index, end)
        }
        None => {
            let mut index = OffsetIndex::default();
            let mut running = 0;
            let end = scan(&file, &path, len, (0, base, 0), |pos, b| {
                running = running.max(b.max_timestamp());
                index.on_append(b.base_offset(), pos, running, config.index_interval_bytes);
            })?;
            if end.failure.is_none() {
                let sync = config.fsync.syncs();
                let name = segment_file_name(base, INDEX_SUFFIX);
                write_atomically(dir, &name, &index.encode(), sync)?;
                report.indexes_rebuilt += 1;
            }
            (index, end)
        }
    };
    if end.failure.is_some() {
        return Ok(None);
    }
    Ok(Some(Segment::from_parts(
        base,
        end.offset,
        len,
        end.max_timestamp,
        index,
        file,
        path,
    )))
}

/// The active segment: scanned whole, cut at the first bad frame, its index rebuilt
/// in memory (its index file, stale by design, is deleted). The epoch of every batch
/// where it changes is pushed to `epochs`.
#[allow(clippy::too_many_arguments)]
fn load_active(
    dir: &Path,
    base: u64,
    file: File,
    len: u64,
    sync: bool,
    config: &SegmentConfig,
    report: &mut RecoveryReport,
    epochs: &mut Vec<(u32, u64)>,
) -> Result<Segment> {
    let path = dir.join(segment_file_name(base, LOG_SUFFIX));
    let mut index = OffsetIndex::default();
    let mut running = 0;
    let end = scan(&file, &path, len, (0, base, 0), |pos, b| {
        running = running.max(b.max_timestamp());
        index.on_append(b.base_offset(), pos, running, config.index_interval_bytes);
        if epochs.last().is_none_or(|&(e, _)| e != b.leader_epoch()) {
            epochs.push((b.leader_epoch(), b.base_offset()));
        }
    })?;
    if end.failure.is_some() {
        report.truncated_bytes += len - end.pos;
        report.truncated_batches += count_frames(&file, end.pos, len);
        file.set_len(end.pos).map_err(|e| Error::io(&path, e))?;
        if sync {
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
    }
    remove_if_exists(&dir.join(segment_file_name(base, INDEX_SUFFIX)))?;
    Ok(Segment::from_parts(
        base,
        end.offset,
        end.pos,
        end.max_timestamp,
        index,
        file,
        path,
    ))
}

/// The epoch cache as appends would have built it, from every frame header (used
/// when the checkpoint is missing or invalid).
fn epochs_from_headers(segments: &[Segment]) -> Result<EpochCache> {
    let mut cache = EpochCache::default();
    for segment in segments {
        let mut pos = 0;
        while let Some(h) = segment.header_at(pos)? {
            if !h.plausible_at(pos, segment.size) {
                break;
            }
            cache.assign(h.leader_epoch, h.base_offset);
            pos += h.frame_len;
        }
    }
    Ok(cache)
}
