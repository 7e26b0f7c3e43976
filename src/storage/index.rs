//! The sparse offset index of one segment: in memory for lookups, written to the
//! `.index` file when the segment is rolled. Layout: `docs/FORMAT.md`, section 2.1.

/// Bytes per entry in the index file.
pub(crate) const INDEX_ENTRY_LEN: usize = 24;

/// One indexed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Base offset of the batch.
    pub(crate) offset: u64,
    /// Byte position of the batch in the segment file.
    pub(crate) position: u64,
    /// Largest timestamp of every batch in the segment up to and including this one.
    pub(crate) max_timestamp: u64,
}

/// Entries strictly increasing in offset and position; the first (when any) is the
/// segment's first batch at position 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    /// Notes a batch appended at `position`: indexed when it is the segment's first or
    /// at least `interval` bytes follow the last indexed batch. `max_timestamp` is the
    /// segment's running maximum including this batch.
    pub(crate) fn on_append(
        &mut self,
        offset: u64,
        position: u64,
        max_timestamp: u64,
        interval: usize,
    ) {
        let due = match self.entries.last() {
            None => true,
            Some(last) => position - last.position >= interval as u64,
        };
        if due {
            self.entries.push(IndexEntry {
                offset,
                position,
                max_timestamp,
            });
        }
    }

    /// The last entry at or below `offset`.
    pub(crate) fn floor(&self, offset: u64) -> Option<IndexEntry> {
        let at = self.entries.partition_point(|e| e.offset <= offset);
        at.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// Drops entries for batches at or after `offset` (they were truncated away).
    pub(crate) fn truncate_from(&mut self, offset: u64) {
        let keep = self.entries.partition_point(|e| e.offset < offset);
        self.entries.truncate(keep);
    }

    /// The index file's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.entries.len() * INDEX_ENTRY_LEN);
        for e in &self.entries {
            buf.extend_from_slice(&e.offset.to_le_bytes());
            buf.extend_from_slice(&e.position.to_le_bytes());
            buf.extend_from_slice(&e.max_timestamp.to_le_bytes());
        }
        buf
    }

    /// Parses an index file for the segment `base_offset` whose file is `segment_len`
    /// bytes; `None` when it is inconsistent (then it is rebuilt from the segment).
    pub(crate) fn decode(buf: &[u8], base_offset: u64, segment_len: u64) -> Option<OffsetIndex> {
        if buf.is_empty() || !buf.len().is_multiple_of(INDEX_ENTRY_LEN) {
            return None;
        }
        let field = |c: &[u8], p: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[p..p + 8]);
            u64::from_le_bytes(b)
        };
        let entries: Vec<IndexEntry> = buf
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|c| IndexEntry {
                offset: field(c, 0),
                position: field(c, 8),
                max_timestamp: field(c, 16),
            })
            .collect();
        let first = entries[0];
        let consistent = first.offset == base_offset
            && first.position == 0
            && entries.windows(2).all(|w| {
                w[0].offset < w[1].offset
                    && w[0].position < w[1].position
                    && w[0].max_timestamp <= w[1].max_timestamp
            })
            && entries.last().is_some_and(|e| e.position < segment_len);
        consistent.then_some(OffsetIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(u64, u64)]) -> OffsetIndex {
        OffsetIndex {
            entries: entries
                .iter()
                .map(|&(offset, position)| IndexEntry {
                    offset,
                    position,
                    max_timestamp: offset,
                })
                .collect(),
        }
    }

    #[test]
    fn first_batch_is_always_indexed_then_every_interval_bytes() {
        let mut idx = OffsetIndex::default();
        idx.on_append(100, 0, 1, 4096);
        idx.on_append(101, 1000, 1, 4096);
        idx.on_append(102, 4096, 1, 4096);
        idx.on_append(103, 5000, 1, 4096);
        assert_eq!(idx.encode().len(), 2 * INDEX_ENTRY_LEN);
        assert_eq!(idx.floor(101).map(|e| e.offset), Some(100));
        assert_eq!(idx.floor(103).map(|e| e.offset), Some(102));
        assert_eq!(idx.floor(99), None);
    }

    #[test]
    fn decode_round_trips_and_rejects_inconsistent_files() {
        let idx = index(&[(100, 0), (110, 5000), (130, 9000)]);
        let bytes = idx.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 100, 10_000), Some(idx.clone()));
        // Wrong base, position past the file, partial entry, empty, disorder.
        assert_eq!(OffsetIndex::decode(&bytes, 99, 10_000), None);
        assert_eq!(OffsetIndex::decode(&bytes, 100, 9000), None);
        assert_eq!(OffsetIndex::decode(&bytes[..30], 100, 10_000), None);
        assert_eq!(OffsetIndex::decode(&[], 100, 10_000), None);
        let disorder = index(&[(100, 0), (130, 9000), (110, 5000)]).encode();
        assert_eq!(OffsetIndex::decode(&disorder, 100, 10_000), None);
    }

    #[test]
    fn truncate_from_drops_entries_at_or_after_offset() {
        let mut idx = index(&[(100, 0), (110, 5000), (130, 9000)]);
        idx.truncate_from(110);
        assert_eq!(idx, index(&[(100, 0)]));
    }
}
