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
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            b[7] = rest.len() as u8;
            self.add(u64::from_le_bytes(b));
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
