//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls bookkeeping and IRQL.
//!
//! Spin locks (the lock word lives in the driver's memory, as in the kernel) and executive
//! resources, with the bookkeeping that catches a lock freed while held, taken twice by one
//! thread, or an ERESOURCE freed without being deleted.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};

use oxtun_driver::sys::{
    APC_LEVEL, DISPATCH_LEVEL, ERESOURCE, EX_RUNDOWN_REF, KIRQL, KSPIN_LOCK, NTSTATUS, PVOID,
    STATUS_SUCCESS,
};
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::verifier::{house_rule, violation};
use crate::ke::irql;

/// Locks currently held, by address, across all threads.
static HELD: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

thread_local! {
    static HELD_HERE: RefCell<BTreeSet<usize>> = const { RefCell::new(BTreeSet::new()) };
}

/// Called when pool is freed: nothing inside it may still be in use.
pub fn forget_objects_in(start: usize, len: usize) {
    let held = HELD.lock().unwrap();
    if let Some(lock) = held.range(start..start + len).next() {
        // Freeing pool that holds an active kernel object is what Driver Verifier's "Miscellaneous
        // Checks" report; a held spin lock in freed pool leaves its waiters spinning on freed memory.
        violation(format!(
            "freeing memory that holds the acquired spin lock {lock:#x}"
        ));
    }
    let resources = RESOURCES.lock().unwrap();
    if let Some((resource, _)) = resources.range(start..start + len).next() {
        // "Active resources in freed memory. The driver calls ExFreePool to free a pool block that
        // contains active ERESOURCE structures" (Driver Verifier, "Miscellaneous Checks").
        violation(format!(
            "freeing memory that holds ERESOURCE {resource:#x}, never deleted"
        ));
    }
}

/// How many spin locks the calling thread holds.
pub(crate) fn spin_locks_held_here() -> usize {
    HELD_HERE.with(|held| held.borrow().len())
}

