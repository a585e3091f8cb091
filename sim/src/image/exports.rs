//! Layer: image, above every kernel layer. It names every layer's exports, and calls SEH and the
//! mapped images.
//!
//! The simulated kernel's export table: what the kernel image's imports bind to, by DLL and
//! name, as the Windows loader binds a driver's imports to ntoskrnl.exe's and ndis.sys's
//! exports. The host build of the driver needs none of this: the linker binds its imports to the
//! same functions by their symbol names.
//!
//! Every export is `extern "efiapi"`, the Windows x64 convention the image calls with (see
//! `src/sys/mod.rs`), so the image's import address table points straight at the functions the
//! host build calls. A function the driver's `src/sys` declares is listed with [`declared!`],
//! which has the compiler check that the simulator's function has exactly the declared type,
//! convention included. A new import is one line here; until it is added, the loader refuses
//! the image and names the import.
//!
//! The few exports only the image needs live here too: the C memory functions the compiler
//! calls, the panic handler's KeBugCheckEx, and the SEH shim's MmProbeAndLockPages
//! ([`crate::image::seh`]).

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents.
#![allow(clippy::missing_safety_doc)]

use oxtun_driver::sys::{PVOID, ULONG, ULONG_PTR};

use crate::bookkeeping::verifier::violation;
use crate::image::{images, seh};
use crate::io;
use crate::ke::{dispatcher, sync};
use crate::mm::{mdl, pool};
use crate::ndis;
use crate::ob::{process, security, threads};

/// One export: the address the image's import of `dll!name` is bound to.
pub struct Export {
    pub dll: &'static str,
    pub name: &'static str,
    pub address: usize,
}

/// An export the driver declares in `src/sys`. Putting the declaration and the simulator's
/// function in one array makes them one function-pointer type, so they must agree in
/// arguments, result, safety aside, and calling convention, or this does not compile.
macro_rules! declared {
    ($dll:literal, $module:ident :: $name:ident) => {
        Export {
            dll: $dll,
            name: stringify!($name),
            address: {
                let [_declared, simulated] = [oxtun_driver::sys::$name, $module::$name];
                simulated as usize
            },
        }
    };
}

/// An export `src/sys` declares only for the Windows build (the image's runtime needs).
macro_rules! image_only {
    ($dll:literal, $name:literal, $function:expr) => {
        Export {
            dll: $dll,
            name: $name,
            address: $function as *const () as usize,
        }
    };
}

