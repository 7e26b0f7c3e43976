//! Memory for the batches a broker's memory logs copy: carved from 1 MiB chunks,
//! and a chunk no batch points into any more is reused rather than freed.
//!
//! A leader's memory log keeps its own copy of each batch it appends, stamped with
//! offset and epoch (the producer keeps the original for retries). Allocated batch
//! by batch, the memory of a deleted topic, or of batches that retention or
//! truncation dropped, went back to the allocator, which returns it to the OS once
//! enough lies free at the top of its heap. The next appends then took a page fault
//! for every 4 KiB they wrote: under a steady produce load with topics created and
//! deleted (a test suite, a benchmark) that was about half of a broker thread's
//! time, taken from the cores the producing threads need.
//!
//! Chunks are shared by all the memory logs of one broker and used by its thread
//! alone; the lock is taken once per batch and never contended.

use bytes::{Bytes, BytesMut};

use crate::sync::{Arc, Mutex};

/// Size of one chunk.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// A copy larger than this gets an allocation of its own: it would leave too much
/// of a chunk's tail unused.
const OWN_ALLOCATION_ABOVE: usize = CHUNK_BYTES / 4;

/// Freed chunks a broker keeps for reuse, at most (32 MiB).
pub(crate) const MAX_FREE_CHUNKS: usize = 32;

/// A broker's chunks; clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Chunks(Arc<Mutex<Pool>>);

#[derive(Debug)]
struct Pool {
    /// The chunk copies are carved from: its capacity is what is left of it.
    current: BytesMut,
    /// Whether a copy was carved from `current` (then other handles point into it).
    carved: bool,
    /// Used-up chunks whose copies may still be alive (in a log, a fetch answer, a
    /// consumer's record). Each handle keeps its chunk allocated; a handle left alone
    /// has every copy gone.
    retired: Vec<BytesMut>,
    /// Whole chunks ready for reuse.
    free: Vec<BytesMut>,
    max_free: usize,
    /// Whether a free chunk was taken since the last [`Chunks::tick`].
    reused_since_tick: bool,
    /// `retired` length at which a chunk wanted with none free sweeps by itself.
    sweep_at: usize,
}

impl Default for Chunks {
    fn default() -> Self {
        Chunks::new(MAX_FREE_CHUNKS)
    }
}

impl Chunks {
    /// Chunks keeping up to `max_free` freed ones for reuse.
    pub(crate) fn new(max_free: usize) -> Self {
        Chunks(Arc::new(Mutex::new(Pool {
            current: BytesMut::new(),
            carved: false,
            retired: Vec::new(),
            free: Vec::new(),
            max_free,
            reused_since_tick: false,
            sweep_at: 0,
        })))
    }

    /// `parts` laid end to end, copied into chunk memory.
    pub(crate) fn copy(&self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > OWN_ALLOCATION_ABOVE {
            let mut own = BytesMut::with_capacity(len);
            for p in parts {
                own.extend_from_slice(p);
            }
            return own.freeze();
        }
        let mut pool = self.0.lock();
        // After each carve `current` is empty: its capacity is the chunk's free tail.
        if pool.current.capacity() < len {
            pool.next_chunk();
        }
        for p in parts {
            pool.current.extend_from_slice(p);
        }
        pool.carved = true;
        pool.current.split().freeze()
    }

    /// Logs dropped data (a replica was removed): the next chunk wanted looks among
    /// the used-up ones first. Other brokers' replicas may hold copies a little
    /// longer, so the look waits until a chunk is wanted.
    pub(crate) fn released(&self) {
        self.0.lock().sweep_at = 0;
    }

    /// Reclaims the chunks no copy points into any more: reused up to the limit,
    /// the rest freed.
    #[cfg(all(test, not(loom)))]
    fn sweep(&self) {
        self.0.lock().sweep();
    }

