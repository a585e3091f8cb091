//! Locks around the data they protect: a spin lock, held at DISPATCH_LEVEL, and a lock for code
//! at PASSIVE_LEVEL that waits while it holds it.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::event::{KernelEvent, wait};
use super::nt::{
    KIRQL, KSPIN_LOCK, KeAcquireSpinLockRaiseToDpc, KeEnterCriticalRegion, KeLeaveCriticalRegion,
    KeReleaseSpinLock, PsGetCurrentThread,
};

/// The calling thread's identity (its KTHREAD's address).
fn current_thread() -> usize {
    // SAFETY: no preconditions; any IRQL.
    unsafe { PsGetCurrentThread() as usize }
}

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

/// A lock around a value changed only at PASSIVE_LEVEL, by code that may wait while it holds it
/// (which a spin lock forbids): a synchronization event, signalled while the lock is free, that
/// taking the lock waits for. [`PassiveLock::initialize`] it where it will stay. Held inside a
/// critical region, as a mutex is: a holder's thread cannot be suspended (normal kernel APCs are
/// deferred, KeEnterCriticalRegion) while others wait for it, among them OID requests.
///
/// The holder's thread may enter it again ([`PassiveLock::enter`]): a call the holder makes can
/// come back into the driver on the same thread (a status indication whose handler issues an OID
/// request), which must not wait for itself. So the value is read and written by copy only
/// ([`PassiveLockGuard::get`], [`PassiveLockGuard::set`]): no reference into it is ever held, by
/// the holder or by whoever enters again.
pub struct PassiveLock<T: Copy> {
    free: KernelEvent,
    /// The thread that holds the lock (PsGetCurrentThread), 0 while it is free.
    holder: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the event lets one thread at a time touch the value, by copy.
unsafe impl<T: Copy + Send> Sync for PassiveLock<T> {}
// SAFETY: moving the lock moves the value; nothing is shared then.
unsafe impl<T: Copy + Send> Send for PassiveLock<T> {}

/// The lock held, or entered again by its holder's thread, until dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct PassiveLockGuard<'a, T: Copy> {
    owner: &'a PassiveLock<T>,
    /// This guard took the lock (it releases it); false for an entry by the holder's thread.
    took: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: Copy> PassiveLock<T> {
    pub const fn new(value: T) -> Self {
        PassiveLock {
            free: KernelEvent::new(),
            holder: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Once the lock is at its final address: free.
    pub fn initialize(&self) {
        self.free.initialize(true);
        self.free.set();
    }

    /// Waits, at PASSIVE_LEVEL, until the lock is free, and takes it (the wait that ends resets
    /// the event, so one waiter at a time gets it); or, on the thread that holds it, enters it
    /// again at once.
    pub fn enter(&self) -> PassiveLockGuard<'_, T> {
        let me = current_thread();
        if self.holder.load(Ordering::Acquire) == me {
            return PassiveLockGuard {
                owner: self,
                took: false,
                _not_send: PhantomData,
            };
        }
        // SAFETY: at PASSIVE_LEVEL (at most APC_LEVEL is asked); the guard's drop leaves it.
        unsafe { KeEnterCriticalRegion() };
        wait(&self.free);
        self.holder.store(me, Ordering::Release);
        PassiveLockGuard {
            owner: self,
            took: true,
            _not_send: PhantomData,
        }
    }
}

impl<T: Copy> PassiveLockGuard<'_, T> {
    /// The value now (a thread that entered again may have changed it since the last look).
    pub fn get(&self) -> T {
        // SAFETY: this thread holds the lock, so no other thread touches the value; on this
        // thread, no reference into it outlives a get or a set.
        unsafe { *self.owner.value.get() }
    }

    pub fn set(&self, value: T) {
        // SAFETY: as in get.
        unsafe { *self.owner.value.get() = value };
    }
}

impl<T: Copy> Drop for PassiveLockGuard<'_, T> {
    fn drop(&mut self) {
        if !self.took {
            return;
        }
        self.owner.holder.store(0, Ordering::Release);
        self.owner.free.set();
        // SAFETY: leaves the critical region `enter` entered, on the same thread (the guard is
        // not Send).
        unsafe { KeLeaveCriticalRegion() };
    }
}
