//! Consumer groups: the group coordinator core and the partition assignors.
//!
//! [`Coordinator`] is a pure state machine (no threads, no clock, no channels, no
//! files), as `controller::Controller` is: the broker that leads a group's
//! `__consumer_offsets` partition ([`partition_for`]) feeds it requests and the
//! current time, writes the [`OffsetRecord`]s it returns, and sends its answers.
//!
//! # Protocol
//!
//! Assignment is server-side, in the style of KIP-848. Whenever membership or the
//! partition count of a subscribed topic changes, the group starts a rebalance: its
//! generation goes up by one and the group's assignor computes a new *target*
//! assignment. Each member then converges to its target through heartbeats: it
//! reports the partitions it owns, and the answer ([`MemberState`]) says what to
//! revoke, what it may own now and what it will get once others let go.
//!
//! * **Cooperative** ([`AssignorKind::CooperativeSticky`], the default, KIP-429): a
//!   partition moving from A to B is first revoked from A; A acknowledges by no
//!   longer listing it as owned; only then is it given to B. Partitions that stay
//!   are never revoked.
//! * **Eager** ([`AssignorKind::Range`], [`AssignorKind::RoundRobin`]): after a
//!   rebalance every member must revoke everything; nobody receives an assignment
//!   until every member has.
//!
//! # Driving it (the shell)
//!
//! * On becoming leader of offsets partition `p`: [`Coordinator::replay`] every record
//!   of `p` in log order, then answer requests for its groups. On losing it:
//!   [`Coordinator::unload`]. Membership is not persisted: members rejoin.
//! * On every metadata change: [`Coordinator::topic_partitions_changed`] for each topic
//!   whose partition count changed (including creation and deletion).
//! * Requests: [`Coordinator::join`], [`Coordinator::heartbeat`],
//!   [`Coordinator::leave`], [`Coordinator::commit`] (write its records to
//!   `__consumer_offsets` with `acks=all`, then [`Coordinator::commit_applied`], then
//!   answer), [`Coordinator::committed`].
//! * Time: call [`Coordinator::tick`] at [`Coordinator::next_deadline`] (or on any
//!   wake-up); it expires members whose session timed out.
//!
//! # Errors the Consumer must handle
//!
//! [`Error::IllegalGeneration`] from `heartbeat` or `commit` means "you are not a
//! current member at that generation" (removed after a session timeout, replaced, or
//! the coordinator moved): the member has lost its partitions (without a chance to
//! commit them) and must rejoin with no member id (and its `group.instance.id`, if
//! static). [`Error::Usage`] from `heartbeat` (or from `join` with the old member id)
//! for a static member means a newer consumer with the same `group.instance.id`
//! took its place: it is fatal, as Kafka's `FENCED_INSTANCE_ID`.
//!
//! # Consumer flow per [`MemberState`]
//!
//! 1. For `revoke`: commit their positions (with `generation`), call the
//!    `on_partitions_revoked` callback, stop fetching them; wait for the commit to be
//!    acknowledged before the next heartbeat, so the next owner sees it.
//! 2. For `assigned` minus what it owned: call `on_partitions_assigned`, start
//!    fetching from the committed offset.
//! 3. Heartbeat with `owned = assigned`; soon if `rebalance_in_progress`, else after
//!    the heartbeat interval.
//!
//! This assumes at most one heartbeat per member in flight (a request and its
//! answer), as Kafka's consumer does: an old heartbeat overtaking a newer one could
//! drop a granted partition from `owned`, and the coordinator could give it away
//! while the member still fetches it.

mod assignor;
mod offsets;
mod state;
mod sticky;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ids::TopicPartition;
use crate::{Error, Result};

pub(crate) use assignor::AssignorKind;

/// The internal topic committed offsets live in.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub(crate) use offsets::{partition_for, read_log as read_offsets_log, OffsetRecord};

use state::{Group, Member};

