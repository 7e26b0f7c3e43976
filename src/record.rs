//! Records as users see them, and the record batch: the unit that is appended,
//! replicated, stored and checksummed. The byte layout is in `docs/FORMAT.md`.

use bytes::{Bytes, BytesMut};

use crate::{Error, Result};

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
/// # Memory
///
/// `key`, `value` and header values are views of the stored batch, not copies: a
/// record kept keeps that memory allocated after the log drops it (with memory
/// storage, the leader's 1 MiB chunk the batch lies in). To keep a value for
/// long after the log moved on, copy it (`Bytes::copy_from_slice(&r.value)`).
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
    /// The leader epoch of the batch the record was appended in (Kafka's
    /// `ConsumerRecord.leaderEpoch()`): rises with every leader change.
    pub leader_epoch: u32,
}

/// One record decoded from a batch; key, value and header values share the batch's
/// buffer (no copy).
#[allow(dead_code)] // Read by the replica and consumer paths through `Batch::records`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodedRecord {
    pub(crate) offset: u64,
    pub(crate) timestamp: u64,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Bytes,
    pub(crate) headers: Vec<(String, Bytes)>,
    pub(crate) leader_epoch: u32,
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
            leader_epoch: self.leader_epoch,
        }
    }
}

/// Fixed size of a batch header in bytes (`docs/FORMAT.md`, section 1.1).
pub(crate) const BATCH_HEADER_LEN: usize = 46;

// Field positions in the batch header; see docs/FORMAT.md, section 1.1.
const POS_BASE_OFFSET: usize = 0;
const POS_LENGTH: usize = 8;
const POS_LEADER_EPOCH: usize = 12;
const POS_CRC: usize = 16;
const POS_MAGIC: usize = 20;
const POS_ATTRIBUTES: usize = 21;
const POS_PRODUCER_ID: usize = 22;
const POS_BASE_SEQUENCE: usize = 30;
const POS_RECORD_COUNT: usize = 34;
const POS_MAX_TIMESTAMP: usize = 38;
/// Bytes up to and including the length field: a frame is this plus `length`.
const FRAME_PREFIX_LEN: usize = 12;
/// The CRC covers every byte from here to the end of the frame.
const CRC_START: usize = 20;
/// Format version written in the magic byte.
const MAGIC: u8 = 1;
/// Framing of a record with no key and no headers: length, timestamp, key length,
/// value length, header count.
const RECORD_OVERHEAD: usize = 4 + 8 + 4 + 4 + 4;
/// Framing of one header: name length and value length.
const HEADER_OVERHEAD: usize = 4 + 4;

/// Builds one batch from records: the producer encodes each record once, straight
/// into the batch buffer. The CRC is computed when the batch is finished, or by
/// the leader that stamps it into its log
/// ([`finish_crc_later`](Self::finish_crc_later)).
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    buf: BytesMut,
    count: u32,
    max_timestamp: u64,
    producer_id: i64,
}

impl BatchBuilder {
    /// An empty batch for `producer_id` (`None`: not idempotent), with room for
    /// `capacity` bytes before it reallocates.
    ///
    /// # Panics
    ///
    /// If `producer_id` does not fit in an `i64` (ids are allocated by the crate and
    /// stay far below that: a broken invariant).
    pub(crate) fn new(producer_id: Option<u64>, capacity: usize) -> Self {
        Self::reusing(None, producer_id, capacity)
    }

    /// As [`BatchBuilder::new`], writing into `spare` (an earlier batch's buffer,
    /// see [`Batch::into_spare`]) when there is one, instead of a new allocation.
    pub(crate) fn reusing(
        spare: Option<BytesMut>,
        producer_id: Option<u64>,
        capacity: usize,
    ) -> Self {
        let producer_id = match producer_id {
            Some(id) => i64::try_from(id).expect("producer id above i64::MAX"),
            None => -1,
        };
        let capacity = capacity.max(BATCH_HEADER_LEN);
        let mut buf = match spare {
            Some(mut b) => {
                b.clear();
                b.reserve(capacity);
                b
            }
            None => BytesMut::with_capacity(capacity),
        };
        // Touched once, in one sweep: the records are then written into memory this
        // core already owns. A reused buffer was last read by the broker that
        // copied its batch out, and is in no cache of this core, so each record's
        // first writes would otherwise wait for its lines one at a time, and the
        // producer's per-record lock would wait for those writes.
        buf.resize(capacity, 0);
        // The header is written by `finish`, once the records are known.
        buf.truncate(BATCH_HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            max_timestamp: 0,
            producer_id,
        }
    }

