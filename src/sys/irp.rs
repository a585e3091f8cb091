//! The I/O requests this driver takes over from NDIS's dispatch table, as values: read through
//! accessors, then completed or handed back to NDIS, each of which consumes the request, so the
//! compiler sees that every IRP ends exactly once.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::nt::*;

/// A device object of this driver (an adapter's functional device object), by identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceObject(NonNull<DEVICE_OBJECT>);

// SAFETY: a device object is a kernel object any thread may name; this type never dereferences
// it.
unsafe impl Send for DeviceObject {}
// SAFETY: as for Send.
unsafe impl Sync for DeviceObject {}

impl DeviceObject {
    /// `None` for a null pointer.
    pub fn from_raw(device: PDEVICE_OBJECT) -> Option<Self> {
        NonNull::new(device).map(DeviceObject)
    }

    pub fn as_raw(self) -> PDEVICE_OBJECT {
        self.0.as_ptr()
    }
}

/// A referenced file object: the identity of an open of the device, kept alive (and its address
/// not reused) until dropped.
pub struct FileReference(NonNull<FILE_OBJECT>);

// SAFETY: a referenced kernel object may be used and dereferenced from any thread.
unsafe impl Send for FileReference {}
// SAFETY: as for Send; the type gives out only the address.
unsafe impl Sync for FileReference {}

impl FileReference {
    /// The file object's address, to compare with others.
    pub fn identity(&self) -> usize {
        self.0.as_ptr() as usize
    }

    pub fn as_raw(&self) -> PFILE_OBJECT {
        self.0.as_ptr()
    }

    /// Another reference to the same file object.
    pub fn try_clone(&self) -> Self {
        // SAFETY: the object is live (self holds a reference); this takes one more.
        unsafe { ObfReferenceObject(self.0.as_ptr().cast()) };
        FileReference(self.0)
    }
}

impl Drop for FileReference {
    fn drop(&mut self) {
        // SAFETY: drops the reference `Irp::reference_file_object` took (the last one may send
        // the device IRP_MJ_CLOSE, in whatever context this runs: the dispatch routines expect
        // it).
        unsafe { ObfDereferenceObject(self.0.as_ptr().cast()) };
    }
}

/// A live IRP this driver received in a dispatch routine and has not completed or passed on.
#[must_use = "an IRP must be completed or passed on"]
pub struct Irp {
    irp: NonNull<IRP>,
}

impl Irp {
    /// # Safety
    /// `irp` is the IRP a dispatch routine was called with, with its current stack location,
    /// and nothing has completed it or passed it on.
    pub unsafe fn from_raw(irp: PIRP) -> Self {
        Irp {
            // SAFETY: the I/O manager never dispatches a null IRP.
            irp: unsafe { NonNull::new_unchecked(irp) },
        }
    }

    fn stack(&self) -> &IO_STACK_LOCATION {
        // SAFETY: a live IRP (the type's invariant) has a current stack location, valid as long
        // as the IRP.
        unsafe { &*(*self.irp.as_ptr()).CurrentStackLocation }
    }

    pub fn minor_function(&self) -> u8 {
        self.stack().MinorFunction
    }

    /// `Parameters.DeviceIoControl.IoControlCode`, for IRP_MJ_DEVICE_CONTROL.
    pub fn ioctl_code(&self) -> ULONG {
        self.stack().IoControlCode
    }

    /// The file object the request came through, by address.
    pub fn file_object(&self) -> usize {
        self.stack().FileObject as usize
    }

    /// A reference to the file object the request came through, if it has one.
    pub fn reference_file_object(&self) -> Option<FileReference> {
        let file = NonNull::new(self.stack().FileObject)?;
        // SAFETY: the IRP's file object is live while the IRP is; this takes a reference of our
        // own, which FileReference drops.
        unsafe { ObfReferenceObject(file.as_ptr().cast()) };
        Some(FileReference(file))
    }

