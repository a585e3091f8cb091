//! Locks around the data they protect: a spin lock, held at DISPATCH_LEVEL, and a lock for code
//! at PASSIVE_LEVEL that waits while it holds it.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::event::{KernelEvent, wait};
use super::nt::{
    KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeEnterCriticalRegion, KeLeaveCriticalRegion,
    KeReleaseSpinLock,
};

pub struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serializes every access to the value.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; nothing is shared then.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// The lock held, at DISPATCH_LEVEL, until dropped (on the thread that took it: it restores that
/// thread's IRQL).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinLockGuard<'a, T> {
    owner: &'a SpinLock<T>,
    previous_irql: KIRQL,
    _not_send: PhantomData<*const ()>,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            lock: UnsafeCell::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Raises to DISPATCH_LEVEL and takes the lock, for the guard's lifetime.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: the KSPIN_LOCK lives as long as self and is only used through these calls.
        let previous_irql = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinLockGuard {
            owner: self,
            previous_irql,
            _not_send: PhantomData,
        }
    }
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no one else touches the value.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only access to the value.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this guard acquired the lock and restores the IRQL it found.
        unsafe { KeReleaseSpinLock(self.owner.lock.get(), self.previous_irql) };
    }
}

/// A lock around data changed only at PASSIVE_LEVEL, by code that may wait while it holds it
/// (which a spin lock forbids): a synchronization event, signalled while the lock is free, that
/// taking the lock waits for. [`PassiveLock::initialize`] it where it will stay. Held inside a
/// critical region, as a mutex is: a holder's thread cannot be suspended (normal kernel APCs are
/// deferred, KeEnterCriticalRegion) while others wait for it, among them OID requests.
pub struct PassiveLock<T> {
    free: KernelEvent,
    value: UnsafeCell<T>,
}

// SAFETY: the event lets one holder at a time touch the value.
unsafe impl<T: Send> Sync for PassiveLock<T> {}
// SAFETY: moving the lock moves the value; nothing is shared then.
unsafe impl<T: Send> Send for PassiveLock<T> {}

/// The lock held until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct PassiveLockGuard<'a, T> {
    owner: &'a PassiveLock<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> PassiveLock<T> {
    pub const fn new(value: T) -> Self {
        PassiveLock {
            free: KernelEvent::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Once the lock is at its final address: free.
    pub fn initialize(&self) {
        self.free.initialize(true);
        self.free.set();
    }

    /// Waits, at PASSIVE_LEVEL, until the lock is free, and takes it (the wait that ends resets
    /// the event, so one waiter at a time gets it).
    pub fn lock(&self) -> PassiveLockGuard<'_, T> {
        // SAFETY: at PASSIVE_LEVEL (at most APC_LEVEL is asked); the guard's drop leaves it.
        unsafe { KeEnterCriticalRegion() };
        wait(&self.free);
        PassiveLockGuard {
            owner: self,
            _not_send: PhantomData,
        }
    }
}

impl<T> Deref for PassiveLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no one else touches the value.
        unsafe { &*self.owner.value.get() }
    }
}

impl<T> DerefMut for PassiveLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only access to the value.
        unsafe { &mut *self.owner.value.get() }
    }
}

impl<T> Drop for PassiveLockGuard<'_, T> {
    fn drop(&mut self) {
        self.owner.free.set();
        // SAFETY: leaves the critical region `lock` entered, on the same thread (the guard is
        // not Send).
        unsafe { KeLeaveCriticalRegion() };
    }
}