    /// Encoded size of one record in a batch (what `max.message.bytes` is checked
    /// against, together with [`BATCH_HEADER_LEN`]).
    #[inline]
    pub(crate) fn encoded_len(record: &Record) -> usize {
        RECORD_OVERHEAD
            + record.key.as_ref().map_or(0, Bytes::len)
            + record.value.len()
            + record
                .headers
                .iter()
                .map(|(name, value)| HEADER_OVERHEAD + name.len() + value.len())
                .sum::<usize>()
    }

    /// Appends one record; `timestamp` is used where the record has none.
    ///
    /// # Panics
    ///
    /// If the record, a key, value or header exceeds 4 GiB, or the batch would hold
    /// more than `u32::MAX` records: `max.message.bytes` is checked long before.
    // `extend_from_slice`, not `BufMut::put_slice`: `BytesMut`'s `put_slice` is not
    // `#[inline]`, so each field was a call (and a `memmove` call) per record.
    #[inline]
    pub(crate) fn push(&mut self, record: &Record, timestamp: u64) {
        let timestamp = record.timestamp.unwrap_or(timestamp);
        let len = Self::encoded_len(record) - 4;
        self.buf.reserve(len + 4);
        // The fixed framing before the key in one write (hot path: one capacity
        // check instead of three).
        let key_len = match &record.key {
            Some(key) => i32::try_from(key.len()).expect("key above 2 GiB"),
            None => -1,
        };
        let mut head = [0u8; 16];
        head[0..4].copy_from_slice(&to_u32(len).to_le_bytes());
        head[4..12].copy_from_slice(&timestamp.to_le_bytes());
        head[12..16].copy_from_slice(&key_len.to_le_bytes());
        self.buf.extend_from_slice(&head);
        if let Some(key) = &record.key {
            self.buf.extend_from_slice(key);
        }
        self.buf
            .extend_from_slice(&to_u32(record.value.len()).to_le_bytes());
        self.buf.extend_from_slice(&record.value);
        self.buf
            .extend_from_slice(&to_u32(record.headers.len()).to_le_bytes());
        for (name, value) in &record.headers {
            self.buf
                .extend_from_slice(&to_u32(name.len()).to_le_bytes());
            self.buf.extend_from_slice(name.as_bytes());
            self.buf
                .extend_from_slice(&to_u32(value.len()).to_le_bytes());
            self.buf.extend_from_slice(value);
        }
        self.count = self
            .count
            .checked_add(1)
            .expect("batch record count overflow");
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Bytes encoded so far, header included.
    #[allow(dead_code)] // The producer's accumulator checks `batch.size` with it.
    pub(crate) fn len_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Records pushed so far.
    #[allow(dead_code)] // The producer's accumulator reports it per batch.
    pub(crate) fn record_count(&self) -> u32 {
        self.count
    }

    /// Seals the batch: writes the header (base offset 0, epoch 0, `base_sequence`,
    /// `-1` for none) and the CRC.
    ///
    /// # Panics
    ///
    /// If no record was pushed (a batch holds at least one), or the batch exceeds
    /// 4 GiB.
    pub(crate) fn finish(self, base_sequence: Option<i32>) -> Batch {
        let mut buf = self.header(base_sequence);
        write_crc(&mut buf);
        Batch {
            bytes: buf.freeze(),
        }
    }

    /// As [`finish`](Self::finish), but with the CRC field left zero: the batch
    /// gets its CRC when a leader stamps it into its log ([`Batch::stamped`] and
    /// its kin compute a CRC that is zero). The CRC, a pass over the whole batch,
    /// is then computed on the leader's thread, which copies the batch into a
    /// memory log anyway, and not on the thread that called `send`.
    ///
    /// # Panics
    ///
    /// As `finish`.
    pub(crate) fn finish_crc_later(self, base_sequence: Option<i32>) -> Batch {
        Batch {
            bytes: self.header(base_sequence).freeze(),
        }
    }

    /// The buffer with its header written, the CRC field zero.
    fn header(self, base_sequence: Option<i32>) -> BytesMut {
        assert!(self.count > 0, "a batch needs at least one record");
        let mut buf = self.buf;
        let length = to_u32(buf.len() - FRAME_PREFIX_LEN);
        let header = &mut buf[..BATCH_HEADER_LEN];
        header[POS_BASE_OFFSET..POS_LENGTH].copy_from_slice(&0u64.to_le_bytes());
        header[POS_LENGTH..POS_LEADER_EPOCH].copy_from_slice(&length.to_le_bytes());
        header[POS_LEADER_EPOCH..POS_CRC].copy_from_slice(&0u32.to_le_bytes());
        header[POS_CRC..CRC_START].copy_from_slice(&0u32.to_le_bytes());
        header[POS_MAGIC] = MAGIC;
        header[POS_ATTRIBUTES] = 0;
        header[POS_PRODUCER_ID..POS_BASE_SEQUENCE].copy_from_slice(&self.producer_id.to_le_bytes());
        header[POS_BASE_SEQUENCE..POS_RECORD_COUNT]
            .copy_from_slice(&base_sequence.unwrap_or(-1).to_le_bytes());
        header[POS_RECORD_COUNT..POS_MAX_TIMESTAMP].copy_from_slice(&self.count.to_le_bytes());
        header[POS_MAX_TIMESTAMP..BATCH_HEADER_LEN]
            .copy_from_slice(&self.max_timestamp.to_le_bytes());
        buf
    }
}

/// Writes the CRC of a whole batch in `buf` into its CRC field.
fn write_crc(buf: &mut [u8]) {
    let crc = crc32fast::hash(&buf[CRC_START..]);
    buf[POS_CRC..CRC_START].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC of a batch whose CRC field holds `field` and whose bytes after the
/// field are `rest`: `field` itself unless it is zero, the mark of a batch sealed
/// without its CRC ([`BatchBuilder::finish_crc_later`]). A batch whose CRC is
/// zero is computed again, to zero.
fn sealed_crc(field: u32, rest: &[u8]) -> u32 {
    match field {
        0 => crc32fast::hash(rest),
        crc => crc,
    }
}

/// A length that must fit the format's u32 fields; larger is a broken invariant
/// (the caller checks `max.message.bytes` first).
// `#[inline]`: called three times per record by `BatchBuilder::push`, and it
// stayed a call in a default release build.
#[inline]
fn to_u32(len: usize) -> u32 {
    u32::try_from(len).expect("length above u32::MAX in a batch")
}

/// An encoded record batch. Cloning is cheap (shared `Bytes`).
///
/// Every batch in a log is CRC-valid: one sealed without its CRC (a zero in the
/// field) gets it when it is stamped with its offset and leader epoch
/// ([`stamped`](Self::stamped) and its kin), and one appended as it is came from a
/// leader that stamped it. Only a producer's batch on its way to the leader may
/// have none yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    bytes: Bytes,
}

impl Batch {
    /// Validates `bytes` as exactly one batch: length, CRC32, every record's framing.
    /// Anything short, oversized, or failing its CRC is `Error::Corrupt`. Never panics,
    /// never allocates more than `bytes` justifies.
    ///
    /// # Errors
    ///
    /// `Error::Corrupt` (with `offset: None`: the caller knows where the bytes came
    /// from) naming the first check that failed.
    pub(crate) fn decode(bytes: Bytes) -> Result<Batch> {
        match validate(&bytes) {
            Ok(()) => Ok(Batch { bytes }),
            Err(reason) => Err(Error::corrupt("record batch", reason)),
        }
    }

