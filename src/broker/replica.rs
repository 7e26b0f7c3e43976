//! One hosted replica: its log, its role, its producer table, its published status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::FsyncPolicy;
use crate::ids::{BrokerId, TopicPartition};
use crate::protocol::{EpochEndOffset, PartitionState};
use crate::record::Batch;
use crate::replication::{Leader, LeaderReady, ProducerStateTable};
use crate::storage::{self, Log, Stamped};
use crate::{Error, Result};

use super::ReplicaStatus;

/// What this broker does for the partition.
#[derive(Debug)]
pub(crate) enum Role {
    /// No state from the controller yet.
    None,
    Leader(Box<Leader>),
    /// Fetching from `leader` (`None`: the partition is offline).
    Follower {
        leader: Option<BrokerId>,
    },
}

impl Role {
    /// Whether the role already matches `st` for broker `me`.
    pub(crate) fn matches(&self, st: &PartitionState, me: BrokerId) -> bool {
        match self {
            Role::None => false,
            Role::Leader(l) => st.leader == Some(me) && l.leader_epoch() == st.leader_epoch,
            Role::Follower { leader } => st.leader != Some(me) && *leader == st.leader,
        }
    }
}

/// A hosted replica.
#[derive(Debug)]
pub(crate) struct Replica {
    /// The partition's name, shared: fetch requests and answers carry it once per
    /// partition, every round trip, and an `Arc` clone costs no allocation.
    pub(crate) name: Arc<TopicPartition>,
    pub(crate) state: Option<PartitionState>,
    pub(crate) log: Box<dyn Log>,
    pub(crate) producers: ProducerStateTable,
    pub(crate) role: Role,
    pub(crate) status: Arc<ReplicaStatus>,
    /// The HW as a follower last heard it (a new leader starts from it).
    hw: u64,
    /// Where a leader found a bad CRC: it cuts its log there once it follows.
    pub(crate) corrupt_at: Option<u64>,
    /// When a leader last asked to resign over corruption.
    pub(crate) resign_sent: Option<Duration>,
    /// The creation of the topic the log's records belong to: from the last state
    /// applied (always that state's id), or, for a log opened from disk before any,
    /// from its directory. Read through [`Replica::is_of`] where one is asked for.
    pub(crate) topic_id: Option<u64>,
}

/// The directory name of a partition: `topic-partition`, as Kafka.
pub(crate) fn dir_name(tp: &TopicPartition) -> String {
    format!("{}-{}", tp.topic, tp.partition)
}

/// The partition directories under a broker directory.
pub(crate) fn partition_dirs(dir: &Path) -> Result<Vec<(TopicPartition, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), e))?
            .is_dir()
        {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // Topic names may hold '-': the partition is after the last one.
        let Some((topic, part)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = part.parse::<u32>() else {
            continue;
        };
        if topic.is_empty() {
            continue;
        }
        out.push((TopicPartition::new(topic, partition), entry.path()));
    }
    out.sort();
    Ok(out)
}

impl Replica {
    fn with_log(tp: TopicPartition, log: Box<dyn Log>, status: Arc<ReplicaStatus>) -> Self {
        let r = Replica {
            name: Arc::new(tp),
            state: None,
            log,
            producers: ProducerStateTable::default(),
            role: Role::None,
            status,
            hw: 0,
            corrupt_at: None,
            resign_sent: None,
            topic_id: None,
        };
        r.publish();
        r
    }

    /// Whether the log belongs to the creation `topic_id` of its topic.
    pub(crate) fn is_of(&self, topic_id: u64) -> bool {
        self.topic_id == Some(topic_id)
    }

    /// A replica in memory: empty, as after every (re)start. What it stamps as
    /// leader is copied into its broker's `chunks`.
    pub(crate) fn memory(
        tp: TopicPartition,
        status: Arc<ReplicaStatus>,
        chunks: storage::Chunks,
    ) -> Self {
        Self::with_log(tp, storage::memory_log(chunks), status)
    }

