//! Dispatcher objects and waits: events in the driver's memory, the user events it references,
//! and system threads (waited for through their kernel handles).

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::verifier::{unsupported, violation};
use crate::ke::irql;
use crate::ob::process;

#[derive(Clone, Copy, Debug)]
struct EventState {
    synchronization: bool,
    signalled: bool,
}

/// KEVENTs in the driver's memory, by address.
static EVENTS: Mutex<BTreeMap<usize, EventState>> = Mutex::new(BTreeMap::new());

/// The threads in a wait: the objects each waits on, and the eventfd that wakes it. Setting an
/// object wakes only the threads waiting on it, as KeSetEvent does.
static WAITERS: Mutex<Vec<(Vec<usize>, RawFd)>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's wake-up, polled in its waits.
    static WAKE: OwnedFd = {
        // SAFETY: a new eventfd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: the descriptor just made, ours alone.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
}

fn signal(fd: RawFd) {
    // SAFETY: 8 bytes from a local to an eventfd.
    unsafe { libc::write(fd, (&1u64 as *const u64).cast(), 8) };
}

/// Wakes the threads waiting on `object` to look at their objects again.
pub fn wake_waiters_of(object: usize) {
    for (objects, wake) in WAITERS.lock().unwrap().iter() {
        if objects.contains(&object) {
            signal(*wake);
        }
    }
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
    // KeInitializeEvent (wdm.h): "IRQL: Any level".
    EVENTS.lock().unwrap().insert(
        event as usize,
        EventState {
            synchronization: kind == SynchronizationEvent,
            signalled: state != 0,
        },
    );
}

// A user's event object is a KEVENT to the kernel: what ObReferenceObjectByHandle returns for an
// event handle is the object's body, which begins with the KEVENT, so every Ke*Event routine
// applies to it (ExEventObjectType; "Event Objects", Microsoft's kernel documentation).

#[kernel_export]
pub unsafe extern "efiapi" fn KeClearEvent(event: PKEVENT) {
    // KeClearEvent (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "KeClearEvent");
    if let Some(state) = EVENTS.lock().unwrap().get_mut(&(event as usize)) {
        state.signalled = false;
        return;
    }
    match process::referenced_event(event as usize) {
        Some(object) => object.clear(),
        // KeClearEvent takes an initialized event object (KeClearEvent: Event).
        None => violation(format!(
            "clearing {event:p}, which is not an initialized KEVENT nor an event object the \
             driver references"
        )),
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeReadStateEvent(event: PKEVENT) -> i32 {
    // KeReadStateEvent (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "KeReadStateEvent");
    if let Some(state) = EVENTS.lock().unwrap().get(&(event as usize)) {
        return i32::from(state.signalled);
    }
    match process::referenced_event(event as usize) {
        Some(object) => i32::from(object.read_state()),
        None => {
            // KeReadStateEvent takes an initialized event object (KeReadStateEvent: Event).
            violation(format!(
                "reading {event:p}, which is not an initialized KEVENT nor an event object the \
                 driver references"
            ));
            0
        }
    }
}

/// Sets a driver KEVENT; false if `event` is not one (it may be a user event object).
pub fn set_kernel_event(event: PKEVENT) -> Option<bool> {
    let was = {
        let mut events = EVENTS.lock().unwrap();
        let state = events.get_mut(&(event as usize))?;
        std::mem::replace(&mut state.signalled, true)
    };
    wake_waiters_of(event as usize);
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
    if let Some(event) = process::referenced_event(object) {
        return Some(event.take());
    }
    crate::ke::thread::thread_object_at(object).map(|thread| thread.has_ended())
}

fn deadline(timeout: *mut i64) -> Option<Option<Instant>> {
    if timeout.is_null() {
        return Some(None);
    }
    // SAFETY: the driver's LARGE_INTEGER.
    let value = unsafe { *timeout };
    if value > 0 {
        unsupported("absolute timeouts");
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
    // KeWaitForSingleObject, KeWaitForMultipleObjects (wdm.h): "Callers ... can be running at
    // IRQL <= DISPATCH_LEVEL. However, if Timeout = NULL or *Timeout != 0, the caller must be
    // running at IRQL <= APC_LEVEL".
    if !zero_timeout {
        irql::require_at_most(APC_LEVEL, what);
    } else {
        irql::require_at_most(DISPATCH_LEVEL, what);
    }
    if !zero_timeout {
        crate::ke::sync::waiting();
    }
    let Some(deadline) = deadline(timeout) else {
        return STATUS_TIMEOUT;
    };
    // Events that stand for an eventfd of the emulator's client are signalled when it is
    // readable: polled with this thread's wake-up.
    let outside: Vec<Arc<process::EventObject>> = objects
        .iter()
        .filter_map(|&object| process::referenced_event(object))
        .filter(|event| event.source().is_some())
        .collect();
    let wake = WAKE.with(|wake| wake.as_raw_fd());
    let mut polled: Vec<libc::pollfd> = std::iter::once(wake)
        .chain(outside.iter().filter_map(|event| event.source()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // In the list before the objects are looked at, so a set between the look and the poll
    // leaves the wake-up readable.
    WAITERS.lock().unwrap().push((objects.to_vec(), wake));
    let status = loop {
        if let Some(index) = satisfied(objects, what) {
            break STATUS_WAIT_0 + index as NTSTATUS;
        }
        let timeout = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(remaining) => Some(libc::timespec {
                    tv_sec: remaining.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(remaining.subsec_nanos()),
                }),
                None => break STATUS_TIMEOUT,
            },
            None => None,
        };
        let timeout = timeout
            .as_ref()
            .map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: polling our array of descriptors, all open (the events' Arcs are held), with
        // a timeout of ours or none.
        unsafe {
            libc::ppoll(
                polled.as_mut_ptr(),
                polled.len() as libc::nfds_t,
                timeout,
                std::ptr::null(),
            )
        };
        drain(wake);
        for entry in &mut polled {
            entry.revents = 0;
        }
    };
    WAITERS.lock().unwrap().retain(|&(_, fd)| fd != wake);
    status
}

/// The index of the first of `objects` that is signalled, taking its signal.
fn satisfied(objects: &[usize], what: &str) -> Option<usize> {
    for (index, &object) in objects.iter().enumerate() {
        match try_satisfy(object) {
            Some(true) => return Some(index),
            Some(false) => {}
            None => {
                // KeWaitForSingleObject and KeWaitForMultipleObjects wait on "an initialized dispatcher object"
                // (event, mutex, semaphore, thread or timer; their pages).
                violation(format!(
                    "{what} on {object:#x}, which is not a dispatcher object"
                ));
                return Some(index);
            }
        }
    }
    None
}

fn drain(fd: RawFd) {
    let mut count = 0u64;
    // SAFETY: 8 bytes into a local from a non-blocking eventfd.
    unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
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
        unsupported("alertable waits");
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
        unsupported("alertable waits and WaitAll");
    }
    // "If Count > THREAD_WAIT_OBJECTS, the caller must provide WaitBlockArray"
    // (KeWaitForMultipleObjects; wdm.h: `#define THREAD_WAIT_OBJECTS 3`).
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

/// A thread ended: its object is signalled, and whoever waits for it wakes.
pub fn end_thread(thread: &crate::ke::thread::ThreadObject) {
    thread.mark_ended();
    wake_waiters_of(thread.address());
}

/// Waits on the dispatcher objects at `objects`, as KeWaitForMultipleObjects with WaitAny.
pub(crate) fn wait_any(objects: &[usize], timeout: *mut i64, what: &str) -> NTSTATUS {
    wait(objects, timeout, what)
}