    /// The total length of the batch that starts at `buf[0]`, read from its header,
    /// or `None` when `buf` is shorter than the length field. For scanning files.
    pub(crate) fn frame_len(buf: &[u8]) -> Option<usize> {
        let length = read_u32(buf, POS_LENGTH)?;
        // On 64-bit targets this cannot overflow; on 32-bit ones a huge length
        // saturates and fails the caller's bounds check like any oversized frame.
        Some(FRAME_PREFIX_LEN.saturating_add(length as usize))
    }

    /// The same batch with base offset and leader epoch set, and its CRC computed
    /// if it was sealed without one ([`BatchBuilder::finish_crc_later`]): the CRC
    /// does not cover the stamped fields, so one the batch was sealed with stays
    /// valid. The buffer is copied only if shared.
    pub(crate) fn stamped(self, base_offset: u64, leader_epoch: u32) -> Batch {
        let (head, _) = self.stamped_parts(base_offset, leader_epoch);
        let mut buf = match self.bytes.try_into_mut() {
            Ok(unique) => unique,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        buf[..CRC_START].copy_from_slice(&head);
        Batch {
            bytes: buf.freeze(),
        }
    }

    /// As [`stamped`](Self::stamped), into the buffer `copy` makes of the stamped
    /// head and the rest of the batch (laid end to end).
    pub(crate) fn stamped_with(
        &self,
        base_offset: u64,
        leader_epoch: u32,
        copy: impl FnOnce(&[&[u8]]) -> Bytes,
    ) -> Batch {
        let (head, rest) = self.stamped_parts(base_offset, leader_epoch);
        let bytes = copy(&[&head, rest]);
        debug_assert_eq!(bytes.len(), self.bytes.len());
        Batch { bytes }
    }

    /// The same records under another producer id and base sequence (an idempotent
    /// producer that lost its sequence state on the broker starts over, as Kafka's
    /// KIP-360 epoch bump). These fields are covered by the CRC: the field is
    /// zeroed, and the leader computes the CRC as it stamps the batch.
    pub(crate) fn with_producer(&self, producer_id: u64, base_sequence: i32) -> Batch {
        let mut buf = BytesMut::from(&self.bytes[..]);
        buf[POS_PRODUCER_ID..POS_BASE_SEQUENCE].copy_from_slice(&producer_id.to_le_bytes());
        buf[POS_BASE_SEQUENCE..POS_RECORD_COUNT].copy_from_slice(&base_sequence.to_le_bytes());
        buf[POS_CRC..CRC_START].copy_from_slice(&0u32.to_le_bytes());
        Batch {
            bytes: buf.freeze(),
        }
    }

    /// The batch's buffer, emptied, for a next batch to be written into: `None`
    /// while anything else still shares it (a log, a request), or when its
    /// capacity is above `max_capacity` (not worth keeping).
    pub(crate) fn into_spare(self, max_capacity: usize) -> Option<BytesMut> {
        let mut b = self.bytes.try_into_mut().ok()?;
        if b.capacity() > max_capacity {
            return None;
        }
        b.clear();
        Some(b)
    }

    /// The whole encoded batch.
    pub(crate) fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Encoded length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The batch's bytes as they are, in the two parts of
    /// [`stamped_parts`](Self::stamped_parts).
    pub(crate) fn parts(&self) -> ([u8; CRC_START], &[u8]) {
        let mut head = [0u8; CRC_START];
        head.copy_from_slice(&self.bytes[..CRC_START]);
        (head, &self.bytes[CRC_START..])
    }

    /// The batch's bytes as [`stamped`](Self::stamped) would give them, in two
    /// parts and without copying the batch: the first bytes, up to the end of the
    /// CRC field, with `base_offset`, `leader_epoch` and, if the batch was sealed
    /// without it, the CRC written in, and the rest as it is (the CRC covers only
    /// the rest).
    pub(crate) fn stamped_parts(
        &self,
        base_offset: u64,
        leader_epoch: u32,
    ) -> ([u8; CRC_START], &[u8]) {
        let (mut head, rest) = self.parts();
        head[POS_BASE_OFFSET..POS_LENGTH].copy_from_slice(&base_offset.to_le_bytes());
        head[POS_LEADER_EPOCH..POS_CRC].copy_from_slice(&leader_epoch.to_le_bytes());
        let field = read_u32(&head, POS_CRC).expect("the head holds the CRC field");
        head[POS_CRC..CRC_START].copy_from_slice(&sealed_crc(field, rest).to_le_bytes());
        (head, rest)
    }
    /// Offset of the first record.
    pub(crate) fn base_offset(&self) -> u64 {
        self.u64_at(POS_BASE_OFFSET)
    }
    /// Offset of the last record.
    #[allow(dead_code)] // Used by replication: acks and fetch positions.
    pub(crate) fn last_offset(&self) -> u64 {
        self.next_offset().saturating_sub(1)
    }
    /// Offset after the last record (`last_offset + 1`).
    pub(crate) fn next_offset(&self) -> u64 {
        // `decode` checked this does not overflow for the stored base offset; a later
        // `stamped` base offset is the log's end offset, far from u64::MAX.
        self.base_offset()
            .saturating_add(u64::from(self.record_count()))
    }
    /// Number of records (at least 1).
    pub(crate) fn record_count(&self) -> u32 {
        self.u32_at(POS_RECORD_COUNT)
    }
    /// Leader epoch the batch was appended in.
    pub(crate) fn leader_epoch(&self) -> u32 {
        self.u32_at(POS_LEADER_EPOCH)
    }
    /// Producer id of an idempotent producer.
    #[allow(dead_code)] // Used by idempotent producer state on the leader.
    pub(crate) fn producer_id(&self) -> Option<u64> {
        u64::try_from(self.u64_at(POS_PRODUCER_ID) as i64).ok()
    }
    /// Sequence of the first record, for an idempotent producer.
    #[allow(dead_code)] // Used by idempotent producer state on the leader.
    pub(crate) fn base_sequence(&self) -> Option<i32> {
        let seq = self.u32_at(POS_BASE_SEQUENCE) as i32;
        (seq >= 0).then_some(seq)
    }
    /// Largest record timestamp in the batch (ms since the Unix epoch).
    pub(crate) fn max_timestamp(&self) -> u64 {
        self.u64_at(POS_MAX_TIMESTAMP)
    }
    /// The records, decoded lazily; values share the batch's buffer.
    #[allow(dead_code)] // Used by replica reads and the consumer.
    pub(crate) fn records(&self) -> impl Iterator<Item = DecodedRecord> + '_ {
        let base = self.base_offset();
        let leader_epoch = self.leader_epoch();
        let mut pos = BATCH_HEADER_LEN;
        let mut index = 0u64;
        std::iter::from_fn(move || {
            // `decode` validated the framing, so parsing cannot fail here; stopping
            // rather than panicking keeps a broken invariant from taking a thread down.
            let (spans, next) = parse_record(&self.bytes, pos).ok()?;
            pos = next;
            let record = DecodedRecord {
                offset: base + index,
                timestamp: spans.timestamp,
                key: spans.key.map(|(s, e)| self.bytes.slice(s..e)),
                value: self.bytes.slice(spans.value.0..spans.value.1),
                headers: self.headers_of(&spans),
                leader_epoch,
            };
            index += 1;
            Some(record)
        })
    }

