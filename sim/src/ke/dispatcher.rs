//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls bookkeeping, IRQL,
//! the locks and thread objects.
//!
//! Dispatcher objects and waits: events in the driver's memory, users' event objects the driver
//! references, and thread objects, which are signalled when their thread ends.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::verifier::{house_rule, unsupported, violation};
use crate::ke::irql;

#[derive(Clone, Copy, Debug)]
struct EventState {
    synchronization: bool,
    signalled: bool,
}

/// A kernel event, as a user handle names it.
pub struct EventObject {
    /// What the driver is given as the PKEVENT: the first bytes of this object.
    header: [u64; 3],
    signalled: Mutex<bool>,
    changed: Condvar,
    sets: AtomicU64,
    /// A notification (manual-reset) event stays signalled until cleared; a synchronization
    /// (auto-reset) one is reset by the wait it satisfies.
    manual_reset: bool,
    /// Called on every set, for an event that stands for something outside the simulator (the
    /// emulator's eventfd).
    on_set: Option<Box<dyn Fn() + Send + Sync>>,
    /// An eventfd whose count, when not zero, is this event set from outside the simulator (by
    /// the emulator's client): waits poll it, and taking the signal reads it.
    source: Option<OwnedFd>,
    /// Times a wait took the source's signal.
    outside_sets: AtomicU64,
}

impl EventObject {
    /// A new event object, not signalled.
    pub(crate) fn new(
        manual_reset: bool,
        on_set: Option<Box<dyn Fn() + Send + Sync>>,
        source: Option<OwnedFd>,
    ) -> Arc<EventObject> {
        Arc::new(EventObject {
            header: [0; 3],
            signalled: Mutex::new(false),
            changed: Condvar::new(),
            sets: AtomicU64::new(0),
            manual_reset,
            on_set,
            source,
            outside_sets: AtomicU64::new(0),
        })
    }

    /// The KEVENT's address: what ObReferenceObjectByHandle gives the driver.
    pub fn address(&self) -> usize {
        self.header.as_ptr() as usize
    }

    /// Times the event was set (by the driver) since it was created.
    pub fn set_count(&self) -> u64 {
        self.sets.load(Ordering::SeqCst)
    }

    /// Whether the event is signalled, as a wait sees it: a wait takes the signal of an
    /// auto-reset (synchronization) event and leaves a manual-reset (notification) one set.
    pub fn take(&self) -> bool {
        let mut signalled = self.signalled.lock().unwrap();
        self.absorb_source(&mut signalled);
        let was = *signalled;
        if !self.manual_reset {
            *signalled = false;
        }
        was
    }

    /// The state KeReadStateEvent reads, leaving it.
    pub fn read_state(&self) -> bool {
        let mut signalled = self.signalled.lock().unwrap();
        self.absorb_source(&mut signalled);
        *signalled
    }

    /// KeClearEvent: not signalled, whatever kind of event.
    pub fn clear(&self) {
        let mut signalled = self.signalled.lock().unwrap();
        self.absorb_source(&mut signalled);
        *signalled = false;
    }

    /// The eventfd that sets this event from outside, if it has one.
    pub fn source(&self) -> Option<RawFd> {
        self.source.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Takes a count the source holds into the event's state: the client set the event (the
    /// count is read without blocking: the client's descriptor may be a blocking one, and its
    /// flags are the client's to set).
    fn absorb_source(&self, signalled: &mut bool) {
        let Some(fd) = self.source() else {
            return;
        };
        let mut readable = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one descriptor we hold, without waiting.
        if unsafe { libc::poll(&mut readable, 1, 0) } != 1 {
            return;
        }
        let mut count = 0u64;
        // SAFETY: 8 bytes into a local from a readable eventfd; the driver's receive thread is
        // its one reader, so it does not block.
        if unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) == 8 } {
            self.outside_sets.fetch_add(1, Ordering::Relaxed);
            *signalled = true;
        }
    }

    /// Times a wait took the signal of the source (the client setting the event).
    pub fn outside_sets(&self) -> u64 {
        self.outside_sets.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for the event, as a client's WaitForSingleObject; true if it came
    /// (and is reset again).
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let signalled = self.signalled.lock().unwrap();
        let (mut signalled, _) = self
            .changed
            .wait_timeout_while(signalled, timeout, |signalled| !*signalled)
            .unwrap();
        let was = *signalled;
        if !self.manual_reset {
            *signalled = false;
        }
        was
    }

    pub fn set(&self) {
        self.sets.fetch_add(1, Ordering::SeqCst);
        *self.signalled.lock().unwrap() = true;
        self.changed.notify_all();
        wake_waiters_of(self.address());
        if let Some(on_set) = &self.on_set {
            on_set();
        }
    }
}

