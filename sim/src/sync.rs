//! Spin locks (the lock word lives in the driver's memory, as in the kernel) and executive
//! resources, with the bookkeeping that catches a lock freed while held, taken twice by one
//! thread, or an ERESOURCE freed without being deleted.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};

use oxtun_driver::sys::{
    APC_LEVEL, DISPATCH_LEVEL, ERESOURCE, EX_RUNDOWN_REF, KIRQL, KSPIN_LOCK, NTSTATUS, PVOID,
    STATUS_SUCCESS,
};
use oxtun_sim_macros::kernel_export;

use crate::irql;
use crate::verifier::violation;

/// Locks currently held, by address, across all threads.
static HELD: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

thread_local! {
    static HELD_HERE: RefCell<BTreeSet<usize>> = const { RefCell::new(BTreeSet::new()) };
}

/// Called when pool is freed: nothing inside it may still be in use.
pub fn forget_objects_in(start: usize, len: usize) {
    let held = HELD.lock().unwrap();
    if let Some(lock) = held.range(start..start + len).next() {
        violation(format!(
            "freeing memory that holds the acquired spin lock {lock:#x}"
        ));
    }
    let resources = RESOURCES.lock().unwrap();
    if let Some((resource, _)) = resources.range(start..start + len).next() {
        violation(format!(
            "freeing memory that holds ERESOURCE {resource:#x}, never deleted"
        ));
    }
}

fn acquire_spin_lock(lock: *mut KSPIN_LOCK) {
    let address = lock as usize;
    if HELD_HERE.with(|held| held.borrow().contains(&address)) {
        violation(format!(
            "spin lock {address:#x} acquired twice by one thread: deadlock"
        ));
        return;
    }
    // SAFETY: the driver hands in its KSPIN_LOCK, a naturally aligned usize that it only
    // touches through these functions while they run.
    let word = unsafe { AtomicUsize::from_ptr(lock) };
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    HELD.lock().unwrap().insert(address);
    HELD_HERE.with(|held| held.borrow_mut().insert(address));
}

fn release_spin_lock(lock: *mut KSPIN_LOCK) {
    let address = lock as usize;
    if !HELD_HERE.with(|held| held.borrow_mut().remove(&address)) {
        violation(format!(
            "releasing spin lock {address:#x}, which this thread does not hold"
        ));
        return;
    }
    HELD.lock().unwrap().remove(&address);
    // SAFETY: as in acquire.
    let word = unsafe { AtomicUsize::from_ptr(lock) };
    word.store(0, Ordering::Release);
}

#[kernel_export]
pub extern "efiapi" fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    irql::require_at_most(DISPATCH_LEVEL, "KeAcquireSpinLockRaiseToDpc");
    let old = irql::raise(DISPATCH_LEVEL);
    acquire_spin_lock(lock);
    old
}

#[kernel_export]
pub extern "efiapi" fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, new_irql: KIRQL) {
    if irql::current() != DISPATCH_LEVEL {
        violation("KeReleaseSpinLock below DISPATCH_LEVEL");
    }
    release_spin_lock(lock);
    irql::lower(new_irql);
}

#[derive(Default)]
struct ResourceState {
    owner: Option<ThreadId>,
    exclusive_depth: u32,
    shared: HashMap<ThreadId, u32>,
    /// Some thread waited while holding it: whoever acquires it may wait that long.
    held_across_wait: bool,
    /// A process notify routine acquired it: every process exit in the system queues on it.
    taken_by_notify_routine: bool,
}

type Resource = Arc<(Mutex<ResourceState>, Condvar)>;

/// Initialized ERESOURCEs, by address.
static RESOURCES: Mutex<BTreeMap<usize, Resource>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// Depth of KeEnterCriticalRegion on this thread.
    static CRITICAL_REGION: Cell<u32> = const { Cell::new(0) };
    /// The ERESOURCEs this thread holds, shared or exclusive.
    static RESOURCES_HELD_HERE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Whether this thread runs a process notify routine.
    static IN_NOTIFY_ROUTINE: Cell<bool> = const { Cell::new(false) };
}

