//! A slot for an object that DISPATCH_LEVEL code uses while PASSIVE_LEVEL code may replace it:
//! users hold rundown protection; taking the object out first waits for them to leave.

use core::cell::UnsafeCell;
use core::ops::Deref;
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use super::nt::{
    EX_RUNDOWN_REF, ExAcquireRundownProtection, ExReInitializeRundownProtection,
    ExReleaseRundownProtection, ExWaitForRundownProtectionRelease,
};
use super::pool::PoolBox;

pub struct RundownSlot<T> {
    rundown: UnsafeCell<EX_RUNDOWN_REF>,
    object: AtomicPtr<T>,
}

// SAFETY: the rundown reference is made for concurrent use; the object is shared only as &T.
unsafe impl<T: Send + Sync> Sync for RundownSlot<T> {}
// SAFETY: the slot owns its object like a PoolBox does.
unsafe impl<T: Send> Send for RundownSlot<T> {}

/// The object, protected from removal until the guard drops.
pub struct RundownGuard<'a, T> {
    slot: &'a RundownSlot<T>,
    object: &'a T,
}

impl<T> RundownSlot<T> {
    /// An empty slot. Call [`RundownSlot::start_empty`] once it is at its final address.
    pub const fn new() -> Self {
        RundownSlot {
            // Count 0 is what ExInitializeRundownProtection writes.
            rundown: UnsafeCell::new(EX_RUNDOWN_REF { Count: 0 }),
            object: AtomicPtr::new(null_mut()),
        }
    }

    /// Runs the empty slot down, so [`RundownSlot::acquire`] fails until something is put in.
    pub fn start_empty(&self) {
        // SAFETY: an initialized rundown reference that no one has acquired yet.
        unsafe { ExWaitForRundownProtectionRelease(self.rundown.get()) };
    }

    /// The object, if there is one and it is not being taken out. At up to DISPATCH_LEVEL.
    pub fn acquire(&self) -> Option<RundownGuard<'_, T>> {
        // SAFETY: an initialized rundown reference.
        if unsafe { ExAcquireRundownProtection(self.rundown.get()) } == 0 {
            return None;
        }
        let object = self.object.load(Ordering::Acquire);
        // SAFETY: while protection is held the object cannot be taken out and freed; it was
        // stored before the rundown reference was re-initialized (see put).
        match unsafe { object.as_ref() } {
            Some(object) => Some(RundownGuard { slot: self, object }),
            None => {
                // SAFETY: releases the protection acquired above.
                unsafe { ExReleaseRundownProtection(self.rundown.get()) };
                None
            }
        }
    }

    /// Whether the slot holds an object.
    pub fn is_occupied(&self) -> bool {
        !self.object.load(Ordering::Acquire).is_null()
    }

    /// Puts an object in an empty slot and lets users acquire it.
    ///
    /// # Safety
    /// Calls of `put` and `take_if` are serialized by the caller, at PASSIVE_LEVEL.
    pub unsafe fn put(&self, object: PoolBox<T>) -> Result<(), PoolBox<T>> {
        if self.is_occupied() {
            return Err(object);
        }
        self.object
            .store(object.into_raw().as_ptr(), Ordering::Release);
        // SAFETY: the slot is run down (empty), so re-initializing is allowed.
        unsafe { ExReInitializeRundownProtection(self.rundown.get()) };
        Ok(())
    }

    /// Takes the object out if `which` picks it: new users are refused and current ones are
    /// waited for first.
    ///
    /// # Safety
    /// As for [`RundownSlot::put`].
    pub unsafe fn take_if(&self, which: impl FnOnce(&T) -> bool) -> Option<PoolBox<T>> {
        let object = NonNull::new(self.object.load(Ordering::Acquire))?;
        // SAFETY: only take_if frees the object, and the caller serializes it with this call.
        if !which(unsafe { object.as_ref() }) {
            return None;
        }
        // SAFETY: an initialized rundown reference; waiting is allowed at PASSIVE_LEVEL.
        unsafe { ExWaitForRundownProtectionRelease(self.rundown.get()) };
        self.object.store(null_mut(), Ordering::Release);
        // SAFETY: the pointer came from PoolBox::into_raw in put, and no user is left.
        Some(unsafe { PoolBox::from_raw(object) })
    }
}

impl<T> Drop for RundownSlot<T> {
    fn drop(&mut self) {
        // SAFETY: &mut self: no other call can run; the owner drops the slot at PASSIVE_LEVEL.
        drop(unsafe { self.take_if(|_| true) });
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

impl<T> Drop for RundownGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: releases the protection this guard acquired.
        unsafe { ExReleaseRundownProtection(self.slot.rundown.get()) };
    }
}