    /// The broker's periodic pass: a sweep, and half of the free chunks go back to
    /// the allocator if none was reused since the last pass (memory an idle broker
    /// no longer needs is not kept for long).
    pub(crate) fn tick(&self) {
        let mut pool = self.0.lock();
        pool.sweep();
        if !std::mem::take(&mut pool.reused_since_tick) {
            let keep = pool.free.len() / 2;
            pool.free.truncate(keep);
        }
    }

    /// (retired, free) chunk counts.
    #[cfg(all(test, not(loom)))]
    fn counts(&self) -> (usize, usize) {
        let pool = self.0.lock();
        (pool.retired.len(), pool.free.len())
    }
}

impl Pool {
    /// Retires the current chunk and takes a free one, or a new one.
    fn next_chunk(&mut self) {
        let used = std::mem::take(&mut self.current);
        if std::mem::take(&mut self.carved) {
            self.retired.push(used);
        }
        // With nothing free, look among the retired ones, but only once their number
        // grew by an eighth since the last look: a log that only grows would
        // otherwise scan all its chunks for each new one.
        if self.free.is_empty() && self.retired.len() >= self.sweep_at {
            self.sweep();
        }
        self.current = match self.free.pop() {
            Some(c) => {
                self.reused_since_tick = true;
                c
            }
            None => BytesMut::with_capacity(CHUNK_BYTES),
        };
    }

