//! The adapter's device: the IRPs this driver takes over from NDIS's dispatch table (the ring
//! IOCTL, cleanup, close, PnP), the exit of a process that owns rings, and the lock that orders
//! all of them against adapters coming and going.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use oxtun_abi::{CallerWidth, TUN_IOCTL_REGISTER_RINGS};

use crate::adapter::Adapter;
use crate::rings::Caller;
use crate::sys::*;

/// Held exclusively by every registration change, every dispatch routine while it looks at a
/// device's adapter, and adapter initialize and halt: so an IRP never sees a halted adapter,
/// and a registration changes one step at a time.
static DEVICE_LOCK: Resource = Resource::new();

/// Every adapter, linked through `Adapter::next_adapter`, under [`DEVICE_LOCK`].
static ADAPTERS: AtomicPtr<Adapter> = AtomicPtr::new(null_mut());

/// One of NDIS's dispatch routines, saved when this driver hooks its slot.
struct SavedDispatch(AtomicUsize);

impl SavedDispatch {
    const fn new() -> Self {
        SavedDispatch(AtomicUsize::new(0))
    }

    fn save(&self, routine: Option<DRIVER_DISPATCH>) {
        self.0
            .store(routine.map_or(0, |f| f as usize), Ordering::Release);
    }

    /// Passes the IRP on to NDIS.
    ///
    /// # Safety
    /// `device` and `irp` are the dispatch routine's own arguments, not yet completed.
    unsafe fn call(&self, device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
        let routine = self.0.load(Ordering::Acquire);
        if routine == 0 {
            // SAFETY: the caller passes a live IRP that no one has completed.
            return unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST) };
        }
        // SAFETY: a non-zero value is a DRIVER_DISPATCH that NDIS installed (see save).
        let routine: DRIVER_DISPATCH = unsafe { core::mem::transmute(routine) };
        // SAFETY: NDIS's routine with the arguments it would have had.
        unsafe { routine(device, irp) }
    }
}

static NDIS_DEVICE_CONTROL: SavedDispatch = SavedDispatch::new();
static NDIS_CLEANUP: SavedDispatch = SavedDispatch::new();
static NDIS_CLOSE: SavedDispatch = SavedDispatch::new();
static NDIS_PNP: SavedDispatch = SavedDispatch::new();

/// Sets up the lock and the process-exit notification; undone by [`stop`].
pub fn start() -> NTSTATUS {
    // SAFETY: DriverEntry calls this once, before any adapter or IRP exists.
    let status = unsafe { DEVICE_LOCK.initialize() };
    if !NT_SUCCESS(status) {
        return status;
    }
    // SAFETY: a routine that stays valid until stop() removes it.
    let status = unsafe { PsSetCreateProcessNotifyRoutineEx(process_notify, 0) };
    if !NT_SUCCESS(status) {
        // SAFETY: initialized above, never used.
        unsafe { DEVICE_LOCK.delete() };
    }
    status
}

/// Undoes [`start`], once every adapter has halted.
pub fn stop() {
    // SAFETY: the routine start() registered, removed once.
    unsafe { PsSetCreateProcessNotifyRoutineEx(process_notify, 1) };
    // SAFETY: no adapter is left, so no one takes the lock again.
    unsafe { DEVICE_LOCK.delete() };
}

/// Takes over NDIS's dispatch routines for the IRPs this driver handles; NDIS installed them in
/// the driver object when the miniport registered.
///
/// # Safety
/// `driver_object` is the driver's own, in DriverEntry, after NdisMRegisterMiniportDriver.
pub unsafe fn hook_dispatch(driver_object: PDRIVER_OBJECT) {
    // SAFETY: the caller's driver object; no IRP arrives before DriverEntry returns.
    let major = unsafe { &mut (*driver_object).MajorFunction };
    NDIS_DEVICE_CONTROL.save(major[IRP_MJ_DEVICE_CONTROL]);
    NDIS_CLEANUP.save(major[IRP_MJ_CLEANUP]);
    NDIS_CLOSE.save(major[IRP_MJ_CLOSE]);
    NDIS_PNP.save(major[IRP_MJ_PNP]);
    major[IRP_MJ_DEVICE_CONTROL] = Some(dispatch_device_control);
    major[IRP_MJ_CLEANUP] = Some(dispatch_cleanup);
    major[IRP_MJ_CLOSE] = Some(dispatch_close);
    major[IRP_MJ_PNP] = Some(dispatch_pnp);
}

/// Makes the adapter reachable from its device's IRPs and from process exit.
pub fn attach(adapter: &Adapter) {
    let _lock = DEVICE_LOCK.exclusive();
    adapter.set_device_context(true);
    adapter
        .next_adapter
        .store(ADAPTERS.load(Ordering::Relaxed), Ordering::Relaxed);
    ADAPTERS.store((adapter as *const Adapter).cast_mut(), Ordering::Relaxed);
}

/// The adapter's last moment of reachability: its rings are torn down and no IRP finds it
/// after this.
pub fn detach(adapter: &Adapter) {
    let _lock = DEVICE_LOCK.exclusive();
    adapter.set_device_context(false);
    let target = (adapter as *const Adapter).cast_mut();
    let mut link = &ADAPTERS;
    loop {
        let current = link.load(Ordering::Relaxed);
        if current.is_null() {
            break;
        }
        // SAFETY: list members are live adapters: each leaves the list here, under the lock,
        // before it is freed.
        let next = unsafe { &(*current).next_adapter };
        if current == target {
            link.store(next.load(Ordering::Relaxed), Ordering::Relaxed);
            break;
        }
        link = next;
    }
    adapter.unregister(|_| true);
}

