//! Dispatcher objects and waits: events in the driver's memory, the user events it references,
//! and system threads (waited for through their kernel handles).

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::{unsupported, violation};
use crate::ke::irql;
use crate::ob::process;

const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;

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
    thread_object_at(object).map(|thread| thread.has_ended())
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

/// A thread, as the kernel sees it: what KeGetCurrentThread returns (the KTHREAD at the start
/// of the ETHREAD), what a thread handle names, and a dispatcher object that is signalled once
/// the thread has ended ("Thread Objects": a thread object is signalled when the thread
/// terminates; KeWaitForSingleObject's page lists thread objects among what it waits on).
pub struct ThreadObject {
    /// What the driver sees as the PKTHREAD/PETHREAD: the first bytes of this object.
    identity: Box<[u64; 16]>,
    ended: AtomicBool,
}

impl ThreadObject {
    fn new() -> Arc<ThreadObject> {
        let thread = Arc::new(ThreadObject {
            identity: Box::new([0; 16]),
            ended: AtomicBool::new(false),
        });
        let mut all = ALL_THREADS.lock().unwrap();
        all.retain(|thread| thread.strong_count() > 0);
        all.push(Arc::downgrade(&thread));
        thread
    }

    pub fn address(&self) -> usize {
        self.identity.as_ptr() as usize
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        wake_waiters_of(self.address());
    }
}

/// Every thread object, for waits on them by address.
static ALL_THREADS: Mutex<Vec<std::sync::Weak<ThreadObject>>> = Mutex::new(Vec::new());

fn thread_object_at(address: usize) -> Option<Arc<ThreadObject>> {
    ALL_THREADS
        .lock()
        .unwrap()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .find(|thread| thread.address() == address)
}

thread_local! {
    /// The thread object of the thread running here: a system thread's own, or one made for
    /// whichever thread first runs driver code (a process's thread making a system call, a
    /// thread of NDIS's).
    static CURRENT_THREAD: std::cell::OnceCell<Arc<ThreadObject>> =
        const { std::cell::OnceCell::new() };
}

/// The current thread's object.
pub fn current_thread() -> Arc<ThreadObject> {
    CURRENT_THREAD.with(|current| current.get_or_init(ThreadObject::new).clone())
}

/// Where the current thread's object is in the processor control region (KPCR) that GS points
/// at in kernel mode: `KPCR.Prcb.CurrentThread`, which the WDK's inline KeGetCurrentThread reads
/// (wdm.h, x64: `return (struct _KTHREAD *)__readgsqword(0x188);`).
pub const KPCR_CURRENT_THREAD: usize = 0x188;

thread_local! {
    /// This thread's stand-in for the KPCR: zeroes but for the current thread.
    static KPCR: std::cell::OnceCell<Box<[u64; 0x40]>> = const { std::cell::OnceCell::new() };
}

/// Points GS at a processor control region of this thread's own, once, before the first driver
/// code runs on it: GS is free in a Linux process (its thread-local storage is FS), so the
/// image's `mov r64, gs:[188h]` runs as in kernel mode. The code check refuses every other GS
/// access: the rest of the region is not modelled.
pub fn enter_kernel_mode() {
    KPCR.with(|kpcr| {
        kpcr.get_or_init(|| {
            let mut region = Box::new([0u64; 0x40]);
            region[KPCR_CURRENT_THREAD / 8] = current_thread().address() as u64;
            set_gs_base(region.as_ptr() as usize);
            region
        });
    });
}

#[cfg(target_arch = "x86_64")]
fn set_gs_base(base: usize) {
    /// `ARCH_SET_GS` (asm/prctl.h).
    const ARCH_SET_GS: libc::c_int = 0x1001;
    // SAFETY: sets this thread's GS base to a region it keeps for its lifetime; nothing in this
    // process uses GS otherwise.
    let result = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, base) };
    assert_eq!(
        result,
        0,
        "arch_prctl(ARCH_SET_GS): {}",
        std::io::Error::last_os_error()
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn set_gs_base(_base: usize) {}

/// System threads' handles, by value: the kernel handles PsCreateSystemThread gave.
static THREADS: Mutex<BTreeMap<u64, Arc<ThreadObject>>> = Mutex::new(BTreeMap::new());
/// Kernel handles have the top bit set (wdm.h's ObIsKernelHandle: a negative handle value).
static NEXT_KERNEL_HANDLE: AtomicU64 = AtomicU64::new(0xFFFF_FFFF_8000_0004);
/// System threads started and not yet returned from their start routine.
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// The thread object a kernel handle names, if it names one.
pub fn thread_of_handle(handle: u64) -> Option<Arc<ThreadObject>> {
    THREADS.lock().unwrap().get(&handle).cloned()
}

/// System threads still running, and thread handles still open.
pub fn threads_outstanding() -> usize {
    RUNNING.load(Ordering::SeqCst) as usize + THREADS.lock().unwrap().len()
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
        object.end();
    });
    let value = NEXT_KERNEL_HANDLE.fetch_add(4, Ordering::SeqCst);
    THREADS.lock().unwrap().insert(value, thread);
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
    let Some(thread) = thread_of_handle(handle as u64) else {
        unsupported(format!(
            "ZwWaitForSingleObject on {handle:p}: the simulator waits on system threads' \
             handles only"
        ));
        return STATUS_INVALID_HANDLE;
    };
    wait(&[thread.address()], timeout, "ZwWaitForSingleObject")
}

#[kernel_export]
pub unsafe extern "efiapi" fn ZwClose(handle: HANDLE) -> NTSTATUS {
    // ZwClose (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ZwClose");
    // Closing a thread's handle while it runs is allowed: the thread goes on, and its object
    // lives as long as someone references it.
    match THREADS.lock().unwrap().remove(&(handle as u64)) {
        Some(_) => STATUS_SUCCESS,
        None => {
            // "If the handle is not valid ... bug check 0x93" for a kernel handle (Bug Check
            // 0x93: INVALID_KERNEL_HANDLE).
            violation(format!(
                "closing {handle:p}, which is not a kernel handle: bug check 0x93 \
                 (INVALID_KERNEL_HANDLE)"
            ));
            STATUS_INVALID_HANDLE
        }
    }
}
