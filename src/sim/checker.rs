//! The invariant checker. After every step it compares every replica with the
//! committed log it has pieced together from what leaders held below their high
//! watermarks; at the end, with the cluster healed and settled, it checks every
//! acknowledgement and every consumed record against the final logs.
//!
//! Checked (a breach fails the seed):
//! - a leader's high watermark never decreases within its leader epoch;
//! - a committed offset never changes value: every leader's records below its HW,
//!   every replica's records below its own HW, every record a consumer saw, every
//!   `acks=all` acknowledgement agree on one value per offset (KAFKA.md: Jepsen's
//!   lost writes and inconsistent offsets);
//! - an `acks=all` acknowledgement names offsets already below a leader's HW;
//! - consumers see dense offsets (no skipped offsets) and never find their position
//!   past the leader's log end (a consumed offset vanished);
//! - at the end every partition has a leader, every replica is back in the ISR and
//!   holds exactly the leader's log, every `acks=all` record is at its offset, every
//!   consumed record is still there, and no idempotent producer's value appears twice;
//! - no produce request gets a non-retriable error.
//!
//! Reported, not failed: `acks=1` and `acks=0` records lost (the trade those modes make).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use crate::broker::Broker;
use crate::config::Acks;
use crate::controller::MetadataImage;
use crate::group::{read_offsets_log, OFFSETS_TOPIC};
use crate::ids::{BrokerId, TopicPartition};
use crate::storage::Log;

/// What the checker counted, for the run's report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Records acknowledged with `acks=all`.
    pub acked_all: u64,
    /// Records acknowledged with `acks=1`.
    pub acked_one: u64,
    /// Of those, not at their acknowledged offset at the end.
    pub lost_one: u64,
    /// Records handed off with `acks=0`.
    pub sent_zero: u64,
    /// Of those, nowhere in the final log.
    pub lost_zero: u64,
    /// Records consumers read.
    pub consumed: u64,
    /// Committed offsets at the end, over all partitions.
    pub committed: u64,
    /// Partitions left offline as rule 5 requires (every in-sync replica lost its
    /// data); their committed records were found on another replica.
    pub offline_by_rule5: u64,
    /// Offset commits acknowledged (with `--groups`).
    pub commits_acked: u64,
    /// Seeds whose offsets partition ended compacted: its log no longer started at 0.
    pub offsets_compacted: u64,
}

/// The checker's ledger and findings.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    /// Per partition, the committed log: values at offsets `0..len`.
    truth: BTreeMap<TopicPartition, Vec<Bytes>>,
    /// Highest HW seen per (partition, leader, leader epoch).
    hw_seen: BTreeMap<(TopicPartition, BrokerId, u32), u64>,
    /// Per replica, the offset below which its log was compared with the truth.
    verified: BTreeMap<(BrokerId, TopicPartition), u64>,
    /// Per partition of the sim's topic and the offsets partition its group's
    /// commits go to, the highest offset commit acknowledged.
    commits_acked: BTreeMap<(TopicPartition, TopicPartition), u64>,
    commits_acked_count: u64,
    acked_all: Vec<(TopicPartition, u64, Bytes)>,
    acked_one: Vec<(TopicPartition, u64, Bytes)>,
    sent_zero: Vec<(TopicPartition, Bytes)>,
    consumed: BTreeMap<TopicPartition, BTreeMap<u64, Bytes>>,
    consumed_count: u64,
    violations: Vec<String>,
    offline_by_rule5: u64,
}

/// The topic the simulation deletes and creates again (with `recreate`).
pub(crate) const CHURN: &str = "churn";

/// The checker's name for `tp` of the creation `topic_id`: each creation of the
/// churning topic has a ledger of its own (`churn@<id>-<partition>`); other topics
/// are created once.
fn ledger(tp: &TopicPartition, topic_id: Option<u64>) -> TopicPartition {
    if tp.topic == CHURN {
        TopicPartition::new(format!("{CHURN}@{}", topic_id.unwrap_or(0)), tp.partition)
    } else {
        tp.clone()
    }
}

