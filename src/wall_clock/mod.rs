//! Wall-clock milliseconds since the Unix epoch, for record timestamps
//! (`CreateTime`), read cheaply.
//!
//! `SystemTime::now()` is a vDSO `clock_gettime`: about 30 ns, a quarter of what a
//! `Producer::send` costs, and `send` reads it once per record as Kafka's producer
//! does. A timestamp has millisecond resolution, so on x86_64 with an invariant TSC
//! each thread reads the system clock once per millisecond and, in between, only the
//! TSC (about 9 ns) to see whether that millisecond can have ended.
//!
//! The result is never ahead of the system clock and never behind it by more than
//! the moment it takes to read: the cached millisecond is dropped at a TSC count
//! computed with a tick rate deliberately 1% below the measured one, so it ends early,
//! never late. The rate is measured from the process's own system-clock reads, two
//! at least 20 ms apart; until then, and wherever the TSC cannot be trusted (no
//! invariant TSC, not x86_64), every call reads the system clock.
//!
//! `tsc.rs` holds the crate's only `unsafe` code: the `rdtsc` and `cpuid`
//! instructions, which touch no memory.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as `SystemTime::now()` would give them.
#[inline]
pub(crate) fn now_ms() -> u64 {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        tsc::now_ms()
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    {
        system_ns() / NS_PER_MS
    }
}

const NS_PER_MS: u64 = 1_000_000;

/// The system clock in nanoseconds since the Unix epoch (0 before it).
fn system_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(all(target_arch = "x86_64", not(loom)))]
#[allow(unsafe_code)]
mod tsc;

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Instant;

    use super::*;

    // The real clock against the system clock for 100 ms: past the calibration and
    // across about 100 millisecond boundaries, every reading lies between the
    // system clock just before and just after it.
    #[test]
    fn now_ms_never_leaves_the_system_clock_it_stands_for() {
        let start = Instant::now();
        let mut reads = 0u64;
        while start.elapsed().as_millis() < 100 {
            let lo = system_ns() / NS_PER_MS;
            let ms = now_ms();
            let hi = system_ns() / NS_PER_MS;
            assert!(lo <= ms && ms <= hi, "{lo} <= {ms} <= {hi} fails");
            reads += 1;
        }
        assert!(reads > 1_000, "only {reads} reads in 100 ms");
    }
}
