//! NT kernel types and functions (wdm.h, ntddk.h).

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type ULONG = u32;
pub type ULONG_PTR = usize;
pub type PVOID = *mut c_void;

pub const STATUS_SUCCESS: NTSTATUS = 0;

/// `NT_SUCCESS()`.
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

pub type KIRQL = u8;
pub const PASSIVE_LEVEL: KIRQL = 0;
pub const APC_LEVEL: KIRQL = 1;
pub const DISPATCH_LEVEL: KIRQL = 2;

/// `KSPIN_LOCK`; zero is the initialized, released state (`KeInitializeSpinLock`).
pub type KSPIN_LOCK = usize;

pub type POOL_FLAGS = u64;
pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x40;

/// `IRP_MJ_*`: indices into `DRIVER_OBJECT::MajorFunction`.
pub const IRP_MJ_CREATE: usize = 0x00;
pub const IRP_MJ_CLOSE: usize = 0x02;
pub const IRP_MJ_DEVICE_CONTROL: usize = 0x0E;
pub const IRP_MJ_CLEANUP: usize = 0x12;
pub const IRP_MJ_PNP: usize = 0x1B;
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1B;

/// `IRP`; its fields are declared where the driver reads them.
#[repr(C)]
pub struct IRP {
    _opaque: [u8; 0],
}
pub type PIRP = *mut IRP;

pub type DRIVER_DISPATCH =
    unsafe extern "system" fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS;
pub type DRIVER_UNLOAD = unsafe extern "system" fn(DriverObject: PDRIVER_OBJECT);

/// `DRIVER_OBJECT`.
#[repr(C)]
pub struct DRIVER_OBJECT {
    pub Type: i16,
    pub Size: i16,
    pub DeviceObject: PDEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: PUNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: PVOID,
    pub DriverStartIo: PVOID,
    pub DriverUnload: Option<DRIVER_UNLOAD>,
    pub MajorFunction: [Option<DRIVER_DISPATCH>; IRP_MJ_MAXIMUM_FUNCTION + 1],
}
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `DEVICE_OBJECT`: the driver only uses `Reserved`, where it keeps its adapter for the FDO.
#[repr(C, align(16))]
pub struct DEVICE_OBJECT {
    pub Type: i16,
    pub Size: u16,
    pub ReferenceCount: i32,
    pub DriverObject: PDRIVER_OBJECT,
    pub _undeclared: [u8; 0x140 - 0x10],
    pub Reserved: PVOID,
}
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(DRIVER_OBJECT, DriverName) == 0x38);
    assert!(offset_of!(DRIVER_OBJECT, DriverUnload) == 0x68);
    assert!(offset_of!(DRIVER_OBJECT, MajorFunction) == 0x70);
    assert!(size_of::<DRIVER_OBJECT>() == 0x150);
    assert!(offset_of!(DEVICE_OBJECT, DriverObject) == 0x08);
    assert!(offset_of!(DEVICE_OBJECT, Reserved) == 0x140);
    assert!(size_of::<DEVICE_OBJECT>() == 0x150);
};

/// `UNICODE_STRING`, as the registry path DriverEntry receives.
#[repr(C)]
pub struct UNICODE_STRING {
    pub Length: u16,
    pub MaximumLength: u16,
    pub Buffer: *mut u16,
}
pub type PUNICODE_STRING = *mut UNICODE_STRING;

const _: () = {
    assert!(core::mem::size_of::<UNICODE_STRING>() == 16);
    assert!(core::mem::offset_of!(UNICODE_STRING, Buffer) == 8);
};

#[cfg_attr(
    windows,
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: ULONG) -> PVOID;
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    pub fn KeAcquireSpinLockRaiseToDpc(SpinLock: *mut KSPIN_LOCK) -> KIRQL;
    pub fn KeReleaseSpinLock(SpinLock: *mut KSPIN_LOCK, NewIrql: KIRQL);

    /// Stops the system with a bug check; never returns.
    pub fn KeBugCheckEx(
        BugCheckCode: ULONG,
        BugCheckParameter1: ULONG_PTR,
        BugCheckParameter2: ULONG_PTR,
        BugCheckParameter3: ULONG_PTR,
        BugCheckParameter4: ULONG_PTR,
    ) -> !;
}

/// `KeGetCurrentIrql`: on x64 the IRQL is the task priority register, CR8.
#[cfg(all(windows, target_arch = "x86_64"))]
pub fn KeGetCurrentIrql() -> KIRQL {
    let irql: u64;
    // SAFETY: reading CR8 is how the kernel itself reads the IRQL in kernel mode; no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) irql, options(nomem, nostack, preserves_flags))
    };
    irql as KIRQL
}

/// `KeGetCurrentIrql`: the simulated kernel tracks the IRQL of each thread.
#[cfg(not(windows))]
pub fn KeGetCurrentIrql() -> KIRQL {
    unsafe extern "system" {
        #[link_name = "KeGetCurrentIrql"]
        fn simulated_irql() -> KIRQL;
    }
    // SAFETY: the simulated kernel's export takes nothing and only reads thread state.
    unsafe { simulated_irql() }
}
