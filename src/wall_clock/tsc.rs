//! The TSC-backed clock. Its shared state is two process-wide statics touched
//! once per thread per millisecond at most, outside every loom model, so it uses
//! `std`'s atomics and `parking_lot` directly rather than `crate::sync`.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{system_ns, NS_PER_MS};

/// Ticks per millisecond with the margin taken off; [`UNKNOWN`] while being
/// measured, [`UNUSABLE`] where the TSC cannot be trusted.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(UNKNOWN);
const UNKNOWN: u64 = 0;
const UNUSABLE: u64 = 1;

/// The first sample of the rate measurement in progress.
static FIRST: Mutex<Option<Sample>> = parking_lot::const_mutex(None);

thread_local! {
    static ANCHOR: Cell<Anchor> = const { Cell::new(Anchor::NONE) };
}

#[inline]
pub(super) fn now_ms() -> u64 {
    let tsc = rdtsc();
    match ANCHOR.with(|a| a.get().at(tsc)) {
        Some(ms) => ms,
        None => refresh(),
    }
}

/// Reads the system clock, and anchors this thread's next calls to it once the
/// TSC rate is known.
#[cold]
fn refresh() -> u64 {
    let ticks_per_ms = TICKS_PER_MS.load(Ordering::Relaxed);
    if ticks_per_ms == UNUSABLE {
        return system_ns() / NS_PER_MS;
    }
    let sample = Sample {
        before: rdtsc(),
        ns: system_ns(),
        after: rdtsc(),
    };
    if ticks_per_ms == UNKNOWN {
        measure(sample);
    } else {
        ANCHOR.with(|a| a.set(Anchor::new(sample, ticks_per_ms)));
    }
    sample.ns / NS_PER_MS
}

/// Feeds `sample` to the rate measurement.
fn measure(sample: Sample) {
    let mut first = FIRST.lock();
    let Some(start) = *first else {
        // Asked once: in a virtual machine `cpuid` traps to the hypervisor and
        // takes microseconds.
        if invariant_tsc() {
            *first = Some(sample);
        } else {
            TICKS_PER_MS.store(UNUSABLE, Ordering::Relaxed);
        }
        return;
    };
    match calibrate(start, sample) {
        Calibration::Wait => {}
        Calibration::Restart => *first = Some(sample),
        Calibration::TicksPerMs(per_ms) => {
            TICKS_PER_MS.store(per_ms.max(UNUSABLE + 1), Ordering::Relaxed);
        }
    }
}

/// Whether the TSC ticks at a constant rate through frequency and power-state
/// changes (CPUID leaf 0x8000_0007, EDX bit 8), as the rate measurement assumes.
fn invariant_tsc() -> bool {
    use std::arch::x86_64::__cpuid;
    // SAFETY: `cpuid` exists on every x86_64 CPU and touches no memory; leaf
    // 0x8000_0000 says which extended leaves exist before 0x8000_0007 is read.
    #[allow(unused_unsafe)] // `__cpuid` is a safe function in newer compilers.
    let max = unsafe { __cpuid(0x8000_0000) }.eax;
    // SAFETY: as above.
    #[allow(unused_unsafe)]
    let leaf = unsafe { __cpuid(0x8000_0007) };
    max >= 0x8000_0007 && leaf.edx & (1 << 8) != 0
}

#[inline]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the time-stamp
    // counter.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
}

/// How far apart the two system-clock reads that measure the TSC rate must be: long
/// enough that the time one read takes is a negligible part of the window.
const CALIBRATION_WINDOW_NS: u64 = 20 * NS_PER_MS;

/// One read of the system clock between two TSC reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    before: u64,
    ns: u64,
    after: u64,
}

/// What a new sample makes of the rate measurement that started at `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Calibration {
    /// Not far enough apart yet: keep `first`.
    Wait,
    /// The window cannot be trusted (a read was interrupted, the clock stepped): start
    /// again from the new sample.
    Restart,
    /// TSC ticks per millisecond, already lowered by the 1% margin.
    TicksPerMs(u64),
}

/// Measures the TSC rate between two samples. The rate is taken from the fewest
/// ticks the window can have held (from `first.after` to `now.before`), then lowered
/// by 1%, so that a millisecond computed with it always ends early. A window whose
/// two samples each took more than 0.1% of it (a read interrupted by the scheduler)
/// or in which the system clock moved more than a second (stepped) is not used.
fn calibrate(first: Sample, now: Sample) -> Calibration {
    let Some(ns) = now.ns.checked_sub(first.ns) else {
        return Calibration::Restart;
    };
    if ns < CALIBRATION_WINDOW_NS {
        return Calibration::Wait;
    }
    let (Some(fewest), Some(most)) = (
        now.before.checked_sub(first.after),
        now.after.checked_sub(first.before),
    ) else {
        return Calibration::Restart;
    };
    if ns > 1_000 * NS_PER_MS || fewest == 0 || most - fewest > fewest / 1_000 {
        return Calibration::Restart;
    }
    let per_ms = u128::from(fewest) * u128::from(NS_PER_MS) * 99 / (u128::from(ns) * 100);
    match u64::try_from(per_ms) {
        Ok(per_ms) if per_ms > 0 => Calibration::TicksPerMs(per_ms),
        _ => Calibration::Restart,
    }
}

