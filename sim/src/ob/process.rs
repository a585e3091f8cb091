//! User processes: their token, their memory (which the driver probes, locks and maps), their
//! handles (to event objects and to the adapter's device), and their exit.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::{house_rule, unsupported, violation};
use crate::ke::irql;

const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;
const STATUS_INVALID_PARAMETER_2: NTSTATUS = 0xC000_00F0_u32 as i32;
const STATUS_PROCEDURE_NOT_FOUND: NTSTATUS = 0xC000_007A_u32 as i32;
const PAGE_SIZE: usize = 4096;

/// Whose security context a process runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// LocalSystem, as a service runs.
    System,
    /// An elevated member of the Administrators group.
    Administrator,
    /// A plain user.
    User,
}

/// The integrity level a process runs at (Mandatory Integrity Control): LocalSystem at system, an
/// elevated administrator at high, a plain user (or a non-elevated administrator) at medium.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IntegrityLevel {
    Low,
    Medium,
    High,
    System,
}

impl Token {
    /// The integrity level a process with this token gets unless it asks for another.
    pub fn default_integrity(self) -> IntegrityLevel {
        match self {
            Token::System => IntegrityLevel::System,
            Token::Administrator => IntegrityLevel::High,
            Token::User => IntegrityLevel::Medium,
        }
    }
}

/// The process's pointer width, which decides the layout of its IOCTL buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitness {
    Bits32,
    Bits64,
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
    fn address(self: &Arc<Self>) -> usize {
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
        crate::ke::dispatcher::wake_waiters_of(self.header.as_ptr() as usize);
        if let Some(on_set) = &self.on_set {
            on_set();
        }
    }
}

#[derive(Clone)]
enum Object {
    Event(Arc<EventObject>),
    File(Arc<crate::io::FileObject>),
    Thread(Arc<crate::ke::thread::ThreadObject>),
}

#[derive(Clone)]
struct HandleEntry {
    object: Object,
    access: ACCESS_MASK,
}

struct UserAllocation {
    base: usize,
    len: usize,
    /// Pages of it locked by the driver (through MDLs).
    locked: usize,
}

pub struct ProcessState {
    pub id: u64,
    /// What the driver sees as the PEPROCESS.
    identity: Box<[u64; 8]>,
    pub token: Token,
    pub integrity: IntegrityLevel,
    pub bitness: Bitness,
    memory: Mutex<Vec<UserAllocation>>,
    handles: Mutex<BTreeMap<u64, HandleEntry>>,
    next_handle: AtomicU64,
}

impl ProcessState {
    pub fn eprocess(&self) -> PEPROCESS {
        self.identity.as_ptr().cast_mut().cast()
    }
}

impl Drop for ProcessState {
    fn drop(&mut self) {
        for allocation in self.memory.get_mut().unwrap().drain(..) {
            unmap(allocation.base, allocation.len);
        }
    }
}

/// Fresh zeroed pages, below 2 GiB when `low` (so a 32-bit process's pointers hold them).
fn map(len: usize, low: bool) -> usize {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if low { libc::MAP_32BIT } else { 0 };
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "host mmap failed");
    base as usize
}

fn unmap(base: usize, len: usize) {
    // SAFETY: a mapping made by `map` with this length, unmapped once.
    unsafe { libc::munmap(base as *mut libc::c_void, len.max(1)) };
}

static NEXT_PROCESS_ID: AtomicU64 = AtomicU64::new(4);
/// The System process: the context of kernel threads and of kernel-mode callers.
static SYSTEM: Mutex<Option<Arc<ProcessState>>> = Mutex::new(None);

thread_local! {
    static CURRENT: RefCell<Option<Arc<ProcessState>>> = const { RefCell::new(None) };
}

/// Every process, for whoever lists the system's handles or looks a process up by its id.
static PROCESSES: Mutex<Vec<std::sync::Weak<ProcessState>>> = Mutex::new(Vec::new());

