//! The fault schedule of a run, drawn from its seed: brokers killed and restarted
//! (with their storage, torn or with a flipped byte, or without it), isolated and
//! healed, links cut, drop storms; and the storage damage done at a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ids::{BrokerId, NodeId};

use super::rng::Rng;

/// A kind of injected fault, for the counts a run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A broker process killed (no flush, no handover).
    Kill,
    /// A killed broker restarted with its segment files intact.
    RestartWithStorage,
    /// A killed broker restarted without its data (memory storage).
    RestartWithoutStorage,
    /// A killed broker restarted after the tail of a segment file was cut.
    TornTail,
    /// A killed broker restarted after one byte of a segment file was flipped.
    FlippedByte,
    /// A broker cut off from every other broker and the controller, then healed.
    Isolate,
    /// One link between two nodes cut both ways, then mended.
    CutLink,
    /// A period in which most messages are dropped.
    Storm,
    /// One message dropped.
    Drop,
    /// One message delivered twice.
    Duplicate,
    /// One message held back for a long delay.
    Delay,
    /// One message delivered before one sent earlier on the same link.
    Reorder,
    /// A data-losing fault replaced by a harmless one because no other in-sync
    /// replica held the data (losing every copy is outside the guarantee).
    Guarded,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Kill,
        FaultKind::RestartWithStorage,
        FaultKind::RestartWithoutStorage,
        FaultKind::TornTail,
        FaultKind::FlippedByte,
        FaultKind::Isolate,
        FaultKind::CutLink,
        FaultKind::Storm,
        FaultKind::Drop,
        FaultKind::Duplicate,
        FaultKind::Delay,
        FaultKind::Reorder,
        FaultKind::Guarded,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::RestartWithStorage => "restart-with-storage",
            FaultKind::RestartWithoutStorage => "restart-without-storage",
            FaultKind::TornTail => "torn-tail",
            FaultKind::FlippedByte => "flipped-byte",
            FaultKind::Isolate => "isolate",
            FaultKind::CutLink => "cut-link",
            FaultKind::Storm => "drop-storm",
            FaultKind::Drop => "msg-drop",
            FaultKind::Duplicate => "msg-duplicate",
            FaultKind::Delay => "msg-delay",
            FaultKind::Reorder => "msg-reorder",
            FaultKind::Guarded => "guarded",
        }
    }
}

/// How many faults of each kind a run (or a soak) injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    counts: BTreeMap<FaultKind, u64>,
}

impl FaultCounts {
    /// Counts one fault.
    pub(crate) fn add(&mut self, kind: FaultKind) {
        *self.counts.entry(kind).or_default() += 1;
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &FaultCounts) {
        for (k, n) in &other.counts {
            *self.counts.entry(*k).or_default() += n;
        }
    }

    /// The count of one kind.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    /// Every fault injected (guarded replacements not counted twice).
    pub fn total(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| **k != FaultKind::Guarded)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for k in FaultKind::ALL {
            let n = self.get(k);
            if n == 0 {
                continue;
            }
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{} {n}", k.name())?;
        }
        if first {
            write!(f, "none")?;
        }
        Ok(())
    }
}

/// What a restart does to the broker's segment files first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    None,
    TornTail,
    FlippedByte,
}

/// One scheduled fault action.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Action {
    Kill(BrokerId),
    Restart(BrokerId, Damage),
    Isolate(BrokerId),
    Rejoin(BrokerId),
    Cut(NodeId, NodeId),
    Mend(NodeId, NodeId),
    Storm { drop: f64, length: Duration },
}