    /// A replica on disk, recovered from `path`; `true` when recovery cut data.
    pub(crate) fn open_disk(
        tp: TopicPartition,
        path: &Path,
        fsync: FsyncPolicy,
        status: Arc<ReplicaStatus>,
    ) -> Result<(Self, bool)> {
        let (log, mut lost) = storage::open_segment_log(path, fsync)?;
        let mut r = Self::with_log(tp, log, status);
        r.topic_id = storage::read_topic_id(path);
        // Rule 9 at recovery: rot in an old segment (recovery scans only the active
        // one) is found by the full read that rebuilds the producer table. The log is
        // cut there and the replica reports lost data: not electable until it has
        // refetched and rejoined the ISR.
        if let Some(at) = r.rebuild_producers() {
            r.truncate_to(at)?;
            lost = true;
        }
        // Kept on disk until the controller has heard of it: a start that dies
        // before registering would leave the next one nothing to cut, and no loss
        // to report.
        if lost {
            storage::mark_loss(path, fsync)?;
        } else {
            lost = storage::has_unreported_loss(path);
        }
        Ok((r, lost))
    }

    pub(crate) fn publish(&self) {
        self.status
            .set_offsets(self.log.log_start_offset(), self.log.log_end_offset());
        if !matches!(self.role, Role::Leader(_)) {
            self.status.set_hw(self.hw.min(self.log.log_end_offset()));
        }
    }

    /// Rebuilds the idempotent-producer table from the log (after opening or
    /// truncating it).
    ///
    /// It reads every batch, so it also scrubs the log: returns the offset of the
    /// first batch that fails its CRC, if any.
    fn rebuild_producers(&mut self) -> Option<u64> {
        self.producers.clear();
        let mut offset = self.log.log_start_offset();
        while offset < self.log.log_end_offset() {
            let batches = match self.log.read(offset, 1 << 20) {
                Ok(b) => b,
                Err(Error::Corrupt { offset: at, .. }) => return Some(at.unwrap_or(offset)),
                Err(_) => return None,
            };
            offset = batches.last()?.next_offset();
            for b in &batches {
                self.producers.record(b);
            }
        }
        None
    }

    /// Takes on the role `st` gives broker `me`. Returns the ids of acks=all waiters
    /// that ended because leadership moved, and what an ISR change decided.
    pub(crate) fn apply_state(
        &mut self,
        st: PartitionState,
        me: BrokerId,
        lag: Duration,
        now: Duration,
    ) -> (Vec<u64>, LeaderReady) {
        let mut resigned = Vec::new();
        let mut ready = LeaderReady::default();
        self.log.set_segment_bytes(st.config.segment_bytes);
        if st.leader == Some(me) {
            match &mut self.role {
                Role::Leader(l) if l.leader_epoch() == st.leader_epoch => {
                    ready = l.isr_updated(&st, now);
                }
                _ => {
                    resigned = self.resign();
                    let leo = self.log.log_end_offset();
                    // The new epoch starts at our log end: followers truncate to it.
                    let _ = self.log.assign_epoch(st.leader_epoch, leo);
                    let mut leader = Leader::new(me, &st, leo, self.hw, lag, now);
                    // With an ISR of one, everything in the log is committed now.
                    ready = leader.appended(leo, None, now);
                    self.status.set_hw(leader.hw());
                    self.role = Role::Leader(Box::new(leader));
                }
            }
            self.status.set_role(true, st.leader_epoch);
        } else {
            if let Role::Leader(l) = &self.role {
                self.hw = l.hw();
            }
            resigned = self.resign();
            self.role = Role::Follower { leader: st.leader };
            self.status.set_role(false, st.leader_epoch);
            // Rule 9: a leader that found corrupt bytes cuts them once it follows,
            // and refetches from the new leader.
            if let Some(at) = self.corrupt_at.take() {
                let _ = self.truncate_to(at);
            }
            self.resign_sent = None;
        }
        self.state = Some(st);
        self.publish();
        (resigned, ready)
    }

