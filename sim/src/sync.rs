//! Spin locks (the lock word lives in the driver's memory, as in the kernel) and the bookkeeping
//! that catches a lock freed while held or taken twice by one thread.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxtun::sys::{DISPATCH_LEVEL, KIRQL, KSPIN_LOCK};

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
}

fn acquire(lock: *mut KSPIN_LOCK) {
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

fn release(lock: *mut KSPIN_LOCK) {
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

#[unsafe(no_mangle)]
pub extern "system" fn KeAcquireSpinLockRaiseToDpc(lock: *mut KSPIN_LOCK) -> KIRQL {
    irql::require_at_most(DISPATCH_LEVEL, "KeAcquireSpinLockRaiseToDpc");
    let old = irql::raise(DISPATCH_LEVEL);
    acquire(lock);
    old
}

#[unsafe(no_mangle)]
pub extern "system" fn KeReleaseSpinLock(lock: *mut KSPIN_LOCK, new_irql: KIRQL) {
    if irql::current() != DISPATCH_LEVEL {
        violation("KeReleaseSpinLock below DISPATCH_LEVEL");
    }
    release(lock);
    irql::lower(new_irql);
}
