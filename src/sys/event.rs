//! Kernel events the driver owns, system threads, and waiting on either (and on referenced user
//! events).

use core::cell::UnsafeCell;
use core::ptr::null_mut;

use super::nt::*;
use super::user::EventReference;

/// Something KeWaitForMultipleObjects can wait on.
pub trait Waitable {
    fn dispatcher_object(&self) -> PVOID;
}

/// A KEVENT in the driver's own (non-paged) memory. [`KernelEvent::initialize`] it where it
/// will stay: the kernel links waiters to its address.
pub struct KernelEvent {
    event: UnsafeCell<KEVENT>,
}

// SAFETY: a KEVENT is made to be set and waited on from any thread.
unsafe impl Sync for KernelEvent {}
// SAFETY: as for Sync; it is only moved before initialization.
unsafe impl Send for KernelEvent {}

impl KernelEvent {
    pub const fn new() -> Self {
        KernelEvent {
            // SAFETY: plain bytes until KeInitializeEvent fills them.
            event: UnsafeCell::new(unsafe { core::mem::zeroed() }),
        }
    }

    /// `synchronization`: an auto-reset event rather than a notification (manual-reset) one.
    pub fn initialize(&self, synchronization: bool) {
        let kind = if synchronization {
            SynchronizationEvent
        } else {
            NotificationEvent
        };
        // SAFETY: the event's own memory, at its final address (the caller's promise, per the
        // type's documentation), not yet waited on.
        unsafe { KeInitializeEvent(self.event.get(), kind, 0) };
    }

    pub fn set(&self) {
        // SAFETY: an initialized event; setting is allowed up to DISPATCH_LEVEL.
        unsafe { KeSetEvent(self.event.get(), IO_NO_INCREMENT.into(), 0) };
    }

    pub fn clear(&self) {
        // SAFETY: an initialized event.
        unsafe { KeClearEvent(self.event.get()) };
    }
}

impl Default for KernelEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl Waitable for KernelEvent {
    fn dispatcher_object(&self) -> PVOID {
        self.event.get().cast()
    }
}

impl Waitable for EventReference {
    fn dispatcher_object(&self) -> PVOID {
        self.event_object()
    }
}

/// Waits at PASSIVE_LEVEL until one of the objects (at most three) is signalled; returns its
/// index.
pub fn wait_any(objects: &[&dyn Waitable]) -> usize {
    wait_any_until(objects, None).expect("a wait without timeout ends signalled")
}

/// Like [`wait_any`], but gives up after `milliseconds`: `None` then. A relative timeout expires
/// on a system clock tick (15.625 ms apart by default on Windows), so it may end up to one tick
/// earlier or later ("Timer Accuracy").
pub fn wait_any_for(objects: &[&dyn Waitable], milliseconds: u32) -> Option<usize> {
    wait_any_until(objects, Some(milliseconds))
}

fn wait_any_until(objects: &[&dyn Waitable], milliseconds: Option<u32>) -> Option<usize> {
    let mut pointers = [null_mut(); THREAD_WAIT_OBJECTS];
    for (slot, object) in pointers.iter_mut().zip(objects) {
        *slot = object.dispatcher_object();
    }
    let count = objects.len().min(THREAD_WAIT_OBJECTS);
    // Relative timeouts are negative, in units of 100 ns.
    let mut timeout = milliseconds.map(|ms| -i64::from(ms) * 10_000);
    let timeout_pointer = timeout.as_mut().map_or(null_mut(), |t| t as *mut i64);
    // SAFETY: live dispatcher objects (borrowed for the call) and a local timeout; up to
    // THREAD_WAIT_OBJECTS objects need no wait block array.
    let status = unsafe {
        KeWaitForMultipleObjects(
            count as ULONG,
            pointers.as_mut_ptr(),
            WaitAny,
            Executive,
            KernelMode,
            0,
            timeout_pointer,
            null_mut(),
        )
    };
    (status != STATUS_TIMEOUT).then(|| (status - STATUS_WAIT_0) as usize)
}

/// Waits at PASSIVE_LEVEL until the object is signalled.
pub fn wait(object: &dyn Waitable) {
    // SAFETY: a live dispatcher object, borrowed for the call; no timeout.
    unsafe {
        KeWaitForSingleObject(
            object.dispatcher_object(),
            Executive,
            KernelMode,
            0,
            null_mut(),
        )
    };
}

/// A system thread, by its kernel handle, which it is waited for through.
pub struct SystemThread {
    handle: HANDLE,
}

// SAFETY: a kernel handle may be used from any thread of the system.
unsafe impl Send for SystemThread {}
// SAFETY: as for Send.
unsafe impl Sync for SystemThread {}

impl SystemThread {
    /// Starts `routine(context)` in a new system thread.
    ///
    /// # Safety
    /// `context` stays valid for `routine` until [`SystemThread::join`] returns.
    pub unsafe fn spawn(routine: KSTART_ROUTINE, context: PVOID) -> Result<Self, NTSTATUS> {
        // A kernel handle: the caller's process (an IOCTL's) cannot see or close it.
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as ULONG,
            RootDirectory: null_mut(),
            ObjectName: null_mut(),
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: null_mut(),
            SecurityQualityOfService: null_mut(),
        };
        let mut handle = null_mut();
        // SAFETY: a thread in the system process; the caller vouches for the context.
        let status = unsafe {
            PsCreateSystemThread(
                &mut handle,
                THREAD_ALL_ACCESS,
                &mut attributes,
                null_mut(),
                null_mut(),
                routine,
                context,
            )
        };
        if NT_SUCCESS(status) {
            Ok(SystemThread { handle })
        } else {
            Err(status)
        }
    }

    /// Waits until the thread has returned (dropping the value does the same).
    pub fn join(self) {
        drop(self);
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        // SAFETY: the kernel handle spawn made, waited on, then closed once.
        unsafe {
            ZwWaitForSingleObject(self.handle, 0, null_mut());
            ZwClose(self.handle);
        }
    }
}
