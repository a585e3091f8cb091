//! Rundown protection: users of an object acquire it without blocking, at up to DISPATCH_LEVEL;
//! its owner refuses new users and waits for the ones it has before the object goes away.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use super::nt::{
    EX_RUNDOWN_REF, ExAcquireRundownProtection, ExReInitializeRundownProtection,
    ExReleaseRundownProtection, ExWaitForRundownProtectionRelease,
};
use super::pool::PoolBox;

/// An EX_RUNDOWN_REF. Place it where it stays (the kernel works on its address).
pub struct Rundown {
    reference: UnsafeCell<EX_RUNDOWN_REF>,
}

// SAFETY: an EX_RUNDOWN_REF is made for concurrent use through these functions.
unsafe impl Sync for Rundown {}
// SAFETY: as for Sync; it is moved only before anyone uses it.
unsafe impl Send for Rundown {}

/// Protection acquired from a [`Rundown`], released on drop.
#[must_use = "protection is released as soon as the guard is dropped"]
pub struct RundownProtection<'a> {
    rundown: &'a Rundown,
    /// Released on the thread that acquired it.
    _not_send: PhantomData<*const ()>,
}

impl Rundown {
    pub const fn new() -> Self {
        Rundown {
            // Count 0 is what ExInitializeRundownProtection writes.
            reference: UnsafeCell::new(EX_RUNDOWN_REF { Count: 0 }),
        }
    }

    /// Protection, unless the owner has started to wait: then `None`. At up to DISPATCH_LEVEL.
    pub fn acquire(&self) -> Option<RundownProtection<'_>> {
        // SAFETY: an initialized rundown reference.
        let acquired = unsafe { ExAcquireRundownProtection(self.reference.get()) } != 0;
        // Lazily: a guard dropped releases.
        acquired.then(|| RundownProtection {
            rundown: self,
            _not_send: PhantomData,
        })
    }

    /// Refuses new users, then waits until every current one has released. At PASSIVE_LEVEL or
    /// APC_LEVEL.
    pub fn wait_for_release(&self) {
        // SAFETY: an initialized rundown reference; waiting is allowed at the caller's IRQL.
        unsafe { ExWaitForRundownProtectionRelease(self.reference.get()) };
    }

    /// Lets users in again after [`Rundown::wait_for_release`] returned.
    ///
    /// # Safety
    /// The wait has returned, and no other thread waits or re-initializes concurrently.
    pub unsafe fn reinitialize(&self) {
        // SAFETY: the caller guarantees the reference is run down and this call is alone.
        unsafe { ExReInitializeRundownProtection(self.reference.get()) };
    }
}

impl Default for Rundown {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RundownProtection<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the protection this guard acquired.
        unsafe { ExReleaseRundownProtection(self.rundown.reference.get()) };
    }
}

/// A slot for an object that DISPATCH_LEVEL code uses while PASSIVE_LEVEL code may replace it:
/// users hold rundown protection; taking the object out waits for them first.
pub struct RundownSlot<T> {
    rundown: Rundown,
    object: AtomicPtr<T>,
}

// SAFETY: the rundown reference is made for concurrent use; the object is shared only as &T.
unsafe impl<T: Send + Sync> Sync for RundownSlot<T> {}
// SAFETY: the slot owns its object like a PoolBox does.
unsafe impl<T: Send> Send for RundownSlot<T> {}

/// The object, protected from removal until the guard drops.
#[must_use = "protection is released as soon as the guard is dropped"]
pub struct RundownGuard<'a, T> {
    _protection: RundownProtection<'a>,
    object: &'a T,
}

impl<T> RundownSlot<T> {
    /// An empty slot. Call [`RundownSlot::start_empty`] once it is at its final address.
    pub const fn new() -> Self {
        RundownSlot {
            rundown: Rundown::new(),
            object: AtomicPtr::new(null_mut()),
        }
    }

    /// Runs the empty slot down, so [`RundownSlot::acquire`] fails until something is put in.
    pub fn start_empty(&self) {
        self.rundown.wait_for_release();
    }

    /// The object, if there is one and it is not being taken out. At up to DISPATCH_LEVEL.
    pub fn acquire(&self) -> Option<RundownGuard<'_, T>> {
        let protection = self.rundown.acquire()?;
        let object = self.object.load(Ordering::Acquire);
        // SAFETY: while protection is held the object cannot be taken out and freed; it was
        // stored before the rundown reference was re-initialized (see put).
        let object = unsafe { object.as_ref() }?;
        Some(RundownGuard {
            _protection: protection,
            object,
        })
    }

    /// Puts an object in the empty slot and lets users acquire it.
    ///
    /// # Safety
    /// The slot is empty, and calls of `put` and `take` are serialized by the caller, at
    /// PASSIVE_LEVEL.
    pub unsafe fn put(&self, object: PoolBox<T>) {
        self.object
            .store(object.into_raw().as_ptr(), Ordering::Release);
        // SAFETY: the slot is empty, hence run down, and the caller serializes this call.
        unsafe { self.rundown.reinitialize() };
    }

    /// Takes the object out, if there is one: new users are refused, current ones waited for.
    ///
    /// # Safety
    /// As for [`RundownSlot::put`], but for the slot being empty.
    pub unsafe fn take(&self) -> Option<PoolBox<T>> {
        let object = NonNull::new(self.object.load(Ordering::Acquire))?;
        self.rundown.wait_for_release();
        self.object.store(null_mut(), Ordering::Release);
        // SAFETY: the pointer came from PoolBox::into_raw in put, and no user is left.
        Some(unsafe { PoolBox::from_raw(object) })
    }
}

impl<T> Drop for RundownSlot<T> {
    fn drop(&mut self) {
        // SAFETY: &mut self: no other call can run; the owner drops the slot at PASSIVE_LEVEL.
        drop(unsafe { self.take() });
    }
}

impl<T> Default for RundownSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Deref for RundownGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.object
    }
}