/// Every export, by DLL.
pub fn table() -> Vec<Export> {
    vec![
        declared!("ndis.sys", ndis::NdisAllocateNetBufferAndNetBufferList),
        declared!("ndis.sys", ndis::NdisAllocateNetBufferListPool),
        declared!("ndis.sys", ndis::NdisFreeNetBufferList),
        declared!("ndis.sys", ndis::NdisFreeNetBufferListPool),
        declared!("ndis.sys", ndis::NdisMDeregisterMiniportDriver),
        declared!("ndis.sys", ndis::NdisMGetDeviceProperty),
        declared!("ndis.sys", ndis::NdisMIndicateReceiveNetBufferLists),
        declared!("ndis.sys", ndis::NdisMIndicateStatusEx),
        declared!("ndis.sys", ndis::NdisMPauseComplete),
        declared!("ndis.sys", ndis::NdisMRegisterMiniportDriver),
        declared!("ndis.sys", ndis::NdisMSendNetBufferListsComplete),
        declared!("ndis.sys", ndis::NdisMSetMiniportAttributes),
        declared!("ndis.sys", ndis::NdisOpenConfigurationEx),
        declared!("ndis.sys", ndis::NdisReadConfiguration),
        declared!("ndis.sys", ndis::NdisCloseConfiguration),
        declared!("ntoskrnl.exe", sync::ExAcquireRundownProtection),
        declared!("ntoskrnl.exe", pool::ExAllocatePool2),
        declared!("ntoskrnl.exe", sync::ExDeleteResourceLite),
        declared!(
            "ntoskrnl.exe",
            sync::ExEnterCriticalRegionAndAcquireResourceExclusive
        ),
        declared!(
            "ntoskrnl.exe",
            sync::ExEnterCriticalRegionAndAcquireResourceShared
        ),
        declared!("ntoskrnl.exe", pool::ExFreePoolWithTag),
        declared!("ntoskrnl.exe", sync::ExInitializeResourceLite),
        declared!("ntoskrnl.exe", sync::ExInitializeRundownProtection),
        declared!("ntoskrnl.exe", sync::ExReInitializeRundownProtection),
        declared!(
            "ntoskrnl.exe",
            sync::ExReleaseResourceAndLeaveCriticalRegion
        ),
        declared!("ntoskrnl.exe", sync::ExReleaseRundownProtection),
        declared!("ntoskrnl.exe", sync::ExWaitForRundownProtectionRelease),
        declared!("ntoskrnl.exe", mdl::IoAllocateMdl),
        declared!("ntoskrnl.exe", mdl::IoBuildPartialMdl),
        declared!("ntoskrnl.exe", mdl::IoFreeMdl),
        declared!("ntoskrnl.exe", process::IoGetCurrentProcess),
        declared!("ntoskrnl.exe", process::PsGetCurrentThread),
        declared!("ntoskrnl.exe", security::IoGetFileObjectGenericMapping),
        declared!("ntoskrnl.exe", io::IoIs32bitProcess),
        declared!("ntoskrnl.exe", io::IofCompleteRequest),
        declared!("ntoskrnl.exe", sync::KeAcquireSpinLockRaiseToDpc),
        declared!("ntoskrnl.exe", sync::KeEnterCriticalRegion),
        declared!("ntoskrnl.exe", self::KeBugCheckEx),
        declared!("ntoskrnl.exe", dispatcher::KeClearEvent),
        declared!("ntoskrnl.exe", dispatcher::KeInitializeEvent),
        declared!("ntoskrnl.exe", sync::KeLeaveCriticalRegion),
        declared!("ntoskrnl.exe", sync::KeReleaseSpinLock),
        declared!("ntoskrnl.exe", dispatcher::KeSetEvent),
        declared!("ntoskrnl.exe", process::KeStackAttachProcess),
        declared!("ntoskrnl.exe", process::KeUnstackDetachProcess),
        declared!("ntoskrnl.exe", dispatcher::KeWaitForMultipleObjects),
        declared!("ntoskrnl.exe", dispatcher::KeWaitForSingleObject),
        declared!("ntoskrnl.exe", mdl::MmBuildMdlForNonPagedPool),
        declared!("ntoskrnl.exe", mdl::MmMapLockedPagesSpecifyCache),
        declared!("ntoskrnl.exe", mdl::MmUnlockPages),
        declared!("ntoskrnl.exe", mdl::MmUnmapLockedPages),
        declared!("ntoskrnl.exe", process::ObCloseHandle),
        declared!("ntoskrnl.exe", process::ObReferenceObjectByHandle),
        declared!("ntoskrnl.exe", process::ObfDereferenceObject),
        declared!("ntoskrnl.exe", process::ObfReferenceObject),
        declared!("ntoskrnl.exe", threads::PsCreateSystemThread),
        declared!("ntoskrnl.exe", process::PsLookupProcessByProcessId),
        declared!("ntoskrnl.exe", process::PsSetCreateProcessNotifyRoutineEx),
        declared!("ntoskrnl.exe", security::SeAccessCheck),
        declared!("ntoskrnl.exe", security::SeCaptureSubjectContext),
        declared!("ntoskrnl.exe", security::SeReleaseSubjectContext),
        declared!("ntoskrnl.exe", process::ZwClose),
        declared!("ntoskrnl.exe", process::ZwQuerySystemInformation),
        declared!("ntoskrnl.exe", threads::ZwWaitForSingleObject),
        // Data: the import address table holds the variable's address.
        Export {
            dll: "ntoskrnl.exe",
            name: "ExEventObjectType",
            address: &raw const process::ExEventObjectType as usize,
        },
        Export {
            dll: "ntoskrnl.exe",
            name: "PsInitialSystemProcess",
            address: &raw const process::PsInitialSystemProcess as usize,
        },
        image_only!(
            "ntoskrnl.exe",
            "MmProbeAndLockPages",
            seh::MmProbeAndLockPages
        ),
        image_only!(
            "ntoskrnl.exe",
            "__C_specific_handler",
            seh::__C_specific_handler
        ),
        image_only!("ntoskrnl.exe", "memcpy", memcpy),
        image_only!("ntoskrnl.exe", "memmove", memmove),
        image_only!("ntoskrnl.exe", "memset", memset),
    ]
}