/// Whether `key` is a ledger of a creation of the churning topic.
fn is_churn_ledger(key: &TopicPartition) -> bool {
    key.topic
        .strip_prefix(CHURN)
        .is_some_and(|rest| rest.starts_with('@'))
}

/// The values at `from..to` of `log` (fewer when the log ends first).
fn read_values(log: &dyn Log, from: u64, to: u64) -> Result<Vec<(u64, Bytes)>, String> {
    let mut out = Vec::new();
    let mut at = from.max(log.log_start_offset());
    let to = to.min(log.log_end_offset());
    while at < to {
        let batches = log.read(at, 64 * 1024).map_err(|e| e.to_string())?;
        if batches.is_empty() {
            break;
        }
        for b in &batches {
            for r in b.records() {
                if r.offset >= at && r.offset < to {
                    out.push((r.offset, r.value));
                }
            }
            at = at.max(b.next_offset());
        }
    }
    Ok(out)
}

fn show(v: &Bytes) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Checker {
    /// Records a broken invariant.
    pub(crate) fn violation(&mut self, now: Duration, what: String) {
        if self.violations.len() < 50 {
            self.violations
                .push(format!("at {:.3}s: {what}", now.as_secs_f64()));
        }
    }

    /// Every breach so far.
    pub(crate) fn violations(&self) -> &[String] {
        &self.violations
    }

    /// A broker restarted: its replicas are compared again from their start.
    pub(crate) fn restarted(&mut self, broker: BrokerId) {
        self.verified.retain(|(b, _), _| *b != broker);
    }

    /// Compares a value seen at `offset` with the committed one, extending nothing.
    fn agrees(
        &mut self,
        now: Duration,
        tp: &TopicPartition,
        offset: u64,
        value: &Bytes,
        who: &str,
    ) {
        let known = self
            .truth
            .get(tp)
            .and_then(|t| t.get(offset as usize))
            .cloned();
        if let Some(v) = known {
            if v != *value {
                self.violation(
                    now,
                    format!(
                        "{tp} offset {offset}: {who} holds {:?}, but {:?} was committed there",
                        show(value),
                        show(&v)
                    ),
                );
            }
        }
    }

    /// The per-step check over every running broker.
    pub(crate) fn observe<'a>(&mut self, now: Duration, brokers: impl Iterator<Item = &'a Broker>) {
        for broker in brokers {
            let b = broker.id();
            for hosted in broker.hosted() {
                let Some(view) = broker.replica_view(&hosted) else {
                    continue;
                };
                let tp = ledger(&hosted, view.topic_id);
                if let Some((epoch, hw)) = view.leader {
                    let seen = self.hw_seen.entry((tp.clone(), b, epoch)).or_insert(hw);
                    if hw < *seen {
                        let was = *seen;
                        self.violation(
                            now,
                            format!("{tp}: leader {b}'s HW went back from {was} to {hw} in epoch {epoch}"),
                        );
                    }
                    let seen = self.hw_seen.entry((tp.clone(), b, epoch)).or_insert(hw);
                    *seen = (*seen).max(hw);
                    self.extend_truth(now, &tp, b, view.log, hw);
                }
                // Every replica's records below its own HW are committed records.
                let key = (b, tp.clone());
                let leo = view.log.log_end_offset();
                let mut from = self.verified.get(&key).copied().unwrap_or(0).min(leo);
                let committed = self.truth.get(&tp).map_or(0, |t| t.len() as u64);
                let upto = leo.min(view.hw).min(committed);
                if upto > from {
                    match read_values(view.log, from, upto) {
                        Ok(values) => {
                            for (o, v) in values {
                                self.agrees(now, &tp, o, &v, &format!("replica on broker {b}"));
                                from = o + 1;
                            }
                        }
                        Err(e) => {
                            // A corrupt batch is never served; recovery cut it or the
                            // replica will refetch. Not a disagreement.
                            let _ = e;
                        }
                    }
                }
                self.verified.insert(key, from);
            }
        }
    }

    /// Appends what a leader holds in `committed..hw` to the committed log.
    fn extend_truth(
        &mut self,
        now: Duration,
        tp: &TopicPartition,
        b: BrokerId,
        log: &dyn Log,
        hw: u64,
    ) {
        let len = self.truth.get(tp).map_or(0, |t| t.len() as u64);
        if hw <= len {
            return;
        }
        match read_values(log, len, hw) {
            Ok(values) => {
                let truth = self.truth.entry(tp.clone()).or_default();
                for (o, v) in values {
                    if o != truth.len() as u64 {
                        break;
                    }
                    truth.push(v);
                }
                if (truth.len() as u64) < hw {
                    let got = truth.len();
                    self.violation(
                        now,
                        format!("{tp}: leader {b} has HW {hw} but could serve committed records only up to {got}"),
                    );
                }
                // Consumers may have read ahead of what the checker had seen committed.
                let new: Vec<(u64, Bytes)> = self
                    .consumed
                    .get(tp)
                    .map(|c| c.range(len..hw).map(|(o, v)| (*o, v.clone())).collect())
                    .unwrap_or_default();
                for (o, v) in new {
                    self.agrees(now, tp, o, &v, "a consumer");
                }
            }
            Err(e) => self.violation(
                now,
                format!("{tp}: leader {b} cannot read its committed records {len}..{hw}: {e}"),
            ),
        }
    }

    /// A produce request was answered with `base` for `values`.
    pub(crate) fn acknowledged(
        &mut self,
        now: Duration,
        acks: Acks,
        (tp, topic_id): (&TopicPartition, u64),
        base: u64,
        values: &[Bytes],
    ) {
        let tp = &ledger(tp, Some(topic_id));
        for (i, v) in values.iter().enumerate() {
            let offset = base + i as u64;
            match acks {
                Acks::All => {
                    let committed = self.truth.get(tp).map_or(0, |t| t.len() as u64);
                    if offset >= committed {
                        self.violation(
                            now,
                            format!(
                                "{tp}: acks=all acknowledged {:?} at offset {offset}, above every HW seen ({committed})",
                                show(v)
                            ),
                        );
                    }
                    self.agrees(now, tp, offset, v, "an acks=all acknowledgement");
                    self.acked_all.push((tp.clone(), offset, v.clone()));
                }
                Acks::Leader => self.acked_one.push((tp.clone(), offset, v.clone())),
                Acks::None => {}
            }
        }
    }

    /// An `acks=0` batch was handed off.
    pub(crate) fn sent_unacknowledged(&mut self, tp: &TopicPartition, values: &[Bytes]) {
        for v in values {
            self.sent_zero.push((tp.clone(), v.clone()));
        }
    }

    /// A consumer read `value` at `offset`.
    pub(crate) fn consumed(
        &mut self,
        now: Duration,
        tp: &TopicPartition,
        offset: u64,
        value: &Bytes,
    ) {
        self.consumed_count += 1;
        let seen = self.consumed.entry(tp.clone()).or_default();
        match seen.get(&offset) {
            Some(v) if v != value => {
                let was = v.clone();
                self.violation(
                    now,
                    format!(
                        "{tp} offset {offset}: a consumer read {:?}, another read {:?}",
                        show(value),
                        show(&was)
                    ),
                );
            }
            Some(_) => {}
            None => {
                seen.insert(offset, value.clone());
            }
        }
        self.agrees(now, tp, offset, value, "a consumer");
    }

    /// The counts so far, without losses (those need the final logs).
    pub(crate) fn counts(&self) -> Tally {
        Tally {
            acked_all: self.acked_all.len() as u64,
            acked_one: self.acked_one.len() as u64,
            sent_zero: self.sent_zero.len() as u64,
            consumed: self.consumed_count,
            ..Tally::default()
        }
    }

    /// Whether `log` holds every record known to be committed to `tp`, each at its
    /// offset: the committed log seen so far and every acknowledged `acks=all`
    /// record (one may be acknowledged before a check has seen its HW).
    /// A compacted offsets partition needs to hold only what follows its log start:
    /// what lay below is restated by the snapshot there.
    pub(crate) fn holds_committed(
        &self,
        tp: &TopicPartition,
        topic_id: Option<u64>,
        log: &dyn Log,
    ) -> bool {
        let tp = &ledger(tp, topic_id);
        let Ok(values) = read_values(log, 0, log.log_end_offset()) else {
            return false;
        };
        let at: BTreeMap<u64, Bytes> = values.into_iter().collect();
        let truth = self.truth.get(tp).map_or(&[][..], |t| &t[..]);
        let from = if tp.topic == OFFSETS_TOPIC {
            log.log_start_offset()
        } else {
            0
        };
        truth
            .iter()
            .enumerate()
            .skip(from as usize)
            .all(|(o, v)| at.get(&(o as u64)) == Some(v))
            && self
                .acked_all
                .iter()
                .filter(|(t, _, _)| t == tp)
                .all(|(_, o, v)| at.get(o) == Some(v))
    }

    /// The final check, once the cluster has settled: every partition led, every
    /// replica in the ISR with the leader's log, every acknowledgement and consumed
    /// record in place, no duplicate from an idempotent producer. Returns the tally.
    pub(crate) fn finish<'a>(
        &mut self,
        now: Duration,
        image: &MetadataImage,
        broker: impl Fn(BrokerId) -> Option<&'a Broker>,
    ) -> Tally {
        let mut finals: BTreeMap<TopicPartition, Vec<Bytes>> = BTreeMap::new();
        let offsets_compacted = self.finish_offsets(now, image, &broker);
        let records = image
            .topics
            .iter()
            .filter(|(name, _)| name.as_str() != OFFSETS_TOPIC)
            .flat_map(|(_, t)| t.partitions.iter());
        for p in records {
            let tp = &p.tp;
            // Where the checker keeps this creation's records.
            let key = ledger(tp, Some(p.topic_id));
            if image.offline_by_rule5(p) {
                // Unavailable by design; durability is still owed: a running replica
                // must hold every committed record, and its log stands in for the
                // leader's in the checks on acknowledged and consumed records.
                self.offline_by_rule5 += 1;
                let committed = self.truth.get(&key).cloned().unwrap_or_default();
                let holder = p.replicas.iter().find_map(|r| {
                    let view = broker(*r)?.replica_view(tp)?;
                    if view.topic_id != Some(p.topic_id) {
                        return None;
                    }
                    let vals = read_values(view.log, 0, view.log.log_end_offset()).ok()?;
                    let log: Vec<Bytes> = vals.into_iter().map(|(_, v)| v).collect();
                    (log.len() >= committed.len() && log[..committed.len()] == committed[..])
                        .then_some(log)
                });
                match holder {
                    Some(log) => {
                        finals.insert(key, log);
                    }
                    None => self.violation(
                        now,
                        format!(
                            "{tp}: offline, and no running replica holds its committed records"
                        ),
                    ),
                }
                continue;
            }
            let Some(leader) = p.leader.and_then(&broker) else {
                self.violation(
                    now,
                    format!("{tp}: no running leader after settling ({:?})", p.leader),
                );
                continue;
            };
            let Some(view) = leader.replica_view(tp) else {
                self.violation(
                    now,
                    format!("{tp}: leader {} does not host it", leader.id()),
                );
                continue;
            };
            let Some((_, hw)) = view.leader else {
                self.violation(
                    now,
                    format!("{tp}: broker {} never took the leadership", leader.id()),
                );
                continue;
            };
            let leo = view.log.log_end_offset();
            if hw != leo {
                self.violation(
                    now,
                    format!("{tp}: leader's HW {hw} never reached its log end {leo}"),
                );
            }
            let values = match read_values(view.log, 0, leo) {
                Ok(v) => v,
                Err(e) => {
                    self.violation(now, format!("{tp}: leader cannot read its log: {e}"));
                    continue;
                }
            };
            if values.first().map_or(0, |(o, _)| *o) != 0
                || values.iter().enumerate().any(|(i, (o, _))| *o != i as u64)
                || values.len() as u64 != leo
            {
                self.violation(
                    now,
                    format!("{tp}: the leader's log is not dense from 0 to {leo}"),
                );
            }
            let log: Vec<Bytes> = values.into_iter().map(|(_, v)| v).collect();
            let committed = self.truth.get(&key).cloned().unwrap_or_default();
            for (o, v) in committed.iter().enumerate() {
                match log.get(o) {
                    Some(x) if x == v => {}
                    Some(x) => self.violation(
                        now,
                        format!(
                            "{tp} offset {o}: committed {:?}, the final log holds {:?}",
                            show(v),
                            show(x)
                        ),
                    ),
                    None => self.violation(
                        now,
                        format!(
                            "{tp} offset {o}: committed {:?}, the final log ends at {}",
                            show(v),
                            log.len()
                        ),
                    ),
                }
            }
            let isr: BTreeSet<BrokerId> = p.isr.iter().copied().collect();
            for r in &p.replicas {
                if !isr.contains(r) {
                    self.violation(
                        now,
                        format!("{tp}: replica {r} is not back in the ISR {:?}", p.isr),
                    );
                }
                let Some(view) = broker(*r).and_then(|b| b.replica_view(tp)) else {
                    self.violation(
                        now,
                        format!("{tp}: replica {r} is not running or not hosting it"),
                    );
                    continue;
                };
                if view.topic_id != Some(p.topic_id) {
                    self.violation(
                        now,
                        format!(
                            "{tp}: replica {r} holds creation {:?} of the topic, not {}",
                            view.topic_id, p.topic_id
                        ),
                    );
                }
                match read_values(view.log, 0, view.log.log_end_offset()) {
                    Ok(vals) => {
                        let mine: Vec<Bytes> = vals.into_iter().map(|(_, v)| v).collect();
                        if mine != log {
                            let at = mine
                                .iter()
                                .zip(&log)
                                .position(|(a, b)| a != b)
                                .unwrap_or(mine.len().min(log.len()));
                            self.violation(
                                now,
                                format!(
                                    "{tp}: replica {r} ({} records) differs from the leader ({} records) from offset {at}",
                                    mine.len(),
                                    log.len()
                                ),
                            );
                        }
                    }
                    Err(e) => {
                        self.violation(now, format!("{tp}: replica {r} cannot read its log: {e}"))
                    }
                }
            }
            // Idempotent producers (acks=all, tag `a`) never write a value twice.
            let mut seen = BTreeSet::new();
            for (o, v) in log.iter().enumerate() {
                if v.first() == Some(&b'a') && !seen.insert(v.clone()) {
                    self.violation(
                        now,
                        format!(
                            "{tp} offset {o}: idempotent value {:?} written twice",
                            show(v)
                        ),
                    );
                }
            }
            finals.insert(key, log);
        }
        let at = |tp: &TopicPartition, o: u64| finals.get(tp).and_then(|l| l.get(o as usize));
        let mut lost_all = Vec::new();
        for (tp, o, v) in &self.acked_all {
            if is_churn_ledger(tp) && !finals.contains_key(tp) {
                continue; // acknowledged to a creation deleted since
            }
            if at(tp, *o) != Some(v) {
                lost_all.push(format!(
                    "{tp} offset {o}: acks=all record {:?} lost or moved",
                    show(v)
                ));
            }
        }
        for (tp, c) in &self.consumed {
            for (o, v) in c {
                if at(tp, *o) != Some(v) {
                    lost_all.push(format!(
                        "{tp} offset {o}: consumed {:?}, gone from the final log",
                        show(v)
                    ));
                }
            }
        }
        for l in lost_all {
            self.violation(now, l);
        }
        let lost_one = self
            .acked_one
            .iter()
            .filter(|(tp, o, v)| at(tp, *o) != Some(v))
            .count() as u64;
        let present: BTreeMap<&TopicPartition, BTreeSet<&Bytes>> = finals
            .iter()
            .map(|(tp, l)| (tp, l.iter().collect()))
            .collect();
        let lost_zero = self
            .sent_zero
            .iter()
            .filter(|(tp, v)| !present.get(tp).is_some_and(|s| s.contains(v)))
            .count() as u64;
        Tally {
            acked_all: self.acked_all.len() as u64,
            acked_one: self.acked_one.len() as u64,
            lost_one,
            sent_zero: self.sent_zero.len() as u64,
            lost_zero,
            consumed: self.consumed_count,
            committed: finals.values().map(|l| l.len() as u64).sum(),
            offline_by_rule5: self.offline_by_rule5,
            commits_acked: self.commits_acked_count,
            offsets_compacted: u64::from(offsets_compacted),
        }
    }

    /// An offset commit of `offset` for `tp`, written to `offsets_tp`, was
    /// acknowledged.
    pub(crate) fn commit_acknowledged(
        &mut self,
        offsets_tp: &TopicPartition,
        tp: &TopicPartition,
        offset: u64,
    ) {
        self.commits_acked_count += 1;
        let acked = self
            .commits_acked
            .entry((offsets_tp.clone(), tp.clone()))
            .or_insert(offset);
        *acked = (*acked).max(offset);
    }

    /// Rule 10 across compaction: what a new coordinator would rebuild from each
    /// offsets partition's leader (its records from the log start, replayed) holds,
    /// for every partition, an offset at least the highest acknowledged commit (a
    /// later commit that timed out unacknowledged may have landed too). True when
    /// some offsets partition's log no longer starts at 0 (it was compacted).
    fn finish_offsets<'a>(
        &mut self,
        now: Duration,
        image: &MetadataImage,
        broker: &impl Fn(BrokerId) -> Option<&'a Broker>,
    ) -> bool {
        let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
            return false;
        };
        let mut rebuilt: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        let mut compacted = false;
        let mut offline = Vec::new();
        for p in &topic.partitions {
            if image.offline_by_rule5(p) {
                // Durability of its records is checked as it went (`observe`); no
                // coordinator can load it now, so its commits are not rebuilt.
                offline.push(p.tp.clone());
                continue;
            }
            let Some(view) = p
                .leader
                .and_then(broker)
                .and_then(|b| b.replica_view(&p.tp))
            else {
                self.violation(now, format!("{}: no running leader after settling", p.tp));
                continue;
            };
            compacted |= view.log.log_start_offset() > 0;
            // The coordinator's own reader: what a new one would replay.
            let mut bad = Vec::new();
            let read = read_offsets_log(view.log, |offset, o| match o {
                Ok(o) => match o.offset {
                    Some(x) => {
                        rebuilt.insert(o.tp, x);
                    }
                    None => {
                        rebuilt.remove(&o.tp);
                    }
                },
                Err(e) => bad.push(format!(
                    "{} offset {offset}: not an offset record: {e}",
                    p.tp
                )),
            });
            if let Err(e) = read {
                bad.push(format!("{}: cannot read its log: {e}", p.tp));
            }
            for what in bad {
                self.violation(now, what);
            }
        }
        for ((offsets_tp, tp), acked) in self.commits_acked.clone() {
            if offline.contains(&offsets_tp) {
                continue;
            }
            match rebuilt.get(&tp) {
                Some(&x) if x >= acked => {}
                got => self.violation(
                    now,
                    format!(
                        "{tp}: a commit of offset {acked} was acknowledged, a new coordinator would read {got:?}"
                    ),
                ),
            }
        }
        compacted
    }
}
