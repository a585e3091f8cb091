//! Layer: bookkeeping, beneath all. It calls nothing of the simulator.
//!
//! Fault injection: any allocation-like call can be made to fail, by site and call number.
//!
//! Every such call asks [`should_fail`] first and counts as one call of its site. A test counts
//! the calls of a scenario ([`calls`]), then replays it failing each one in turn
//! ([`fail_call`]), so a new call site is covered without anyone listing it. Calls the
//! simulated system makes for itself (the stack reading an indicated packet) are not the
//! driver's: they are neither counted nor failed.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A kind of call that can fail for want of resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    ExAllocatePool2,
    NdisAllocateNetBufferListPool,
    NdisAllocateNetBufferAndNetBufferList,
    NdisMSetMiniportAttributes,
    IoAllocateMdl,
    ProbeAndLockPages,
    MmMapLockedPagesSpecifyCache,
    PsCreateSystemThread,
    ObReferenceObjectByHandle,
}

#[derive(Default)]
struct Faults {
    calls: BTreeMap<Site, u64>,
    fail: Option<(Site, u64)>,
}

static FAULTS: Mutex<Faults> = Mutex::new(Faults {
    calls: BTreeMap::new(),
    fail: None,
});

thread_local! {
    static SYSTEM_CALLS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` as the simulated system's own: the calls it makes never fail and are not counted.
pub(crate) fn as_system<R>(work: impl FnOnce() -> R) -> R {
    let outer = SYSTEM_CALLS.replace(true);
    let result = work();
    SYSTEM_CALLS.set(outer);
    result
}

/// Counts a call of `site`; true if this is the call chosen to fail.
pub fn should_fail(site: Site) -> bool {
    if SYSTEM_CALLS.get() {
        return false;
    }
    let mut faults = FAULTS.lock().unwrap();
    let count = faults.calls.entry(site).or_default();
    *count += 1;
    let call = *count;
    faults.fail == Some((site, call))
}

/// Makes the `nth` call (from 1) of `site` after this fail, and restarts the counts.
pub fn fail_call(site: Site, nth: u64) {
    let mut faults = FAULTS.lock().unwrap();
    faults.calls.clear();
    faults.fail = Some((site, nth));
}

/// Stops failing calls and restarts the counts.
pub fn reset() {
    let mut faults = FAULTS.lock().unwrap();
    faults.calls.clear();
    faults.fail = None;
}

/// Calls of each site since the last [`reset`] or [`fail_call`].
pub fn calls() -> BTreeMap<Site, u64> {
    FAULTS.lock().unwrap().calls.clone()
}
