//! Follower fetch sessions: one request in flight per leader broker, covering every
//! partition this broker follows there (as Kafka's replica fetcher threads).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ids::BrokerId;
use crate::protocol::FetchPartition;

use super::replica::Role;
use super::ReplicaMap;

/// A fetch with no answer after `max wait + FETCH_TIMEOUT_SLACK` is sent again (the
/// request or its answer may have been lost on the transport).
const FETCH_TIMEOUT_SLACK: Duration = Duration::from_millis(500);
/// Pause after an error answer (stale epoch, not leader) before fetching again.
const BACKOFF: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Session {
    in_flight: Option<(u64, Duration)>,
    backoff_until: Duration,
    /// The slots of the replicas that follow this leader, in partition order.
    members: Vec<usize>,
    /// The slot of each partition of the last fetch sent, by its place in it.
    sent: Vec<usize>,
}

/// All fetch sessions of one broker.
#[derive(Debug)]
pub(crate) struct Fetchers {
    sessions: BTreeMap<BrokerId, Session>,
    next_request: u64,
    wait_max: Duration,
    /// The replicas' generation the sessions' members were found at.
    members_of: Option<u64>,
}

impl Fetchers {
    pub(crate) fn new(wait_max: Duration) -> Self {
        Fetchers {
            sessions: BTreeMap::new(),
            next_request: 1,
            wait_max,
            members_of: None,
        }
    }

    /// Keeps a session for exactly the leaders some local follower fetches from.
    pub(crate) fn refresh(&mut self, replicas: &ReplicaMap) {
        let mut leaders: Vec<BrokerId> = replicas
            .values()
            .filter_map(|r| match r.role {
                Role::Follower { leader } => leader,
                _ => None,
            })
            .collect();
        leaders.sort();
        leaders.dedup();
        self.sessions.retain(|b, _| leaders.contains(b));
        for l in leaders {
            self.sessions.entry(l).or_default();
        }
        self.find_members(replicas);
    }

    /// Which replicas follow each session's leader: roles change only with a
    /// partition state, after which [`refresh`](Self::refresh) runs; slots, only
    /// when a replica comes or goes, which the generation tells.
    fn find_members(&mut self, replicas: &ReplicaMap) {
        for s in self.sessions.values_mut() {
            s.members.clear();
        }
        for (slot, r) in replicas.slots_in_order() {
            if let Role::Follower { leader: Some(l) } = r.role {
                if let Some(s) = self.sessions.get_mut(&l) {
                    s.members.push(slot);
                }
            }
        }
        self.members_of = Some(replicas.generation());
    }

    /// The fetches to send now: (leader, request id, partitions).
    pub(crate) fn due(
        &mut self,
        replicas: &ReplicaMap,
        now: Duration,
    ) -> Vec<(BrokerId, u64, Vec<FetchPartition>)> {
        let mut out = Vec::new();
        let timeout = self.wait_max + FETCH_TIMEOUT_SLACK;
        if self.members_of != Some(replicas.generation()) {
            self.find_members(replicas);
        }
        for (&leader, s) in self.sessions.iter_mut() {
            let idle = match s.in_flight {
                None => now >= s.backoff_until,
                Some((_, sent)) => now >= sent + timeout,
            };
            if !idle {
                continue;
            }
            // Sized up front: with many partitions, a fetch names hundreds.
            let mut partitions = Vec::with_capacity(s.members.len());
            s.sent.clear();
            partitions.extend(
                s.members
                    .iter()
                    .map(|&slot| (slot, replicas.in_slot(slot)))
                    .filter(|(_, r)| {
                        matches!(r.role, Role::Follower { leader: Some(l) } if l == leader)
                    })
                    .filter_map(|(slot, r)| {
                        let st = r.state.as_ref()?;
                        s.sent.push(slot);
                        Some(FetchPartition {
                            tp: r.name.clone(),
                            fetch_offset: r.log.log_end_offset(),
                            leader_epoch: st.leader_epoch,
                            topic_id: st.topic_id,
                            last_fetched_epoch: r.log.latest_epoch(),
                            high_watermark: r.high_watermark(),
                            log_start: r.log.log_start_offset(),
                        })
                    }),
            );
            #[cfg(any(debug_assertions, feature = "sim"))]
            assert_eq!(
                partitions.len(),
                replicas
                    .values()
                    .filter(|r| r.state.is_some()
                        && matches!(r.role, Role::Follower { leader: Some(l) } if l == leader))
                    .count(),
                "every follower of {leader:?} is among its session's members"
            );
            if partitions.is_empty() {
                // Nothing to fetch yet (no state): look again later, not in a spin.
                s.backoff_until = now + FETCH_TIMEOUT_SLACK;
                continue;
            }
            let id = self.next_request;
            self.next_request += 1;
            s.in_flight = Some((id, now));
            out.push((leader, id, partitions));
        }
        out
    }

    /// Where the `index`th partition of the last fetch sent to `leader` was: the
    /// slot its replica had then (which may hold another by now).
    pub(crate) fn sent_slot(&self, leader: BrokerId, index: u32) -> Option<usize> {
        let s = self.sessions.get(&leader)?;
        s.sent.get(usize::try_from(index).ok()?).copied()
    }

    /// An answer arrived; true when it answers the request in flight (a duplicate or
    /// a late answer to an abandoned request is ignored).
    pub(crate) fn complete(&mut self, leader: BrokerId, request_id: u64) -> bool {
        match self.sessions.get_mut(&leader) {
            Some(s) if s.in_flight.is_some_and(|(id, _)| id == request_id) => {
                s.in_flight = None;
                true
            }
            _ => false,
        }
    }

    /// Fetch again at once (after truncating a divergent tail).
    pub(crate) fn retry_now(&mut self, leader: BrokerId) {
        if let Some(s) = self.sessions.get_mut(&leader) {
            s.backoff_until = Duration::ZERO;
        }
    }

    /// Wait a little before the next fetch from `leader`.
    pub(crate) fn back_off(&mut self, leader: BrokerId, now: Duration) {
        if let Some(s) = self.sessions.get_mut(&leader) {
            s.backoff_until = now + BACKOFF;
        }
    }

    /// When the next fetch may be due.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let timeout = self.wait_max + FETCH_TIMEOUT_SLACK;
        self.sessions
            .values()
            .map(|s| match s.in_flight {
                None => s.backoff_until,
                Some((_, sent)) => sent + timeout,
            })
            .min()
    }
}