/// A process notify routine may not block on a lock that someone holds across a wait: every
/// process that exits, anywhere in the system, would queue behind that wait (and deadlock if
/// what it waits for waits on an exiting process). Checked whichever comes first.
fn check_notify_routine_lock(state: &ResourceState, address: usize) {
    if state.held_across_wait && state.taken_by_notify_routine {
        violation(format!(
            "a process notify routine acquires ERESOURCE {address:#x}, which is held across \
             waits: every process exit in the system can stall behind them"
        ));
    }
}

/// Runs `routine` as a process notify routine, for the lock check above.
pub(crate) fn as_notify_routine<R>(routine: impl FnOnce() -> R) -> R {
    let outer = IN_NOTIFY_ROUTINE.replace(true);
    let result = routine();
    IN_NOTIFY_ROUTINE.set(outer);
    result
}

/// The current thread is about to wait: whatever ERESOURCE it holds is held across a wait.
pub(crate) fn waiting() {
    let held = RESOURCES_HELD_HERE.with(|held| held.borrow().clone());
    for address in held {
        if let Some(resource) = RESOURCES.lock().unwrap().get(&address).cloned() {
            let mut state = resource.0.lock().unwrap();
            state.held_across_wait = true;
            check_notify_routine_lock(&state, address);
        }
    }
}

/// ERESOURCEs initialized and not deleted.
pub fn resources_outstanding() -> usize {
    RESOURCES.lock().unwrap().len()
}

