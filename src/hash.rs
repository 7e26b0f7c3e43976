//! A fast hasher for maps on hot paths keyed by names the application chooses
//! (topic names): rustc's FxHash. `std`'s SipHash resists collision attacks from
//! untrusted keys, which these are not, and cost several times more per lookup on
//! every `send`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// rustc's FxHasher: one rotate, xor and multiply per 8 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The length goes in the byte the remainder never fills, so "t" and
            // "t\0" differ.
            self.add(tail_word(rest) | (rest.len() as u64) << 56);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// The up to 7 bytes of `rest` as a little-endian word, read in at most three
/// loads: copying them into a buffer compiles to a `memcpy` call of unknown
/// length, which was a tenth of a broker's time with 1000 partitions (every
/// lookup hashes a topic name).
#[inline]
pub(crate) fn tail_word(rest: &[u8]) -> u64 {
    debug_assert!(rest.len() < 8);
    let mut word = 0;
    let mut at = 0;
    if rest.len() >= 4 {
        word = u64::from(u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")));
        at = 4;
    }
    if rest.len() - at >= 2 {
        let two = u16::from_le_bytes(rest[at..at + 2].try_into().expect("2 bytes"));
        word |= u64::from(two) << (8 * at);
        at += 2;
    }
    if rest.len() > at {
        word |= u64::from(rest[at]) << (8 * at);
    }
    word
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A `HashSet` with [`FxHasher`].
pub(crate) type FxHashSet<T> = std::collections::HashSet<T, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash(s: &str) -> u64 {
        BuildHasherDefault::<FxHasher>::default().hash_one(s)
    }

    #[test]
    fn names_that_differ_only_past_eight_bytes_or_in_length_hash_apart() {
        assert_ne!(hash("topic-00"), hash("topic-01"));
        assert_ne!(hash("topic-name-a"), hash("topic-name-b"));
        assert_ne!(hash("t"), hash("t\0"));
        assert_eq!(hash("clicks"), hash("clicks"));
        let mut h = FxHasher::default();
        "clicks".hash(&mut h);
        assert_eq!(h.finish(), hash("clicks"));
    }

    #[test]
    fn the_tail_of_a_name_reads_as_its_bytes_in_little_endian_order() {
        let bytes = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        for len in 0..8 {
            let mut b = [0u8; 8];
            b[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(
                tail_word(&bytes[..len]),
                u64::from_le_bytes(b),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m = FxHashMap::default();
        for i in 0..1000 {
            m.insert(format!("topic-{i}"), i);
        }
        for i in 0..1000 {
            assert_eq!(m.get(format!("topic-{i}").as_str()), Some(&i));
        }
    }
}
