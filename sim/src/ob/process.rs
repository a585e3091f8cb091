//! Layer: ob, objects, handles and processes, above ke. It calls ke and bookkeeping.
//!
//! The object manager and processes: processes' handle tables (to event objects, to the
//! adapter's device) and the kernel's handles to system threads, the references a driver holds,
//! processes' tokens, memory (which the driver probes, locks and maps), attachment and exit.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::violation;
use crate::ke::dispatcher::{self, EventObject};
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

/// An object of a type a layer above defines (the I/O manager's file objects), as the object
/// manager sees it: its body's address, and what its type does as handles and references come
/// and go (NT's object type procedures: close when a handle closes, delete when the last
/// reference goes).
pub trait ObjectBody: Any + Send + Sync {
    /// The body's address: what the driver sees as the object pointer.
    fn address(&self) -> usize;
    /// Whether it is of the type `object_type` points at (ObReferenceObjectByHandle's check).
    fn is_of_type(&self, object_type: POBJECT_TYPE) -> bool;
    /// Its type's index in the system's handle snapshot.
    fn type_index(&self) -> u16;
    /// A handle to it was duplicated.
    fn handle_added(&self);
    /// A handle to it, in `process`, was closed.
    fn handle_closed(self: Arc<Self>, process: &Arc<ProcessState>);
    /// The driver dropped its last reference to it.
    fn last_reference_dropped(self: Arc<Self>);
    fn as_any(&self) -> &dyn Any;
}

#[derive(Clone)]
enum Object {
    Event(Arc<EventObject>),
    Thread(Arc<crate::ke::thread::ThreadObject>),
    Other(Arc<dyn ObjectBody>),
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
    /// The process has exited: its handle table and address space are gone, and it lives on only
    /// while something references it (PsLookupProcessByProcessId still finds it, and a thread
    /// may still attach to it).
    exited: AtomicBool,
    memory: Mutex<Vec<UserAllocation>>,
    handles: Mutex<BTreeMap<u64, HandleEntry>>,
    next_handle: AtomicU64,
}

impl ProcessState {
    pub fn eprocess(&self) -> PEPROCESS {
        self.identity.as_ptr().cast_mut().cast()
    }

