//! The adapters' devices: the IRPs this driver takes over from NDIS's dispatch table (the ring
//! IOCTL, cleanup, close, PnP), the exit of a process that owns rings, and the list through
//! which both reach an adapter.
//!
//! The list's lock is a spin lock held only to walk or change the list: nothing waits under it.
//! Whoever finds an adapter there holds its rundown protection (`Adapter::users`) while it uses
//! it; halt takes the adapter off the list, then waits for them. So a process exiting, which
//! every process in the system does, takes the lock for a moment and does nothing more unless it
//! owns rings.

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use oxtun_abi::{CallerWidth, TUN_IOCTL_REGISTER_RINGS, TUN_IOCTL_REGISTER_RINGS_EX};

use crate::adapter::Adapter;
use crate::rings::{Caller, Owner, RegistrationIoctl};
use crate::sys::*;

/// The first adapter of the driver's list, linked through `Adapter::next`; both changed only
/// under the list's lock.
static ADAPTERS: SpinLock<AtomicPtr<Adapter>> = SpinLock::new(AtomicPtr::new(null_mut()));

static NDIS_DEVICE_CONTROL: SavedDispatch = SavedDispatch::new();
static NDIS_CLEANUP: SavedDispatch = SavedDispatch::new();
static NDIS_CLOSE: SavedDispatch = SavedDispatch::new();
static NDIS_PNP: SavedDispatch = SavedDispatch::new();

/// Registers the process-exit notification; undone by [`stop`].
pub fn start() -> NTSTATUS {
    // SAFETY: a routine that stays valid until stop() removes it.
    unsafe { PsSetCreateProcessNotifyRoutineEx(process_notify, 0) }
}

/// Undoes [`start`], once every adapter has halted.
pub fn stop() {
    // SAFETY: the routine start() registered, removed once (which waits for calls under way).
    unsafe { PsSetCreateProcessNotifyRoutineEx(process_notify, 1) };
}

/// Takes over NDIS's dispatch routines for the IRPs this driver handles; NDIS installed them in
/// the driver object when the miniport registered.
///
/// # Safety
/// `driver_object` is the driver's own, in DriverEntry, after NdisMRegisterMiniportDriver.
pub unsafe fn hook_dispatch(driver_object: PDRIVER_OBJECT) {
    let routines: [(&SavedDispatch, usize, DRIVER_DISPATCH); 4] = [
        (
            &NDIS_DEVICE_CONTROL,
            IRP_MJ_DEVICE_CONTROL,
            dispatch_device_control,
        ),
        (&NDIS_CLEANUP, IRP_MJ_CLEANUP, dispatch_cleanup),
        (&NDIS_CLOSE, IRP_MJ_CLOSE, dispatch_close),
        (&NDIS_PNP, IRP_MJ_PNP, dispatch_pnp),
    ];
    for (saved, major, routine) in routines {
        // SAFETY: as the function's contract says.
        unsafe { saved.take_over(driver_object, major, routine) };
    }
}

/// Makes the adapter reachable from its device's IRPs and from process exit.
pub fn attach(adapter: &Adapter) {
    let first = ADAPTERS.lock();
    adapter
        .next
        .store(first.load(Ordering::Relaxed), Ordering::Relaxed);
    first.store((adapter as *const Adapter).cast_mut(), Ordering::Relaxed);
}

/// Makes the adapter unreachable, then waits for those who reached it to be done with it.
pub fn detach(adapter: &Adapter) {
    {
        let first = ADAPTERS.lock();
        let target = (adapter as *const Adapter).cast_mut();
        let mut link: &AtomicPtr<Adapter> = &first;
        while let Some(current) = NonNull::new(link.load(Ordering::Relaxed)) {
            // SAFETY: list members are live adapters: each leaves the list here, before it is
            // freed, and the lock is held.
            let next = unsafe { &current.as_ref().next };
            if current.as_ptr() == target {
                link.store(next.load(Ordering::Relaxed), Ordering::Relaxed);
                break;
            }
            link = next;
        }
    }
    adapter.users.wait_for_release();
}

/// An adapter found on the list, kept from halting until this is dropped.
struct AdapterRef {
    adapter: NonNull<Adapter>,
    _protection: RundownProtection<'static>,
}

impl core::ops::Deref for AdapterRef {
    type Target = Adapter;

    fn deref(&self) -> &Adapter {
        // SAFETY: the protection this value holds keeps the adapter from being freed (halt waits
        // for it after taking the adapter off the list).
        unsafe { self.adapter.as_ref() }
    }
}