    /// UserMode or KernelMode: who issued the request.
    pub fn requestor_mode(&self) -> KPROCESSOR_MODE {
        // SAFETY: a live IRP (the type's invariant).
        unsafe { (*self.irp.as_ptr()).RequestorMode }
    }

    /// The process the request came from (its EPROCESS), by address: the current one, since this
    /// driver's device is the top of its stack and is called in the requester's context.
    pub fn process(&self) -> usize {
        // SAFETY: no preconditions.
        unsafe { IoGetCurrentProcess() as usize }
    }

    /// Whether the issuing process is 32-bit (WOW64).
    pub fn from_32_bit_process(&self) -> bool {
        // SAFETY: a live IRP, as IoIs32bitProcess requires.
        unsafe { IoIs32bitProcess(self.irp.as_ptr()) != 0 }
    }

    /// The caller's input of a METHOD_BUFFERED IOCTL, as the I/O manager copied it.
    pub fn buffered_input(&self) -> &[u8] {
        // SAFETY: a live IRP (the type's invariant).
        let buffer = unsafe { (*self.irp.as_ptr()).SystemBuffer };
        if buffer.is_null() {
            return &[];
        }
        let len = self.stack().InputBufferLength as usize;
        // SAFETY: METHOD_BUFFERED: the system buffer holds InputBufferLength bytes of input,
        // the driver's until the IRP completes, which takes `self` and so ends this borrow.
        unsafe { core::slice::from_raw_parts(buffer.cast(), len) }
    }

    /// Completes the request with `status`, which the dispatch routine then returns.
    pub fn complete(self, status: NTSTATUS) -> NTSTATUS {
        let irp = self.irp.as_ptr();
        // SAFETY: a live IRP, completed once: `self` is consumed.
        unsafe {
            (*irp).IoStatus.Status = status;
            (*irp).IoStatus.Information = 0;
            IofCompleteRequest(irp, IO_NO_INCREMENT);
        }
        status
    }
}

/// One of NDIS's dispatch routines, kept when this driver takes its slot over, to pass requests
/// on to.
pub struct SavedDispatch(AtomicUsize);

impl SavedDispatch {
    pub const fn new() -> Self {
        SavedDispatch(AtomicUsize::new(0))
    }

    /// Puts `routine` in the driver object's `major` slot, keeping what was there.
    ///
    /// # Safety
    /// `driver_object` is this driver's, in DriverEntry after NdisMRegisterMiniportDriver filled
    /// its dispatch table, before any IRP can arrive.
    pub unsafe fn take_over(
        &self,
        driver_object: PDRIVER_OBJECT,
        major: usize,
        routine: DRIVER_DISPATCH,
    ) {
        // SAFETY: the caller's driver object, not in use by anyone else yet.
        let slot = unsafe { &mut (*driver_object).MajorFunction[major] };
        // The I/O manager fills every slot (unused ones with its invalid-request routine) and
        // NDIS sets its own in all of them, so there is always a routine to keep.
        let saved = slot.map_or(0, |routine| routine as usize);
        self.0.store(saved, Ordering::Release);
        *slot = Some(routine);
    }

    /// Passes the request on to NDIS's routine.
    pub fn forward(&self, device: DeviceObject, irp: Irp) -> NTSTATUS {
        let routine = self.0.load(Ordering::Acquire);
        if routine == 0 {
            return irp.complete(STATUS_INVALID_DEVICE_REQUEST);
        }
        // SAFETY: a non-zero value is the DRIVER_DISPATCH take_over found in the slot.
        let routine: DRIVER_DISPATCH = unsafe { core::mem::transmute(routine) };
        // SAFETY: NDIS's routine with the arguments it would have had; the IRP is handed over
        // (`irp` is consumed).
        unsafe { routine(device.as_raw(), irp.irp.as_ptr()) }
    }
}

impl Default for SavedDispatch {
    fn default() -> Self {
        Self::new()
    }
}
