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
pub const POOL_FLAG_PAGED: POOL_FLAGS = 0x100;

/// `IRP_MJ_*`: indices into `DRIVER_OBJECT::MajorFunction`.
pub const IRP_MJ_CREATE: usize = 0x00;
pub const IRP_MJ_CLOSE: usize = 0x02;
pub const IRP_MJ_DEVICE_CONTROL: usize = 0x0E;
pub const IRP_MJ_CLEANUP: usize = 0x12;
pub const IRP_MJ_PNP: usize = 0x1B;
pub const IRP_MJ_MAXIMUM_FUNCTION: usize = 0x1B;

pub const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000D_u32 as i32;
pub const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;
pub const STATUS_ACCESS_DENIED: NTSTATUS = 0xC000_0022_u32 as i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = 0xC000_009A_u32 as i32;
pub const STATUS_ALREADY_INITIALIZED: NTSTATUS = 0xC000_0510_u32 as i32;
pub const STATUS_INVALID_USER_BUFFER: NTSTATUS = 0xC000_00E8_u32 as i32;
pub const STATUS_REVISION_MISMATCH: NTSTATUS = 0xC000_0059_u32 as i32;
pub const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BB_u32 as i32;
pub const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32 as i32;

pub type HANDLE = PVOID;
pub type ACCESS_MASK = ULONG;
pub const FILE_READ_DATA: ACCESS_MASK = 0x0001;
pub const FILE_WRITE_DATA: ACCESS_MASK = 0x0002;
pub const FILE_ALL_ACCESS: ACCESS_MASK = 0x001F_01FF;
pub const SYNCHRONIZE: ACCESS_MASK = 0x0010_0000;
pub const EVENT_MODIFY_STATE: ACCESS_MASK = 0x0002;

/// `IO_STATUS_BLOCK`.
#[repr(C)]
pub struct IO_STATUS_BLOCK {
    pub Status: NTSTATUS,
    pub Information: ULONG_PTR,
}

/// `IRP`, up to the fields the driver uses (the rest is declared as bytes to keep offsets).
#[repr(C)]
pub struct IRP {
    pub Type: i16,
    pub Size: u16,
    pub AllocationProcessorNumber: u16,
    pub Reserved: u16,
    pub MdlAddress: PMDL,
    pub Flags: ULONG,
    /// `AssociatedIrp.SystemBuffer` for METHOD_BUFFERED requests.
    pub SystemBuffer: PVOID,
    pub ThreadListEntry: [PVOID; 2],
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: u8,
    pub StackCount: i8,
    pub CurrentLocation: i8,
    pub Cancel: u8,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: i8,
    pub AllocationFlags: u8,
    pub UserIosb: PVOID,
    pub UserEvent: PVOID,
    pub Overlay: [PVOID; 2],
    pub CancelRoutine: PVOID,
    pub UserBuffer: PVOID,
    /// `Tail.Overlay.DriverContext`.
    pub DriverContext: [PVOID; 4],
    pub Thread: PVOID,
    pub AuxiliaryBuffer: PVOID,
    pub ListEntry: [PVOID; 2],
    /// `Tail.Overlay.CurrentStackLocation`.
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    pub OriginalFileObject: PVOID,
    /// The rest of the `Tail` union (its KAPC member is the longest).
    pub TailRest: PVOID,
}
pub type PIRP = *mut IRP;

/// `IO_STACK_LOCATION`, with the `Parameters.DeviceIoControl` member of its union (the other
/// members the driver uses carry no parameters it reads).
#[repr(C)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: u8,
    pub MinorFunction: u8,
    pub Flags: u8,
    pub Control: u8,
    // Each ULONG of the parameters is POINTER_ALIGNMENT: 8-byte aligned on x64.
    _padding0: u32,
    pub OutputBufferLength: ULONG,
    _padding1: u32,
    pub InputBufferLength: ULONG,
    _padding2: u32,
    pub IoControlCode: ULONG,
    _padding3: u32,
    pub Type3InputBuffer: PVOID,
    pub DeviceObject: PDEVICE_OBJECT,
    pub FileObject: PFILE_OBJECT,
    pub CompletionRoutine: PVOID,
    pub Context: PVOID,
}