    /// A handle to `object` in this process's table: its value there.
    fn insert(&self, object: Object, access: ACCESS_MASK) -> u64 {
        assert!(
            !self.exited.load(Ordering::SeqCst),
            "a handle in process {}, which has exited",
            self.id
        );
        let handle = self.next_handle.fetch_add(4, Ordering::SeqCst);
        self.handles
            .lock()
            .unwrap()
            .insert(handle, HandleEntry { object, access });
        handle
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::SeqCst)
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

/// The System process's id ("System" is PID 4 on every Windows since 2000).
pub const SYSTEM_PROCESS_ID: u64 = 4;
/// User processes' ids: multiples of 4 above the System process's.
static NEXT_PROCESS_ID: AtomicU64 = AtomicU64::new(SYSTEM_PROCESS_ID + 4);
/// The System process: the context of kernel threads and of kernel-mode callers.
static SYSTEM: Mutex<Option<Arc<ProcessState>>> = Mutex::new(None);

thread_local! {
    static CURRENT: RefCell<Option<Arc<ProcessState>>> = const { RefCell::new(None) };
}

/// Every process, for whoever lists the system's handles or looks a process up by its id.
static PROCESSES: Mutex<Vec<std::sync::Weak<ProcessState>>> = Mutex::new(Vec::new());

fn new_state(
    id: u64,
    token: Token,
    integrity: IntegrityLevel,
    bitness: Bitness,
) -> Arc<ProcessState> {
    let state = Arc::new(ProcessState {
        id,
        exited: AtomicBool::new(false),
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
    // The System process exists from boot.
    system();
    PROCESSES
        .lock()
        .unwrap()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .collect()
}

/// The objects of every handle in every process that `matches`, once per handle.
pub(crate) fn handle_objects(
    matches: impl Fn(&dyn ObjectBody) -> bool,
) -> Vec<Arc<dyn ObjectBody>> {
    live_processes()
        .iter()
        .flat_map(|process| {
            process
                .handles
                .lock()
                .unwrap()
                .values()
                .filter_map(|entry| match &entry.object {
                    Object::Other(object) if matches(&**object) => Some(object.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

impl ProcessState {
    /// Closes a handle; false if the process has none by that value. The last handle to a file
    /// object sends the driver its cleanup request (and close, unless the driver references the
    /// file object).
    fn close_handle(self: &Arc<Self>, handle: u64) -> bool {
        let entry = self.handles.lock().unwrap().remove(&handle);
        match entry {
            Some(HandleEntry {
                object: Object::Other(object),
                ..
            }) => {
                object.handle_closed(self);
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
        .get_or_insert_with(|| {
            let system = new_state(
                SYSTEM_PROCESS_ID,
                Token::System,
                IntegrityLevel::System,
                Bitness::Bits64,
            );
            PsInitialSystemProcess.store(system.eprocess().cast(), Ordering::SeqCst);
            system
        })
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
            state: new_state(
                NEXT_PROCESS_ID.fetch_add(4, Ordering::SeqCst),
                token,
                integrity,
                bitness,
            ),
        }
    }

    /// The process id, as the system's handle snapshot and PsLookupProcessByProcessId know it.
    pub fn id(&self) -> u64 {
        self.state.id
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
        let event = EventObject::new(manual_reset, on_set, source);
        let handle = self.insert_handle(Object::Event(event.clone()), access);
        (handle, event)
    }

    /// A handle to `object`, with `access`, in this process.
    pub(crate) fn insert_object(&self, object: Arc<dyn ObjectBody>, access: ACCESS_MASK) -> u64 {
        self.insert_handle(Object::Other(object), access)
    }

    fn insert_handle(&self, object: Object, access: ACCESS_MASK) -> u64 {
        let handle = self.state.insert(object, access);
        if Arc::ptr_eq(&self.state, &system()) {
            // The System process's handles are the kernel's: given with the kernel bit, as a
            // kernel component asks for them (OBJ_KERNEL_HANDLE).
            handle | KERNEL_HANDLE
        } else {
            handle
        }
    }

    /// The access a handle of this process grants, if the process has it.
    pub fn handle_access(&self, handle: u64) -> Option<ACCESS_MASK> {
        let handles = self.state.handles.lock().unwrap();
        handles
            .get(&(handle & !KERNEL_HANDLE))
            .map(|entry| entry.access)
    }

    /// Closes a handle. The last handle to a file object sends the driver its cleanup and
    /// close requests.
    pub fn close_handle(&self, handle: u64) {
        if !self.state.close_handle(handle & !KERNEL_HANDLE) {
            panic!("closing handle {handle:#x}, which the process does not have");
        }
    }

    /// What another thread of this process does to close `handle`, at whatever moment a test
    /// arranges (say, while the driver works on a request made through it).
    pub fn handle_closer(&self, handle: u64) -> impl FnOnce() + Send + 'static {
        let state = self.state.clone();
        move || {
            assert!(
                state.close_handle(handle & !KERNEL_HANDLE),
                "closing handle {handle:#x}, which the process does not have"
            );
        }
    }

    /// Whether the process still has `handle` (the driver may have closed it).
    pub fn has_handle(&self, handle: u64) -> bool {
        self.state
            .handles
            .lock()
            .unwrap()
            .contains_key(&(handle & !KERNEL_HANDLE))
    }

    /// The System process, for a kernel component of a test's: its handles are kernel handles
    /// (OBJ_KERNEL_HANDLE), and what it opens it opens in kernel mode.
    pub fn system() -> Process {
        Process { state: system() }
    }

    /// Whether this is the System process.
    pub fn is_system(&self) -> bool {
        self.state.id == SYSTEM_PROCESS_ID
    }

    /// Duplicates one of this process's handles into `target`, keeping its access.
    pub fn duplicate_handle(&self, handle: u64, target: &Process) -> u64 {
        let entry = self.state.handles.lock().unwrap()[&(handle & !KERNEL_HANDLE)].clone();
        if let Object::Other(object) = &entry.object {
            object.handle_added();
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
        // The handle table is gone; the process object lives on while referenced.
        self.state.exited.store(true, Ordering::SeqCst);
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
    Other(Arc<dyn ObjectBody>),
    Process(Arc<ProcessState>),
    // Held for the reference's sake: the object lives while the driver references it.
    #[allow(dead_code)]
    Thread(Arc<crate::ke::thread::ThreadObject>),
}

/// Objects a driver may reference without a handle while the system lends them to it (the file
/// object of an IRP being handled), by address.
static LENT: Mutex<BTreeMap<usize, std::sync::Weak<dyn ObjectBody>>> = Mutex::new(BTreeMap::new());

/// `object` lives, and a driver given its address may reference it.
pub(crate) fn lend(object: &Arc<dyn ObjectBody>) {
    LENT.lock()
        .unwrap()
        .insert(object.address(), Arc::downgrade(object));
}

/// The object at `address` is going: no longer to be referenced.
pub(crate) fn stop_lending(address: usize) {
    LENT.lock().unwrap().remove(&address);
}

fn lent_object(address: usize) -> Option<Arc<dyn ObjectBody>> {
    LENT.lock().unwrap().get(&address)?.upgrade()
}

/// Objects the driver holds references to, by address, with the count.
static REFERENCES: Mutex<BTreeMap<usize, (Referenced, usize)>> = Mutex::new(BTreeMap::new());

/// Whether the driver holds a reference to the object at `address`.
pub(crate) fn is_referenced(address: usize) -> bool {
    REFERENCES.lock().unwrap().contains_key(&address)
}

fn add_reference(address: usize, object: impl FnOnce() -> Referenced) {
    let mut references = REFERENCES.lock().unwrap();
    let (referenced, count) = references.entry(address).or_insert_with(|| (object(), 0));
    *count += 1;
    // The dispatcher sets, clears and waits on a user's event only while a driver references it.
    if let (Referenced::Event(event), 1) = (&*referenced, *count) {
        dispatcher::event_referenced(event);
    }
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

/// `PsInitialSystemProcess` (wdm.h): the System process's EPROCESS, which a driver compares
/// with the processes it looks up. Set when the System process is made.
#[unsafe(no_mangle)]
pub static PsInitialSystemProcess: std::sync::atomic::AtomicPtr<std::ffi::c_void> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// The type object `variable` points at, as the driver reads it from the data import.
pub(crate) fn type_object(variable: &ObjectType) -> POBJECT_TYPE {
    variable.0.cast_mut().cast()
}
#[unsafe(no_mangle)]
pub static PsThreadType: ObjectType = ObjectType(&THREAD_TYPE_TARGET);

/// `OBJECT_HANDLE_INFORMATION` (wdm.h): what ObReferenceObjectByHandle tells of the handle.
#[repr(C)]
struct ObjectHandleInformation {
    handle_attributes: ULONG,
    granted_access: ACCESS_MASK,
}

/// Kernel handles have the top bit set (wdm.h: ObIsKernelHandle tests for a negative value); the
/// rest of the value is the handle's place in the kernel handle table, which is the System
/// process's table: that process's own handles are kernel handles without the bit.
const KERNEL_HANDLE: u64 = 0xFFFF_FFFF_8000_0000;

fn is_kernel_handle(handle: u64) -> bool {
    (handle as i64) < 0
}

/// A kernel handle to `thread`, made now, as PsCreateSystemThread makes it with
/// OBJ_KERNEL_HANDLE.
pub(crate) fn insert_thread_handle(
    thread: Arc<crate::ke::thread::ThreadObject>,
    access: ACCESS_MASK,
) -> u64 {
    system().insert(Object::Thread(thread), access) | KERNEL_HANDLE
}

/// The thread object a kernel handle names, if it names one.
pub(crate) fn thread_of_handle(handle: u64) -> Option<Arc<crate::ke::thread::ThreadObject>> {
    match lookup(handle, KernelMode).ok()?.2.object {
        Object::Thread(thread) => Some(thread),
        _ => None,
    }
}

/// Kernel handles to threads still open.
pub(crate) fn thread_handles_open() -> usize {
    system()
        .handles
        .lock()
        .unwrap()
        .values()
        .filter(|entry| matches!(entry.object, Object::Thread(_)))
        .count()
}

/// The table `handle` names for a caller of `mode`, its place there, and its entry: a kernel
/// handle is the kernel's, for KernelMode callers only; any other value is the current process's
/// (which, for the System process or a thread attached to it, is the kernel handle table again).
/// ObReferenceObjectByHandle's page: "Drivers should always specify UserMode for handles they
/// receive from user address space".
fn lookup(
    handle: u64,
    mode: KPROCESSOR_MODE,
) -> Result<(Arc<ProcessState>, u64, HandleEntry), NTSTATUS> {
    let (table, index) = if is_kernel_handle(handle) {
        if mode != KernelMode {
            return Err(STATUS_INVALID_HANDLE);
        }
        (system(), handle & !KERNEL_HANDLE)
    } else {
        (current(), handle)
    };
    let entry = table.handles.lock().unwrap().get(&index).cloned();
    match entry {
        Some(entry) => Ok((table, index, entry)),
        None => Err(STATUS_INVALID_HANDLE),
    }
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
    let entry = match lookup(value, mode) {
        Ok((_, _, entry)) => entry,
        Err(status) => {
            // Validating a handle a caller passed in its own context is what this call is for:
            // an invalid one is STATUS_INVALID_HANDLE, under Verifier too (Wintun's IOCTL
            // references its client's event handles so, with Verifier on). What Wintun found
            // Verifier stopping (no documented sub-code; its commit 12e9f53, "we can't use the
            // reference function to check the validity of a potentially invalid handle while the
            // verifier is enabled") is its force-close's reference of a snapshot's handle from a
            // system thread attached to the owner: that case, attached, is reported.
            if crate::bookkeeping::verifier::handle_checks() && attached() {
                violation(format!(
                    "Driver Verifier (handle checks): ObReferenceObjectByHandle on {handle:p}, \
                     which is not a valid handle for a {} caller, attached to process {}",
                    if mode == KernelMode {
                        "KernelMode"
                    } else {
                        "UserMode"
                    },
                    current().id
                ));
            }
            return status;
        }
    };
    // A user handle referenced as KernelMode outside the System process: Driver Verifier's bug
    // check 0xC4, 0xF6 ("a driver references a user-mode handle as kernel mode").
    if crate::bookkeeping::verifier::handle_checks()
        && mode == KernelMode
        && !is_kernel_handle(value)
        && current().id != SYSTEM_PROCESS_ID
    {
        violation(format!(
            "Driver Verifier (handle checks): bug check 0xC4, 0xF6: user handle {handle:p} \
             referenced as KernelMode"
        ));
    }
    if mode == UserMode && entry.access & access != access {
        return STATUS_ACCESS_DENIED;
    }
    let (address, referenced) = match entry.object {
        // A null type asks for whatever object the handle names.
        Object::Event(event)
            if object_type.is_null() || object_type == type_object(&ExEventObjectType) =>
        {
            (event.address(), Referenced::Event(event))
        }
        Object::Other(object) if object_type.is_null() || object.is_of_type(object_type) => {
            (object.address(), Referenced::Other(object))
        }
        Object::Thread(thread)
            if object_type.is_null() || object_type == type_object(&PsThreadType) =>
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
    let race = AFTER_REFERENCE.lock().unwrap().take();
    if let Some(race) = race {
        std::thread::spawn(race)
            .join()
            .expect("the race a test arranged");
    }
    STATUS_SUCCESS
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
        if let Referenced::Event(event) = &referenced {
            dispatcher::event_dereferenced(event);
        }
        if let Referenced::Other(object) = referenced {
            object.last_reference_dropped();
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
        match lent_object(address) {
            Some(object) => add_reference(address, || Referenced::Other(object)),
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
pub extern "efiapi" fn IoGetCurrentProcess() -> PEPROCESS {
    current().eprocess()
}

/// PsGetCurrentThread: "a pointer to the executive thread object that represents the currently
/// executing thread", at any IRQL (its page); KeGetCurrentThread "is identical" (its page).
#[kernel_export]
pub extern "efiapi" fn PsGetCurrentThread() -> PVOID {
    crate::ke::thread::current_thread().address() as PVOID
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
pub(crate) const FILE_TYPE_INDEX: u16 = 37;
const EVENT_TYPE_INDEX: u16 = 16;
const THREAD_TYPE_INDEX: u16 = 8;

/// What a test arranged to happen at the next handle snapshot, or at the next reference to an
/// object by handle.
type Race = Mutex<Option<Box<dyn FnOnce() + Send>>>;
static AFTER_SNAPSHOT: Race = Mutex::new(None);
static AFTER_REFERENCE: Race = Mutex::new(None);

/// Runs `race` right after the next snapshot of the system's handles
/// (ZwQuerySystemInformation) reads them: for a test to change the handles the caller is about
/// to act on, as another process may at any time.
pub fn after_next_handle_snapshot(race: impl FnOnce() + Send + 'static) {
    *AFTER_SNAPSHOT.lock().unwrap() = Some(Box::new(race));
}

/// Runs `race`, on a thread of its own, right after the next ObReferenceObjectByHandle that
/// succeeds, before it returns: for a test to do something while the driver is in the middle of
/// a request (another thread of the client closing its handle, say).
pub fn after_next_handle_reference(race: impl FnOnce() + Send + 'static) {
    *AFTER_REFERENCE.lock().unwrap() = Some(Box::new(race));
}

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
                Object::Other(object) => (object.address() as PVOID, object.type_index()),
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
    // Whatever a test arranged to happen between the snapshot and what the caller does next
    // (a process closing a handle the snapshot lists).
    let after = AFTER_SNAPSHOT.lock().unwrap().take();
    if let Some(after) = after {
        after();
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
    // PsLookupProcessByProcessId (ntifs.h: `_IRQL_requires_max_(APC_LEVEL)`).
    irql::require_at_most(APC_LEVEL, "PsLookupProcessByProcessId");
    // A process that has exited is found while something references it: its id is freed with
    // the process object, not at exit (the CID table entry goes when the object is deleted).
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

/// Whether this thread is attached to a process by KeStackAttachProcess.
fn attached() -> bool {
    DETACH_TO.with(|stack| !stack.borrow().is_empty())
}

#[kernel_export]
pub unsafe extern "efiapi" fn KeStackAttachProcess(process: PEPROCESS, apc_state: *mut KAPC_STATE) {
    // KeStackAttachProcess (ntifs.h: `_IRQL_requires_max_(APC_LEVEL)`).
    irql::require_at_most(APC_LEVEL, "KeStackAttachProcess");
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
    // KeUnstackDetachProcess (ntifs.h: `_IRQL_requires_max_(APC_LEVEL)`).
    irql::require_at_most(APC_LEVEL, "KeUnstackDetachProcess");
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
    close_handle(handle, mode)
}

/// ZwClose: "Calling ZwClose(hObject) to close kernel handle hObject has the same effect as
/// calling ObCloseHandle(hObject, KernelMode)" (ObCloseHandle's page).
#[kernel_export]
pub unsafe extern "efiapi" fn ZwClose(handle: HANDLE) -> NTSTATUS {
    // ZwClose (wdm.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "ZwClose");
    close_handle(handle, KernelMode)
}

/// Closes `handle` for a caller of `mode`: a kernel handle in the kernel's table (KernelMode
/// only), any other value in the current process's, which for a thread attached to the System
/// process is the kernel's table too.
fn close_handle(handle: HANDLE, mode: KPROCESSOR_MODE) -> NTSTATUS {
    match lookup(handle as u64, mode) {
        Ok((table, index, _)) => {
            table.close_handle(index);
            STATUS_SUCCESS
        }
        // "The INVALID_KERNEL_HANDLE bug check indicates that some kernel code ... tried to close
        // an invalid handle or a protected handle" (Bug Check 0x93): kernel code closing, in
        // kernel mode, a handle that is not there.
        Err(status) if mode == KernelMode => {
            violation(format!(
                "closing {handle:p} in kernel mode, which is not a valid handle: bug check 0x93 \
                 (INVALID_KERNEL_HANDLE)"
            ));
            status
        }
        Err(status) => status,
    }
}
