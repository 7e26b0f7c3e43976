//! Behaviour tests of the storage engine, inside the crate because `Log` and `Batch`
//! are crate-private. Named after what they prove.

mod append_all;
mod behaviour;
mod crash;
mod model;
pub(crate) mod support;