/// `FILE_OBJECT`: only its identity matters to the driver.
#[repr(C)]
pub struct FILE_OBJECT {
    _opaque: [u8; 0],
}
pub type PFILE_OBJECT = *mut FILE_OBJECT;

pub const IO_NO_INCREMENT: i8 = 0;
pub const IRP_MN_QUERY_REMOVE_DEVICE: u8 = 0x01;
pub const IRP_MN_SURPRISE_REMOVAL: u8 = 0x17;

#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(IRP, MdlAddress) == 0x08);
    assert!(offset_of!(IRP, SystemBuffer) == 0x18);
    assert!(offset_of!(IRP, IoStatus) == 0x30);
    assert!(offset_of!(IRP, RequestorMode) == 0x40);
    assert!(offset_of!(IRP, UserBuffer) == 0x70);
    assert!(offset_of!(IRP, DriverContext) == 0x78);
    assert!(offset_of!(IRP, Thread) == 0x98);
    assert!(offset_of!(IRP, CurrentStackLocation) == 0xB8);
    assert!(size_of::<IRP>() == 0xD0);
    assert!(offset_of!(IO_STACK_LOCATION, OutputBufferLength) == 0x08);
    assert!(offset_of!(IO_STACK_LOCATION, InputBufferLength) == 0x10);
    assert!(offset_of!(IO_STACK_LOCATION, IoControlCode) == 0x18);
    assert!(offset_of!(IO_STACK_LOCATION, Type3InputBuffer) == 0x20);
    assert!(offset_of!(IO_STACK_LOCATION, DeviceObject) == 0x28);
    assert!(offset_of!(IO_STACK_LOCATION, FileObject) == 0x30);
    assert!(size_of::<IO_STACK_LOCATION>() == 0x48);
};

/// `IoGetCurrentIrpStackLocation`.
///
/// # Safety
/// `irp` is a live IRP the driver is processing.
pub unsafe fn IoGetCurrentIrpStackLocation(irp: PIRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: the caller guarantees the IRP is live.
    unsafe { (*irp).CurrentStackLocation }
}

/// `ERESOURCE`: an executive reader/writer lock (contents private to the kernel).
#[repr(C, align(8))]
pub struct ERESOURCE {
    _opaque: [u8; 0x68],
}

/// `KEVENT`: a dispatcher event (contents private to the kernel).
#[repr(C, align(8))]
pub struct KEVENT {
    _opaque: [u8; 0x18],
}
pub type PKEVENT = *mut KEVENT;

pub type POBJECT_TYPE = PVOID;

/// `KAPC_STATE`: what KeStackAttachProcess saves (contents private to the kernel).
#[repr(C, align(8))]
pub struct KAPC_STATE {
    _opaque: [u8; 0x30],
}

/// `SystemExtendedHandleInformation`: the class of ZwQuerySystemInformation that lists every
/// handle in the system. Not in the WDK's headers; its number and the layouts below are the ones
/// Wintun's driver uses (driver/undocumented.h), unchanged since Windows XP.
pub const SystemExtendedHandleInformation: ULONG = 64;

/// `SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX`: one handle of the system's.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX {
    pub Object: PVOID,
    pub UniqueProcessId: ULONG_PTR,
    pub HandleValue: ULONG_PTR,
    pub GrantedAccess: ULONG,
    pub CreatorBackTraceIndex: u16,
    pub ObjectTypeIndex: u16,
    pub HandleAttributes: ULONG,
    pub Reserved: ULONG,
}

/// `SYSTEM_HANDLE_INFORMATION_EX`, up to its first entry.
#[repr(C)]
pub struct SYSTEM_HANDLE_INFORMATION_EX {
    pub NumberOfHandles: ULONG_PTR,
    pub Reserved: ULONG_PTR,
    pub Handles: [SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX; 1],
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<KAPC_STATE>() == 0x30);
    assert!(size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>() == 0x28);
    assert!(offset_of!(SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, HandleValue) == 0x10);
    assert!(offset_of!(SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, GrantedAccess) == 0x18);
    assert!(offset_of!(SYSTEM_HANDLE_INFORMATION_EX, Handles) == 0x10);
};
pub type PEPROCESS = PVOID;

/// `MEMORY_CACHING_TYPE::MmCached`.
pub const MmCached: u32 = 1;
/// `MM_PAGE_PRIORITY::NormalPagePriority`, and the flag that maps pages no-execute.
pub const NormalPagePriority: u32 = 16;
pub const MdlMappingNoExecute: u32 = 0x4000_0000;

