//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls nothing of the
//! simulator.
//!
//! Threads as the kernel sees them: each thread's object, and the processor control region its
//! GS points at while it runs driver code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    pub(crate) fn new() -> Arc<ThreadObject> {
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

    /// Signals the object: the thread has ended (`crate::ke::dispatcher::end_thread` wakes its
    /// waiters).
    pub(crate) fn mark_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }
}

/// Every thread object, for waits on them by address.
static ALL_THREADS: Mutex<Vec<std::sync::Weak<ThreadObject>>> = Mutex::new(Vec::new());

pub(crate) fn thread_object_at(address: usize) -> Option<Arc<ThreadObject>> {
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
    pub(crate) static CURRENT_THREAD: std::cell::OnceCell<Arc<ThreadObject>> =
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
