//! Dispatcher objects and waits: events in the driver's memory, the user events it references,
//! and system threads (waited for through their kernel handles).

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::faults::{Site, should_fail};
use crate::irql;
use crate::process;
use crate::verifier::violation;

#[derive(Clone, Copy, Debug)]
struct EventState {
    synchronization: bool,
    signalled: bool,
}

/// KEVENTs in the driver's memory, by address.
static EVENTS: Mutex<BTreeMap<usize, EventState>> = Mutex::new(BTreeMap::new());
/// Bumped and broadcast on every change a waiter may be waiting for.
static CHANGES: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());

/// Wakes every waiter to look at its objects again.
pub fn wake_waiters() {
    *CHANGES.0.lock().unwrap() += 1;
    CHANGES.1.notify_all();
}

/// Called when pool is freed: events in it are gone (and may not be waited on).
pub fn forget_events_in(start: usize, len: usize) {
    let mut events = EVENTS.lock().unwrap();
    let doomed: Vec<usize> = events.range(start..start + len).map(|(&a, _)| a).collect();
    for address in doomed {
        events.remove(&address);
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeInitializeEvent(event: PKEVENT, kind: EVENT_TYPE, state: u8) {
    irql::require_at_most(DISPATCH_LEVEL, "KeInitializeEvent");
    EVENTS.lock().unwrap().insert(
        event as usize,
        EventState {
            synchronization: kind == SynchronizationEvent,
            signalled: state != 0,
        },
    );
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeClearEvent(event: PKEVENT) {
    irql::require_at_most(DISPATCH_LEVEL, "KeClearEvent");
    match EVENTS.lock().unwrap().get_mut(&(event as usize)) {
        Some(state) => state.signalled = false,
        None => violation(format!(
            "clearing {event:p}, which is not an initialized KEVENT"
        )),
    }
}

/// Sets a driver KEVENT; false if `event` is not one (it may be a user event object).
pub fn set_kernel_event(event: PKEVENT) -> Option<bool> {
    let was = {
        let mut events = EVENTS.lock().unwrap();
        let state = events.get_mut(&(event as usize))?;
        std::mem::replace(&mut state.signalled, true)
    };
    wake_waiters();
    Some(was)
}

/// Takes the object's signal if it is signalled (resetting auto-reset objects).
fn try_satisfy(object: usize) -> Option<bool> {
    if let Some(state) = EVENTS.lock().unwrap().get_mut(&object) {
        let signalled = state.signalled;
        if signalled && state.synchronization {
            state.signalled = false;
        }
        return Some(signalled);
    }
    process::referenced_event(object).map(|event| event.take())
}

fn deadline(timeout: *mut i64) -> Option<Option<Instant>> {
    if timeout.is_null() {
        return Some(None);
    }
    // SAFETY: the driver's LARGE_INTEGER.
    let value = unsafe { *timeout };
    if value > 0 {
        violation("the simulator supports only relative timeouts");
        return None;
    }
    Some(Some(
        Instant::now() + Duration::from_nanos(value.unsigned_abs() * 100),
    ))
}

fn wait(objects: &[usize], timeout: *mut i64, what: &str) -> NTSTATUS {
    let zero_timeout = !timeout.is_null() && {
        // SAFETY: the driver's LARGE_INTEGER.
        unsafe { *timeout == 0 }
    };
    if !zero_timeout {
        irql::require_at_most(APC_LEVEL, what);
    } else {
        irql::require_at_most(DISPATCH_LEVEL, what);
    }
    if !zero_timeout {
        crate::sync::waiting();
    }
    let Some(deadline) = deadline(timeout) else {
        return STATUS_TIMEOUT;
    };
    let mut generation = CHANGES.0.lock().unwrap();
    loop {
        for (index, &object) in objects.iter().enumerate() {
            match try_satisfy(object) {
                Some(true) => return STATUS_WAIT_0 + index as NTSTATUS,
                Some(false) => {}
                None => {
                    violation(format!(
                        "{what} on {object:#x}, which is not a dispatcher object"
                    ));
                    return STATUS_WAIT_0;
                }
            }
        }
        let remaining = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(remaining) => remaining,
                None => return STATUS_TIMEOUT,
            },
            // Look again now and then, in case a change slipped past between the check and the
            // wait (the objects' own locks are not this one).
            None => Duration::from_millis(20),
        };
        generation = CHANGES.1.wait_timeout(generation, remaining).unwrap().0;
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeWaitForSingleObject(
    object: PVOID,
    _reason: u32,
    _mode: KPROCESSOR_MODE,
    alertable: u8,
    timeout: *mut i64,
) -> NTSTATUS {
    if alertable != 0 {
        violation("the simulator supports no alertable waits");
    }
    wait(&[object as usize], timeout, "KeWaitForSingleObject")
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeWaitForMultipleObjects(
    count: ULONG,
    objects: *mut PVOID,
    wait_type: WAIT_TYPE,
    _reason: u32,
    _mode: KPROCESSOR_MODE,
    alertable: u8,
    timeout: *mut i64,
    wait_blocks: PVOID,
) -> NTSTATUS {
    if alertable != 0 || wait_type != WaitAny {
        violation("the simulator supports only non-alertable WaitAny waits");
    }
    if count as usize > THREAD_WAIT_OBJECTS && wait_blocks.is_null() {
        violation("KeWaitForMultipleObjects on more than 3 objects needs a wait block array");
    }
    // SAFETY: the driver's array of `count` objects.
    let objects: Vec<usize> = unsafe { std::slice::from_raw_parts(objects, count as usize) }
        .iter()
        .map(|&object| object as usize)
        .collect();
    wait(&objects, timeout, "KeWaitForMultipleObjects")
}

/// System threads by kernel handle: running (with their join handle) or done.
static THREADS: Mutex<BTreeMap<u64, Option<JoinHandle<()>>>> = Mutex::new(BTreeMap::new());
static NEXT_KERNEL_HANDLE: AtomicU64 = AtomicU64::new(0xFFFF_8000_0000_0004);

/// System threads whose handle is still open.
pub fn threads_outstanding() -> usize {
    THREADS.lock().unwrap().len()
}

struct StartContext(PVOID);
// SAFETY: the driver vouches that its context may be used by the new thread.
unsafe impl Send for StartContext {}

#[kernel_export]
pub unsafe extern "efiapi" fn PsCreateSystemThread(
    handle: *mut HANDLE,
    _access: ULONG,
    attributes: *mut OBJECT_ATTRIBUTES,
    process_handle: HANDLE,
    client_id: PVOID,
    routine: KSTART_ROUTINE,
    context: PVOID,
) -> NTSTATUS {
    irql::require_at_most(PASSIVE_LEVEL, "PsCreateSystemThread");
    // SAFETY: the driver's optional attributes.
    let kernel_handle = unsafe { attributes.as_ref() }
        .is_some_and(|attributes| attributes.Attributes & OBJ_KERNEL_HANDLE != 0);
    if !kernel_handle {
        violation(
            "PsCreateSystemThread without OBJ_KERNEL_HANDLE: the caller's process owns the handle",
        );
    }
    if !process_handle.is_null() || !client_id.is_null() {
        violation("the simulator creates threads only in the system process");
    }
    if should_fail(Site::PsCreateSystemThread) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let context = StartContext(context);
    let thread = std::thread::spawn(move || {
        let context = context;
        irql::call_at(PASSIVE_LEVEL, "a system thread's start routine", || {
            // SAFETY: the driver's routine with its context.
            unsafe { routine(context.0) }
        });
        wake_waiters();
    });
    let value = NEXT_KERNEL_HANDLE.fetch_add(4, Ordering::SeqCst);
    THREADS.lock().unwrap().insert(value, Some(thread));
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
    irql::require_at_most(PASSIVE_LEVEL, "ZwWaitForSingleObject");
    crate::sync::waiting();
    if alertable != 0 || !timeout.is_null() {
        violation("the simulator waits for threads without timeout or alerts");
    }
    let thread = match THREADS.lock().unwrap().get_mut(&(handle as u64)) {
        Some(thread) => thread.take(),
        None => {
            violation(format!(
                "waiting on {handle:p}, which is not a thread handle"
            ));
            return STATUS_INVALID_PARAMETER;
        }
    };
    if let Some(thread) = thread
        && thread.join().is_err()
    {
        violation("a system thread panicked");
    }
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn ZwClose(handle: HANDLE) -> NTSTATUS {
    irql::require_at_most(PASSIVE_LEVEL, "ZwClose");
    match THREADS.lock().unwrap().remove(&(handle as u64)) {
        Some(None) => STATUS_SUCCESS,
        Some(Some(_running)) => {
            violation("closing the handle of a system thread nobody waited for");
            STATUS_SUCCESS
        }
        None => {
            violation(format!("closing {handle:p}, which is not a kernel handle"));
            STATUS_INVALID_PARAMETER
        }
    }
}