/// `SECURITY_SUBJECT_CONTEXT`: captured by the kernel, opaque to drivers.
#[repr(C, align(8))]
pub struct SECURITY_SUBJECT_CONTEXT {
    _opaque: [u8; 0x20],
}

/// `GENERIC_MAPPING`.
#[repr(C)]
pub struct GENERIC_MAPPING {
    pub GenericRead: ACCESS_MASK,
    pub GenericWrite: ACCESS_MASK,
    pub GenericExecute: ACCESS_MASK,
    pub GenericAll: ACCESS_MASK,
}

/// `PCREATE_PROCESS_NOTIFY_ROUTINE_EX`; `CreateInfo` is null when the process exits.
pub type CREATE_PROCESS_NOTIFY_ROUTINE_EX =
    unsafe extern "efiapi" fn(Process: PEPROCESS, ProcessId: HANDLE, CreateInfo: PVOID);

pub type DRIVER_DISPATCH =
    unsafe extern "efiapi" fn(DeviceObject: PDEVICE_OBJECT, Irp: PIRP) -> NTSTATUS;
pub type DRIVER_UNLOAD = unsafe extern "efiapi" fn(DriverObject: PDRIVER_OBJECT);

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

kernel_imports!("ntoskrnl.exe" {
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: usize, Tag: ULONG) -> PVOID;
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    pub fn IofCompleteRequest(Irp: PIRP, PriorityBoost: i8);
    pub fn IoIs32bitProcess(Irp: PIRP) -> u8;
    pub fn IoGetCurrentProcess() -> PEPROCESS;
    pub fn PsGetCurrentThread() -> PVOID;
    pub fn IoAllocateMdl(
        VirtualAddress: PVOID,
        Length: ULONG,
        SecondaryBuffer: u8,
        ChargeQuota: u8,
        Irp: PIRP,
    ) -> PMDL;
    pub fn IoFreeMdl(Mdl: PMDL);
    pub fn MmMapLockedPagesSpecifyCache(
        MemoryDescriptorList: PMDL,
        AccessMode: KPROCESSOR_MODE,
        CacheType: u32,
        RequestedAddress: PVOID,
        BugCheckOnFailure: ULONG,
        Priority: u32,
    ) -> PVOID;
    pub fn MmUnmapLockedPages(BaseAddress: PVOID, MemoryDescriptorList: PMDL);
    pub fn MmUnlockPages(MemoryDescriptorList: PMDL);
    pub fn ObReferenceObjectByHandle(
        Handle: HANDLE,
        DesiredAccess: ACCESS_MASK,
        ObjectType: POBJECT_TYPE,
        AccessMode: KPROCESSOR_MODE,
        Object: *mut PVOID,
        HandleInformation: PVOID,
    ) -> NTSTATUS;
    pub fn ObfDereferenceObject(Object: PVOID) -> isize;
    pub fn ObfReferenceObject(Object: PVOID) -> isize;
    pub fn KeSetEvent(Event: PKEVENT, Increment: i32, Wait: u8) -> i32;
    pub fn KeEnterCriticalRegion();
    pub fn KeLeaveCriticalRegion();
    pub fn ExInitializeResourceLite(Resource: *mut ERESOURCE) -> NTSTATUS;
    pub fn ExDeleteResourceLite(Resource: *mut ERESOURCE) -> NTSTATUS;
    pub fn ExEnterCriticalRegionAndAcquireResourceShared(Resource: *mut ERESOURCE) -> PVOID;
    pub fn ExEnterCriticalRegionAndAcquireResourceExclusive(Resource: *mut ERESOURCE) -> PVOID;
    pub fn ExReleaseResourceAndLeaveCriticalRegion(Resource: *mut ERESOURCE);
    pub fn SeCaptureSubjectContext(SubjectContext: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeReleaseSubjectContext(SubjectContext: *mut SECURITY_SUBJECT_CONTEXT);
    pub fn SeAccessCheck(
        SecurityDescriptor: PVOID,
        SubjectSecurityContext: *mut SECURITY_SUBJECT_CONTEXT,
        SubjectContextLocked: u8,
        DesiredAccess: ACCESS_MASK,
        PreviouslyGrantedAccess: ACCESS_MASK,
        Privileges: *mut PVOID,
        GenericMapping: *mut GENERIC_MAPPING,
        AccessMode: KPROCESSOR_MODE,
        GrantedAccess: *mut ACCESS_MASK,
        AccessStatus: *mut NTSTATUS,
    ) -> u8;
    pub fn IoGetFileObjectGenericMapping() -> *mut GENERIC_MAPPING;
    pub fn PsSetCreateProcessNotifyRoutineEx(
        NotifyRoutine: CREATE_PROCESS_NOTIFY_ROUTINE_EX,
        Remove: u8,
    ) -> NTSTATUS;
    pub fn PsCreateSystemThread(
        ThreadHandle: *mut HANDLE,
        DesiredAccess: ULONG,
        ObjectAttributes: *mut OBJECT_ATTRIBUTES,
        ProcessHandle: HANDLE,
        ClientId: PVOID,
        StartRoutine: KSTART_ROUTINE,
        StartContext: PVOID,
    ) -> NTSTATUS;
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    pub fn ZwWaitForSingleObject(Handle: HANDLE, Alertable: u8, Timeout: *mut i64) -> NTSTATUS;
    pub fn KeInitializeEvent(Event: PKEVENT, Type: EVENT_TYPE, State: u8);
    pub fn KeClearEvent(Event: PKEVENT);
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: u32,
        WaitMode: KPROCESSOR_MODE,
        Alertable: u8,
        Timeout: *mut i64,
    ) -> NTSTATUS;
    pub fn KeWaitForMultipleObjects(
        Count: ULONG,
        Object: *mut PVOID,
        WaitType: WAIT_TYPE,
        WaitReason: u32,
        WaitMode: KPROCESSOR_MODE,
        Alertable: u8,
        Timeout: *mut i64,
        WaitBlockArray: PVOID,
    ) -> NTSTATUS;
    pub fn IoBuildPartialMdl(
        SourceMdl: PMDL,
        TargetMdl: PMDL,
        VirtualAddress: PVOID,
        Length: ULONG,
    );
    pub fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL);
    pub fn ExInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExReInitializeRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExAcquireRundownProtection(RunRef: *mut EX_RUNDOWN_REF) -> u8;
    pub fn ExReleaseRundownProtection(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ExWaitForRundownProtectionRelease(RunRef: *mut EX_RUNDOWN_REF);
    pub fn ZwQuerySystemInformation(
        SystemInformationClass: ULONG,
        SystemInformation: PVOID,
        SystemInformationLength: ULONG,
        ReturnLength: *mut ULONG,
    ) -> NTSTATUS;
    pub fn PsLookupProcessByProcessId(ProcessId: HANDLE, Process: *mut PEPROCESS) -> NTSTATUS;
    pub fn KeStackAttachProcess(Process: PEPROCESS, ApcState: *mut KAPC_STATE);
    pub fn KeUnstackDetachProcess(ApcState: *mut KAPC_STATE);
    pub fn ObCloseHandle(Handle: HANDLE, PreviousMode: KPROCESSOR_MODE) -> NTSTATUS;
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
});