fn new_state(token: Token, integrity: IntegrityLevel, bitness: Bitness) -> Arc<ProcessState> {
    let state = Arc::new(ProcessState {
        id: NEXT_PROCESS_ID.fetch_add(4, Ordering::SeqCst),
        identity: Box::new([0; 8]),
        token,
        integrity,
        bitness,
        memory: Mutex::new(Vec::new()),
        handles: Mutex::new(BTreeMap::new()),
        next_handle: AtomicU64::new(4),
    });
    let mut processes = PROCESSES.lock().unwrap();
    processes.retain(|process| process.strong_count() > 0);
    processes.push(Arc::downgrade(&state));
    state
}

/// The processes alive now.
fn live_processes() -> Vec<Arc<ProcessState>> {
    PROCESSES
        .lock()
        .unwrap()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect()
}

/// Handles, in any process, to file objects of `device`: what keeps PnP from removing it.
pub(crate) fn handles_to_device(device: PDEVICE_OBJECT) -> usize {
    live_processes()
        .iter()
        .map(|process| {
            process
                .handles
                .lock()
                .unwrap()
                .values()
                .filter(
                    |entry| matches!(&entry.object, Object::File(file) if file.device() == device),
                )
                .count()
        })
        .sum()
}

impl ProcessState {
    /// Closes a handle; false if the process has none by that value. The last handle to a file
    /// object sends the driver its cleanup request (and close, unless the driver references the
    /// file object).
    fn close_handle(self: &Arc<Self>, handle: u64) -> bool {
        let entry = self.handles.lock().unwrap().remove(&handle);
        match entry {
            Some(HandleEntry {
                object: Object::File(file),
                ..
            }) => {
                crate::io::release_file_handle(self, file);
                true
            }
            Some(_) => true,
            None => false,
        }
    }
}

pub(crate) fn system() -> Arc<ProcessState> {
    SYSTEM
        .lock()
        .unwrap()
        .get_or_insert_with(|| new_state(Token::System, IntegrityLevel::System, Bitness::Bits64))
        .clone()
}

/// The process whose context the current thread runs in.
pub fn current() -> Arc<ProcessState> {
    CURRENT
        .with(|current| current.borrow().clone())
        .unwrap_or_else(system)
}

/// Runs `call` in the context of a test's process, as a system call from it would.
pub fn in_context_of<R>(process: &Process, call: impl FnOnce() -> R) -> R {
    in_context(&process.state, call)
}

/// Runs `call` in the context of `process`, as a system call from it would.
pub fn in_context<R>(process: &Arc<ProcessState>, call: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|current| current.replace(Some(process.clone())));
    let result = call();
    CURRENT.with(|current| *current.borrow_mut() = previous);
    result
}

/// A user process.
pub struct Process {
    pub(crate) state: Arc<ProcessState>,
}

impl Process {
    pub fn new(token: Token, bitness: Bitness) -> Process {
        Self::with_integrity(token, token.default_integrity(), bitness)
    }

    /// A process whose token runs at `integrity` rather than its token's usual level (an
    /// administrator's process that lowered its own, say).
    pub fn with_integrity(token: Token, integrity: IntegrityLevel, bitness: Bitness) -> Process {
        Process {
            state: new_state(token, integrity, bitness),
        }
    }

    pub fn token(&self) -> Token {
        self.state.token
    }

    pub fn bitness(&self) -> Bitness {
        self.state.bitness
    }

    /// Allocates `len` bytes of zeroed, page-aligned memory in the process: what VirtualAlloc
    /// returns. The address is the one the process would pass to the driver.
    pub fn allocate(&self, len: usize) -> u64 {
        let base = map(len, self.state.bitness == Bitness::Bits32);
        self.state.memory.lock().unwrap().push(UserAllocation {
            base,
            len,
            locked: 0,
        });
        base as u64
    }

