//! The segment log: a partition replica's log as segment files on disk, each with a
//! sparse offset index, plus a leader-epoch checkpoint. Layout, fsync points and
//! recovery: `docs/FORMAT.md`.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::epoch::{write_checkpoint, EpochCache};
use super::files::{
    open_segment_file, read_header, remove_if_exists, segment_file_name, sync_dir,
    write_atomically, FrameHeader, INDEX_SUFFIX, LOG_SUFFIX,
};
use super::index::OffsetIndex;
use super::recovery::{recover, RecoveryReport};
use super::{append_offset_error, out_of_range, retention_deletes, Log, Stamped};
use crate::config::DEFAULT_SEGMENT_BYTES;
use crate::record::Batch;
use crate::{Error, FsyncPolicy, Result};

/// Settings of one segment log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentConfig {
    /// `segment.bytes`: roll a new segment before an append would take the active one
    /// past this size.
    pub(crate) segment_bytes: u64,
    /// `index.interval.bytes`: bytes between two offset index entries (Kafka: 4096).
    pub(crate) index_interval_bytes: usize,
    /// When appended data is fsynced.
    pub(crate) fsync: FsyncPolicy,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Never,
        }
    }
}

/// One segment: a `.log` file of frames starting at offset `base`.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Base offset: the file name, and the first batch's base offset.
    pub(crate) base: u64,
    /// Offset after the last batch.
    pub(crate) end: u64,
    /// Bytes of frames in the file.
    pub(crate) size: u64,
    /// Largest record timestamp, for time retention.
    pub(crate) max_timestamp: u64,
    index: OffsetIndex,
    file: File,
    path: PathBuf,
}

impl Segment {
    /// Assembles a segment that recovery checked.
    pub(crate) fn from_parts(
        base: u64,
        end: u64,
        size: u64,
        max_timestamp: u64,
        index: OffsetIndex,
        file: File,
        path: PathBuf,
    ) -> Segment {
        Segment {
            base,
            end,
            size,
            max_timestamp,
            index,
            file,
            path,
        }
    }

    /// Creates an empty segment file at `base` (emptying one that exists) and
    /// removes any index file of that name.
    pub(crate) fn create(dir: &Path, base: u64) -> Result<Segment> {
        let path = dir.join(segment_file_name(base, LOG_SUFFIX));
        let file = open_segment_file(&path, true)?;
        file.set_len(0).map_err(|e| Error::io(&path, e))?;
        remove_if_exists(&dir.join(segment_file_name(base, INDEX_SUFFIX)))?;
        Ok(Segment::from_parts(
            base,
            base,
            0,
            0,
            OffsetIndex::default(),
            file,
            path,
        ))
    }

    /// The frame header at `pos`, or `None` at (or within a header of) the end.
    pub(crate) fn header_at(&self, pos: u64) -> Result<Option<FrameHeader>> {
        read_header(&self.file, pos, self.size).map_err(|e| Error::io(&self.path, e))
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_extension(&INDEX_SUFFIX[1..])
    }