/// `MDL`: a description of locked pages.
#[repr(C)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: i16,
    pub MdlFlags: i16,
    pub AllocationProcessorNumber: u16,
    pub Reserved: u16,
    pub Process: PVOID,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
pub type PMDL = *mut MDL;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::offset_of!(MDL, MappedSystemVa) == 0x18);
    assert!(core::mem::offset_of!(MDL, ByteOffset) == 0x2C);
    assert!(core::mem::size_of::<MDL>() == 0x30);
};

pub const MDL_MAPPED_TO_SYSTEM_VA: i16 = 0x0001;
pub const MDL_SOURCE_IS_NONPAGED_POOL: i16 = 0x0004;
pub const MDL_PARTIAL: i16 = 0x0010;
pub const MDL_PARTIAL_HAS_BEEN_MAPPED: i16 = 0x0020;

pub type EVENT_TYPE = u32;
pub const NotificationEvent: EVENT_TYPE = 0;
pub const SynchronizationEvent: EVENT_TYPE = 1;
pub type WAIT_TYPE = u32;
pub const WaitAny: WAIT_TYPE = 1;
/// `KWAIT_REASON::Executive`.
pub const Executive: u32 = 0;
pub const STATUS_WAIT_0: NTSTATUS = 0;
pub const STATUS_TIMEOUT: NTSTATUS = 0x102;
/// Objects KeWaitForMultipleObjects waits on without a caller-supplied wait block array.
pub const THREAD_WAIT_OBJECTS: usize = 3;
pub const THREAD_ALL_ACCESS: ACCESS_MASK = 0x001F_FFFF;