    fn sweep(&mut self) {
        let max_free = self.max_free;
        let free = &mut self.free;
        self.retired.retain_mut(|c| {
            // Succeeds, without allocating, only for the last handle to its chunk:
            // every copy carved from it is gone. It then spans the whole chunk.
            if !c.try_reclaim(CHUNK_BYTES) {
                return true;
            }
            if free.len() < max_free {
                free.push(std::mem::take(c));
            }
            false
        });
        self.sweep_at = self.retired.len() + self.retired.len() / 8 + 1;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn batch(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn copies_hold_their_parts_end_to_end() {
        let chunks = Chunks::default();
        let a = chunks.copy(&[b"head", b"-rest"]);
        let b = chunks.copy(&[b"second"]);
        assert_eq!(&a[..], b"head-rest");
        assert_eq!(&b[..], b"second");
        let big = batch(OWN_ALLOCATION_ABOVE + 1, 7);
        assert_eq!(&chunks.copy(&[&big])[..], &big[..]);
    }

    #[test]
    fn a_chunk_whose_copies_are_all_dropped_is_reused_in_place() {
        let chunks = Chunks::default();
        let part = batch(CHUNK_BYTES / 4, 1);
        // Four copies fill the first chunk; the fifth starts a second one.
        let first: Vec<Bytes> = (0..4).map(|_| chunks.copy(&[&part])).collect();
        let start = first[0].as_ptr();
        let fifth = chunks.copy(&[&part]);
        assert_eq!(chunks.counts(), (1, 0));
        // While any copy lives, the first chunk stays retired.
        let kept = first[3].clone();
        drop(first);
        chunks.sweep();
        assert_eq!(chunks.counts(), (1, 0));
        drop(kept);
        chunks.sweep();
        assert_eq!(chunks.counts(), (0, 1));
        // The second chunk fills; the next copy lands at the first chunk's start.
        let more: Vec<Bytes> = (0..3).map(|_| chunks.copy(&[&part])).collect();
        let reused = chunks.copy(&[&batch(10, 2)]);
        assert_eq!(reused.as_ptr(), start);
        assert_eq!(&reused[..], &[2u8; 10][..]);
        assert_eq!(&fifth[..], &part[..]);
        assert!(more.iter().all(|m| m[..] == part[..]));
    }

    #[test]
    fn a_chunk_wanted_with_none_free_finds_a_dropped_one_itself() {
        let chunks = Chunks::default();
        let quarter = batch(CHUNK_BYTES / 4, 3);
        let a = chunks.copy(&[&quarter]);
        let start = a.as_ptr();
        for _ in 0..3 {
            drop(chunks.copy(&[&quarter]));
        }
        drop(a);
        // The fifth copy needs a new chunk: the first is found free without a sweep.
        let c = chunks.copy(&[&quarter]);
        assert_eq!(c.as_ptr(), start);
    }

    #[test]
    fn free_chunks_are_bounded_and_given_back_when_unused() {
        let chunks = Chunks::new(2);
        let quarter = batch(CHUNK_BYTES / 4, 0);
        // Five chunks used up, then all their copies dropped: two are kept, the
        // others freed.
        let copies: Vec<Bytes> = (0..5 * 4 + 1).map(|_| chunks.copy(&[&quarter])).collect();
        assert_eq!(chunks.counts(), (5, 0));
        drop(copies);
        chunks.sweep();
        assert_eq!(chunks.counts(), (0, 2));
        // Ticks with no reuse in between give half of them back each.
        chunks.tick();
        assert_eq!(chunks.counts(), (0, 1));
        chunks.tick();
        assert_eq!(chunks.counts(), (0, 0));
    }

    #[test]
    fn after_a_release_the_next_chunk_wanted_looks_among_the_used_up_ones() {
        let quarter = batch(CHUNK_BYTES / 4, 0);
        // Without a release: a new chunk, the dropped ones wait for a later look.
        let chunks = Chunks::default();
        drop(
            (0..8 * 4 + 1)
                .map(|_| chunks.copy(&[&quarter]))
                .collect::<Vec<_>>(),
        );
        let _live: Vec<Bytes> = (0..4).map(|_| chunks.copy(&[&quarter])).collect();
        assert_eq!(chunks.counts(), (9, 0));

        let chunks = Chunks::default();
        let copies: Vec<Bytes> = (0..8 * 4 + 1).map(|_| chunks.copy(&[&quarter])).collect();
        assert_eq!(chunks.counts(), (8, 0));
        drop(copies);
        // Too soon for a look of its own (the retired count has not grown by an
        // eighth since the last), but a release asks for one. The ninth chunk
        // fills, and the look finds the eight before it free; the ninth has live
        // copies.
        chunks.released();
        let _live: Vec<Bytes> = (0..4).map(|_| chunks.copy(&[&quarter])).collect();
        assert_eq!(chunks.counts(), (1, 7));
    }

    #[test]
    fn a_removed_memory_logs_chunks_take_the_next_logs_batches() {
        use crate::storage::tests::support::simple_batch;
        use crate::storage::{Log, MemoryLog};

        let chunks = Chunks::default();
        // A leader log stamps 100 batches of about 12 KiB: two chunks and more.
        let mut old = MemoryLog::with_chunks(chunks.clone());
        for _ in 0..100 {
            let b = simple_batch(0, 100, 100, 0, 1_000);
            old.append_stamped(&b, old.log_end_offset(), 1).unwrap();
        }
        let first = old.read(0, 1).unwrap()[0].as_bytes().as_ptr();
        drop(old);
        chunks.released();
        // The next log fills what is left of the current chunk, then reuses the
        // first chunk, stamped data and all intact.
        let mut new = MemoryLog::with_chunks(chunks.clone());
        let mut reused = false;
        for _ in 0..100 {
            let b = simple_batch(0, 100, 100, 0, 1_000);
            let at = new.log_end_offset();
            new.append_stamped(&b, at, 2).unwrap();
            let stored = &new.read(at, 1).unwrap()[0];
            assert_eq!(stored.base_offset(), at);
            assert_eq!(stored.leader_epoch(), 2);
            assert_eq!(stored.records().count(), 100);
            reused |= stored.as_bytes().as_ptr() == first;
        }
        assert!(reused, "the first chunk of the removed log was not reused");
        // The second chunk holds the new log's first batches; nothing was allocated.
        assert_eq!(chunks.counts(), (1, 0));
    }
}
