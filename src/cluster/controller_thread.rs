//! The controller thread: feeds the controller core, persists what it decides, then
//! sends it, and publishes the metadata image for handles and clients.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use parking_lot::RwLock;

use crate::clock::Clock;
use crate::controller::{Controller, ControllerOutput, MetadataImage, MetadataLog};
use crate::ids::{BrokerId, NodeId};
use crate::inbox::InboxReceiver;
use crate::protocol::{self, AlterPartitionError, ClientRequest, Envelope, Inbound, Message};
use crate::transport::Transport;
use crate::Result;

use super::notify::Notify;

/// The published image and who to wake when it changes.
#[derive(Debug)]
pub(crate) struct MetadataCell {
    image: RwLock<Arc<MetadataImage>>,
    /// Bumped after every new image: a reader that cached something of an image
    /// checks it with one atomic load instead of taking the lock.
    version: AtomicU64,
    pub(crate) notify: Arc<Notify>,
}

impl MetadataCell {
    pub(crate) fn new(image: MetadataImage, notify: Arc<Notify>) -> Self {
        MetadataCell {
            image: RwLock::new(Arc::new(image)),
            version: AtomicU64::new(0),
            notify,
        }
    }

    /// The current image (a cheap snapshot).
    pub(crate) fn get(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Reads the current image in place: no snapshot, so no write to the shared
    /// reference count (hot paths, such as every `send`).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&MetadataImage) -> R) -> R {
        f(&self.image.read())
    }

    /// The image's version: read it *before* reading the image, so that what is
    /// cached under it is never newer than the version it is cached under.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn set(&self, image: MetadataImage) {
        *self.image.write() = Arc::new(image);
        self.version.fetch_add(1, Ordering::Release);
        self.notify.bump();
    }
}

pub(crate) struct ControllerThread {
    pub(crate) core: Controller,
    pub(crate) inbox: InboxReceiver<Inbound>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) metadata: Arc<MetadataCell>,
    pub(crate) log: Option<MetadataLog>,
    pub(crate) clock: Clock,
    /// Whether metadata records are fsynced before they are acted on (any policy
    /// but `FsyncPolicy::Never`: metadata changes are rare).
    pub(crate) sync_metadata: bool,
}

impl std::fmt::Debug for ControllerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerThread").finish_non_exhaustive()
    }
}

impl ControllerThread {
    fn now(&self) -> Duration {
        self.clock.now()
    }

