//! Committed offsets as records of `__consumer_offsets`, and which partition of that
//! topic holds a group.
//!
//! # Record layout
//!
//! All integers big-endian, as Kafka's. Strings are UTF-8 with a `u16` length.
//!
//! Key (what compaction keeps one live value of: a group and partition):
//!
//! | bytes | field |
//! | --- | --- |
//! | 2 | key version, 1 = offset commit |
//! | 2 + G | group id |
//! | 2 + T | topic |
//! | 4 | partition |
//!
//! Value: empty for a tombstone (the group's offset for that partition is deleted),
//! else:
//!
//! | bytes | field |
//! | --- | --- |
//! | 2 | value version, 1 |
//! | 8 | committed offset: the next record the group will consume |
//!
//! Decoding refuses anything else (wrong version, short, trailing bytes, bad
//! UTF-8) with [`Error::Corrupt`]; it never panics.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ids::TopicPartition;
use crate::storage::Log;
use crate::{Error, Result};

/// Reads the records of an offsets partition's `log` from its start, in log
/// order, as a coordinator that takes over replays them: `visit` gets each
/// record's offset and what it decodes to (`Error::Corrupt` for one that is not an
/// offset record).
///
/// # Errors
///
/// The first read that fails, as [`Log::read`]; the records before it were
/// visited.
pub(crate) fn read_log(
    log: &dyn Log,
    mut visit: impl FnMut(u64, Result<OffsetRecord>),
) -> Result<()> {
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let batches = log.read(at, 1 << 20)?;
        let Some(last) = batches.last() else {
            break;
        };
        at = last.next_offset();
        for b in &batches {
            for rec in b.records() {
                let key = rec.key.as_deref().unwrap_or_default();
                visit(rec.offset, OffsetRecord::decode(key, &rec.value));
            }
        }
    }
    Ok(())
}

/// Key version of an offset commit record.
const KEY_VERSION_OFFSET: u16 = 1;
/// Value version of an offset commit record.
const VALUE_VERSION: u16 = 1;

/// One committed offset (or its deletion), as stored in `__consumer_offsets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OffsetRecord {
    /// The group id.
    pub(crate) group: String,
    /// The partition whose position is committed.
    pub(crate) tp: TopicPartition,
    /// The committed offset (the next record to consume); `None` is a tombstone
    /// that deletes the group's offset for `tp`.
    pub(crate) offset: Option<u64>,
}

impl OffsetRecord {
    /// Encodes the record as the key and value of a `__consumer_offsets` record.
    ///
    /// # Panics
    ///
    /// If the group id or topic is longer than 65,535 bytes: the coordinator refuses
    /// such names before it creates a record.
    pub(crate) fn encode(&self) -> (Bytes, Bytes) {
        let mut key = BytesMut::with_capacity(12 + self.group.len() + self.tp.topic.len());
        key.put_u16(KEY_VERSION_OFFSET);
        put_str(&mut key, &self.group);
        put_str(&mut key, &self.tp.topic);
        key.put_u32(self.tp.partition);
        let value = match self.offset {
            None => Bytes::new(),
            Some(offset) => {
                let mut v = BytesMut::with_capacity(10);
                v.put_u16(VALUE_VERSION);
                v.put_u64(offset);
                v.freeze()
            }
        };
        (key.freeze(), value)
    }

    /// Decodes a record written by [`OffsetRecord::encode`].
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the bytes are not such a record.
    pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<OffsetRecord> {
        let mut k = Reader::new(key, "__consumer_offsets record key");
        let version = k.u16()?;
        if version != KEY_VERSION_OFFSET {
            return Err(k.error(format!(
                "unknown key version {version} (this build reads version {KEY_VERSION_OFFSET})"
            )));
        }
        let group = k.string()?;
        let topic = k.string()?;
        let partition = k.u32()?;
        k.finish()?;
        let offset = if value.is_empty() {
            None
        } else {
            let mut v = Reader::new(value, "__consumer_offsets record value");
            let version = v.u16()?;
            if version != VALUE_VERSION {
                return Err(v.error(format!(
                    "unknown value version {version} (this build reads version {VALUE_VERSION})"
                )));
            }
            let offset = v.u64()?;
            v.finish()?;
            Some(offset)
        };
        Ok(OffsetRecord {
            group,
            tp: TopicPartition::new(topic, partition),
            offset,
        })
    }
}

/// Appends a string with its `u16` length.
fn put_str(buf: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).expect("names are checked to fit a u16 length");
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
    /// Bytes read so far, for error messages.
    pos: usize,
    /// What is being read, for error messages.
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, named `what` in errors.
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            rest: bytes,
            pos: 0,
            what,
        }
    }

    /// An [`Error::Corrupt`] at the current position.
    fn error(&self, reason: String) -> Error {
        Error::corrupt(format!("{} at byte {}", self.what, self.pos), reason)
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.error(format!(
                "truncated: {n} more bytes needed, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.pos += n;
        Ok(head)
    }

    /// A big-endian `u16`.
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("took 4 bytes")))
    }

    /// A big-endian `u64`.
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("took 8 bytes")))
    }

    /// A `u16`-length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<String> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(format!("string is not UTF-8: {e}"))),
        }
    }

    /// Fails if bytes are left over.
    fn finish(&self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.rest.len())))
        }
    }
}

/// Which partition of `__consumer_offsets` holds `group`'s offsets, and so which
/// broker coordinates it (the leader of that partition).
///
/// As Kafka's `GroupMetadataManager.partitionFor`:
/// `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, where `hashCode` is
/// Java's `String.hashCode` (over UTF-16 code units, wrapping `i32`) and
/// `Utils.abs` maps `i32::MIN` to 0. Stable across runs and versions, so offsets
/// written by one build are found by the next.
///
/// # Panics
///
/// If `partitions` is 0: the offsets topic always has partitions.
pub(crate) fn partition_for(group: &str, partitions: u32) -> u32 {
    assert!(
        partitions > 0,
        "__consumer_offsets has at least one partition"
    );
    let hash = group.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's Utils.abs: i32::MIN has no positive counterpart and maps to 0.
    let abs = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    abs % partitions
}