/// A member's request to join (or rejoin, or change its subscription in) a group:
/// Kafka's `JoinGroup`, sent by `Consumer::subscribe` and after losing membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JoinRequest {
    /// `group.id`.
    pub(crate) group: String,
    /// The member id from an earlier join, to change the subscription; `None` for a
    /// new member (an id the coordinator does not know is treated as `None`).
    pub(crate) member_id: Option<String>,
    /// `group.instance.id`: static membership (KIP-345).
    pub(crate) instance_id: Option<String>,
    /// `client.id`: the prefix of the member id the coordinator hands out.
    pub(crate) client_id: String,
    /// Subscribed topics; at least one.
    pub(crate) topics: Vec<String>,
    /// `partition.assignment.strategy`; every member of a group must use the same.
    pub(crate) assignor: AssignorKind,
    /// `session.timeout.ms`.
    pub(crate) session_timeout: Duration,
}

/// The coordinator's answer to a join or heartbeat: what the member must do to
/// converge to its target assignment. Lists are sorted and disjoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberState {
    /// The member's id: send it with every heartbeat, commit and leave.
    pub(crate) member_id: String,
    /// The group's generation: send it with every heartbeat and commit.
    pub(crate) generation: u32,
    /// What the member may own once it has applied this answer: it keeps these
    /// (or starts fetching the new ones) and reports them as owned.
    pub(crate) assigned: Vec<TopicPartition>,
    /// Partitions the member owns and must give up: commit their positions first,
    /// then stop listing them as owned.
    pub(crate) revoke: Vec<TopicPartition>,
    /// Partitions of the member's target still owned by another member (or, under
    /// the eager protocol, waiting for every member to revoke): a later heartbeat
    /// assigns them.
    pub(crate) pending: Vec<TopicPartition>,
    /// The member has not converged yet (`revoke` or `pending` is non-empty, or an
    /// eager rebalance is under way): heartbeat again soon rather than after the
    /// full heartbeat interval.
    pub(crate) rebalance_in_progress: bool,
}

/// Who commits offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Committer<'a> {
    /// A member of the group, with the generation of its latest [`MemberState`].
    Member {
        /// The member id.
        member_id: &'a str,
        /// The generation the member is in.
        generation: u32,
    },
    /// A consumer outside the group's membership (manual `assign()`): accepted only
    /// while the group has no members, as Kafka.
    Standalone,
}

/// A member removed because its session timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExpiredMember {
    /// The group.
    pub(crate) group: String,
    /// The removed member's id.
    pub(crate) member_id: String,
    /// Its `group.instance.id`, if it was static.
    pub(crate) instance_id: Option<String>,
}

#[cfg(test)] // Kept for an admin API; the tests use it to observe groups.
/// A snapshot of one member, for tests, metrics and a future describe-group API.
// Only the core's tests read it until that API exists.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberDescription {
    /// `group.instance.id`.
    pub(crate) instance_id: Option<String>,
    /// Subscribed topics.
    pub(crate) topics: Vec<String>,
    /// The target assignment of the current generation.
    pub(crate) target: Vec<TopicPartition>,
    /// What the coordinator considers it to own.
    pub(crate) owned: Vec<TopicPartition>,
}

#[cfg(test)] // Kept for an admin API; the tests use it to observe groups.
/// A snapshot of one group.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    /// The current generation.
    pub(crate) generation: u32,
    /// The group's assignor.
    pub(crate) assignor: AssignorKind,
    /// Members by member id.
    pub(crate) members: BTreeMap<String, MemberDescription>,
    /// Every member owns exactly its target and no eager revocation is pending.
    pub(crate) stable: bool,
}

/// The group coordinator of one broker: the state of every group whose offsets
/// partition this broker leads, and the partition counts of topics.
#[derive(Debug)]
pub(crate) struct Coordinator {
    /// Mixed into member ids, so ids from another coordinator never collide.
    tag: String,
    /// Partition count of `__consumer_offsets` (`offsets.topic.num.partitions`).
    offsets_partitions: u32,
    /// Groups by id.
    groups: BTreeMap<String, Group>,
    /// Partition counts of the cluster's topics, as the shell reports them.
    topics: BTreeMap<String, u32>,
    /// Last member id sequence number handed out.
    member_seq: u64,
}