    fn headers_of(&self, spans: &RecordSpans) -> Vec<(String, Bytes)> {
        let mut headers = Vec::with_capacity(spans.header_count.min(16));
        let mut pos = spans.headers_start;
        for _ in 0..spans.header_count {
            let Some(((ns, ne), (vs, ve), next)) = parse_header(&self.bytes, pos, spans.end) else {
                break;
            };
            let name = String::from_utf8_lossy(&self.bytes[ns..ne]).into_owned();
            headers.push((name, self.bytes.slice(vs..ve)));
            pos = next;
        }
        headers
    }

    fn u64_at(&self, pos: usize) -> u64 {
        read_u64(&self.bytes, pos).unwrap_or(0)
    }
    fn u32_at(&self, pos: usize) -> u32 {
        read_u32(&self.bytes, pos).unwrap_or(0)
    }
}

/// Where one record's fields lie in the batch buffer.
struct RecordSpans {
    timestamp: u64,
    key: Option<(usize, usize)>,
    value: (usize, usize),
    header_count: usize,
    headers_start: usize,
    /// End of this record (start of the next).
    end: usize,
}

fn read_u32(buf: &[u8], pos: usize) -> Option<u32> {
    let bytes = buf.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_u64(buf: &[u8], pos: usize) -> Option<u64> {
    let bytes = buf.get(pos..pos.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// `[pos, pos + len)` if it lies within `..end`.
fn span(pos: usize, len: usize, end: usize) -> Option<(usize, usize)> {
    let stop = pos.checked_add(len)?;
    (stop <= end).then_some((pos, stop))
}

/// Checks everything `Batch::decode` promises; `Err` names the failed check.
fn validate(buf: &[u8]) -> std::result::Result<(), &'static str> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err("shorter than a batch header");
    }
    if Batch::frame_len(buf) != Some(buf.len()) {
        return Err("length field does not match the batch size");
    }
    let crc = read_u32(buf, POS_CRC).ok_or("short header")?;
    if crc32fast::hash(&buf[CRC_START..]) != crc {
        return Err("CRC32 mismatch");
    }
    if buf[POS_MAGIC] != MAGIC {
        return Err("unknown magic (format version)");
    }
    let base = read_u64(buf, POS_BASE_OFFSET).ok_or("short header")?;
    let count = read_u32(buf, POS_RECORD_COUNT).ok_or("short header")?;
    if count == 0 {
        return Err("record count is zero");
    }
    if base.checked_add(u64::from(count)).is_none() {
        return Err("offsets overflow u64");
    }
    let producer_id = read_u64(buf, POS_PRODUCER_ID).ok_or("short header")? as i64;
    if producer_id < -1 {
        return Err("negative producer id");
    }
    let sequence = read_u32(buf, POS_BASE_SEQUENCE).ok_or("short header")? as i32;
    if sequence < -1 {
        return Err("negative base sequence");
    }
    let mut pos = BATCH_HEADER_LEN;
    let mut max_timestamp = 0u64;
    for _ in 0..count {
        if pos == buf.len() {
            return Err("fewer records than the record count");
        }
        let (spans, next) = parse_record(buf, pos)?;
        // Validate the headers' framing and names now, so iteration cannot fail.
        let mut hpos = spans.headers_start;
        for _ in 0..spans.header_count {
            let ((ns, ne), _, next) =
                parse_header(buf, hpos, spans.end).ok_or("header overruns its record")?;
            std::str::from_utf8(&buf[ns..ne]).map_err(|_| "header name is not UTF-8")?;
            hpos = next;
        }
        if hpos != spans.end {
            return Err("record length does not match its fields");
        }
        max_timestamp = max_timestamp.max(spans.timestamp);
        pos = next;
    }
    if pos != buf.len() {
        return Err("bytes after the last record");
    }
    if read_u64(buf, POS_MAX_TIMESTAMP) != Some(max_timestamp) {
        return Err("max timestamp does not match the records");
    }
    Ok(())
}

/// Parses the record at `pos` up to its headers (which `parse_header` walks).
fn parse_record(buf: &[u8], pos: usize) -> std::result::Result<(RecordSpans, usize), &'static str> {
    let len = read_u32(buf, pos).ok_or("record length overruns the batch")? as usize;
    let (start, end) = span(pos + 4, len, buf.len()).ok_or("record overruns the batch")?;
    let timestamp = read_u64(&buf[..end], start).ok_or("record too short for its timestamp")?;
    let mut at = start + 8;
    let key_len = read_u32(&buf[..end], at).ok_or("record too short for its key length")? as i32;
    at += 4;
    let key = match key_len {
        -1 => None,
        n if n >= 0 => {
            let key = span(at, n as usize, end).ok_or("key overruns its record")?;
            at = key.1;
            Some(key)
        }
        _ => return Err("negative key length other than -1"),
    };
    let value_len = read_u32(&buf[..end], at).ok_or("record too short for its value length")?;
    let value = span(at + 4, value_len as usize, end).ok_or("value overruns its record")?;
    at = value.1;
    let header_count =
        read_u32(&buf[..end], at).ok_or("record too short for its header count")? as usize;
    at += 4;
    // Each header takes at least HEADER_OVERHEAD bytes: a count beyond that is corrupt,
    // and bounding it here keeps any later allocation proportional to the input.
    if header_count > (end - at) / HEADER_OVERHEAD {
        return Err("header count exceeds the record");
    }
    let spans = RecordSpans {
        timestamp,
        key,
        value,
        header_count,
        headers_start: at,
        end,
    };
    Ok((spans, end))
}

/// A byte range `start..end` in the batch buffer.
type Span = (usize, usize);

/// Parses one header at `pos` within `..end`: name span, value span, next position.
fn parse_header(buf: &[u8], pos: usize, end: usize) -> Option<(Span, Span, usize)> {
    let buf = buf.get(..end)?;
    let name_len = read_u32(buf, pos)? as usize;
    let name = span(pos + 4, name_len, end)?;
    let value_len = read_u32(buf, name.1)? as usize;
    let value = span(name.1 + 4, value_len, end)?;
    Some((name, value, value.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::support::{random_record, SplitMix64};

    fn sample_records() -> Vec<Record> {
        vec![
            Record::new("v0").timestamp(5),
            Record::new("value-1")
                .key("k1")
                .header("a", "x")
                .header("bb", ""),
            Record::new(Bytes::new()).key(Bytes::new()).timestamp(9),
        ]
    }

    fn sample_batch() -> Batch {
        let mut b = BatchBuilder::new(Some(77), 64);
        for r in &sample_records() {
            b.push(r, 7);
        }
        b.finish(Some(12))
    }

    /// `batch` stamped in each of the three ways a log stamps, as bytes.
    fn stamped_three_ways(batch: &Batch, base: u64, epoch: u32) -> [Vec<u8>; 3] {
        let (head, rest) = batch.stamped_parts(base, epoch);
        let with = batch.stamped_with(base, epoch, |parts| Bytes::from(parts.concat()));
        [
            batch.clone().stamped(base, epoch).as_bytes().to_vec(),
            [&head[..], rest].concat(),
            with.as_bytes().to_vec(),
        ]
    }

    #[test]
    fn a_stamp_computes_the_crc_of_a_batch_sealed_without_it_and_keeps_one_sealed_with_it() {
        let mut b = BatchBuilder::new(Some(77), 64);
        for r in &sample_records() {
            b.push(r, 7);
        }
        let later = b.finish_crc_later(Some(12));
        let sealed = sample_batch();
        assert!(
            Batch::decode(later.as_bytes().clone()).is_err(),
            "no CRC yet"
        );
        for bytes in stamped_three_ways(&later, 40, 3) {
            let stamped = Batch::decode(bytes.into()).expect("the stamp wrote the CRC");
            assert_eq!(stamped, sealed.clone().stamped(40, 3));
        }
        // A CRC the batch was sealed with is kept as it is, not computed again:
        // a wrong one (here by a flipped bit) stays wrong, and recovery finds it.
        let mut bad = sealed.as_bytes().to_vec();
        bad[POS_CRC] ^= 1;
        let bad = Batch {
            bytes: Bytes::from(bad),
        };
        for bytes in stamped_three_ways(&bad, 40, 3) {
            assert_eq!(
                bytes[POS_CRC..CRC_START],
                bad.as_bytes()[POS_CRC..CRC_START]
            );
            assert!(Batch::decode(bytes.into()).is_err());
        }
        // Another producer id and sequence on a sealed batch: the leader's stamp
        // computes the CRC over the new fields.
        let moved = sealed.with_producer(5, 0);
        for bytes in stamped_three_ways(&moved, 40, 3) {
            let stamped = Batch::decode(bytes.into()).expect("CRC-valid");
            assert_eq!(
                (stamped.producer_id(), stamped.base_sequence()),
                (Some(5), Some(0))
            );
        }
    }

    #[test]
    fn builder_output_decodes_to_the_records_pushed() {
        let batch = sample_batch();
        let decoded = Batch::decode(batch.as_bytes().clone()).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(
            (
                batch.record_count(),
                batch.producer_id(),
                batch.base_sequence()
            ),
            (3, Some(77), Some(12))
        );
        assert_eq!(
            (
                batch.base_offset(),
                batch.last_offset(),
                batch.next_offset()
            ),
            (0, 2, 3)
        );
        assert_eq!(batch.max_timestamp(), 9);
        let records: Vec<DecodedRecord> = batch.records().collect();
        for (i, (got, pushed)) in records.iter().zip(sample_records()).enumerate() {
            assert_eq!(got.offset, i as u64);
            assert_eq!(got.key, pushed.key);
            assert_eq!(got.value, pushed.value);
            assert_eq!(got.headers, pushed.headers);
            assert_eq!(got.timestamp, pushed.timestamp.unwrap_or(7));
        }
        let tp = crate::TopicPartition::new("t", 4);
        let consumed: Vec<ConsumedRecord> = batch.records().map(|r| r.into_consumed(&tp)).collect();
        assert_eq!(
            (
                consumed[1].topic.as_str(),
                consumed[1].partition,
                consumed[1].offset
            ),
            ("t", 4, 1)
        );
    }

    #[test]
    fn no_producer_and_no_sequence_are_stored_as_minus_one() {
        let mut b = BatchBuilder::new(None, 0);
        b.push(&Record::new("x"), 1);
        let batch = b.finish(None);
        assert_eq!((batch.producer_id(), batch.base_sequence()), (None, None));
        assert_eq!(
            &batch.as_bytes()[POS_PRODUCER_ID..POS_BASE_SEQUENCE],
            &(-1i64).to_le_bytes()
        );
    }

    #[test]
    fn encoded_len_is_what_push_adds() {
        let mut b = BatchBuilder::new(None, 0);
        assert_eq!(b.len_bytes(), BATCH_HEADER_LEN);
        for r in sample_records() {
            let before = b.len_bytes();
            b.push(&r, 1);
            assert_eq!(b.len_bytes() - before, BatchBuilder::encoded_len(&r));
        }
        assert_eq!(b.record_count(), 3);
        assert_eq!(
            Batch::frame_len(&b.finish(None).as_bytes()[..12]),
            Some(b_len_of_sample())
        );
    }

    fn b_len_of_sample() -> usize {
        BATCH_HEADER_LEN
            + sample_records()
                .iter()
                .map(BatchBuilder::encoded_len)
                .sum::<usize>()
    }

    #[test]
    fn frame_len_needs_the_length_field() {
        let batch = sample_batch();
        assert_eq!(Batch::frame_len(&batch.as_bytes()[..11]), None);
        assert_eq!(Batch::frame_len(batch.as_bytes()), Some(batch.len()));
    }

    #[test]
    fn decoded_values_are_slices_of_the_batch_buffer() {
        let batch = sample_batch();
        let range = batch.as_bytes().as_ptr_range();
        for r in batch.records() {
            assert!(range.contains(&r.value.as_ptr()) || r.value.is_empty());
            for (_, v) in &r.headers {
                assert!(range.contains(&v.as_ptr()) || v.is_empty());
            }
        }
    }

    #[test]
    fn stamped_sets_offset_and_epoch_keeps_the_crc_and_copies_only_when_shared() {
        let batch = sample_batch();
        let unique_ptr = batch.as_bytes().as_ptr();
        let stamped = batch.stamped(1000, 7);
        assert_eq!(
            stamped.as_bytes().as_ptr(),
            unique_ptr,
            "unique buffer reused"
        );
        assert_eq!(
            (
                stamped.base_offset(),
                stamped.leader_epoch(),
                stamped.last_offset()
            ),
            (1000, 7, 1002)
        );
        assert!(Batch::decode(stamped.as_bytes().clone()).is_ok());
        let shared = stamped.clone();
        let restamped = stamped.stamped(5, 8);
        assert_ne!(
            restamped.as_bytes().as_ptr(),
            shared.as_bytes().as_ptr(),
            "shared buffer copied"
        );
        assert_eq!((shared.base_offset(), restamped.base_offset()), (1000, 5));
        assert_eq!(restamped.records().next().unwrap().offset, 5);
    }

    #[test]
    fn every_truncation_and_extension_of_a_batch_is_corrupt() {
        let bytes = sample_batch().as_bytes().clone();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    Batch::decode(bytes.slice(..len)),
                    Err(Error::Corrupt { .. })
                ),
                "len {len}"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Batch::decode(longer.into()).is_err());
    }

    #[test]
    fn a_flipped_bit_anywhere_from_the_length_field_on_is_detected_by_decode() {
        // Base offset and leader epoch lie before the CRC field on purpose (a leader
        // stamps them without recomputing it); the segment log checks base offsets.
        let bytes = sample_batch().as_bytes().to_vec();
        for bit in POS_LENGTH * 8..bytes.len() * 8 {
            if (POS_LEADER_EPOCH * 8..POS_CRC * 8).contains(&bit) {
                continue;
            }
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Batch::decode(damaged.into()).is_err(), "bit {bit}");
        }
    }