    fn corrupt(&self, pos: u64, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            location: format!("{} at byte {pos}", self.path.display()),
            offset: Some(offset),
            reason: reason.into(),
        }
    }

    /// Position and header of the batch holding `offset` (in `base..end`), walking
    /// frame headers from the nearest index entry below it.
    fn locate(&self, offset: u64) -> Result<(u64, FrameHeader)> {
        let entry = self
            .index
            .floor(offset)
            .ok_or_else(|| self.corrupt(0, self.base, "offset below the segment's index"))?;
        let (mut pos, mut expected) = (entry.position, entry.offset);
        loop {
            let header = self
                .header_at(pos)?
                .ok_or_else(|| self.corrupt(pos, expected, "segment ends before the offset"))?;
            if !header.plausible_at(pos, self.size) {
                return Err(self.corrupt(pos, expected, "frame length past the segment end"));
            }
            if header.base_offset != expected {
                return Err(self.corrupt(pos, expected, "frame has an unexpected base offset"));
            }
            if header.next_offset() > offset {
                return Ok((pos, header));
            }
            pos += header.frame_len;
            expected = header.next_offset();
        }
    }

    /// Appends to `out` the CRC-checked batches from the one holding `from`, while
    /// `total` stays within `max_bytes` (at least one batch overall). Returns whether
    /// the budget is left for the next segment.
    fn read_into(
        &self,
        from: u64,
        max_bytes: usize,
        out: &mut Vec<Batch>,
        total: &mut usize,
    ) -> Result<bool> {
        let (start, first) = self.locate(from)?;
        let budget = max_bytes.saturating_sub(*total) as u64;
        // One positioned read for everything the budget allows (at least the first
        // frame), carved into zero-copy `Bytes` slices.
        let want = budget.max(first.frame_len).min(self.size - start);
        let mut buf = vec![0u8; want as usize];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|e| Error::io(&self.path, e))?;
        let buf = Bytes::from(buf);
        let (mut at, mut expected) = (0usize, first.base_offset);
        while at < buf.len() {
            let pos = start + at as u64;
            let header = FrameHeader::parse(&buf[at..]);
            let Some(header) = header.filter(|h| h.plausible_at(pos, self.size)) else {
                // A frame cut by the end of the buffer, not of the segment, is beyond
                // the budget; a frame cut by the end of the segment is corrupt.
                if start + want < self.size {
                    return Ok(false);
                }
                return Err(self.corrupt(pos, expected, "frame length past the segment end"));
            };
            let len = header.frame_len as usize;
            if at + len > buf.len() || (!out.is_empty() && *total + len > max_bytes) {
                return Ok(false);
            }
            let batch = Batch::decode(buf.slice(at..at + len)).map_err(|e| match e {
                Error::Corrupt { reason, .. } => self.corrupt(pos, expected, reason),
                other => other,
            })?;
            if batch.base_offset() != expected {
                return Err(self.corrupt(pos, expected, "frame has an unexpected base offset"));
            }
            expected = batch.next_offset();
            *total += len;
            at += len;
            out.push(batch);
        }
        Ok(start + want == self.size && *total < max_bytes)
    }

    /// Writes the frames of `batches`, each stamped with its base offset, leader
    /// epoch and CRC unless it goes in as it is, at the end of the file and notes
    /// them in the index: each batch's header and its rest as two slices of one
    /// vectored write for them all, so no batch is copied. On an error nothing of
    /// them stays in the file.
    fn append(&mut self, batches: &[Stamped<'_>], index_interval: usize) -> Result<()> {
        let start = self.size;
        let heads: Vec<_> = batches
            .iter()
            .map(|s| {
                if s.is_as_is() {
                    s.batch.parts()
                } else {
                    s.batch.stamped_parts(s.base_offset, s.leader_epoch)
                }
            })
            .collect();
        let mut slices: Vec<IoSlice<'_>> = heads
            .iter()
            .flat_map(|(head, rest)| [IoSlice::new(head), IoSlice::new(rest)])
            .collect();
        if let Err(e) = write_all_vectored(&self.file, &mut slices) {
            // Leave no partial frame behind for the next append to follow.
            let _ = self.file.set_len(start);
            return Err(Error::io(&self.path, e));
        }
        for s in batches {
            let pos = self.size;
            self.size += s.batch.len() as u64;
            self.end = s.next_offset();
            self.max_timestamp = self.max_timestamp.max(s.batch.max_timestamp());
            self.index
                .on_append(s.base_offset, pos, self.max_timestamp, index_interval);
        }
        Ok(())
    }

    /// Cuts the segment before the batch holding `offset`; returns the new end offset.
    fn truncate_to(&mut self, offset: u64) -> Result<u64> {
        let (pos, header) = self.locate(offset)?;
        self.file
            .set_len(pos)
            .map_err(|e| Error::io(&self.path, e))?;
        self.size = pos;
        self.end = header.base_offset;
        self.index.truncate_from(self.end);
        // Recompute the newest timestamp from the last index entry on (a short walk).
        let from = self
            .index
            .last()
            .map_or((0, 0), |e| (e.position, e.max_timestamp));
        let (mut at, mut max) = from;
        while let Some(h) = self.header_at(at)? {
            if !h.plausible_at(at, self.size) {
                break;
            }
            max = max.max(h.max_timestamp);
            at += h.frame_len;
        }
        self.max_timestamp = max;
        Ok(self.end)
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// A partition replica's log on disk.
///
/// # Durability
///
/// Every append reaches the OS before it returns, so a killed process loses nothing
/// appended; when it reaches the disk follows [`FsyncPolicy`] (`docs/FORMAT.md`, 3).
#[derive(Debug)]
pub(crate) struct SegmentLog {
    dir: PathBuf,
    config: SegmentConfig,
    /// Oldest first, never empty; the last is the active segment.
    segments: Vec<Segment>,
    epochs: EpochCache,
    size: u64,
    last_sync: Instant,
    /// Files of removed segments, unlinked and not yet closed: [`Log::take_retired`].
    retired: Vec<File>,
}

/// The order in which removed segments' files are unlinked, so that a crash part
/// way leaves a log recovery accepts.
#[derive(Clone, Copy, Debug)]
enum Unlink {
    /// A tail goes (truncate, reset): a crash leaves a prefix of the log.
    NewestFirst,
    /// A head goes (retention): a crash leaves a log that starts later, never one
    /// with a hole.
    OldestFirst,
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`, recovering it as
    /// `docs/FORMAT.md`, section 4 says.
    ///
    /// # Errors
    ///
    /// `Error::Io` when the directory or a file cannot be read, written or deleted.
    /// Bad file content is never an error: it is cut and reported.
    pub(crate) fn open(dir: &Path, config: SegmentConfig) -> Result<(SegmentLog, RecoveryReport)> {
        let (segments, epochs, report) = recover(dir, &config)?;
        let size = segments.iter().map(|s| s.size).sum();
        let log = SegmentLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            epochs,
            size,
            last_sync: Instant::now(),
            retired: Vec::new(),
        };
        Ok((log, report))
    }

    /// The directory holding the segments.
    #[allow(dead_code)] // For the broker's diagnostics.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files.
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    #[cfg(test)]
    pub(crate) fn segment_bases(&self) -> Vec<u64> {
        self.segments.iter().map(|s| s.base).collect()
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a segment log always has a segment")
    }

    fn syncs(&self) -> bool {
        self.config.fsync.syncs()
    }

    /// Seals the active segment (index file written, both fsynced unless `Never`)
    /// and starts a new one at the log end.
    fn roll(&mut self) -> Result<()> {
        let sync = self.syncs();
        let active = self.active();
        let name = segment_file_name(active.base, INDEX_SUFFIX);
        write_atomically(&self.dir, &name, &active.index.encode(), sync)?;
        if sync {
            active.sync()?;
        }
        let segment = Segment::create(&self.dir, active.end)?;
        if sync {
            sync_dir(&self.dir)?;
        }
        self.segments.push(segment);
        Ok(())
    }

    fn save_epochs(&self) -> Result<()> {
        write_checkpoint(&self.dir, &self.epochs, self.syncs())
    }

    /// Unlinks the segments' files in `order` (FORMAT.md 4.1 has why each), and
    /// keeps their handles for [`Log::take_retired`].
    fn delete_segment_files(&mut self, segments: Vec<Segment>, order: Unlink) -> Result<()> {
        let unlink = |s: &Segment| -> Result<()> {
            remove_if_exists(&s.index_path())?;
            remove_if_exists(&s.path)
        };
        match order {
            Unlink::NewestFirst => segments.iter().rev().try_for_each(unlink)?,
            Unlink::OldestFirst => segments.iter().try_for_each(unlink)?,
        }
        self.retired.extend(segments.into_iter().map(|s| s.file));
        Ok(())
    }
}

impl Log for SegmentLog {
    fn set_segment_bytes(&mut self, bytes: u64) {
        self.config.segment_bytes = bytes;
    }

    fn append(&mut self, batch: &Batch) -> Result<()> {
        self.append_all(&[Stamped::as_is(batch)])
    }

    fn append_stamped(&mut self, batch: &Batch, base_offset: u64, leader_epoch: u32) -> Result<()> {
        self.append_all(&[Stamped::new(batch, base_offset, leader_epoch)])
    }

    fn writes_runs_at_once(&self) -> bool {
        true
    }

    fn append_all(&mut self, batches: &[Stamped<'_>]) -> Result<()> {
        let mut expected = self.log_end_offset();
        for s in batches {
            if s.base_offset != expected {
                let location = self.dir.display().to_string();
                return Err(append_offset_error(location, s.base_offset, expected));
            }
            expected = s.next_offset();
        }
        let mut rest = batches;
        while let Some(first) = rest.first() {
            let active = self.active();
            if active.size > 0 && active.size + first.batch.len() as u64 > self.config.segment_bytes
            {
                self.roll()?;
            }
            // As many as fit in the active segment, and at least one (a batch larger
            // than `segment.bytes` gets a segment of its own).
            let mut size = self.active().size + first.batch.len() as u64;
            let mut n = 1;
            while let Some(s) = rest.get(n) {
                size += s.batch.len() as u64;
                if size > self.config.segment_bytes {
                    break;
                }
                n += 1;
            }
            let (now, later) = rest.split_at(n);
            rest = later;
            let interval = self.config.index_interval_bytes;
            let active = self
                .segments
                .last_mut()
                .expect("a segment log always has a segment");
            let before = active.size;
            active.append(now, interval)?;
            self.size += active.size - before;
            let due = match self.config.fsync {
                FsyncPolicy::Never => false,
                FsyncPolicy::EveryBatch => true,
                FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            };
            if due {
                self.flush()?;
            }
            // Data first, then the checkpoint: a crash in between is repaired by
            // recovery, which re-applies the active segment's batch epochs.
            let mut new_epoch = false;
            for s in now {
                new_epoch |= self.epochs.assign(s.leader_epoch, s.base_offset);
            }
            if new_epoch {
                self.save_epochs()?;
            }
        }
        Ok(())
    }

    fn read(&self, from: u64, max_bytes: usize) -> Result<Vec<Batch>> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if from < start || from > end {
            return Err(out_of_range(from, start, end));
        }
        let mut out = Vec::new();
        let mut total = 0;
        let first = self.segments.partition_point(|s| s.base <= from) - 1;
        let mut want = from;
        for segment in &self.segments[first..] {
            if want >= segment.end {
                continue;
            }
            if !segment.read_into(want, max_bytes, &mut out, &mut total)? {
                break;
            }
            want = segment.end;
        }
        Ok(out)
    }

    fn truncate(&mut self, offset: u64) -> Result<()> {
        if offset >= self.log_end_offset() {
            // No batch goes, but an epoch that starts at the log end and holds no
            // batch (this replica led it briefly and appended nothing) must: a
            // follower keeps fetching with it and is told to truncate again, forever
            // (Kafka's UnifiedLog.truncateTo does the same).
            if self.epochs.truncate_from_end(self.log_end_offset()) {
                self.save_epochs()?;
            }
            return Ok(());
        }
        let offset = offset.max(self.log_start_offset());
        let keep = self.segments.partition_point(|s| s.base <= offset).max(1);
        let removed: Vec<Segment> = self.segments.drain(keep..).collect();
        let removed_bytes = removed.iter().map(|s| s.size).sum::<u64>();
        self.delete_segment_files(removed, Unlink::NewestFirst)?;
        let active = self
            .segments
            .last_mut()
            .expect("a segment log always has a segment");
        let before = active.size;
        let end = if offset < active.end {
            active.truncate_to(offset)?
        } else {
            active.end
        };
        // It is the active segment now: its index file would go stale.
        remove_if_exists(&active.index_path())?;
        self.size -= removed_bytes + (before - active.size);
        if self.syncs() {
            self.active()
                .file
                .sync_all()
                .map_err(|e| Error::io(&self.active().path, e))?;
            sync_dir(&self.dir)?;
        }
        if self.epochs.truncate_from_end(end) {
            self.save_epochs()?;
        }
        Ok(())
    }

    fn reset(&mut self, offset: u64) -> Result<()> {
        // Newer segments first, then the new empty one, then the rest: every crash
        // state is a prefix of the old log or the new log (FORMAT.md 4.1).
        let keep = self.segments.partition_point(|s| s.base <= offset);
        let newer: Vec<Segment> = self.segments.drain(keep..).collect();
        self.delete_segment_files(newer, Unlink::NewestFirst)?;
        let fresh = Segment::create(&self.dir, offset)?;
        let older: Vec<Segment> = self
            .segments
            .drain(..)
            .filter(|s| s.base != offset)
            .collect();
        self.delete_segment_files(older, Unlink::NewestFirst)?;
        self.segments.push(fresh);
        self.size = 0;
        if self.syncs() {
            sync_dir(&self.dir)?;
        }
        self.epochs.clear();
        self.save_epochs()
    }

    fn log_start_offset(&self) -> u64 {
        self.segments[0].base
    }

    fn log_end_offset(&self) -> u64 {
        self.active().end
    }

    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn take_retired(&mut self) -> Vec<File> {
        std::mem::take(&mut self.retired)
    }

    fn flush(&mut self) -> Result<()> {
        self.active().sync()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn apply_retention(
        &mut self,
        retention_bytes: Option<u64>,
        retention: Option<Duration>,
        now_ms: u64,
        below: u64,
    ) -> Result<u64> {
        let mut size = self.size;
        let mut drop = 0;
        while drop + 1 < self.segments.len() {
            let s = &self.segments[drop];
            if self.segments[drop + 1].base > below
                || !retention_deletes(
                    size,
                    s.size,
                    s.max_timestamp,
                    retention_bytes,
                    retention,
                    now_ms,
                )
            {
                break;
            }
            size -= s.size;
            drop += 1;
        }
        if drop > 0 {
            let removed: Vec<Segment> = self.segments.drain(..drop).collect();
            self.delete_segment_files(removed, Unlink::OldestFirst)?;
            self.size = size;
            if self.syncs() {
                sync_dir(&self.dir)?;
            }
            if self.epochs.truncate_from_start(self.log_start_offset()) {
                self.save_epochs()?;
            }
        }
        Ok(self.log_start_offset())
    }

    fn roll_segment(&mut self) -> Result<()> {
        if self.active().size > 0 {
            self.roll()?;
        }
        Ok(())
    }

    fn assign_epoch(&mut self, epoch: u32, start_offset: u64) -> Result<()> {
        if self.epochs.assign(epoch, start_offset) {
            self.save_epochs()?;
        }
        Ok(())
    }

    fn latest_epoch(&self) -> Option<u32> {
        self.epochs.latest()
    }

    fn earliest_epoch(&self) -> Option<u32> {
        self.epochs.earliest()
    }

    fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    fn epochs(&self) -> Vec<(u32, u64)> {
        self.epochs.entries().to_vec()
    }
}

/// `Write::write_all` for several buffers (`write_all_vectored` is not stable):
/// writes every byte of `bufs`, retrying short writes and interruptions.
fn write_all_vectored(mut file: &File, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