    /// Maps `len` bytes of the shared memory file `fd` into the process (MAP_SHARED), as the
    /// emulator does with a client's ring memfd; the address is the one the process passes on.
    pub fn map_shared(&self, fd: std::os::fd::BorrowedFd<'_>, len: usize) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of the caller's file at an address of the kernel's choosing;
        // the caller checked the file holds `len` bytes.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.state.memory.lock().unwrap().push(UserAllocation {
            base: base as usize,
            len,
            locked: 0,
        });
        Ok(base as u64)
    }

    /// Frees memory from [`Process::allocate`], as VirtualFree; it may not be locked.
    pub fn free(&self, address: u64) {
        let mut memory = self.state.memory.lock().unwrap();
        let index = memory
            .iter()
            .position(|allocation| allocation.base as u64 == address)
            .expect("freeing memory the process did not allocate");
        assert_eq!(
            memory[index].locked, 0,
            "freeing memory the driver has locked"
        );
        let allocation = memory.remove(index);
        unmap(allocation.base, allocation.len);
    }

    /// A pointer to the process's memory at `address`, for the test to read and write it as
    /// the process would.
    pub fn memory(&self, address: u64) -> *mut u8 {
        address as *mut u8
    }

    /// Creates an auto-reset event and returns the process's handle to it, with `access`.
    pub fn create_event(&self, access: ACCESS_MASK) -> (u64, Arc<EventObject>) {
        self.create_event_with(access, None)
    }

    /// Creates a manual-reset event (CreateEvent with bManualReset TRUE): a wait leaves it set.
    pub fn create_manual_reset_event(&self, access: ACCESS_MASK) -> (u64, Arc<EventObject>) {
        self.insert_event(access, None, None, true)
    }

    /// Like [`Process::create_event`], calling `on_set` whenever the event is set.
    pub fn create_event_with(
        &self,
        access: ACCESS_MASK,
        on_set: Option<Box<dyn Fn() + Send + Sync>>,
    ) -> (u64, Arc<EventObject>) {
        self.insert_event(access, on_set, None, false)
    }

    /// Like [`Process::create_event`], for an event set from outside the simulator: it is set
    /// whenever `source`, an eventfd, counts more than zero.
    pub fn create_event_from(
        &self,
        access: ACCESS_MASK,
        source: OwnedFd,
    ) -> (u64, Arc<EventObject>) {
        self.insert_event(access, None, Some(source), false)
    }

    fn insert_event(
        &self,
        access: ACCESS_MASK,
        on_set: Option<Box<dyn Fn() + Send + Sync>>,
        source: Option<OwnedFd>,
        manual_reset: bool,
    ) -> (u64, Arc<EventObject>) {
        let event = Arc::new(EventObject {
            header: [0; 3],
            signalled: Mutex::new(false),
            changed: Condvar::new(),
            sets: AtomicU64::new(0),
            manual_reset,
            on_set,
            source,
            outside_sets: AtomicU64::new(0),
        });
        let handle = self.insert_handle(Object::Event(event.clone()), access);
        (handle, event)
    }

    pub(crate) fn insert_file(&self, file: Arc<crate::io::FileObject>, access: ACCESS_MASK) -> u64 {
        self.insert_handle(Object::File(file), access)
    }

    fn insert_handle(&self, object: Object, access: ACCESS_MASK) -> u64 {
        let handle = self.state.next_handle.fetch_add(4, Ordering::SeqCst);
        self.state
            .handles
            .lock()
            .unwrap()
            .insert(handle, HandleEntry { object, access });
        handle
    }

    /// The access a handle of this process grants, if the process has it.
    pub fn handle_access(&self, handle: u64) -> Option<ACCESS_MASK> {
        let handles = self.state.handles.lock().unwrap();
        handles.get(&handle).map(|entry| entry.access)
    }

    /// Closes a handle. The last handle to a file object sends the driver its cleanup and
    /// close requests.
    pub fn close_handle(&self, handle: u64) {
        if !self.state.close_handle(handle) {
            panic!("closing handle {handle:#x}, which the process does not have");
        }
    }

    /// Whether the process still has `handle` (the driver may have closed it).
    pub fn has_handle(&self, handle: u64) -> bool {
        self.state.handles.lock().unwrap().contains_key(&handle)
    }

    /// Duplicates one of this process's handles into `target`, keeping its access.
    pub fn duplicate_handle(&self, handle: u64, target: &Process) -> u64 {
        let entry = self.state.handles.lock().unwrap()[&handle].clone();
        if let Object::File(file) = &entry.object {
            crate::io::add_file_handle(file);
        }
        target.insert_handle(entry.object, entry.access)
    }

    /// The process exits: the process-exit notify routines run, then its handles close, then
    /// its address space goes, which must have no pages still locked (on Windows that is bug
    /// check 0x76, PROCESS_HAS_LOCKED_PAGES).
    pub fn exit(self) {
        let routines = NOTIFY_ROUTINES.lock().unwrap().clone();
        in_context(&self.state, || {
            for routine in routines {
                irql::call_at(PASSIVE_LEVEL, "process notify routine", || {
                    crate::ke::sync::as_notify_routine(|| {
                        // SAFETY: a routine the driver registered, with an exiting process.
                        unsafe {
                            routine(
                                self.state.eprocess(),
                                self.state.id as HANDLE,
                                std::ptr::null_mut(),
                            )
                        }
                    })
                });
            }
        });
        let handles: Vec<u64> = self.state.handles.lock().unwrap().keys().copied().collect();
        for handle in handles {
            self.state.close_handle(handle);
        }
        let locked: usize = self
            .state
            .memory
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.locked)
            .sum();
        if locked != 0 {
            // Bug Check 0x76 PROCESS_HAS_LOCKED_PAGES: a driver did not release pages it locked,
            // found when the process's address space goes.
            violation(format!(
                "process {} exited with {locked} pages still locked: PROCESS_HAS_LOCKED_PAGES",
                self.state.id
            ));
        }
    }
}

