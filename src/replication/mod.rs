//! Replication rules as pure state machines: the leader's view of its followers
//! (ISR, high watermark, pending acks) and the idempotent-producer table. No threads,
//! no clock: the broker thread passes `now` in and acts on what comes out.

mod leader;
mod producer_state;

pub(crate) use leader::{AckOutcome, Leader, LeaderReady};
pub(crate) use producer_state::{ProducerStateTable, SequenceCheck};

#[cfg(test)]
mod tests;