impl Coordinator {
    /// A coordinator with no groups.
    ///
    /// `tag` must be unique to this coordinator's lifetime, e.g. `"b2e7"` (broker
    /// id and broker epoch): member ids are `"<client id>-<tag>-<n>"`, and a member
    /// id issued by an earlier coordinator of the same group must never be issued
    /// again, or a zombie member could commit as the new one. `offsets_partitions` is
    /// the partition count of `__consumer_offsets`, for [`Coordinator::unload`].
    ///
    /// # Panics
    ///
    /// If `offsets_partitions` is 0.
    pub(crate) fn new(tag: impl Into<String>, offsets_partitions: u32) -> Self {
        assert!(offsets_partitions > 0, "__consumer_offsets has partitions");
        Coordinator {
            tag: tag.into(),
            offsets_partitions,
            groups: BTreeMap::new(),
            topics: BTreeMap::new(),
            member_seq: 0,
        }
    }

    /// The partition count of `__consumer_offsets` as it exists: an offsets topic
    /// reopened from a data dir keeps the count it was created with, whatever the
    /// builder now says.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub(crate) fn set_offsets_partitions(&mut self, n: u32) {
        assert!(n > 0, "__consumer_offsets has partitions");
        self.offsets_partitions = n;
    }

    /// Joins a member to a group, or updates an existing member's subscription.
    ///
    /// * A new member gets a fresh member id and starts a rebalance.
    /// * A known member (`member_id` given and known) that changes its topics starts
    ///   a rebalance; one that changes nothing just gets its state.
    /// * A static member (`instance_id`) whose instance is held by a live member
    ///   with another id replaces it (a restart within the session timeout): it
    ///   inherits the old member's assignment, and the generation stays. The
    ///   replaced id is fenced.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidConfig`]: empty `group.id` or `group.instance.id`, zero
    ///   `session.timeout.ms`, an assignor other than the group's, or a name longer
    ///   than 65,535 bytes.
    /// * [`Error::Usage`]: no topics, or the request comes from a fenced static
    ///   member, or a known member changes its `group.instance.id`.
    pub(crate) fn join(&mut self, req: JoinRequest, now: Duration) -> Result<MemberState> {
        validate_group_id(&req.group)?;
        if req.topics.is_empty() {
            return Err(Error::Usage(format!(
                "group `{}`: a member must subscribe to at least one topic; to stop consuming, close the consumer (leave the group)",
                req.group
            )));
        }
        if req.session_timeout.is_zero() {
            return Err(Error::InvalidConfig {
                name: "session.timeout.ms",
                reason: "must be above zero".into(),
            });
        }
        if let Some(instance) = &req.instance_id {
            if instance.is_empty() {
                return Err(Error::InvalidConfig {
                    name: "group.instance.id",
                    reason: "must not be empty: give each static member a unique id, or none"
                        .into(),
                });
            }
        }
        for topic in &req.topics {
            validate_name_len("topic", topic)?;
        }
        let topics: BTreeSet<String> = req.topics.iter().cloned().collect();
        let group = self.groups.entry(req.group.clone()).or_default();

        // A known member: a subscription change, or a repeated join.
        let known = req
            .member_id
            .as_ref()
            .filter(|id| group.members.contains_key(*id))
            .cloned();
        if let Some(id) = known {
            let member = &group.members[&id];
            if member.instance_id != req.instance_id {
                return Err(Error::Usage(format!(
                    "group `{}`: member `{id}` joined with group.instance.id {:?} and now asks for {:?}; a member cannot change it: rejoin with no member id",
                    req.group, member.instance_id, req.instance_id
                )));
            }
            let changed = member.topics != topics || group.assignor != req.assignor;
            check_assignor(&req.group, group, req.assignor, Some(&id))?;
            group.assignor = req.assignor;
            let member = group.members.get_mut(&id).expect("known");
            member.topics = topics;
            member.session_timeout = req.session_timeout;
            member.last_heard = now;
            if changed {
                group.rebalance(&self.topics);
            }
            return Ok(group.reconcile(&id));
        }
        if let (Some(old), Some(instance)) = (&req.member_id, &req.instance_id) {
            if group.fenced.get(instance) == Some(old) {
                return Err(fenced_error(&req.group, old, instance));
            }
        }
        check_assignor(&req.group, group, req.assignor, None)?;

        self.member_seq += 1;
        let client = if req.client_id.is_empty() {
            "consumer"
        } else {
            req.client_id.as_str()
        };
        let member_id = if self.tag.is_empty() {
            format!("{client}-{}", self.member_seq)
        } else {
            format!("{client}-{}-{}", self.tag, self.member_seq)
        };
        let mut member = Member {
            instance_id: req.instance_id.clone(),
            topics,
            session_timeout: req.session_timeout,
            last_heard: now,
            target: BTreeSet::new(),
            owned: BTreeSet::new(),
            revoking_all: false,
        };
        let mut rebalance = true;
        let holder = req
            .instance_id
            .as_deref()
            .and_then(|i| group.static_member(i))
            .map(str::to_owned);
        if let Some(old_id) = holder {
            let old = group.members.remove(&old_id).expect("holder is a member");
            if old.expired(now) {
                // Too late to take over: the old member is gone, this is a new one.
            } else {
                // KIP-345: take over the assignment; no rebalance unless the
                // subscription differs.
                rebalance = old.topics != member.topics;
                member.target = old.target;
                member.owned = old.owned;
                member.revoking_all = old.revoking_all;
                let instance = req.instance_id.clone().expect("static");
                group.fenced.insert(instance, old_id);
            }
        }
        group.assignor = req.assignor;
        group.members.insert(member_id.clone(), member);
        if rebalance {
            group.rebalance(&self.topics);
        }
        Ok(group.reconcile(&member_id))
    }

    /// A member's heartbeat: it reports the partitions it owns and learns what to
    /// do next (see [`MemberState`]). Partitions it no longer lists are taken as
    /// given up; partitions it lists but was never granted are ignored.
    ///
    /// # Errors
    ///
    /// * [`Error::IllegalGeneration`]: the member is unknown (session expired,
    ///   coordinator moved) or `generation` is newer than the group's: rejoin.
    /// * [`Error::Usage`]: the member is a static member replaced by a newer one
    ///   with the same `group.instance.id` (fatal).
    pub(crate) fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation: u32,
        owned: &[TopicPartition],
        now: Duration,
    ) -> Result<MemberState> {
        let group = self.member_group(group_id, member_id, generation)?;
        let member = group.members.get_mut(member_id).expect("checked");
        member.last_heard = now;
        let reported: BTreeSet<&TopicPartition> = owned.iter().collect();
        member.owned.retain(|tp| reported.contains(tp));
        if member.owned.is_empty() {
            member.revoking_all = false;
        }
        Ok(group.reconcile(member_id))
    }

    /// A member leaves the group (`Consumer::close`, or its `Drop`). Returns whether
    /// a rebalance started. Leaving twice, or after expiry, is harmless.
    ///
    /// A dynamic member is removed at once and its partitions are reassigned. A
    /// static member (one with a `group.instance.id`) is not removed, as in Kafka
    /// (KIP-345): its assignment is kept, unconsumed, until its session timeout
    /// from `now`, so a restart within it takes over with no rebalance. It is
    /// marked as owning nothing, since a closed consumer fetches nothing.
    pub(crate) fn leave(&mut self, group_id: &str, member_id: &str, now: Duration) -> bool {
        let Some(group) = self.groups.get_mut(group_id) else {
            return false;
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return false;
        };
        if member.instance_id.is_some() {
            member.owned.clear();
            member.revoking_all = false;
            member.last_heard = now;
            return false;
        }
        self.remove_members(group_id, &[member_id]);
        true
    }

    /// Expires members whose session timed out at `now` (not heard from for
    /// `session.timeout.ms`), and rebalances their groups. Returns who was removed.
    pub(crate) fn tick(&mut self, now: Duration) -> Vec<ExpiredMember> {
        let expired: Vec<ExpiredMember> = self
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .members
                    .iter()
                    .filter(|(_, m)| m.expired(now))
                    .map(|(id, m)| ExpiredMember {
                        group: g.clone(),
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone(),
                    })
            })
            .collect();
        // One rebalance per group, however many of its members expired together.
        let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for e in &expired {
            by_group.entry(&e.group).or_default().push(&e.member_id);
        }
        for (group, members) in by_group {
            self.remove_members(group, &members);
        }
        expired
    }

    /// When [`Coordinator::tick`] next has something to do: the earliest session
    /// deadline. `None` when no group has members.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.groups
            .values()
            .flat_map(|g| g.members.values())
            .map(Member::deadline)
            .min()
    }

    /// The shell learned a topic's partition count: `Some(n)` on creation or
    /// growth, `None` on deletion. Groups subscribed to it rebalance if the count
    /// changed; returns their ids.
    pub(crate) fn topic_partitions_changed(
        &mut self,
        topic: &str,
        partitions: Option<u32>,
    ) -> Vec<String> {
        let old = match partitions {
            Some(n) => self.topics.insert(topic.to_owned(), n),
            None => self.topics.remove(topic),
        };
        if old == partitions {
            return Vec::new();
        }
        let mut rebalanced = Vec::new();
        for (id, group) in &mut self.groups {
            if group.subscribes(topic) {
                group.rebalance(&self.topics);
                rebalanced.push(id.clone());
            }
        }
        rebalanced
    }

    /// Validates an offset commit and returns the records to write.
    ///
    /// Nothing is visible to [`Coordinator::committed`] yet: the shell writes the
    /// records to `__consumer_offsets` with `acks=all`, then calls
    /// [`Coordinator::commit_applied`], then acknowledges the commit. If the write
    /// fails it just drops them.
    ///
    /// # Errors
    ///
    /// Nothing is recorded on error.
    /// * [`Error::IllegalGeneration`]: a member commit whose member is unknown or
    ///   whose generation is not the group's current one (a zombie, or a member that
    ///   missed a rebalance): rejoin, then commit again.
    /// * [`Error::Usage`]: a standalone commit while the group has members.
    /// * [`Error::InvalidConfig`]: an empty `group.id`, or a name too long to store.
    ///
    /// # Durability
    ///
    /// A commit is durable once its records are in `__consumer_offsets` with
    /// `acks=all`; the shell must not acknowledge it before.
    pub(crate) fn commit(
        &mut self,
        group_id: &str,
        committer: Committer<'_>,
        offsets: &[(TopicPartition, u64)],
        now: Duration,
    ) -> Result<Vec<OffsetRecord>> {
        validate_group_id(group_id)?;
        for (tp, _) in offsets {
            validate_name_len("topic", &tp.topic)?;
        }
        match committer {
            Committer::Member {
                member_id,
                generation,
            } => {
                let current = self.groups.get(group_id).map_or(0, |g| g.generation);
                let group = self.groups.get_mut(group_id);
                let member = group.and_then(|g| g.members.get_mut(member_id));
                match member {
                    // As Kafka's classic coordinator, a commit also proves liveness.
                    Some(m) if generation == current => m.last_heard = now,
                    _ => {
                        return Err(Error::IllegalGeneration {
                            group: group_id.to_owned(),
                            generation,
                            current,
                        })
                    }
                }
            }
            Committer::Standalone => {
                let members = self.groups.get(group_id).map_or(0, |g| g.members.len());
                if members > 0 {
                    return Err(Error::Usage(format!(
                        "group `{group_id}` has {members} active member(s) that subscribed; a consumer with manually assigned partitions cannot commit to it: use another group.id for it, or subscribe()"
                    )));
                }
            }
        }
        Ok(offsets
            .iter()
            .map(|(tp, offset)| OffsetRecord {
                group: group_id.to_owned(),
                tp: tp.clone(),
                offset: Some(*offset),
            })
            .collect())
    }

    /// Makes records returned by [`Coordinator::commit`] (or
    /// [`Coordinator::delete_group`]) visible, once they are written. Call in log
    /// order.
    pub(crate) fn commit_applied(&mut self, records: &[OffsetRecord]) {
        for r in records {
            self.replay(r);
        }
    }

    /// One record per live committed offset of the groups that `offsets_partition`
    /// holds, sorted: what compacting that partition keeps (a tombstoned offset has
    /// no record). `pending` are the records of commits already written but not yet
    /// applied, in log order: they lie before the snapshot in the log, so the
    /// snapshot states their values, not the older ones applied here.
    pub(crate) fn snapshot<'a>(
        &self,
        offsets_partition: u32,
        pending: impl IntoIterator<Item = &'a OffsetRecord>,
    ) -> Vec<OffsetRecord> {
        let n = self.offsets_partitions;
        let mut live: BTreeMap<(String, TopicPartition), u64> = self
            .groups
            .iter()
            .filter(|(g, _)| partition_for(g, n) == offsets_partition)
            .flat_map(|(g, group)| {
                group
                    .offsets
                    .iter()
                    .map(move |(tp, &o)| ((g.clone(), tp.clone()), o))
            })
            .collect();
        for r in pending {
            if partition_for(&r.group, n) != offsets_partition {
                continue;
            }
            let key = (r.group.clone(), r.tp.clone());
            match r.offset {
                Some(o) => live.insert(key, o),
                None => live.remove(&key),
            };
        }
        live.into_iter()
            .map(|((group, tp), o)| OffsetRecord {
                group,
                tp,
                offset: Some(o),
            })
            .collect()
    }

    /// Applies one record read from `__consumer_offsets`, rebuilding the committed
    /// offsets when this broker becomes a group's coordinator. Replay every record
    /// of the partition, in log order, before answering for its groups.
    pub(crate) fn replay(&mut self, record: &OffsetRecord) {
        match record.offset {
            Some(offset) => {
                let group = self.groups.entry(record.group.clone()).or_default();
                group.offsets.insert(record.tp.clone(), offset);
            }
            None => {
                if let Some(group) = self.groups.get_mut(&record.group) {
                    group.offsets.remove(&record.tp);
                    self.drop_if_empty(&record.group);
                }
            }
        }
    }

    /// The group's committed offset for `tp`: the next record it will consume.
    pub(crate) fn committed(&self, group_id: &str, tp: &TopicPartition) -> Option<u64> {
        self.groups.get(group_id)?.offsets.get(tp).copied()
    }

    #[cfg(test)] // Kept for an admin API; the tests use it to observe groups.
    /// Deletes an empty group's offsets: returns the tombstones to write (then
    /// [`Coordinator::commit_applied`]), as Kafka's `DeleteGroups`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] if the group still has members.
    #[cfg_attr(not(test), allow(dead_code))] // for a future DeleteGroups API
    pub(crate) fn delete_group(&mut self, group_id: &str) -> Result<Vec<OffsetRecord>> {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(Vec::new());
        };
        if !group.members.is_empty() {
            return Err(Error::Usage(format!(
                "group `{group_id}` has {} member(s): close its consumers (or wait for their session timeout) before deleting it",
                group.members.len()
            )));
        }
        Ok(group
            .offsets
            .keys()
            .map(|tp| OffsetRecord {
                group: group_id.to_owned(),
                tp: tp.clone(),
                offset: None,
            })
            .collect())
    }

    /// This broker no longer leads `__consumer_offsets` partition `offsets_partition`:
    /// forgets its groups (members and offsets), so nothing stale is served if it
    /// leads it again later (it replays the log then). Returns the groups dropped.
    pub(crate) fn unload(&mut self, offsets_partition: u32) -> Vec<String> {
        let n = self.offsets_partitions;
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|g| partition_for(g, n) == offsets_partition)
            .cloned()
            .collect();
        for g in &gone {
            self.groups.remove(g);
        }
        gone
    }

    #[cfg(test)] // Kept for an admin API; the tests use it to observe groups.
    /// A snapshot of a group, `None` if this coordinator does not know it.
    #[cfg_attr(not(test), allow(dead_code))] // for a future describe-group API
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, m)| {
                let d = MemberDescription {
                    instance_id: m.instance_id.clone(),
                    topics: m.topics.iter().cloned().collect(),
                    target: m.target.iter().cloned().collect(),
                    owned: m.owned.iter().cloned().collect(),
                };
                (id.clone(), d)
            })
            .collect();
        let stable = group
            .members
            .values()
            .all(|m| !m.revoking_all && m.owned == m.target);
        Some(GroupDescription {
            generation: group.generation,
            assignor: group.assignor,
            members,
            stable,
        })
    }

    /// The group of a member, checked for a heartbeat at `generation`.
    fn member_group(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation: u32,
    ) -> Result<&mut Group> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(Error::IllegalGeneration {
                group: group_id.to_owned(),
                generation,
                current: 0,
            });
        };
        if !group.members.contains_key(member_id) || generation > group.generation {
            if let Some((instance, _)) = group.fenced.iter().find(|(_, old)| *old == member_id) {
                return Err(fenced_error(group_id, member_id, instance));
            }
            return Err(Error::IllegalGeneration {
                group: group_id.to_owned(),
                generation,
                current: group.generation,
            });
        }
        Ok(group)
    }

    /// Removes members and rebalances the rest (once).
    fn remove_members(&mut self, group_id: &str, member_ids: &[&str]) {
        let group = self.groups.get_mut(group_id).expect("caller found it");
        for id in member_ids {
            let member = group.members.remove(*id).expect("caller found it");
            if let Some(instance) = &member.instance_id {
                group.fenced.remove(instance);
            }
        }
        if group.members.is_empty() {
            // An empty group may start over with another assignor, as Kafka's.
            group.assignor = AssignorKind::default();
            group.generation = group.generation.wrapping_add(1);
            self.drop_if_empty(group_id);
        } else {
            group.rebalance(&self.topics);
        }
    }

    /// Forgets a group that has neither members nor offsets.
    fn drop_if_empty(&mut self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            if g.members.is_empty() && g.offsets.is_empty() {
                self.groups.remove(group_id);
            }
        }
    }
}