/// The address `dll!name` binds to. DLL names compare without case, as Windows compares module
/// names; function names exactly.
pub fn find(dll: &str, name: &str) -> Option<usize> {
    table()
        .into_iter()
        .find(|export| export.dll.eq_ignore_ascii_case(dll) && export.name == name)
        .map(|export| export.address)
}

/// `KeBugCheckEx`: the system stops. The driver's panic handler calls it with its own code and
/// the panic's place (`oxtun_driver::PANIC_BUGCHECK_CODE`), which the report spells out. Only
/// the image imports it (the host build panics into the test), so it is no `#[kernel_export]`:
/// it needs no symbol, and a function that never returns cannot hand its body to one.
#[allow(non_snake_case)]
pub extern "efiapi" fn KeBugCheckEx(
    code: ULONG,
    parameter1: ULONG_PTR,
    parameter2: ULONG_PTR,
    parameter3: ULONG_PTR,
    parameter4: ULONG_PTR,
) -> ! {
    // Like every export's, this is the simulator's work: on the thread's own stack.
    crate::ke::stack::on_host_stack(|| {
        let mut report = format!(
            "KeBugCheckEx({code:#010x}, {parameter1:#x}, {parameter2:#x}, {parameter3:#x}, \
             {parameter4:#x})"
        );
        let file = images::image_bytes(parameter1, parameter2);
        if let (oxtun_driver::PANIC_BUGCHECK_CODE, Some(file)) = (code, file) {
            let file = String::from_utf8_lossy(&file);
            report += &format!(": the driver panicked at {file}:{parameter3}:{parameter4}");
        }
        violation(report)
    });
    // A bug check never returns, even while the simulator's own tests record violations.
    std::process::abort()
}

// The C memory functions do no more than the kernel's own would, so unlike the other exports
// they run on the kernel stack they are called on.

/// `memcpy`, called by compiler-generated code in the image.
unsafe extern "efiapi" fn memcpy(destination: PVOID, source: PVOID, length: usize) -> PVOID {
    // SAFETY: the C contract: both valid for `length` bytes and not overlapping.
    unsafe { std::ptr::copy_nonoverlapping(source.cast::<u8>(), destination.cast(), length) };
    destination
}

/// `memmove`, called by compiler-generated code in the image.
unsafe extern "efiapi" fn memmove(destination: PVOID, source: PVOID, length: usize) -> PVOID {
    // SAFETY: the C contract: both valid for `length` bytes; they may overlap.
    unsafe { std::ptr::copy(source.cast::<u8>(), destination.cast(), length) };
    destination
}

/// `memset`, called by compiler-generated code in the image.
unsafe extern "efiapi" fn memset(destination: PVOID, value: i32, length: usize) -> PVOID {
    // SAFETY: the C contract: `destination` is valid for `length` bytes. memset stores the
    // value converted to unsigned char.
    unsafe { std::ptr::write_bytes(destination.cast::<u8>(), value as u8, length) };
    destination
}
