//! Records as users see them, and the record batch: the unit that is appended,
//! replicated, stored and checksummed. The byte layout is in `docs/FORMAT.md`.

use bytes::Bytes;

use crate::Result;

/// A record to produce: an optional key, a value, headers.
///
/// # Examples
///
/// ```
/// use replog::Record;
/// let r = Record::new("hello").key("user-1").header("trace", "abc");
/// # let _ = r;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<(String, Bytes)>,
    pub(crate) timestamp: Option<u64>,
}

impl Record {
    /// A record with this value and no key.
    pub fn new(value: impl Into<Bytes>) -> Self {
        Record {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key. Keyed records go to the partition Kafka's default partitioner
    /// picks (murmur2 of the key), so equal keys keep their order.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch (`CreateTime`).
    /// Unset, the producer stamps the time of `send`.
    pub fn timestamp(mut self, millis: u64) -> Self {
        self.timestamp = Some(millis);
        self
    }
}

/// A record as a consumer (or [`Replica::read`](crate::Replica::read)) sees it.
///
/// # Examples
///
/// ```
/// # use replog::ConsumedRecord;
/// fn show(r: &ConsumedRecord) -> String {
///     format!("{}-{}@{}: {:?}", r.topic, r.partition, r.offset, r.value)
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The record's offset in the partition.
    pub offset: u64,
    /// The key, if it had one.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// The headers, in the order they were added.
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the Unix epoch (`CreateTime`).
    pub timestamp: u64,
}

/// One record decoded from a batch; key, value and header values share the batch's
/// buffer (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    pub offset: u64,
    pub timestamp: u64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl DecodedRecord {
    /// The record as a consumer sees it.
    pub(crate) fn into_consumed(self, tp: &crate::TopicPartition) -> ConsumedRecord {
        ConsumedRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: self.offset,
            key: self.key,
            value: self.value,
            headers: self.headers,
            timestamp: self.timestamp,
        }
    }
}

/// Fixed size of a batch header in bytes.
pub(crate) const BATCH_HEADER_LEN: usize = 0; // set by the implementation

/// Builds one batch from records: the producer encodes each record once, straight
/// into the batch buffer, and computes the CRC when it finishes.
#[derive(Debug)]
pub(crate) struct BatchBuilder {}

impl BatchBuilder {
    /// An empty batch for `producer_id` (`None`: not idempotent), with room for
    /// `capacity` bytes before it reallocates.
    pub fn new(producer_id: Option<u64>, capacity: usize) -> Self {
        let _ = (producer_id, capacity);
        todo!()
    }

    /// Encoded size of one record in a batch (what `max.message.bytes` is checked
    /// against, together with [`BATCH_HEADER_LEN`]).
    pub fn encoded_len(record: &Record) -> usize {
        let _ = record;
        todo!()
    }

    /// Appends one record; `timestamp` is used where the record has none.
    pub fn push(&mut self, record: &Record, timestamp: u64) {
        let _ = (record, timestamp);
        todo!()
    }

    /// Bytes encoded so far, header included.
    pub fn len_bytes(&self) -> usize {
        todo!()
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        todo!()
    }

    /// Seals the batch: writes the header (base offset 0, epoch 0, `base_sequence`,
    /// `-1` for none) and the CRC.
    pub fn finish(self, base_sequence: Option<i32>) -> Batch {
        let _ = base_sequence;
        todo!()
    }
}

/// An encoded, CRC-valid record batch. Cloning is cheap (shared `Bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` as exactly one batch: length, CRC32, every record's framing.
    /// Anything short, oversized, or failing its CRC is `Error::Corrupt`. Never panics,
    /// never allocates more than `bytes` justifies.
    pub fn decode(bytes: Bytes) -> Result<Batch> {
        let _ = bytes;
        todo!()
    }

    /// The total length of the batch that starts at `buf[0]`, read from its header,
    /// or `None` when `buf` is shorter than the length field. For scanning files.
    pub fn frame_len(buf: &[u8]) -> Option<usize> {
        let _ = buf;
        todo!()
    }

    /// The same batch with base offset and leader epoch set. These fields lie before
    /// the CRC field, so the CRC is not recomputed; the buffer is copied only if shared.
    pub fn stamped(self, base_offset: u64, leader_epoch: u32) -> Batch {
        let _ = (base_offset, leader_epoch);
        todo!()
    }

    /// The whole encoded batch.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
    /// Offset of the first record.
    pub fn base_offset(&self) -> u64 {
        todo!()
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        todo!()
    }
    /// Offset after the last record (`last_offset + 1`).
    pub fn next_offset(&self) -> u64 {
        todo!()
    }
    /// Number of records (at least 1).
    pub fn record_count(&self) -> u32 {
        todo!()
    }
    /// Leader epoch the batch was appended in.
    pub fn leader_epoch(&self) -> u32 {
        todo!()
    }
    /// Producer id of an idempotent producer.
    pub fn producer_id(&self) -> Option<u64> {
        todo!()
    }
    /// Sequence of the first record, for an idempotent producer.
    pub fn base_sequence(&self) -> Option<i32> {
        todo!()
    }
    /// Largest record timestamp in the batch (ms since the Unix epoch).
    pub fn max_timestamp(&self) -> u64 {
        todo!()
    }
    /// The records, decoded lazily; values share the batch's buffer.
    pub fn records(&self) -> impl Iterator<Item = DecodedRecord> + '_ {
        std::iter::empty()
    }
}