/// Locks (or, with `delta` negative, unlocks) the current process's pages of
/// `address..address + len`; false if the range is not inside one of its allocations.
pub(crate) fn lock_user_range(
    process: &ProcessState,
    address: usize,
    len: usize,
    delta: isize,
) -> bool {
    let mut memory = process.memory.lock().unwrap();
    let Some(allocation) = memory.iter_mut().find(|allocation| {
        address >= allocation.base
            && address
                .checked_add(len)
                .is_some_and(|end| end <= allocation.base + allocation.len)
    }) else {
        return false;
    };
    let pages = len.div_ceil(PAGE_SIZE);
    allocation.locked = allocation
        .locked
        .wrapping_add_signed(delta * pages as isize);
    true
}

/// A kernel object the driver holds references to.
#[derive(Clone)]
enum Referenced {
    Event(Arc<EventObject>),
    File(Arc<crate::io::FileObject>),
    Process(Arc<ProcessState>),
    // Held for the reference's sake: the object lives while the driver references it.
    #[allow(dead_code)]
    Thread(Arc<crate::ke::thread::ThreadObject>),
}

/// Objects the driver holds references to, by address, with the count.
static REFERENCES: Mutex<BTreeMap<usize, (Referenced, usize)>> = Mutex::new(BTreeMap::new());

/// The user event at `address` the driver holds a reference to, if any.
pub(crate) fn referenced_event(address: usize) -> Option<Arc<EventObject>> {
    match REFERENCES.lock().unwrap().get(&address) {
        Some((Referenced::Event(event), _)) => Some(event.clone()),
        _ => None,
    }
}

/// Whether the driver holds a reference to the object at `address`.
pub(crate) fn is_referenced(address: usize) -> bool {
    REFERENCES.lock().unwrap().contains_key(&address)
}

fn add_reference(address: usize, object: impl FnOnce() -> Referenced) {
    REFERENCES
        .lock()
        .unwrap()
        .entry(address)
        .or_insert_with(|| (object(), 0))
        .1 += 1;
}

/// References the driver has not dropped.
pub fn references_outstanding() -> usize {
    REFERENCES
        .lock()
        .unwrap()
        .values()
        .map(|(_, count)| count)
        .sum()
}

/// What `ExEventObjectType` points at; only its address matters.
#[repr(transparent)]
pub struct ObjectType(*const u8);
// SAFETY: an address that is never dereferenced.
unsafe impl Sync for ObjectType {}
static EVENT_TYPE_TARGET: u8 = 0;
static FILE_TYPE_TARGET: u8 = 0;
static THREAD_TYPE_TARGET: u8 = 0;