/// Users' event objects a driver holds references to, by address: the ones the Ke*Event
/// routines and waits take (the object manager says when a driver references one and when it
/// stops).
static REFERENCED_EVENTS: Mutex<BTreeMap<usize, Arc<EventObject>>> = Mutex::new(BTreeMap::new());

/// A driver took its first reference to `event`.
pub(crate) fn event_referenced(event: &Arc<EventObject>) {
    REFERENCED_EVENTS
        .lock()
        .unwrap()
        .insert(event.address(), event.clone());
}

/// A driver dropped its last reference to `event`.
pub(crate) fn event_dereferenced(event: &EventObject) {
    REFERENCED_EVENTS.lock().unwrap().remove(&event.address());
}

/// The user event at `address` a driver holds a reference to, if any.
pub(crate) fn referenced_event(address: usize) -> Option<Arc<EventObject>> {
    REFERENCED_EVENTS.lock().unwrap().get(&address).cloned()
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
    match referenced_event(event as usize) {
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
    match referenced_event(event as usize) {
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
    if let Some(event) = referenced_event(object) {
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
    if value == 0 {
        // A zero timeout only looks.
        return Some(Some(Instant::now()));
    }
    // A relative timeout, in 100 ns units, expires on the clock tick after it (`clock`).
    let interval = Duration::from_nanos(value.unsigned_abs() * 100);
    Some(Some(crate::ke::clock::expiry(interval)))
}

/// Waits with a timeout that ended by it, since the simulator started (zero timeouts, which only
/// look, not counted): the wake-ups a timed wait costs an idle thread.
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);

/// How many waits have ended by their (non-zero) timeout so far.
pub fn timed_out_waits() -> u64 {
    TIMED_OUT.load(Ordering::SeqCst)
}

/// Waits (other than zero-timeout looks) that ended because an object was signalled.
static SATISFIED: AtomicU64 = AtomicU64::new(0);

/// How many waits have ended signalled so far: with [`timed_out_waits`], what a waiting thread
/// costs in wake-ups.
pub fn satisfied_waits() -> u64 {
    SATISFIED.load(Ordering::SeqCst)
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
    let outside: Vec<Arc<EventObject>> = objects
        .iter()
        .filter_map(|&object| referenced_event(object))
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
            if !zero_timeout {
                SATISFIED.fetch_add(1, Ordering::SeqCst);
            }
            break STATUS_WAIT_0 + index as NTSTATUS;
        }
        let timeout = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(remaining) => Some(libc::timespec {
                    tv_sec: remaining.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(remaining.subsec_nanos()),
                }),
                None => {
                    if !zero_timeout {
                        TIMED_OUT.fetch_add(1, Ordering::SeqCst);
                    }
                    break STATUS_TIMEOUT;
                }
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

#[kernel_export]
pub extern "efiapi" fn KeSetEvent(event: PKEVENT, _increment: i32, wait: u8) -> i32 {
    // KeSetEvent (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "KeSetEvent");
    // Windows allows Wait = TRUE when a wait routine follows at once (KeSetEvent's page); this
    // driver never needs the pairing, and a stray TRUE leaves the thread at DISPATCH_LEVEL.
    if wait != 0 {
        house_rule("KeSetEvent with Wait = TRUE");
    }
    if let Some(was) = set_kernel_event(event) {
        return i32::from(was);
    }
    let Some(object) = referenced_event(event as usize) else {
        // KeSetEvent takes "a pointer to an initialized event object" (KeSetEvent): a KEVENT the
        // driver initialized, or an event object it holds a reference to.
        violation(format!(
            "setting {event:p}, which is not an event the driver references"
        ));
        return 0;
    };
    let was = *object.signalled.lock().unwrap();
    object.set();
    i32::from(was)
}