/// `OBJECT_ATTRIBUTES`.
#[repr(C)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub const OBJ_KERNEL_HANDLE: ULONG = 0x0000_0200;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::offset_of!(OBJECT_ATTRIBUTES, Attributes) == 0x18);
    assert!(core::mem::size_of::<OBJECT_ATTRIBUTES>() == 0x30);
};

/// `KSTART_ROUTINE`.
pub type KSTART_ROUTINE = unsafe extern "efiapi" fn(StartContext: PVOID);

/// `EX_RUNDOWN_REF`: protection for an object that users acquire at up to DISPATCH_LEVEL and
/// its owner runs down (waits out) before it goes away.
#[repr(C)]
pub struct EX_RUNDOWN_REF {
    pub Count: usize,
}

pub type KPROCESSOR_MODE = i8;
pub const KernelMode: KPROCESSOR_MODE = 0;
pub const UserMode: KPROCESSOR_MODE = 1;
pub type LOCK_OPERATION = u32;
pub const IoWriteAccess: LOCK_OPERATION = 1;

unsafe extern "efiapi" {
    /// `MmProbeAndLockPages` with its exception caught: returns the exception code instead of
    /// raising. Defined by the SEH shim (`seh.c`) in the kernel image, by the simulated kernel
    /// on the host.
    pub fn OxtunProbeAndLockPages(
        Mdl: PMDL,
        AccessMode: KPROCESSOR_MODE,
        Operation: LOCK_OPERATION,
    ) -> NTSTATUS;
}

kernel_imports!("ntoskrnl.exe" {
    /// The object type of events, for ObReferenceObjectByHandle (the kernel's variable, read
    /// through the import table).
    pub static ExEventObjectType: POBJECT_TYPE;
    /// The System process (wdm.h: `extern PEPROCESS PsInitialSystemProcess`), whose handle table
    /// is the kernel handle table.
    pub static PsInitialSystemProcess: PEPROCESS;
});

// Imports only the SEH shim (seh.c) uses: declared here so the raw-dylib import library holds
// them. MmProbeAndLockPages raises on a bad address; see [`OxtunProbeAndLockPages`].
#[cfg(windows)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "system" {
    pub fn MmProbeAndLockPages(Mdl: PMDL, AccessMode: KPROCESSOR_MODE, Operation: LOCK_OPERATION);
    /// The exception handler of the shim's `__try`.
    pub fn __C_specific_handler();
}

// The C memory functions that compiler-generated code calls; the kernel exports them.
#[cfg(windows)]
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    pub fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    pub fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8;
    pub fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8;
}

/// `MmGetSystemAddressForMdlSafe`: the MDL's system address, mapping it if it has none yet.
///
/// # Safety
/// `mdl` describes locked or non-paged memory; the caller is at or below DISPATCH_LEVEL.
pub unsafe fn MmGetSystemAddressForMdlSafe(mdl: PMDL, priority: u32) -> PVOID {
    // SAFETY: the caller guarantees a valid MDL of locked pages.
    unsafe {
        if (*mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
            (*mdl).MappedSystemVa
        } else {
            MmMapLockedPagesSpecifyCache(
                mdl,
                KernelMode,
                MmCached,
                core::ptr::null_mut(),
                0,
                priority,
            )
        }
    }
}

/// `MmPrepareMdlForReuse`: undoes the system mapping someone made of a partial MDL, so it can
/// describe other pages.
///
/// # Safety
/// `mdl` is a valid MDL the caller owns.
pub unsafe fn MmPrepareMdlForReuse(mdl: PMDL) {
    // SAFETY: the caller guarantees the MDL is valid and its own.
    unsafe {
        if (*mdl).MdlFlags & MDL_PARTIAL_HAS_BEEN_MAPPED != 0 {
            MmUnmapLockedPages((*mdl).MappedSystemVa, mdl);
        }
    }
}
