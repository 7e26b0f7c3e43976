//! `__consumer_offsets` records and the group → partition hash.

use crate::group::offsets::{partition_for, OffsetRecord};
use crate::ids::TopicPartition;
use crate::Error;

/// A record for `group`, `t-p`, `offset`.
fn record(group: &str, topic: &str, p: u32, offset: Option<u64>) -> OffsetRecord {
    OffsetRecord {
        group: group.into(),
        tp: TopicPartition::new(topic, p),
        offset,
    }
}

#[test]
fn offset_record_round_trips_through_encode_and_decode() {
    for r in [
        record("billing", "orders", 3, Some(42)),
        record("g", "t", 0, Some(0)),
        record("g", "t", u32::MAX, Some(u64::MAX)),
        record("gröup-ä", "töpic", 7, Some(1 << 40)),
        record("billing", "orders", 3, None),
    ] {
        let (key, value) = r.encode();
        assert_eq!(OffsetRecord::decode(&key, &value).expect("decodes"), r);
    }
}

#[test]
fn offset_record_layout_is_the_documented_one() {
    let (key, value) = record("g", "t", 2, Some(5)).encode();
    assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]);
    assert_eq!(&value[..], &[0, 1, 0, 0, 0, 0, 0, 0, 0, 5]);
    let (_, tombstone) = record("g", "t", 2, None).encode();
    assert!(tombstone.is_empty());
}

#[test]
fn offset_record_decode_refuses_every_truncation_without_panicking() {
    let (key, value) = record("billing", "orders", 3, Some(42)).encode();
    for cut in 0..key.len() {
        let err = OffsetRecord::decode(&key[..cut], &value).expect_err("short key");
        assert!(matches!(err, Error::Corrupt { .. }), "cut {cut}: {err}");
    }
    // An empty value is a tombstone, so cuts start at 1.
    for cut in 1..value.len() {
        let err = OffsetRecord::decode(&key, &value[..cut]).expect_err("short value");
        assert!(matches!(err, Error::Corrupt { .. }), "cut {cut}: {err}");
    }
}

#[test]
fn offset_record_decode_refuses_garbage_without_panicking() {
    let (key, value) = record("g", "t", 1, Some(9)).encode();
    let mut long_key = key.to_vec();
    long_key.push(0);
    let mut long_value = value.to_vec();
    long_value.push(0);
    let bad_version = [0u8, 9, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1];
    let bad_utf8 = [0u8, 1, 0, 1, 0xff, 0, 1, b't', 0, 0, 0, 1];
    let cases: [(&[u8], &[u8]); 5] = [
        (&long_key, &value),
        (&key, &long_value),
        (&bad_version, &value),
        (&bad_utf8, &value),
        (&key, &[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]),
    ];
    for (i, (k, v)) in cases.iter().enumerate() {
        let err = OffsetRecord::decode(k, v).expect_err("garbage");
        assert!(matches!(err, Error::Corrupt { .. }), "case {i}: {err}");
    }
    // A cheap deterministic sweep of pseudo-random bytes (xorshift): never a panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (k, v) = bytes.split_at(len / 2);
        let _ = OffsetRecord::decode(k, v);
        let _ = OffsetRecord::decode(&bytes, &value);
    }
}

#[test]
fn partition_for_matches_kafka_string_hash_code() {
    // Java: "hello".hashCode() == 99162322; "my-group".hashCode() == -1906497762;
    // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Utils.abs maps to 0.
    let table: &[(&str, u32, u32)] = &[
        ("", 50, 0),
        ("a", 50, 47),
        ("hello", 50, 22),
        ("my-group", 50, 12),
        ("billing", 50, 9),
        ("polygenelubricants", 50, 0),
        ("ä", 50, 28),
        ("hello", 1, 0),
        ("hello", 7, 99_162_322 % 7),
    ];
    for (group, partitions, expected) in table {
        assert_eq!(
            partition_for(group, *partitions),
            *expected,
            "{group:?} over {partitions}"
        );
    }
}
