//! An ERESOURCE (reader/writer lock for PASSIVE and APC level), with guards.

use core::cell::UnsafeCell;

use super::nt::{
    ERESOURCE, ExDeleteResourceLite, ExEnterCriticalRegionAndAcquireResourceExclusive,
    ExEnterCriticalRegionAndAcquireResourceShared, ExInitializeResourceLite,
    ExReleaseResourceAndLeaveCriticalRegion, NTSTATUS,
};

/// An ERESOURCE in a static: initialize it before first use and delete it before unload.
pub struct Resource {
    resource: UnsafeCell<ERESOURCE>,
}

// SAFETY: an ERESOURCE is made to be shared between threads; the kernel synchronizes it.
unsafe impl Sync for Resource {}

/// Holds a resource, shared or exclusive, in a critical region, until dropped.
pub struct ResourceGuard<'a> {
    owner: &'a Resource,
}

impl Resource {
    pub const fn new() -> Self {
        Resource {
            // SAFETY: ERESOURCE is plain bytes until ExInitializeResourceLite fills them.
            resource: UnsafeCell::new(unsafe { core::mem::zeroed() }),
        }
    }

    /// # Safety
    /// Called once, at PASSIVE_LEVEL, before any other use.
    pub unsafe fn initialize(&self) -> NTSTATUS {
        // SAFETY: the caller guarantees this is the first use of the resource.
        unsafe { ExInitializeResourceLite(self.resource.get()) }
    }

    /// # Safety
    /// Called once, after [`Resource::initialize`] succeeded, when no one holds or will take
    /// the resource again.
    pub unsafe fn delete(&self) {
        // SAFETY: the caller guarantees the resource is initialized and idle.
        unsafe { ExDeleteResourceLite(self.resource.get()) };
    }

    pub fn shared(&self) -> ResourceGuard<'_> {
        // SAFETY: an initialized resource (the driver initializes it before any dispatch).
        unsafe { ExEnterCriticalRegionAndAcquireResourceShared(self.resource.get()) };
        ResourceGuard { owner: self }
    }

    pub fn exclusive(&self) -> ResourceGuard<'_> {
        // SAFETY: as in shared.
        unsafe { ExEnterCriticalRegionAndAcquireResourceExclusive(self.resource.get()) };
        ResourceGuard { owner: self }
    }
}

impl Default for Resource {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ResourceGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard acquired the resource and leaves the critical region it entered.
        unsafe { ExReleaseResourceAndLeaveCriticalRegion(self.owner.resource.get()) };
    }
}
