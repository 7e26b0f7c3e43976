//! loom models of the producer's cross-thread hand-offs (`cfg(loom)` only; see
//! `crate::sync` for how to run them).

mod loom_answers;
mod loom_delivery;
mod loom_handoff;
