//! A broker for unit tests: driven by calling its handlers, not by its thread.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::{Broker, BrokerConfig, BrokerShared};
use crate::clock::Clock;
use crate::cluster::notify::Notify;
use crate::cluster::MetadataCell;
use crate::config::FsyncPolicy;
use crate::controller::MetadataImage;
use crate::ids::BrokerId;
use crate::transport::Transport;

/// How long a replica fetch may wait at the leader for news.
pub(super) const FETCH_WAIT_MAX: Duration = Duration::from_millis(500);

/// Broker `id` on a virtual clock, with a data dir in `dir` (memory storage
/// without), sending through `net`; it hosts nothing yet.
pub(super) fn broker(id: BrokerId, dir: Option<&Path>, net: Arc<dyn Transport>) -> Broker {
    let config = BrokerConfig {
        id,
        rack: None,
        dir: dir.map(Path::to_path_buf),
        replica_lag_time_max: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(1),
        replica_fetch_wait_max: FETCH_WAIT_MAX,
        replica_fetch_max_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
        restarted: false,
    };
    let (_tx, rx) = crate::inbox::inbox();
    let metadata = MetadataCell::new(MetadataImage::default(), Arc::new(Notify::default()));
    Broker::new(
        config,
        Clock::virtual_clock(),
        rx,
        net,
        Arc::new(AtomicBool::new(false)),
        Arc::new(BrokerShared::default()),
        Arc::new(metadata),
        1,
    )
    .expect("broker")
}