/// The first adapter on the list that `matches` picks and that is not halting.
fn find(matches: impl Fn(&Adapter) -> bool) -> Option<AdapterRef> {
    let first = ADAPTERS.lock();
    let mut current = NonNull::new(first.load(Ordering::Relaxed));
    while let Some(adapter) = current {
        // SAFETY: list members are live adapters while the lock is held, and for as long as
        // rundown protection is held on them; the reference outlives the lock only with it.
        let adapter_ref: &'static Adapter = unsafe { adapter.as_ref() };
        if matches(adapter_ref)
            && let Some(protection) = adapter_ref.users.acquire()
        {
            return Some(AdapterRef {
                adapter,
                _protection: protection,
            });
        }
        current = NonNull::new(adapter_ref.next.load(Ordering::Relaxed));
    }
    None
}

/// The adapter whose device this is.
fn adapter_of(device: DeviceObject) -> Option<AdapterRef> {
    find(|adapter| adapter.device == device)
}

/// The I/O manager's arguments to a dispatch routine, as values.
///
/// # Safety
/// A dispatch routine's own arguments.
unsafe fn request(device: PDEVICE_OBJECT, irp: PIRP) -> (DeviceObject, Irp) {
    let device = DeviceObject::from_raw(device).expect("the I/O manager names the device");
    // SAFETY: a dispatch routine's live IRP, as the caller says.
    (device, unsafe { Irp::from_raw(irp) })
}

unsafe extern "efiapi" fn dispatch_device_control(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments.
    let (device, irp) = unsafe { request(device, irp) };
    let ioctl = match irp.ioctl_code() {
        TUN_IOCTL_REGISTER_RINGS => RegistrationIoctl::Plain,
        TUN_IOCTL_REGISTER_RINGS_EX => RegistrationIoctl::Extended,
        _ => return NDIS_DEVICE_CONTROL.forward(device, irp),
    };
    let status = if !caller_is_system_or_administrator(irp.requestor_mode()) {
        STATUS_ACCESS_DENIED
    } else if let Some(adapter) = adapter_of(device) {
        register(&adapter, &irp, ioctl)
    } else {
        // The adapter halted, or is halting: as Wintun answers then.
        NDIS_STATUS_ADAPTER_NOT_READY
    };
    irp.complete(status)
}

fn register(adapter: &Adapter, irp: &Irp, ioctl: RegistrationIoctl) -> NTSTATUS {
    let Some(file) = irp.reference_file_object() else {
        return STATUS_INVALID_PARAMETER;
    };
    let caller = Caller {
        mode: irp.requestor_mode(),
        width: if irp.from_32_bit_process() {
            CallerWidth::Bits32
        } else {
            CallerWidth::Bits64
        },
        file,
        process: irp.process(),
    };
    adapter.register_rings(irp.buffered_input(), ioctl, caller)
}

/// The owner's handle is closing (cleanup) or its file object going away (close, which may come
/// in any thread's context, even from within a teardown that dropped the last reference):
/// either ends the registration it owns.
fn end_owned_registration(device: DeviceObject, irp: &Irp) {
    if let Some(adapter) = adapter_of(device) {
        drop(adapter.end_registration(Owner::File(irp.file_object())));
    }
}

unsafe extern "efiapi" fn dispatch_cleanup(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments.
    let (device, irp) = unsafe { request(device, irp) };
    end_owned_registration(device, &irp);
    NDIS_CLEANUP.forward(device, irp)
}

unsafe extern "efiapi" fn dispatch_close(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments.
    let (device, irp) = unsafe { request(device, irp) };
    end_owned_registration(device, &irp);
    NDIS_CLOSE.forward(device, irp)
}

/// Before the device may be removed, or once it is gone, the rings end, so the client sees the
/// end; then, if the owner is a user-mode process, its handles to the device are closed, as
/// Wintun closes them, since PnP will not remove a device that has open handles: disabling or
/// uninstalling the adapter completes even if the client never closes its handle. (Its handle
/// stops working: calls on it fail with an invalid handle; docs/compatibility.md.) A kernel
/// component's handles are kernel handles, never closed under it: it closes them itself, and
/// removal waits for that.
unsafe extern "efiapi" fn dispatch_pnp(device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the dispatch routine's own arguments.
    let (device, irp) = unsafe { request(device, irp) };
    let minor = irp.minor_function();
    if (minor == IRP_MN_QUERY_REMOVE_DEVICE || minor == IRP_MN_SURPRISE_REMOVAL)
        && let Some(adapter) = adapter_of(device)
        && let Some(Some(owner_file)) = adapter.end_registration(Owner::Any)
    {
        drop(adapter);
        close_user_handles(&owner_file);
    }
    NDIS_PNP.forward(device, irp)
}

/// A process that registered rings exits: its registrations end before its address space (and
/// the pages locked in it) goes away, even if a duplicated handle keeps the file open. Any
/// other process passes through with one short look at the list.
unsafe extern "efiapi" fn process_notify(process: PEPROCESS, _id: HANDLE, create_info: PVOID) {
    if !create_info.is_null() {
        return;
    }
    let owner = Owner::Process(process as usize);
    while let Some(adapter) = find(|adapter| adapter.has_registration_of(owner)) {
        adapter.end_registration_and_wait(owner);
    }
}