    /// A buffer with a valid CRC over whatever body is given, so the structure checks
    /// (not the CRC) are what must reject it.
    fn with_valid_crc(mut buf: Vec<u8>) -> Bytes {
        if buf.len() >= BATCH_HEADER_LEN {
            let length = (buf.len() - FRAME_PREFIX_LEN) as u32;
            buf[POS_LENGTH..POS_LEADER_EPOCH].copy_from_slice(&length.to_le_bytes());
            let crc = crc32fast::hash(&buf[CRC_START..]);
            buf[POS_CRC..CRC_START].copy_from_slice(&crc.to_le_bytes());
        }
        buf.into()
    }

    #[test]
    fn huge_counts_and_lengths_with_a_valid_crc_are_corrupt_not_allocated() {
        let good = sample_batch().as_bytes().to_vec();
        let mut cases = Vec::new();
        let mut huge_count = good.clone();
        huge_count[POS_RECORD_COUNT..POS_MAX_TIMESTAMP].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(huge_count);
        let mut zero_count = good.clone();
        zero_count[POS_RECORD_COUNT..POS_MAX_TIMESTAMP].copy_from_slice(&0u32.to_le_bytes());
        cases.push(zero_count);
        let mut huge_record = good.clone();
        huge_record[BATCH_HEADER_LEN..BATCH_HEADER_LEN + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(huge_record);
        // First record's header count (after length, timestamp, key -1, value "v0").
        let mut huge_headers = good.clone();
        let at = BATCH_HEADER_LEN + 4 + 8 + 4 + 4 + 2;
        huge_headers[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        cases.push(huge_headers);
        let mut bad_key = good.clone();
        bad_key[BATCH_HEADER_LEN + 12..BATCH_HEADER_LEN + 16]
            .copy_from_slice(&(-2i32).to_le_bytes());
        cases.push(bad_key);
        let mut offset_overflow = good;
        offset_overflow[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        cases.push(offset_overflow);
        for (i, case) in cases.into_iter().enumerate() {
            assert!(
                matches!(
                    Batch::decode(with_valid_crc(case)),
                    Err(Error::Corrupt { .. })
                ),
                "case {i}"
            );
        }
    }

    #[test]
    fn decode_never_panics_on_random_bytes_or_damaged_batches() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..3000 {
            let len = rng.below(300) as usize;
            let buf = rng.bytes(len);
            let _ = Batch::decode(buf.clone().into());
            // With a valid length and CRC, the record parser sees the garbage.
            let _ = Batch::decode(with_valid_crc(buf));
        }
        for seed in 0..40 {
            let mut rng = SplitMix64::new(seed);
            let mut b = BatchBuilder::new(None, 0);
            for _ in 0..1 + rng.below(4) {
                b.push(&random_record(&mut rng, 40), 3);
            }
            let bytes = b.finish(None).as_bytes().to_vec();
            for i in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[i] = rng.next_u64() as u8;
                if let Ok(batch) = Batch::decode(with_valid_crc(damaged.clone())) {
                    // Whatever decodes must iterate without panicking.
                    assert_eq!(batch.records().count(), batch.record_count() as usize);
                }
                let _ = Batch::decode(with_valid_crc(damaged[..i].to_vec()));
            }
        }
    }
}