/// Draws the node-level fault schedule for the first `phase` of a run: a fault every
/// `0.3..=gap_ms` on average, each undone after a while (a killed broker restarts, an
/// isolated one rejoins, a cut link mends).
pub(crate) fn schedule(
    rng: &mut Rng,
    brokers: &[BrokerId],
    phase: Duration,
    gap_ms: u64,
) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let mut t = Duration::from_millis(500);
    loop {
        t += rng.millis(300, gap_ms.max(301));
        if t >= phase {
            break;
        }
        let b = rng.pick(brokers);
        match rng.below(100) {
            0..=44 => {
                out.push((t, Action::Kill(b)));
                let down = rng.millis(50, 4_000);
                let damage = match rng.below(4) {
                    0 => Damage::TornTail,
                    1 => Damage::FlippedByte,
                    _ => Damage::None,
                };
                out.push((t + down, Action::Restart(b, damage)));
            }
            45..=64 => {
                out.push((t, Action::Isolate(b)));
                out.push((t + rng.millis(200, 4_000), Action::Rejoin(b)));
            }
            65..=89 => {
                let nodes: Vec<NodeId> = brokers
                    .iter()
                    .map(|b| NodeId::Broker(*b))
                    .chain([NodeId::Controller])
                    .collect();
                let a = rng.pick(&nodes);
                let mut c = rng.pick(&nodes);
                while c == a {
                    c = rng.pick(&nodes);
                }
                out.push((t, Action::Cut(a, c)));
                out.push((t + rng.millis(100, 3_000), Action::Mend(a, c)));
            }
            _ => {
                let drop = rng.pick(&[0.3, 0.6, 0.9]);
                let length = rng.millis(100, 2_000);
                out.push((t, Action::Storm { drop, length }));
            }
        }
    }
    // Stable by time: equal times keep draw order.
    out.sort_by_key(|(t, _)| *t);
    out
}

/// The segment file a storage fault hits: the newest `.log` of one partition
/// directory under `broker_dir` (the active segment, which recovery scans whole), or
/// with `any_segment` any of them.
fn target_segment(
    broker_dir: &Path,
    rng: &mut Rng,
    any_segment: bool,
) -> io::Result<Option<PathBuf>> {
    let mut parts: Vec<PathBuf> = match fs::read_dir(broker_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parts.sort();
    if parts.is_empty() {
        return Ok(None);
    }
    let part = parts[rng.below(parts.len() as u64) as usize].clone();
    let mut logs: Vec<PathBuf> = fs::read_dir(&part)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    if any_segment && !logs.is_empty() {
        let i = rng.below(logs.len() as u64) as usize;
        return Ok(Some(logs.swap_remove(i)));
    }
    Ok(logs.pop())
}

/// Cuts 1..=300 bytes off the end of a segment file (a write that never reached the
/// disk whole). Returns whether a file was cut.
pub(crate) fn tear_tail(broker_dir: &Path, rng: &mut Rng) -> io::Result<bool> {
    let Some(path) = target_segment(broker_dir, rng, false)? else {
        return Ok(false);
    };
    let len = fs::metadata(&path)?.len();
    if len == 0 {
        return Ok(false);
    }
    let cut = rng.range(1, len.min(300));
    let file = fs::OpenOptions::new().write(true).open(&path)?;
    file.set_len(len - cut)?;
    Ok(true)
}

/// Flips one byte inside the CRC-covered part of one batch of the active segment
/// file (the CRC must catch it; recovery cuts the log there), or with `any_segment`
/// of any segment file. Returns whether a byte flipped.
pub(crate) fn flip_byte(broker_dir: &Path, rng: &mut Rng, any_segment: bool) -> io::Result<bool> {
    /// Bytes before the CRC-covered part of a frame (docs/FORMAT.md, 1.1).
    const CRC_START: u64 = 20;
    let Some(path) = target_segment(broker_dir, rng, any_segment)? else {
        return Ok(false);
    };
    let mut bytes = fs::read(&path)?;
    let len = bytes.len() as u64;
    let mut frames = Vec::new();
    let mut pos = 0u64;
    while pos + 12 <= len {
        let at = pos as usize;
        let length = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        let frame = 12 + u64::from(length);
        if pos + frame > len || frame <= CRC_START {
            break;
        }
        frames.push((pos, frame));
        pos += frame;
    }
    if frames.is_empty() {
        return Ok(false);
    }
    let (start, frame) = frames[rng.below(frames.len() as u64) as usize];
    let at = (start + rng.range(CRC_START, frame - 1)) as usize;
    bytes[at] ^= rng.range(1, 255) as u8;
    fs::write(&path, &bytes)?;
    Ok(true)
}
