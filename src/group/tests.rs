//! Tests of the group core, by concern.

mod assignors;
mod coordinator;
mod offsets;
