//! A transport that injects faults.

/// Wraps a transport and injects faults.
#[derive(Debug)]
pub struct FaultTransport {}

/// Counts of injected faults.
#[derive(Debug, Clone, Default)]
pub struct FaultStats {}
