//! What a user process hands the driver: memory to lock and map, and event handles.

use core::ptr::{NonNull, null_mut};

use super::nt::*;

/// A caller's buffer, probed and locked, and mapped into system space no-execute. Unmapped,
/// unlocked and freed on drop.
pub struct LockedUserBuffer {
    mdl: NonNull<MDL>,
    system_address: NonNull<u8>,
    user_address: usize,
}

/// The MDL of a [`LockedUserBuffer`], for describing parts of it in place.
#[derive(Clone, Copy)]
pub struct LockedPages {
    pub(super) mdl: NonNull<MDL>,
    pub(super) user_address: usize,
}

// SAFETY: an MDL of locked pages may be used from any thread.
unsafe impl Send for LockedPages {}
// SAFETY: as for Send.
unsafe impl Sync for LockedPages {}

// SAFETY: the locked pages and their system mapping may be used from any thread.
unsafe impl Send for LockedUserBuffer {}
// SAFETY: as for Send; the buffer hands out only raw addresses.
unsafe impl Sync for LockedUserBuffer {}

impl LockedUserBuffer {
    /// Locks `len` bytes at `address` in the current process, checked for writing with the
    /// caller's `mode`. Memory that cannot be probed and locked (unmapped, read-only, a kernel
    /// address from user mode) fails with STATUS_INVALID_USER_BUFFER, as Wintun answers it.
    pub fn lock(address: u64, len: u32, mode: KPROCESSOR_MODE) -> Result<Self, NTSTATUS> {
        let address = usize::try_from(address).map_err(|_| STATUS_INVALID_PARAMETER)?;
        if address == 0 || len == 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        // SAFETY: IoAllocateMdl only records the address; nothing is touched yet.
        let mdl = unsafe { IoAllocateMdl(address as PVOID, len, 0, 0, null_mut()) };
        let mdl = NonNull::new(mdl).ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
        // SAFETY: a fresh MDL; the shim catches the exception a bad address raises.
        let status = unsafe { OxtunProbeAndLockPages(mdl.as_ptr(), mode, IoWriteAccess) };
        if !NT_SUCCESS(status) {
            // SAFETY: the MDL is ours and describes no locked pages.
            unsafe { IoFreeMdl(mdl.as_ptr()) };
            return Err(STATUS_INVALID_USER_BUFFER);
        }
        // SAFETY: the MDL's pages are locked; the mapping is kernel-mode, cached, no-execute.
        let system_address = unsafe {
            MmMapLockedPagesSpecifyCache(
                mdl.as_ptr(),
                KernelMode,
                MmCached,
                null_mut(),
                0,
                NormalPagePriority | MdlMappingNoExecute,
            )
        };
        let Some(system_address) = NonNull::new(system_address.cast::<u8>()) else {
            // SAFETY: locked above, not mapped; unlock, then free.
            unsafe {
                MmUnlockPages(mdl.as_ptr());
                IoFreeMdl(mdl.as_ptr());
            }
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        };
        Ok(LockedUserBuffer {
            mdl,
            system_address,
            user_address: address,
        })
    }

    /// The locked pages, for describing parts of them in place (see
    /// [`PacketNbl`](super::PacketNbl)); valid only while this buffer lives.
    pub fn pages(&self) -> LockedPages {
        LockedPages {
            mdl: self.mdl,
            user_address: self.user_address,
        }
    }

    /// Where the buffer is mapped in system space.
    pub fn system_address(&self) -> NonNull<u8> {
        self.system_address
    }
}

impl Drop for LockedUserBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping, the lock and the MDL were made by `lock`, undone once, in
        // reverse order.
        unsafe {
            MmUnmapLockedPages(self.system_address.as_ptr().cast(), self.mdl.as_ptr());
            MmUnlockPages(self.mdl.as_ptr());
            IoFreeMdl(self.mdl.as_ptr());
        }
    }
}

/// An event object the driver holds a reference to, from a caller's handle.
pub struct EventReference {
    event: NonNull<KEVENT>,
}

// SAFETY: a referenced kernel event may be set and waited on from any thread.
unsafe impl Send for EventReference {}
// SAFETY: as for Send.
unsafe impl Sync for EventReference {}

impl EventReference {
    /// References the event `handle` names in the current process, if it is an event and the
    /// handle grants `access` (checked for a `mode` caller).
    pub fn from_handle(
        handle: u64,
        access: ACCESS_MASK,
        mode: KPROCESSOR_MODE,
    ) -> Result<Self, NTSTATUS> {
        let handle = usize::try_from(handle).map_err(|_| STATUS_INVALID_PARAMETER)? as HANDLE;
        let mut object = null_mut();
        // SAFETY: the kernel validates the handle, its type and its access; `object` is a
        // local out parameter.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle,
                access,
                ExEventObjectType,
                mode,
                &mut object,
                null_mut(),
            )
        };
        if !NT_SUCCESS(status) {
            return Err(status);
        }
        let event = NonNull::new(object.cast::<KEVENT>()).ok_or(STATUS_INVALID_PARAMETER)?;
        Ok(EventReference { event })
    }

    /// Another reference to the same event.
    pub fn try_clone(&self) -> Self {
        // SAFETY: the object is live (self holds a reference); this takes one more.
        unsafe { ObfReferenceObject(self.event.as_ptr().cast()) };
        EventReference { event: self.event }
    }

    /// The event object, to wait on.
    pub(super) fn event_object(&self) -> PVOID {
        self.event.as_ptr().cast()
    }

    pub fn set(&self) {
        // SAFETY: a referenced event object; KeSetEvent may be called up to DISPATCH_LEVEL.
        unsafe { KeSetEvent(self.event.as_ptr(), IO_NO_INCREMENT.into(), 0) };
    }

    /// Resets the event (a manual-reset one stays set until then; an auto-reset one is reset by
    /// the wait it ends). The handle granted EVENT_MODIFY_STATE.
    pub fn clear(&self) {
        // SAFETY: a referenced event object; KeClearEvent may be called up to DISPATCH_LEVEL.
        unsafe { KeClearEvent(self.event.as_ptr()) };
    }
}

impl Drop for EventReference {
    fn drop(&mut self) {
        // SAFETY: drops the reference from_handle took.
        unsafe { ObfDereferenceObject(self.event.as_ptr().cast()) };
    }
}