/// Refuses a join whose assignor differs from the group's, unless `member_id` is
/// the group's only member (it may switch).
fn check_assignor(
    group_id: &str,
    group: &Group,
    asked: AssignorKind,
    member_id: Option<&str>,
) -> Result<()> {
    let others = group
        .members
        .keys()
        .filter(|id| Some(id.as_str()) != member_id)
        .count();
    if others > 0 && asked != group.assignor {
        return Err(Error::InvalidConfig {
            name: "partition.assignment.strategy",
            reason: format!(
                "group `{group_id}` uses `{}` but this member asks for `{}`: configure every member of a group with the same assignor",
                group.assignor.name(),
                asked.name()
            ),
        });
    }
    Ok(())
}

/// The error a replaced static member gets (Kafka's `FENCED_INSTANCE_ID`).
fn fenced_error(group_id: &str, member_id: &str, instance_id: &str) -> Error {
    Error::Usage(format!(
        "group `{group_id}`: member `{member_id}` was replaced by a newer member with group.instance.id `{instance_id}`; two consumers share that id: give each consumer its own group.instance.id"
    ))
}

/// Checks a `group.id`.
fn validate_group_id(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(Error::InvalidConfig {
            name: "group.id",
            reason: "must not be empty".into(),
        });
    }
    validate_name_len("group.id", group)
}

/// Names are stored with a `u16` length in `__consumer_offsets`.
fn validate_name_len(name: &'static str, value: &str) -> Result<()> {
    if value.len() > usize::from(u16::MAX) {
        return Err(Error::InvalidConfig {
            name,
            reason: format!(
                "{} bytes is longer than the 65535 bytes __consumer_offsets can store: use a shorter name",
                value.len()
            ),
        });
    }
    Ok(())
}