    /// Leaves leadership; returns the waiters that ended.
    pub(crate) fn resign(&mut self) -> Vec<u64> {
        match &mut self.role {
            Role::Leader(l) => {
                self.hw = l.hw();
                let ids = l.resign().into_iter().map(|(id, _)| id).collect();
                self.role = Role::None;
                ids
            }
            _ => Vec::new(),
        }
    }

    /// The leader appends a stamped batch.
    pub(crate) fn append_local(&mut self, batch: &Batch) -> Result<()> {
        self.append_stamped(batch, batch.base_offset(), batch.leader_epoch())
    }

    /// A leader appends `batch` at `base_offset` in `leader_epoch` (a segment log
    /// writes the stamped header and the batch without copying it).
    pub(crate) fn append_stamped(
        &mut self,
        batch: &Batch,
        base_offset: u64,
        leader_epoch: u32,
    ) -> Result<()> {
        self.append_all(&[Stamped::new(batch, base_offset, leader_epoch)])
    }

    /// A leader appends `batches`, stamped with the offsets and epoch it gives
    /// them, in one go ([`Log::append_all`]). On an error the batches below the
    /// log end are in the log all the same, and recorded.
    pub(crate) fn append_all(&mut self, batches: &[Stamped<'_>]) -> Result<()> {
        let result = self.log.append_all(batches);
        self.appended(batches);
        result
    }

    /// A follower appends what its leader sent (skipping what it already holds).
    pub(crate) fn append_fetched(&mut self, batches: &[Batch]) -> Result<()> {
        // The batches that follow on from our end: up to a gap, from which we
        // fetch again.
        let mut run = Vec::with_capacity(batches.len());
        let mut expected = self.log.log_end_offset();
        for b in batches {
            if b.next_offset() <= expected {
                continue;
            }
            if b.base_offset() != expected {
                break;
            }
            expected = b.next_offset();
            run.push(Stamped::as_is(b));
        }
        self.append_all(&run)
    }

    /// Records the producers of those of `batches` now in the log, and publishes
    /// the new log end.
    fn appended(&mut self, batches: &[Stamped<'_>]) {
        let leo = self.log.log_end_offset();
        for s in batches.iter().take_while(|s| s.next_offset() <= leo) {
            self.producers.record_at(s.batch, s.base_offset);
        }
        self.publish();
    }

    /// The high watermark: a leader's own, a follower's as it last heard it.
    pub(crate) fn high_watermark(&self) -> u64 {
        match &self.role {
            Role::Leader(l) => l.hw(),
            _ => self.hw,
        }
    }

    /// A follower learns the leader's HW (never past its own log end).
    pub(crate) fn set_follower_hw(&mut self, hw: u64) {
        let hw = hw.min(self.log.log_end_offset());
        if hw > self.hw {
            self.hw = hw;
        }
        self.publish();
    }

    /// Follows the leader's log start, as Kafka's follower does with each fetch
    /// answer: whole segments below it are deleted, but never past this replica's
    /// own high watermark, so a follower that has not yet fetched what replaced them
    /// (a compacted log's snapshot) keeps them.
    ///
    /// # Errors
    ///
    /// As [`Log::delete_below`](crate::storage::Log::delete_below).
    pub(crate) fn follow_log_start(&mut self, leader_log_start: u64) -> Result<()> {
        let upto = leader_log_start.min(self.hw);
        if upto > self.log.log_start_offset() {
            self.log.delete_below(upto)?;
            self.publish();
        }
        Ok(())
    }

    /// Where to cut our log given the leader's answer to OffsetForLeaderEpoch: the
    /// smaller of the leader's end for that epoch and ours (KIP-279).
    pub(crate) fn divergence_point(&self, d: EpochEndOffset) -> u64 {
        let leo = self.log.log_end_offset();
        match self.log.end_offset_for_epoch(d.epoch) {
            Some((e, end)) if e == d.epoch => end.min(d.end_offset).min(leo),
            Some((_, end)) => end.min(d.end_offset).min(leo),
            None => d.end_offset.min(leo),
        }
    }

    /// Cuts the log at `offset` (never by the stale HW: rule 6).
    pub(crate) fn truncate_to(&mut self, offset: u64) -> Result<()> {
        self.log.truncate(offset)?;
        self.hw = self.hw.min(self.log.log_end_offset());
        if let Some(at) = self.rebuild_producers() {
            // More rot below: cut there too.
            self.log.truncate(at)?;
            self.rebuild_producers();
        }
        self.publish();
        Ok(())
    }

    /// Restarts the log at `offset` (the leader's log starts past our end).
    pub(crate) fn reset_to(&mut self, offset: u64) -> Result<()> {
        self.log.reset(offset)?;
        self.hw = offset;
        self.producers.clear();
        self.publish();
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::storage::tests::support::append_batches;

    fn replica_with(batches: &[(usize, u32)]) -> Replica {
        let status = Arc::new(ReplicaStatus::default());
        let mut r = Replica::memory(
            TopicPartition::new("t", 0),
            status,
            storage::Chunks::default(),
        );
        for &(n, epoch) in batches {
            append_batches(r.log.as_mut(), n, 3, 10, epoch);
        }
        r
    }

    /// Rule 6 (KIP-279): a follower that holds only epochs newer than the one the
    /// leader answers with (it led epoch 1 on an empty log; the leader never had
    /// epoch 1) cuts at the start of its first epoch: none of its records can be
    /// the leader's. Before, it found no point to cut at, kept its log and fetched
    /// the same diverging offset forever, out of the ISR.
    #[test]
    fn rule6_a_follower_holding_only_newer_epochs_than_the_leaders_answer_cuts_at_its_first() {
        let mut r = replica_with(&[(9, 1)]);
        assert_eq!(r.log.epochs(), vec![(1, 0)]);
        assert_eq!(r.log.log_end_offset(), 27);
        let leader_says = EpochEndOffset {
            epoch: 0,
            end_offset: 28,
        };
        let to = r.divergence_point(leader_says);
        assert_eq!(to, 0, "everything from epoch 1 on diverges");
        r.truncate_to(to).unwrap();
        assert_eq!(r.log.log_end_offset(), 0);
        assert_eq!(r.log.epochs(), vec![]);
    }

    /// Rule 6: with the leader's epoch known, the cut is the smaller of the two ends
    /// of that epoch (KIP-279), never past the follower's own end.
    #[test]
    fn rule6_a_follower_cuts_at_the_smaller_end_of_the_leaders_epoch() {
        let r = replica_with(&[(3, 2), (3, 4)]);
        assert_eq!(r.log.epochs(), vec![(2, 0), (4, 9)]);
        // The leader ended epoch 2 at 7, before we did (9).
        let to = r.divergence_point(EpochEndOffset {
            epoch: 2,
            end_offset: 7,
        });
        assert_eq!(to, 7);
        // The leader knows epoch 3, which we never saw: our end of its floor (2).
        let to = r.divergence_point(EpochEndOffset {
            epoch: 3,
            end_offset: 30,
        });
        assert_eq!(to, 9);
    }

    /// Rule 6 on the leader's side: a follower whose last epoch is older than every
    /// epoch a leader still knows, on a leader whose older records were deleted
    /// (here a reset, as after falling behind another leader's log start) cannot be
    /// told where that epoch ended, so it is told to cut everything: it then starts
    /// again at the leader's log start. Whether its log ends exactly there or past
    /// it, it gets an answer that makes it cut, never one that cuts nothing and
    /// comes again forever.
    #[test]
    fn rule6_a_follower_older_than_every_epoch_a_truncated_leader_knows_cuts_everything() {
        let mut leader = replica_with(&[]);
        leader.log.reset(10).unwrap();
        append_batches(leader.log.as_mut(), 2, 3, 10, 2);
        assert_eq!(leader.log.epochs(), vec![(2, 10)]);
        // Ending just below the leader's start, and past it (batches of 3 records).
        for (fetch_offset, batches) in [(9, 3), (12, 4)] {
            let answer = super::super::diverging(&leader, 1, fetch_offset);
            assert_eq!(
                answer,
                Some(EpochEndOffset {
                    epoch: 1,
                    end_offset: 0
                })
            );
            let mut follower = replica_with(&[(batches, 1)]);
            let to = follower.divergence_point(answer.unwrap());
            assert_eq!(to, 0);
            follower.truncate_to(to).unwrap();
            assert_eq!(follower.log.log_end_offset(), 0);
        }
        // The same log from 0 knows where epoch 1 ended: before its first record.
        let mut whole = replica_with(&[]);
        append_batches(whole.log.as_mut(), 2, 3, 10, 2);
        assert_eq!(super::super::diverging(&whole, 1, 0), None);
        assert_eq!(
            super::super::diverging(&whole, 1, 2),
            Some(EpochEndOffset {
                epoch: 1,
                end_offset: 0
            })
        );
    }

    /// The leader's shortcut for a follower whose last batch is of the leader's own
    /// epoch gives the answer the full OffsetForLeaderEpoch check gives, for every
    /// last epoch and fetch offset.
    #[test]
    fn rule6_the_leaders_own_epoch_is_answered_as_the_full_check_answers() {
        let leader = replica_with(&[(3, 3), (2, 4)]);
        assert_eq!(leader.log.epochs(), vec![(3, 0), (4, 9)]);
        for last_epoch in 0..=5 {
            for fetch_offset in 0..=17 {
                assert_eq!(
                    super::super::diverging_from_leader(&leader, 4, last_epoch, fetch_offset),
                    super::super::diverging(&leader, last_epoch, fetch_offset),
                    "last epoch {last_epoch}, fetch offset {fetch_offset}"
                );
            }
        }
    }

    /// Rule 6 after compaction: the leader deleted the segments below its log start,
    /// which moved the first epoch entry up to it. A follower that wrote in an older
    /// epoch up to exactly that start holds records the leader's deleted ones
    /// replaced; they must not survive.
    #[test]
    fn rule6_a_follower_of_a_compacted_leader_does_not_keep_an_older_epochs_records() {
        let mut leader = replica_with(&[(3, 3), (2, 4)]);
        assert_eq!(leader.log.epochs(), vec![(3, 0), (4, 9)]);
        leader.log.delete_below(12).unwrap();
        assert_eq!(leader.log.log_start_offset(), 12);
        assert_eq!(leader.log.epochs(), vec![(4, 12)]);
        // The follower's epoch 3 ran to 12, past the leader's end of it (9).
        let answer = super::super::diverging(&leader, 3, 12).expect("told to cut");
        let mut follower = replica_with(&[(4, 3)]);
        follower
            .truncate_to(follower.divergence_point(answer))
            .unwrap();
        assert_eq!(follower.log.log_end_offset(), 0);
    }

    fn open(path: &Path) -> (Replica, bool) {
        let status = Arc::new(ReplicaStatus::default());
        Replica::open_disk(
            TopicPartition::new("t", 0),
            path,
            FsyncPolicy::Never,
            status,
        )
        .unwrap()
    }

    /// Rule 5: a replica whose recovery cut records is reported as having lost data
    /// at every start until the controller has heard it, not only at the start that
    /// cut them. A broker that died before its registration got through found a
    /// clean log the next time, reported nothing, and could be elected without the
    /// records it had cut.
    #[test]
    fn rule5_a_loss_found_at_open_is_reported_at_every_start_until_the_controller_hears_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        {
            let (mut r, lost) = open(&path);
            assert!(!lost);
            append_batches(r.log.as_mut(), 4, 3, 10, 1);
        }
        let segment = path.join("00000000000000000000.log");
        let len = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (r, lost) = open(&path);
        assert!(lost, "recovery cut the torn batch");
        assert_eq!(r.log.log_end_offset(), 9);
        drop(r);
        // Killed before registering: nothing is left to cut, the loss still stands.
        let (r, lost) = open(&path);
        assert!(lost, "the loss is reported again");
        assert_eq!(r.log.log_end_offset(), 9);
        drop(r);
        storage::loss_reported(&path).unwrap();
        let (_, lost) = open(&path);
        assert!(!lost, "once heard, a clean log is just clean");
    }
}