/// A millisecond one thread read from the system clock, and the TSC span in which
/// it still holds: from the TSC read before the clock read (calls on this thread
/// come later) to `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    ms: u64,
    from: u64,
    until: u64,
}

impl Anchor {
    /// No millisecond: every TSC count misses it.
    const NONE: Anchor = Anchor {
        ms: 0,
        from: u64::MAX,
        until: 0,
    };

    /// The millisecond of `sample`, held until the TSC has moved by what is left of
    /// it at `ticks_per_ms`. Counted from `before`, which precedes the clock read, so
    /// `until` falls at or before the end of the millisecond.
    fn new(sample: Sample, ticks_per_ms: u64) -> Anchor {
        let left_ns = NS_PER_MS - sample.ns % NS_PER_MS;
        let left_ticks = u128::from(left_ns) * u128::from(ticks_per_ms) / u128::from(NS_PER_MS);
        Anchor {
            ms: sample.ns / NS_PER_MS,
            from: sample.before,
            until: sample
                .before
                .saturating_add(u64::try_from(left_ticks).unwrap_or(u64::MAX)),
        }
    }

    /// The millisecond, if TSC count `tsc` falls in its span.
    #[inline]
    fn at(&self, tsc: u64) -> Option<u64> {
        (tsc >= self.from && tsc < self.until).then_some(self.ms)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const RATE: u64 = 3_000_000; // a 3 GHz TSC, in ticks per ms

    /// A sample at `ns` on a TSC running at `RATE` that started at the epoch, whose
    /// read took `span` ticks.
    fn sample(ns: u64, span: u64) -> Sample {
        let tsc = ns * RATE / NS_PER_MS;
        Sample {
            before: tsc,
            ns,
            after: tsc + span,
        }
    }

    #[test]
    fn calibration_waits_until_the_window_is_long_enough() {
        let first = sample(5 * NS_PER_MS, 60);
        let early = sample(5 * NS_PER_MS + CALIBRATION_WINDOW_NS - 1, 60);
        assert_eq!(calibrate(first, early), Calibration::Wait);
    }

    #[test]
    fn calibration_lands_just_under_the_true_rate() {
        let first = sample(5 * NS_PER_MS, 60);
        let later = sample(5 * NS_PER_MS + CALIBRATION_WINDOW_NS, 60);
        let Calibration::TicksPerMs(per_ms) = calibrate(first, later) else {
            panic!("a clean 20 ms window calibrates");
        };
        assert!(per_ms < RATE, "{per_ms} must be below the true {RATE}");
        assert!(per_ms > RATE * 98 / 100, "{per_ms} is more than 2% low");
    }

    #[test]
    fn calibration_restarts_after_an_interrupted_read_or_a_clock_step() {
        let first = sample(5 * NS_PER_MS, 60);
        // The second read took 1 ms: preempted between the TSC and the clock.
        let interrupted = sample(30 * NS_PER_MS, RATE);
        assert_eq!(calibrate(first, interrupted), Calibration::Restart);
        // The system clock went back.
        let back = Sample {
            ns: NS_PER_MS,
            ..sample(30 * NS_PER_MS, 60)
        };
        assert_eq!(calibrate(first, back), Calibration::Restart);
        // The system clock jumped an hour ahead while the TSC moved 25 ms.
        let jump = Sample {
            ns: 3_600_000 * NS_PER_MS,
            ..sample(30 * NS_PER_MS, 60)
        };
        assert_eq!(calibrate(first, jump), Calibration::Restart);
        // The TSC went back (another core, a resumed machine).
        let tsc_back = Sample {
            before: 0,
            after: 60,
            ..sample(30 * NS_PER_MS, 60)
        };
        assert_eq!(calibrate(first, tsc_back), Calibration::Restart);
    }

    #[test]
    fn an_anchor_ends_no_later_than_its_millisecond() {
        for offset in [0, 1, 999_999, 500_000, 123_456] {
            let s = sample(7 * NS_PER_MS + offset, 60);
            let a = Anchor::new(s, RATE * 99 / 100);
            assert_eq!(a.at(s.before), Some(7));
            // The TSC count at which millisecond 8 begins.
            let next = 8 * RATE;
            assert!(a.until <= next, "offset {offset}: {} > {next}", a.until);
            assert_eq!(a.at(next), None);
            // Earlier than the read it came from: not this anchor's business.
            assert_eq!(a.at(s.before - 1), None);
        }
        assert_eq!(Anchor::NONE.at(0), None);
        assert_eq!(Anchor::NONE.at(u64::MAX), None);
    }
}