fn resource(address: *mut ERESOURCE, what: &str) -> Option<Resource> {
    let found = RESOURCES.lock().unwrap().get(&(address as usize)).cloned();
    if found.is_none() {
        violation(format!(
            "{what} on {address:p}, which is not an initialized ERESOURCE"
        ));
    }
    found
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExInitializeResourceLite(address: *mut ERESOURCE) -> NTSTATUS {
    irql::require_at_most(DISPATCH_LEVEL, "ExInitializeResourceLite");
    let mut resources = RESOURCES.lock().unwrap();
    if resources.contains_key(&(address as usize)) {
        violation("ExInitializeResourceLite on a resource that is initialized");
    }
    resources.insert(address as usize, Resource::default());
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExDeleteResourceLite(address: *mut ERESOURCE) -> NTSTATUS {
    irql::require_at_most(APC_LEVEL, "ExDeleteResourceLite");
    let Some(resource) = RESOURCES.lock().unwrap().remove(&(address as usize)) else {
        violation(format!(
            "deleting {address:p}, which is not an initialized ERESOURCE"
        ));
        return STATUS_SUCCESS;
    };
    let state = resource.0.lock().unwrap();
    if state.owner.is_some() || !state.shared.is_empty() {
        violation("deleting an ERESOURCE that is held");
    }
    STATUS_SUCCESS
}

fn acquire_resource(address: *mut ERESOURCE, exclusive: bool) -> PVOID {
    let what = if exclusive {
        "ExEnterCriticalRegionAndAcquireResourceExclusive"
    } else {
        "ExEnterCriticalRegionAndAcquireResourceShared"
    };
    irql::require_at_most(APC_LEVEL, what);
    CRITICAL_REGION.with(|depth| depth.set(depth.get() + 1));
    let Some(resource) = resource(address, what) else {
        return std::ptr::null_mut();
    };
    let me = thread::current().id();
    let (lock, changed) = &*resource;
    let mut state = lock.lock().unwrap();
    if IN_NOTIFY_ROUTINE.get() {
        state.taken_by_notify_routine = true;
        check_notify_routine_lock(&state, address as usize);
    }
    RESOURCES_HELD_HERE.with(|held| held.borrow_mut().push(address as usize));
    loop {
        if state.owner == Some(me) {
            state.exclusive_depth += 1;
            break;
        }
        if exclusive && state.shared.contains_key(&me) {
            violation("acquiring an ERESOURCE exclusively while holding it shared: deadlock");
            break;
        }
        let free = state.owner.is_none() && (!exclusive || state.shared.is_empty());
        if free {
            if exclusive {
                state.owner = Some(me);
                state.exclusive_depth = 1;
            } else {
                *state.shared.entry(me).or_default() += 1;
            }
            break;
        }
        state = changed.wait(state).unwrap();
    }
    address.cast()
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExEnterCriticalRegionAndAcquireResourceShared(
    address: *mut ERESOURCE,
) -> PVOID {
    acquire_resource(address, false)
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExEnterCriticalRegionAndAcquireResourceExclusive(
    address: *mut ERESOURCE,
) -> PVOID {
    acquire_resource(address, true)
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseResourceAndLeaveCriticalRegion(address: *mut ERESOURCE) {
    irql::require_at_most(DISPATCH_LEVEL, "ExReleaseResourceAndLeaveCriticalRegion");
    let Some(resource) = resource(address, "ExReleaseResourceAndLeaveCriticalRegion") else {
        return;
    };
    let me = thread::current().id();
    let (lock, changed) = &*resource;
    let mut state = lock.lock().unwrap();
    if state.owner == Some(me) {
        state.exclusive_depth -= 1;
        if state.exclusive_depth == 0 {
            state.owner = None;
        }
    } else if let Some(count) = state.shared.get_mut(&me) {
        *count -= 1;
        if *count == 0 {
            state.shared.remove(&me);
        }
    } else {
        violation("releasing an ERESOURCE this thread does not hold");
        return;
    }
    RESOURCES_HELD_HERE.with(|held| {
        let mut held = held.borrow_mut();
        if let Some(position) = held.iter().rposition(|&a| a == address as usize) {
            held.remove(position);
        }
    });
    changed.notify_all();
    drop(state);
    let depth = CRITICAL_REGION.with(|depth| depth.replace(depth.get().saturating_sub(1)));
    if depth == 0 {
        violation("leaving a critical region that was not entered");
    }
}

/// EX_RUNDOWN_REF, in the driver's memory as in the kernel: bit 0 says the object is being (or
/// has been) run down, the rest counts acquisitions in units of 2.
const RUNDOWN_ACTIVE: usize = 1;
const RUNDOWN_UNIT: usize = 2;

fn rundown_word<'a>(reference: *mut EX_RUNDOWN_REF) -> &'a AtomicUsize {
    // SAFETY: the driver's EX_RUNDOWN_REF, a naturally aligned usize it touches only through
    // these functions.
    unsafe { AtomicUsize::from_ptr(reference.cast()) }
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExInitializeRundownProtection(reference: *mut EX_RUNDOWN_REF) {
    rundown_word(reference).store(0, Ordering::SeqCst);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReInitializeRundownProtection(reference: *mut EX_RUNDOWN_REF) {
    let word = rundown_word(reference);
    if word.load(Ordering::SeqCst) != RUNDOWN_ACTIVE {
        violation("ExReInitializeRundownProtection on a reference that is not run down");
    }
    word.store(0, Ordering::SeqCst);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireRundownProtection(reference: *mut EX_RUNDOWN_REF) -> u8 {
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireRundownProtection");
    let word = rundown_word(reference);
    let mut value = word.load(Ordering::SeqCst);
    loop {
        if value & RUNDOWN_ACTIVE != 0 {
            return 0;
        }
        match word.compare_exchange(
            value,
            value + RUNDOWN_UNIT,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => return 1,
            Err(now) => value = now,
        }
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseRundownProtection(reference: *mut EX_RUNDOWN_REF) {
    irql::require_at_most(DISPATCH_LEVEL, "ExReleaseRundownProtection");
    let previous = rundown_word(reference).fetch_sub(RUNDOWN_UNIT, Ordering::SeqCst);
    if previous < RUNDOWN_UNIT {
        violation("ExReleaseRundownProtection without an acquisition");
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExWaitForRundownProtectionRelease(reference: *mut EX_RUNDOWN_REF) {
    irql::require_at_most(APC_LEVEL, "ExWaitForRundownProtectionRelease");
    waiting();
    let word = rundown_word(reference);
    word.fetch_or(RUNDOWN_ACTIVE, Ordering::SeqCst);
    while word.load(Ordering::SeqCst) != RUNDOWN_ACTIVE {
        thread::yield_now();
    }
}
