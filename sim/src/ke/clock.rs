//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls nothing of the
//! simulator.
//!
//! The clock tick: timers expire on clock interrupts. "The system time is updated on every tick
//! of the system clock, and is accurate only to the latest tick ... If a timer interval, or
//! relative expiration time, is instead specified, the expiration can occur up to a period
//! earlier than or a period later than the specified time" ("Timer Accuracy", Microsoft's kernel
//! documentation): the interval is added to the system time of the last tick, and the timer
//! expires at the first tick after that. The tick is 15.625 ms by default (64 Hz), 1 ms while
//! some process has raised the timer resolution (timeBeginPeriod). So an idle thread's timed
//! waits cost a wake-up per tick at least, and a latency bound that relies on a timeout is a
//! tick, here as there.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The default tick: 64 interrupts a second.
pub const DEFAULT_TICK: Duration = Duration::from_micros(15_625);
/// The tick while some process has raised the timer resolution to its finest.
pub const FINE_TICK: Duration = Duration::from_millis(1);

/// The tick set with [`set_tick`], in nanoseconds; 0 until set.
static TICK_NANOS: AtomicU64 = AtomicU64::new(0);

/// When the simulated clock started ticking.
fn boot() -> Instant {
    static BOOT: OnceLock<Instant> = OnceLock::new();
    *BOOT.get_or_init(Instant::now)
}

/// The clock tick now: the one [`set_tick`] set, else `OXTUN_SIM_TICK_US` (microseconds) if the
/// environment has it, else [`DEFAULT_TICK`].
pub fn tick() -> Duration {
    match TICK_NANOS.load(Ordering::Relaxed) {
        0 => std::env::var("OXTUN_SIM_TICK_US")
            .ok()
            .and_then(|value| value.parse().ok())
            .filter(|&micros| micros > 0)
            .map_or(DEFAULT_TICK, Duration::from_micros),
        nanos => Duration::from_nanos(nanos),
    }
}

/// Sets the clock tick, as a process raising (or restoring) the timer resolution does.
pub fn set_tick(tick: Duration) {
    TICK_NANOS.store(tick.as_nanos().max(1) as u64, Ordering::Relaxed);
}

/// When a relative timeout of `interval`, started now, expires: the system time of the last
/// tick, plus `interval`, rounded up to the next tick.
pub fn expiry(interval: Duration) -> Instant {
    let tick = tick().as_nanos();
    let now = Instant::now().saturating_duration_since(boot()).as_nanos();
    let system_time = now / tick * tick;
    let due = system_time + interval.as_nanos();
    boot() + Duration::from_nanos((due.div_ceil(tick) * tick) as u64)
}