fn acquire_spin_lock(lock: *mut KSPIN_LOCK) {
    let address = lock as usize;
    if HELD_HERE.with(|held| held.borrow().contains(&address)) {
        // Bug Check 0xF SPIN_LOCK_ALREADY_OWNED: "a request for a spin lock has been initiated when the
        // spin lock was already owned".
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
        // KeReleaseSpinLock releases a spin lock the caller acquired (KeReleaseSpinLock).
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
    // KeAcquireSpinLockRaiseToDpc (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "KeAcquireSpinLockRaiseToDpc");
    let old = irql::raise(DISPATCH_LEVEL);
    acquire_spin_lock(lock);
    old
}

#[kernel_export]
pub extern "efiapi" fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, new_irql: KIRQL) {
    if irql::current() != DISPATCH_LEVEL {
        // KeReleaseSpinLock is called at DISPATCH_LEVEL, where the acquisition left the caller
        // (KeReleaseSpinLock: IRQL DISPATCH_LEVEL).
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
        // A house rule: Windows does not forbid it; see the function's comment.
        house_rule(format!(
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
        // An ERESOURCE is used between ExInitializeResourceLite and ExDeleteResourceLite ("ERESOURCE
        // routines").
        violation(format!(
            "{what} on {address:p}, which is not an initialized ERESOURCE"
        ));
    }
    found
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExInitializeResourceLite(address: *mut ERESOURCE) -> NTSTATUS {
    // ExInitializeResourceLite (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ExInitializeResourceLite");
    let mut resources = RESOURCES.lock().unwrap();
    if resources.contains_key(&(address as usize)) {
        // Reinitializing a live resource is ExReinitializeResourceLite's job, not
        // ExInitializeResourceLite's (ExReinitializeResourceLite).
        violation("ExInitializeResourceLite on a resource that is initialized");
    }
    resources.insert(address as usize, Resource::default());
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExDeleteResourceLite(address: *mut ERESOURCE) -> NTSTATUS {
    // ExDeleteResourceLite (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, "ExDeleteResourceLite");
    let Some(resource) = RESOURCES.lock().unwrap().remove(&(address as usize)) else {
        // "A call to ExDeleteResourceLite must be preceded by a call to ExInitializeResourceLite"
        // (ExDeleteResourceLite).
        violation(format!(
            "deleting {address:p}, which is not an initialized ERESOURCE"
        ));
        return STATUS_SUCCESS;
    };
    let state = resource.0.lock().unwrap();
    if state.owner.is_some() || !state.shared.is_empty() {
        // Deleting a held resource leaves its owners releasing a deleted one.
        violation("deleting an ERESOURCE that is held");
    }
    STATUS_SUCCESS
}

/// Whether normal kernel APCs are disabled on this thread: inside a critical region, or at
/// APC_LEVEL or above.
fn normal_kernel_apcs_disabled() -> bool {
    CRITICAL_REGION.get() > 0 || irql::current() >= APC_LEVEL
}

/// Acquires an ERESOURCE, waiting if `wait`; false if it would have to wait and may not. The
/// caller has normal kernel APCs disabled ("Normal kernel APC delivery must be disabled before
/// calling this routine. Disable normal kernel APC delivery by calling KeEnterCriticalRegion":
/// ExAcquireResourceExclusiveLite, ExAcquireResourceSharedLite; otherwise a thread suspended by
/// an APC while it holds the resource blocks everyone who waits for it).
fn acquire_resource(address: *mut ERESOURCE, exclusive: bool, wait: bool, what: &str) -> bool {
    // ExAcquireResourceExclusiveLite, ExAcquireResourceSharedLite (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, what);
    if !normal_kernel_apcs_disabled() {
        // ExAcquireResourceExclusiveLite, ExAcquireResourceSharedLite: see the function's comment.
        violation(format!(
            "{what} outside a critical region: normal kernel APCs must be disabled \
             (KeEnterCriticalRegion) while an executive resource is held"
        ));
    }
    let Some(resource) = resource(address, what) else {
        return false;
    };
    let me = thread::current().id();
    let (lock, changed) = &*resource;
    let mut state = lock.lock().unwrap();
    if IN_NOTIFY_ROUTINE.get() {
        state.taken_by_notify_routine = true;
        check_notify_routine_lock(&state, address as usize);
    }
    loop {
        if state.owner == Some(me) {
            state.exclusive_depth += 1;
            break;
        }
        // "If the caller has shared access to the resource, the caller must release the lock
        // before it attempts to reacquire it exclusively" (ExAcquireResourceExclusiveLite).
        if exclusive && state.shared.contains_key(&me) {
            // "If the caller has shared access to the resource, the caller must release the lock before it
            // attempts to reacquire it exclusively" (ExAcquireResourceExclusiveLite).
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
        if !wait {
            return false;
        }
        state = changed.wait(state).unwrap();
    }
    RESOURCES_HELD_HERE.with(|held| held.borrow_mut().push(address as usize));
    true
}

fn release_resource(address: *mut ERESOURCE, what: &str) {
    // ExReleaseResourceLite (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, what);
    let Some(resource) = resource(address, what) else {
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
        // ExReleaseResourceLite "releases a specified executive resource owned by the current thread".
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
}

#[kernel_export]
pub extern "efiapi" fn KeEnterCriticalRegion() {
    // KeEnterCriticalRegion (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, "KeEnterCriticalRegion");
    CRITICAL_REGION.set(CRITICAL_REGION.get() + 1);
}

#[kernel_export]
pub extern "efiapi" fn KeLeaveCriticalRegion() {
    // KeLeaveCriticalRegion (wdm.h): "IRQL <= APC_LEVEL"; "each call to KeEnterCriticalRegion
    // must have a matching call to KeLeaveCriticalRegion" (KeEnterCriticalRegion).
    irql::require_at_most(APC_LEVEL, "KeLeaveCriticalRegion");
    let depth = CRITICAL_REGION.get();
    if depth == 0 {
        // "Each call to KeEnterCriticalRegion must have a matching call to KeLeaveCriticalRegion"
        // (KeEnterCriticalRegion).
        violation("KeLeaveCriticalRegion without KeEnterCriticalRegion");
        return;
    }
    CRITICAL_REGION.set(depth - 1);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireResourceSharedLite(address: *mut ERESOURCE, wait: u8) -> u8 {
    u8::from(acquire_resource(
        address,
        false,
        wait != 0,
        "ExAcquireResourceSharedLite",
    ))
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireResourceExclusiveLite(
    address: *mut ERESOURCE,
    wait: u8,
) -> u8 {
    u8::from(acquire_resource(
        address,
        true,
        wait != 0,
        "ExAcquireResourceExclusiveLite",
    ))
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseResourceLite(address: *mut ERESOURCE) {
    // "Normal kernel APC delivery must be disabled before calling this routine"
    // (ExReleaseResourceLite).
    if !normal_kernel_apcs_disabled() {
        // "Normal kernel APC delivery must be disabled before calling this routine"
        // (ExReleaseResourceLite).
        violation("ExReleaseResourceLite outside a critical region");
    }
    release_resource(address, "ExReleaseResourceLite");
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExEnterCriticalRegionAndAcquireResourceShared(
    address: *mut ERESOURCE,
) -> PVOID {
    KeEnterCriticalRegion();
    acquire_resource(
        address,
        false,
        true,
        "ExEnterCriticalRegionAndAcquireResourceShared",
    );
    address.cast()
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExEnterCriticalRegionAndAcquireResourceExclusive(
    address: *mut ERESOURCE,
) -> PVOID {
    KeEnterCriticalRegion();
    acquire_resource(
        address,
        true,
        true,
        "ExEnterCriticalRegionAndAcquireResourceExclusive",
    );
    address.cast()
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseResourceAndLeaveCriticalRegion(address: *mut ERESOURCE) {
    release_resource(address, "ExReleaseResourceAndLeaveCriticalRegion");
    KeLeaveCriticalRegion();
}

/// `EX_SPIN_LOCK`, a reader/writer spin lock: a LONG in the driver's memory, as in the kernel;
/// here the top bit says it is held exclusively and the rest counts shared holders.
const EX_SPIN_LOCK_EXCLUSIVE: u32 = 0x8000_0000;

thread_local! {
    /// The EX_SPIN_LOCKs this thread holds, shared or exclusive.
    static EX_SPIN_LOCKS_HERE: RefCell<BTreeSet<usize>> = const { RefCell::new(BTreeSet::new()) };
}

fn ex_spin_lock_word<'a>(lock: *mut i32) -> &'a AtomicU32 {
    // SAFETY: the driver's EX_SPIN_LOCK, an aligned LONG in non-paged memory, which it touches
    // only through these functions while they run.
    unsafe { AtomicU32::from_ptr(lock.cast()) }
}

/// Acquires an EX_SPIN_LOCK at DISPATCH_LEVEL. "The caller must not already own this spin lock
/// ... Recursive acquisition of a spin lock causes deadlock and is not allowed"
/// (ExAcquireSpinLockShared, ExAcquireSpinLockExclusive): a shared re-acquisition deadlocks as
/// soon as a writer waits between the two, since a waiting writer holds off new readers
/// ("Reader/Writer Spin Locks").
fn acquire_ex_spin_lock(lock: *mut i32, exclusive: bool, what: &str) {
    let address = lock as usize;
    if EX_SPIN_LOCKS_HERE.with(|held| held.borrow().contains(&address)) {
        // ExAcquireSpinLockShared, ExAcquireSpinLockExclusive: see the function's comment.
        violation(format!(
            "{what}: EX_SPIN_LOCK {address:#x} is already held by this thread (recursive \
             acquisition deadlocks once a writer waits)"
        ));
        return;
    }
    let word = ex_spin_lock_word(lock);
    loop {
        let value = word.load(Ordering::Acquire);
        let next = if exclusive {
            (value == 0).then_some(EX_SPIN_LOCK_EXCLUSIVE)
        } else {
            (value & EX_SPIN_LOCK_EXCLUSIVE == 0).then_some(value + 1)
        };
        if let Some(next) = next
            && word
                .compare_exchange_weak(value, next, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            break;
        }
        std::thread::yield_now();
    }
    EX_SPIN_LOCKS_HERE.with(|held| held.borrow_mut().insert(address));
    HELD.lock().unwrap().insert(address);
}

fn release_ex_spin_lock(lock: *mut i32, exclusive: bool, what: &str) {
    let address = lock as usize;
    if !EX_SPIN_LOCKS_HERE.with(|held| held.borrow_mut().remove(&address)) {
        // Releasing an EX_SPIN_LOCK this thread does not hold corrupts it for its holders.
        violation(format!(
            "{what}: EX_SPIN_LOCK {address:#x} is not held by this thread"
        ));
        return;
    }
    let word = ex_spin_lock_word(lock);
    if exclusive {
        if word.swap(0, Ordering::Release) != EX_SPIN_LOCK_EXCLUSIVE {
            // ExReleaseSpinLockExclusive releases an exclusive acquisition (its page).
            violation(format!("{what} of an EX_SPIN_LOCK held shared"));
        }
    } else if word.fetch_sub(1, Ordering::Release) & EX_SPIN_LOCK_EXCLUSIVE != 0 {
        // ExReleaseSpinLockShared releases a shared acquisition (its page).
        violation(format!("{what} of an EX_SPIN_LOCK held exclusively"));
    }
    if !(exclusive || word.load(Ordering::Relaxed) == 0) {
        return;
    }
    HELD.lock().unwrap().remove(&address);
}

// ExAcquireSpinLockShared and the rest (wdm.h): the plain ones are called at IRQL <=
// DISPATCH_LEVEL and raise to it; the AtDpcLevel and FromDpcLevel ones at DISPATCH_LEVEL.

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireSpinLockShared(lock: *mut i32) -> KIRQL {
    // ExAcquireSpinLockShared (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireSpinLockShared");
    let old = irql::raise(DISPATCH_LEVEL);
    acquire_ex_spin_lock(lock, false, "ExAcquireSpinLockShared");
    old
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireSpinLockExclusive(lock: *mut i32) -> KIRQL {
    // ExAcquireSpinLockExclusive (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ExAcquireSpinLockExclusive");
    let old = irql::raise(DISPATCH_LEVEL);
    acquire_ex_spin_lock(lock, true, "ExAcquireSpinLockExclusive");
    old
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseSpinLockShared(lock: *mut i32, old: KIRQL) {
    require_dispatch("ExReleaseSpinLockShared");
    release_ex_spin_lock(lock, false, "ExReleaseSpinLockShared");
    irql::lower(old);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseSpinLockExclusive(lock: *mut i32, old: KIRQL) {
    require_dispatch("ExReleaseSpinLockExclusive");
    release_ex_spin_lock(lock, true, "ExReleaseSpinLockExclusive");
    irql::lower(old);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireSpinLockSharedAtDpcLevel(lock: *mut i32) {
    require_dispatch("ExAcquireSpinLockSharedAtDpcLevel");
    acquire_ex_spin_lock(lock, false, "ExAcquireSpinLockSharedAtDpcLevel");
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireSpinLockExclusiveAtDpcLevel(lock: *mut i32) {
    require_dispatch("ExAcquireSpinLockExclusiveAtDpcLevel");
    acquire_ex_spin_lock(lock, true, "ExAcquireSpinLockExclusiveAtDpcLevel");
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseSpinLockSharedFromDpcLevel(lock: *mut i32) {
    require_dispatch("ExReleaseSpinLockSharedFromDpcLevel");
    release_ex_spin_lock(lock, false, "ExReleaseSpinLockSharedFromDpcLevel");
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExReleaseSpinLockExclusiveFromDpcLevel(lock: *mut i32) {
    require_dispatch("ExReleaseSpinLockExclusiveFromDpcLevel");
    release_ex_spin_lock(lock, true, "ExReleaseSpinLockExclusiveFromDpcLevel");
}

fn require_dispatch(what: &str) {
    let irql = irql::current();
    if irql != DISPATCH_LEVEL {
        // The AtDpcLevel and FromDpcLevel forms are for callers already at DISPATCH_LEVEL (their pages).
        violation(format!("{what} at IRQL {irql}, not DISPATCH_LEVEL"));
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
        // ExReInitializeRundownProtection reinitializes a reference after it has been run down
        // (ExReInitializeRundownProtection).
        violation("ExReInitializeRundownProtection on a reference that is not run down");
    }
    word.store(0, Ordering::SeqCst);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExAcquireRundownProtection(reference: *mut EX_RUNDOWN_REF) -> u8 {
    // ExAcquireRundownProtection (wdm.h): "IRQL <= DISPATCH_LEVEL".
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
    // ExReleaseRundownProtection (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ExReleaseRundownProtection");
    let previous = rundown_word(reference).fetch_sub(RUNDOWN_UNIT, Ordering::SeqCst);
    if previous < RUNDOWN_UNIT {
        // ExReleaseRundownProtection releases protection that ExAcquireRundownProtection acquired (its
        // page).
        violation("ExReleaseRundownProtection without an acquisition");
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn ExWaitForRundownProtectionRelease(reference: *mut EX_RUNDOWN_REF) {
    // ExWaitForRundownProtectionRelease (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, "ExWaitForRundownProtectionRelease");
    waiting();
    let word = rundown_word(reference);
    word.fetch_or(RUNDOWN_ACTIVE, Ordering::SeqCst);
    while word.load(Ordering::SeqCst) != RUNDOWN_ACTIVE {
        thread::yield_now();
    }
}