/// Completes an IRP with `status`.
///
/// # Safety
/// `irp` is live and not yet completed.
unsafe fn complete(irp: PIRP, status: NTSTATUS) -> NTSTATUS {
    // SAFETY: the caller's live IRP, completed once here.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = 0;
        IofCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

/// The adapter whose device this is, or `None` for a device that is not an adapter's (or no
/// longer is). Call with [`DEVICE_LOCK`] held.
///
/// # Safety
/// `device` is a live device object of this driver.
unsafe fn adapter_of<'a>(device: PDEVICE_OBJECT) -> Option<&'a Adapter> {
    // SAFETY: Reserved holds an adapter from attach to detach, both under the lock held here.
    unsafe { (*device).Reserved.cast::<Adapter>().as_ref() }
}

unsafe extern "efiapi" fn dispatch_device_control(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes a live IRP with its stack location.
    let stack = unsafe { &*IoGetCurrentIrpStackLocation(irp) };
    if stack.IoControlCode != TUN_IOCTL_REGISTER_RINGS {
        // SAFETY: passing the dispatch routine's own arguments on.
        return unsafe { NDIS_DEVICE_CONTROL.call(device, irp) };
    }
    let lock = DEVICE_LOCK.exclusive();
    // SAFETY: a live device of this driver, looked at under the lock.
    let Some(adapter) = (unsafe { adapter_of(device) }) else {
        drop(lock);
        // SAFETY: as above.
        return unsafe { NDIS_DEVICE_CONTROL.call(device, irp) };
    };
    // SAFETY: the IRP's fields, read while it is ours.
    let (mode, system_buffer) = unsafe { ((*irp).RequestorMode, (*irp).SystemBuffer) };
    let status = if !caller_is_system_or_administrator(mode) {
        STATUS_ACCESS_DENIED
    } else {
        let input: &[u8] = if system_buffer.is_null() {
            &[]
        } else {
            // SAFETY: METHOD_BUFFERED: the I/O manager copied InputBufferLength bytes of the
            // caller's input into the system buffer, which is ours until completion.
            unsafe {
                core::slice::from_raw_parts(system_buffer.cast(), stack.InputBufferLength as usize)
            }
        };
        // SAFETY: the live IRP, and the current process (the caller's: this is the top of
        // the device stack, called in the caller's context).
        let (is_32_bit, process) = unsafe { (IoIs32bitProcess(irp) != 0, IoGetCurrentProcess()) };
        let caller = Caller {
            mode,
            width: if is_32_bit {
                CallerWidth::Bits32
            } else {
                CallerWidth::Bits64
            },
            file: stack.FileObject as usize,
            process: process as usize,
        };
        adapter.register_rings(input, &caller)
    };
    drop(lock);
    // SAFETY: the live IRP, completed once.
    unsafe { complete(irp, status) }
}

/// The owner's handle is closing (cleanup) or its file object going away (close): either ends
/// the registration it owns.
///
/// # Safety
/// A dispatch routine's own arguments.
unsafe fn end_owned_registration(device: PDEVICE_OBJECT, irp: PIRP) {
    // SAFETY: the I/O manager passes a live IRP with its stack location.
    let file = unsafe { (*IoGetCurrentIrpStackLocation(irp)).FileObject } as usize;
    let _lock = DEVICE_LOCK.exclusive();
    // SAFETY: a live device of this driver, looked at under the lock.
    if let Some(adapter) = unsafe { adapter_of(device) } {
        adapter.unregister(|registration| registration.owner_file == file);
    }
}

unsafe extern "efiapi" fn dispatch_cleanup(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments, passed on.
    unsafe {
        end_owned_registration(device, irp);
        NDIS_CLEANUP.call(device, irp)
    }
}

unsafe extern "efiapi" fn dispatch_close(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments, passed on.
    unsafe {
        end_owned_registration(device, irp);
        NDIS_CLOSE.call(device, irp)
    }
}

/// Before the device may be removed, or once it is gone, the rings end: the client sees the
/// end, closes its handle, and removal is not held up by it.
unsafe extern "efiapi" fn dispatch_pnp(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager passes a live IRP with its stack location.
    let minor = unsafe { (*IoGetCurrentIrpStackLocation(irp)).MinorFunction };
    if minor == IRP_MN_QUERY_REMOVE_DEVICE || minor == IRP_MN_SURPRISE_REMOVAL {
        let _lock = DEVICE_LOCK.exclusive();
        // SAFETY: a live device of this driver, looked at under the lock.
        if let Some(adapter) = unsafe { adapter_of(device) } {
            adapter.unregister(|_| true);
        }
    }
    // SAFETY: the dispatch routine's own arguments, passed on.
    unsafe { NDIS_PNP.call(device, irp) }
}

/// A process that registered rings exits: its registrations end before its address space
/// (and the pages locked in it) goes away, even if a duplicated handle keeps the file open.
unsafe extern "efiapi" fn process_notify(process: PEPROCESS, _id: HANDLE, create_info: PVOID) {
    if !create_info.is_null() {
        return;
    }
    let _lock = DEVICE_LOCK.exclusive();
    let mut current = ADAPTERS.load(Ordering::Relaxed);
    // SAFETY: list members are live adapters under the lock (see detach).
    while let Some(adapter) = unsafe { current.as_ref() } {
        adapter.unregister(|registration| registration.owner_process == process as usize);
        current = adapter.next_adapter.load(Ordering::Relaxed);
    }
}