#[unsafe(no_mangle)]
pub static ExEventObjectType: ObjectType = ObjectType(&EVENT_TYPE_TARGET);
#[unsafe(no_mangle)]
pub static IoFileObjectType: ObjectType = ObjectType(&FILE_TYPE_TARGET);
#[unsafe(no_mangle)]
pub static PsThreadType: ObjectType = ObjectType(&THREAD_TYPE_TARGET);

/// `OBJECT_HANDLE_INFORMATION` (wdm.h): what ObReferenceObjectByHandle tells of the handle.
#[repr(C)]
struct ObjectHandleInformation {
    handle_attributes: ULONG,
    granted_access: ACCESS_MASK,
}

/// Kernel handles have the top bit set (wdm.h: ObIsKernelHandle tests for a negative value).
fn is_kernel_handle(handle: u64) -> bool {
    (handle as i64) < 0
}

#[kernel_export]
pub unsafe extern "efiapi" fn ObReferenceObjectByHandle(
    handle: HANDLE,
    access: ACCESS_MASK,
    object_type: POBJECT_TYPE,
    mode: KPROCESSOR_MODE,
    object: *mut PVOID,
    handle_information: PVOID,
) -> NTSTATUS {
    // ObReferenceObjectByHandle (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ObReferenceObjectByHandle");
    if should_fail(Site::ObReferenceObjectByHandle) {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    let value = handle as u64;
    // A kernel handle is looked up in the kernel's table, and only for a KernelMode caller; a
    // UserMode caller's kernel handle is invalid (ObReferenceObjectByHandle's page: "Drivers
    // should always specify UserMode for handles they receive from user address space").
    let entry = if is_kernel_handle(value) {
        if mode != KernelMode {
            return STATUS_INVALID_HANDLE;
        }
        match crate::ob::threads::thread_of_handle(value) {
            Some(thread) => HandleEntry {
                object: Object::Thread(thread),
                access: THREAD_ALL_ACCESS,
            },
            None => return STATUS_INVALID_HANDLE,
        }
    } else {
        let process = current();
        let found = process.handles.lock().unwrap().get(&value).cloned();
        match found {
            Some(entry) => entry,
            None => return STATUS_INVALID_HANDLE,
        }
    };
    if mode == UserMode && entry.access & access != access {
        return STATUS_ACCESS_DENIED;
    }
    let (address, referenced) = match entry.object {
        // A null type asks for whatever object the handle names.
        Object::Event(event)
            if object_type.is_null() || object_type == object_type_of(&ExEventObjectType) =>
        {
            (event.address(), Referenced::Event(event))
        }
        Object::File(file)
            if object_type.is_null() || object_type == object_type_of(&IoFileObjectType) =>
        {
            (file.pointer() as usize, Referenced::File(file))
        }
        Object::Thread(thread)
            if object_type.is_null() || object_type == object_type_of(&PsThreadType) =>
        {
            (thread.address(), Referenced::Thread(thread))
        }
        _ => return STATUS_OBJECT_TYPE_MISMATCH,
    };
    add_reference(address, || referenced);
    // SAFETY: the driver's out parameters, the second optional.
    unsafe {
        *object = address as PVOID;
        if let Some(information) = handle_information
            .cast::<ObjectHandleInformation>()
            .as_mut()
        {
            *information = ObjectHandleInformation {
                handle_attributes: 0,
                granted_access: entry.access,
            };
        }
    }
    STATUS_SUCCESS
}

fn object_type_of(variable: &ObjectType) -> POBJECT_TYPE {
    variable.0.cast_mut().cast()
}

#[kernel_export]
pub extern "efiapi" fn ObfDereferenceObject(object: PVOID) -> isize {
    // ObfDereferenceObject (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ObfDereferenceObject");
    let mut references = REFERENCES.lock().unwrap();
    let Some((referenced, count)) = references.get_mut(&(object as usize)) else {
        // ObfDereferenceObject drops a reference the caller holds; one it never took frees the object
        // under its other holders (ObDereferenceObject; Bug Check 0x18, REFERENCE_BY_POINTER).
        violation(format!(
            "dereferencing {object:p}, which the driver holds no reference to"
        ));
        return 0;
    };
    *count -= 1;
    let left = *count;
    if left == 0 {
        let referenced = referenced.clone();
        references.remove(&(object as usize));
        drop(references);
        if let Referenced::File(file) = referenced {
            crate::io::file_dereferenced(file);
        }
    }
    left as isize
}

#[kernel_export]
pub extern "efiapi" fn ObfReferenceObject(object: PVOID) -> isize {
    // ObfReferenceObject (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ObfReferenceObject");
    let address = object as usize;
    if !is_referenced(address) {
        // The file object of an IRP the driver is handling is live: the driver may reference
        // it without a handle.
        match crate::io::live_file(address) {
            Some(file) => add_reference(address, || Referenced::File(file)),
            // ObfReferenceObject needs a live object: one the caller holds a reference to, or one the
            // system lends it for the call (the file object of an IRP being handled).
            None => violation(format!(
                "referencing {object:p}, which the driver holds no reference to"
            )),
        }
        return 1;
    }
    let mut references = REFERENCES.lock().unwrap();
    let (_, count) = references.get_mut(&address).expect("referenced");
    *count += 1;
    *count as isize
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
    if let Some(was) = crate::ke::dispatcher::set_kernel_event(event) {
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

#[kernel_export]
pub extern "efiapi" fn IoGetCurrentProcess() -> PEPROCESS {
    current().eprocess()
}

/// The process-exit notification routines registered.
static NOTIFY_ROUTINES: Mutex<Vec<CREATE_PROCESS_NOTIFY_ROUTINE_EX>> = Mutex::new(Vec::new());

pub fn notify_routines_registered() -> usize {
    NOTIFY_ROUTINES.lock().unwrap().len()
}

#[kernel_export]
pub extern "efiapi" fn PsSetCreateProcessNotifyRoutineEx(
    routine: CREATE_PROCESS_NOTIFY_ROUTINE_EX,
    remove: u8,
) -> NTSTATUS {
    // PsSetCreateProcessNotifyRoutineEx (ntddk.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "PsSetCreateProcessNotifyRoutineEx");
    let mut routines = NOTIFY_ROUTINES.lock().unwrap();
    let position = routines
        .iter()
        .position(|&r| r as usize == routine as usize);
    match (remove != 0, position) {
        (false, None) => {
            routines.push(routine);
            STATUS_SUCCESS
        }
        (false, Some(_)) => STATUS_INVALID_PARAMETER_2,
        (true, Some(index)) => {
            routines.remove(index);
            STATUS_SUCCESS
        }
        (true, None) => STATUS_PROCEDURE_NOT_FOUND,
    }
}

const STATUS_INFO_LENGTH_MISMATCH: NTSTATUS = 0xC000_0004_u32 as i32;
const STATUS_INVALID_INFO_CLASS: NTSTATUS = 0xC000_0003_u32 as i32;
const STATUS_INVALID_CID: NTSTATUS = 0xC000_000B_u32 as i32;
/// Object type indices the snapshot reports (they vary by Windows version; drivers must not rely
/// on them).
const FILE_TYPE_INDEX: u16 = 37;
const EVENT_TYPE_INDEX: u16 = 16;
const THREAD_TYPE_INDEX: u16 = 8;

#[kernel_export]
pub unsafe extern "efiapi" fn ZwQuerySystemInformation(
    class: ULONG,
    information: PVOID,
    length: ULONG,
    return_length: *mut ULONG,
) -> NTSTATUS {
    // ZwQuerySystemInformation (the documented NtQuerySystemInformation): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ZwQuerySystemInformation");
    if class != SystemExtendedHandleInformation {
        return STATUS_INVALID_INFO_CLASS;
    }
    let mut entries = Vec::new();
    for process in live_processes() {
        for (&handle, entry) in process.handles.lock().unwrap().iter() {
            let (object, type_index) = match &entry.object {
                Object::Event(event) => (event.address() as PVOID, EVENT_TYPE_INDEX),
                Object::File(file) => (file.pointer().cast(), FILE_TYPE_INDEX),
                Object::Thread(thread) => (thread.address() as PVOID, THREAD_TYPE_INDEX),
            };
            entries.push(SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX {
                Object: object,
                UniqueProcessId: process.id as usize,
                HandleValue: handle as usize,
                GrantedAccess: entry.access,
                CreatorBackTraceIndex: 0,
                ObjectTypeIndex: type_index,
                HandleAttributes: 0,
                Reserved: 0,
            });
        }
    }
    let header = std::mem::offset_of!(SYSTEM_HANDLE_INFORMATION_EX, Handles);
    let needed = header + entries.len() * size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>();
    if !return_length.is_null() {
        // SAFETY: the driver's out parameter.
        unsafe { *return_length = needed as ULONG };
    }
    if (length as usize) < needed {
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    // SAFETY: the driver's buffer of `length` >= `needed` bytes.
    unsafe {
        let base = information.cast::<u8>();
        base.cast::<usize>().write_unaligned(entries.len());
        base.add(size_of::<usize>())
            .cast::<usize>()
            .write_unaligned(0);
        for (index, entry) in entries.iter().enumerate() {
            base.add(header + index * size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>())
                .cast::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>()
                .write_unaligned(*entry);
        }
    }
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn PsLookupProcessByProcessId(
    id: HANDLE,
    process: *mut PEPROCESS,
) -> NTSTATUS {
    // PsLookupProcessByProcessId (ntifs.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "PsLookupProcessByProcessId");
    let Some(found) = live_processes()
        .into_iter()
        .find(|candidate| candidate.id == id as u64)
    else {
        return STATUS_INVALID_CID;
    };
    let address = found.eprocess() as usize;
    add_reference(address, || Referenced::Process(found));
    // SAFETY: the driver's out parameter.
    unsafe { *process = address as PEPROCESS };
    STATUS_SUCCESS
}

/// What KeStackAttachProcess writes first, to check the state it is given back.
const ATTACHED: u64 = 0xA77A_C4ED;

thread_local! {
    /// The contexts KeStackAttachProcess left, innermost last.
    static DETACH_TO: RefCell<Vec<Option<Arc<ProcessState>>>> = const { RefCell::new(Vec::new()) };
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeStackAttachProcess(process: PEPROCESS, apc_state: *mut KAPC_STATE) {
    // KeStackAttachProcess (ntifs.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "KeStackAttachProcess");
    let target = match REFERENCES.lock().unwrap().get(&(process as usize)) {
        Some((Referenced::Process(target), _)) => target.clone(),
        _ => {
            // The process object stays referenced while the caller uses it (PsLookupProcessByProcessId:
            // the caller releases the reference with ObDereferenceObject when it is done with it).
            violation("attaching to a process the driver holds no reference to");
            return;
        }
    };
    // SAFETY: the driver's KAPC_STATE, 0x30 bytes.
    unsafe { apc_state.cast::<u64>().write(ATTACHED) };
    let previous = CURRENT.with(|current| current.replace(Some(target)));
    DETACH_TO.with(|stack| stack.borrow_mut().push(previous));
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeUnstackDetachProcess(apc_state: *mut KAPC_STATE) {
    // SAFETY: the driver's KAPC_STATE.
    let marker = unsafe { apc_state.cast::<u64>().read() };
    let Some(previous) = DETACH_TO.with(|stack| stack.borrow_mut().pop()) else {
        // KeUnstackDetachProcess restores the attach state a KeStackAttachProcess saved
        // (KeUnstackDetachProcess).
        violation("KeUnstackDetachProcess without KeStackAttachProcess");
        return;
    };
    if marker != ATTACHED {
        // ApcState is the KAPC_STATE that was passed to KeStackAttachProcess (KeUnstackDetachProcess).
        violation("KeUnstackDetachProcess with a state KeStackAttachProcess did not fill");
    }
    CURRENT.with(|current| *current.borrow_mut() = previous);
}

#[kernel_export]
pub unsafe extern "efiapi" fn ObCloseHandle(handle: HANDLE, mode: KPROCESSOR_MODE) -> NTSTATUS {
    // ObCloseHandle (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ObCloseHandle");
    if mode != UserMode {
        unsupported("ObCloseHandle of a kernel handle (the simulator closes user handles)");
    }
    if current().close_handle(handle as u64) {
        STATUS_SUCCESS
    } else {
        STATUS_INVALID_HANDLE
    }
}
