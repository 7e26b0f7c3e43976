//! Consumer groups: the group coordinator core and the partition assignors.
#![allow(dead_code)] // The broker and the Consumer wire this core in; until then nothing calls it.

mod assignor;
mod offsets;
mod sticky;
#[cfg(test)]
mod tests;
