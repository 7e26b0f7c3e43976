//! loom models of the inbox's sleep and wake-up (`cfg(loom)` only; see `crate::sync`
//! for how to run them).

mod loom_parker;
