//! Layer: ob, objects, handles and processes, above ke. It calls the processes' handle tables,
//! ke and bookkeeping.
//!
//! System threads (PsCreateSystemThread): started in the System process, waited for and closed
//! through their kernel handles.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::{unsupported, violation};
use crate::ke::dispatcher;
use crate::ke::irql;
use crate::ke::thread::{CURRENT_THREAD, ThreadObject};
use crate::ob::process;

const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;

/// System threads started and not yet returned from their start routine.
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// System threads still running, and thread handles still open.
pub fn threads_outstanding() -> usize {
    RUNNING.load(Ordering::SeqCst) as usize + process::thread_handles_open()
}

struct StartContext(PVOID);
// SAFETY: the driver vouches that its context may be used by the new thread.
unsafe impl Send for StartContext {}

#[kernel_export]
pub unsafe extern "efiapi" fn PsCreateSystemThread(
    handle: *mut HANDLE,
    access: ULONG,
    attributes: *mut OBJECT_ATTRIBUTES,
    process_handle: HANDLE,
    client_id: PVOID,
    routine: KSTART_ROUTINE,
    context: PVOID,
) -> NTSTATUS {
    // PsCreateSystemThread (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "PsCreateSystemThread");
    // SAFETY: the driver's optional attributes.
    let kernel_handle = unsafe { attributes.as_ref() }
        .is_some_and(|attributes| attributes.Attributes & OBJ_KERNEL_HANDLE != 0);
    // "Drivers that create device-dedicated threads call this routine ... If the caller is not
    // running in the system process context, it must set the OBJ_KERNEL_HANDLE attribute"
    // (PsCreateSystemThread's page).
    if !kernel_handle && !Arc::ptr_eq(&process::current(), &process::system()) {
        violation(
            "PsCreateSystemThread without OBJ_KERNEL_HANDLE outside the System process: the \
             caller's process owns the handle",
        );
    }
    if !process_handle.is_null() || !client_id.is_null() {
        unsupported("system threads in a process other than System, or their client ID");
    }
    if should_fail(Site::PsCreateSystemThread) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let thread = ThreadObject::new();
    let context = StartContext(context);
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let object = thread.clone();
    std::thread::spawn(move || {
        let context = context;
        CURRENT_THREAD
            .with(|current| current.set(object.clone()))
            .ok();
        let returned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            irql::call_at(PASSIVE_LEVEL, "a system thread's start routine", || {
                // SAFETY: the driver's routine with its context.
                unsafe { routine(context.0) }
            })
        }));
        if returned.is_err() {
            // A check on the host build: a panic in driver code is a bug check in the image.
            violation("a system thread panicked");
        }
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        dispatcher::end_thread(&object);
    });
    let value = process::insert_thread_handle(thread, access);
    // SAFETY: the driver's out parameter.
    unsafe { *handle = value as HANDLE };
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn ZwWaitForSingleObject(
    handle: HANDLE,
    alertable: u8,
    timeout: *mut i64,
) -> NTSTATUS {
    // ZwWaitForSingleObject (ntifs.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ZwWaitForSingleObject");
    if alertable != 0 {
        unsupported("alertable waits");
    }
    let Some(thread) = process::thread_of_handle(handle as u64) else {
        unsupported(format!(
            "ZwWaitForSingleObject on {handle:p}: the simulator waits on system threads' \
             handles only"
        ));
        return STATUS_INVALID_HANDLE;
    };
    dispatcher::wait_any(&[thread.address()], timeout, "ZwWaitForSingleObject")
}