    pub(crate) fn run(mut self) {
        self.publish();
        loop {
            let now = self.now();
            let timeout = self
                .core
                .next_deadline()
                .map_or(Duration::from_millis(100), |d| d.saturating_sub(now));
            match self.inbox.recv_timeout(timeout) {
                Ok(m) => {
                    if !self.step(m) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick_due();
        }
    }

    /// Publishes the current image.
    pub(crate) fn publish(&self) {
        self.metadata.set(self.core.image().clone());
    }

    /// Publishes the current image if it differs from the published one. Only a
    /// change is worth a new version: each wakes every watcher (each producer's
    /// sender thread), and most steps (a heartbeat and its reply) change nothing.
    fn publish_if_changed(&self) {
        if !self
            .metadata
            .with(|published| published == self.core.image())
        {
            self.publish();
        }
    }

    /// Handles one inbox message; false stops the controller.
    pub(crate) fn step(&mut self, m: Inbound) -> bool {
        match m {
            Inbound::Stop { .. } => return false,
            Inbound::Peer(env) => self.peer(env),
            Inbound::Client(req) => self.client(req),
        }
        true
    }

    /// Runs the core's timers (session timeouts, leader rebalance) if due.
    pub(crate) fn tick_due(&mut self) {
        let now = self.now();
        if self.core.next_deadline().is_some_and(|d| d <= now) {
            let out = self.core.tick(now);
            let _ = self.apply(out);
        }
    }

    /// Persists, then publishes, then sends. A record that cannot be persisted stops
    /// the controller from acting on it.
    fn apply(&mut self, out: ControllerOutput) -> Result<()> {
        if let Some(log) = &mut self.log {
            if !out.records.is_empty() {
                log.append(&out.records)?;
                if self.sync_metadata {
                    log.sync()?;
                }
            }
        }
        // Published before it is sent: whoever acts on a message (a leader
        // completing acks after an ISR change) finds the image already saying so.
        self.publish_if_changed();
        for (to, message) in out.messages {
            self.send(to, message);
        }
        Ok(())
    }

    fn send(&self, to: BrokerId, message: Message) {
        self.transport.send(Envelope::new(
            NodeId::Controller,
            NodeId::Broker(to),
            message,
        ));
    }

    fn peer(&mut self, env: Envelope) {
        let NodeId::Broker(from) = env.from else {
            return;
        };
        let now = self.now();
        let resync = match &env.message {
            // A LeaderAndIsr or StopReplica may have been lost: when the broker's
            // view differs, send its whole state again.
            Message::Heartbeat { state_digest, .. } => {
                // Digested in place: the states are cloned only to be sent.
                let mine = protocol::state_digest(self.core.hosted_states(from));
                (mine != *state_digest)
                    .then(|| (self.core.states_of(from), self.core.topics_created()))
            }
            _ => None,
        };
        let alter_tp = match &env.message {
            Message::AlterPartition { tp, .. } => Some(tp.clone()),
            _ => None,
        };
        let out = self.core.handle(from, env.message, now);
        // A refused AlterPartition from a leader whose view is stale: tell it the
        // current state (its earlier answer may have been lost).
        let stale_leader = out.messages.iter().any(|(_, m)| {
            matches!(
                m,
                Message::AlterPartitionReply {
                    result: Err(AlterPartitionError::InvalidUpdateVersion),
                    ..
                }
            )
        });
        let registered = out.messages.iter().any(|(_, m)| {
            matches!(
                m,
                Message::Registered { .. } | Message::HeartbeatReply { fenced: false, .. }
            )
        });
        let _ = self.apply(out);
        if stale_leader {
            if let Some(tp) = alter_tp {
                if let Some(state) = self.core.hosted_state(from, &tp).cloned() {
                    let m = Message::LeaderAndIsr {
                        partitions: vec![state],
                        complete_as_of: None,
                    };
                    self.send(from, m);
                }
            }
        }
        // Complete, even when empty: the broker's view may differ by a replica it
        // should no longer hold (a deleted topic's, its StopReplica lost).
        if let Some((states, created)) = resync {
            if registered {
                let m = Message::LeaderAndIsr {
                    partitions: states,
                    complete_as_of: Some(created),
                };
                self.send(from, m);
            }
        }
    }

    fn client(&mut self, req: ClientRequest) {
        let now = self.now();
        match req {
            ClientRequest::CreateTopic {
                name,
                config,
                reply,
            } => {
                let result = self
                    .core
                    .create_topic(&name, config, now)
                    .and_then(|out| self.apply(out));
                let _ = reply.send(result);
            }
            ClientRequest::DeleteTopic { name, reply } => {
                let result = self
                    .core
                    .delete_topic(&name, now)
                    .and_then(|out| self.apply(out));
                let _ = reply.send(result);
            }
            ClientRequest::ElectPreferredLeaders { reply } => {
                let out = self.core.elect_preferred_leaders(now);
                let _ = self.apply(out);
                let _ = reply.send(());
            }
            ClientRequest::AllocateProducerId { reply } => {
                let (id, out) = self.core.allocate_producer_id();
                let _ = self.apply(out);
                let _ = reply.send(id);
            }
            ClientRequest::BrokerStopped(b) => {
                let out = self.core.broker_stopped(b, now);
                let _ = self.apply(out);
                // Liveness changed even when no partition did, and even when the
                // apply stopped short.
                self.publish_if_changed();
            }
            ClientRequest::Produce(_)
            | ClientRequest::Fetch(_)
            | ClientRequest::ListOffsets { .. }
            | ClientRequest::Group(_) => {}
        }
    }
}
