//! The I/O manager: the driver object the driver is loaded with, device objects, file objects
//! and the IRPs sent through the driver object's dispatch table, and MDLs.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::{BTreeMap, BTreeSet};
use std::mem::size_of;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oxtun_driver::sys::*;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::{house_rule, unsupported, violation};
use crate::ke::irql;
use crate::ndis;
use crate::ob::process::{self, Process, ProcessState};
use oxtun_abi::TUN_IOCTL_REGISTER_RINGS;
use oxtun_sim_macros::kernel_export;

/// `IO_TYPE_DRIVER`, `IO_TYPE_DEVICE`, `IO_TYPE_IRP`.
const IO_TYPE_DRIVER: i16 = 4;
const IO_TYPE_DEVICE: i16 = 3;
const IO_TYPE_IRP: i16 = 6;
const STATUS_ACCESS_VIOLATION: NTSTATUS = 0xC000_0005_u32 as i32;
const STATUS_PENDING: NTSTATUS = 0x103;
const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;

static DRIVER_OBJECTS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());
/// The driver object devices belong to.
static CURRENT_DRIVER: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn is_driver_object(object: PDRIVER_OBJECT) -> bool {
    DRIVER_OBJECTS.lock().unwrap().contains(&(object as usize))
}

pub(crate) fn new_driver_object() -> PDRIVER_OBJECT {
    // SAFETY: DRIVER_OBJECT is plain data; all zeroes is its state before DriverEntry.
    let mut object: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    object.Type = IO_TYPE_DRIVER;
    object.Size = size_of::<DRIVER_OBJECT>() as i16;
    // The I/O manager fills every slot before DriverEntry: those no one sets reject the request.
    object.MajorFunction = [Some(invalid_device_request); IRP_MJ_MAXIMUM_FUNCTION + 1];
    let object = Box::into_raw(object);
    DRIVER_OBJECTS.lock().unwrap().insert(object as usize);
    CURRENT_DRIVER.store(object as usize, Ordering::SeqCst);
    object
}

pub(crate) fn free_driver_object(object: PDRIVER_OBJECT) {
    if DRIVER_OBJECTS.lock().unwrap().remove(&(object as usize)) {
        // SAFETY: created by new_driver_object, removed from the set once.
        drop(unsafe { Box::from_raw(object) });
    }
}

pub(crate) fn new_device_object() -> PDEVICE_OBJECT {
    // SAFETY: DEVICE_OBJECT is plain data; all zeroes is a valid starting state.
    let mut device: Box<DEVICE_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    device.Type = IO_TYPE_DEVICE;
    device.Size = size_of::<DEVICE_OBJECT>() as u16;
    device.DriverObject = CURRENT_DRIVER.load(Ordering::SeqCst) as PDRIVER_OBJECT;
    Box::into_raw(device)
}

pub(crate) fn free_device_object(device: PDEVICE_OBJECT) {
    // SAFETY: created by new_device_object; its adapter is gone.
    let device = unsafe { Box::from_raw(device) };
    if !device.Reserved.is_null() {
        // DEVICE_OBJECT.Reserved is the system's (DEVICE_OBJECT, wdm.h: "Reserved for system use"),
        // and a context left there names an adapter that is gone.
        violation("the driver left its context in DEVICE_OBJECT.Reserved after halt");
    }
}

/// The I/O manager's routine for a major function no driver handles.
unsafe extern "efiapi" fn invalid_device_request(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the live IRP, completed once.
    unsafe {
        (*irp).IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
        IofCompleteRequest(irp, 0);
    }
    STATUS_INVALID_DEVICE_REQUEST
}

/// What NDIS installs in a miniport's driver object: its dispatch routines and unload routine.
pub(crate) fn install_ndis_dispatch(object: PDRIVER_OBJECT) {
    // SAFETY: a live driver object of ours, not otherwise in use during registration.
    let object = unsafe { &mut *object };
    for slot in object.MajorFunction.iter_mut() {
        *slot = Some(ndis_dispatch);
    }
    object.DriverUnload = Some(ndis_unload);
}

/// IRPs that reached NDIS's own dispatch routine, by major function.
static NDIS_DISPATCHED: Mutex<BTreeMap<u8, u64>> = Mutex::new(BTreeMap::new());

pub fn ndis_dispatched(major: usize) -> u64 {
    NDIS_DISPATCHED
        .lock()
        .unwrap()
        .get(&(major as u8))
        .copied()
        .unwrap_or(0)
}

/// NDIS's own dispatch routine: opens, cleanups, closes and PnP succeed; it knows no IOCTL.
unsafe extern "efiapi" fn ndis_dispatch(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager (this module) passes a live IRP with its stack location.
    let major = unsafe { (*(*irp).CurrentStackLocation).MajorFunction };
    *NDIS_DISPATCHED.lock().unwrap().entry(major).or_default() += 1;
    let status = if major as usize == IRP_MJ_DEVICE_CONTROL {
        STATUS_INVALID_DEVICE_REQUEST
    } else {
        STATUS_SUCCESS
    };
    // SAFETY: the live IRP, completed once.
    unsafe {
        (*irp).IoStatus.Status = status;
        IofCompleteRequest(irp, 0);
    }
    status
}

/// NDIS's unload routine: calls the miniport's, which deregisters.
unsafe extern "efiapi" fn ndis_unload(object: PDRIVER_OBJECT) {
    // DriverUnload (wdm.h, DRIVER_UNLOAD): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "DriverUnload");
    if let Some(unload) = ndis::handlers().and_then(|handlers| handlers.unload) {
        // SAFETY: the driver's unload handler with its driver object.
        unsafe { unload(object) };
    }
}

/// `IO_TYPE_FILE`, and the size of a FILE_OBJECT on x64: what the first bytes of one say.
const IO_TYPE_FILE: u64 = 5;
const FILE_OBJECT_SIZE: u64 = 0xD8;

/// A file object: what a handle to the adapter's device refers to. IRP_MJ_CLEANUP comes when
/// its last handle closes; IRP_MJ_CLOSE when, after that, the last reference to it goes, which
/// may be the driver's, dropped in whatever thread the driver drops it.
pub struct FileObject {
    /// What the driver sees as the PFILE_OBJECT: its Type, Size and DeviceObject are set.
    identity: Box<[u64; (FILE_OBJECT_SIZE / 8) as usize]>,
    device: PDEVICE_OBJECT,
    handles: AtomicU64,
}

// SAFETY: the device pointer is only passed to the driver; the rest is owned data.
unsafe impl Send for FileObject {}
// SAFETY: as for Send.
unsafe impl Sync for FileObject {}

impl FileObject {
    fn new(device: PDEVICE_OBJECT) -> Arc<FileObject> {
        let mut identity = Box::new([0; (FILE_OBJECT_SIZE / 8) as usize]);
        identity[0] = IO_TYPE_FILE | FILE_OBJECT_SIZE << 16;
        identity[1] = device as u64;
        let file = Arc::new(FileObject {
            identity,
            device,
            handles: AtomicU64::new(1),
        });
        LIVE_FILES
            .lock()
            .unwrap()
            .insert(file.pointer() as usize, Arc::downgrade(&file));
        file
    }

    pub(crate) fn pointer(&self) -> PFILE_OBJECT {
        self.identity.as_ptr().cast_mut().cast()
    }

    pub(crate) fn device(&self) -> PDEVICE_OBJECT {
        self.device
    }
}

/// File objects not yet closed, by the address the driver sees.
static LIVE_FILES: Mutex<BTreeMap<usize, std::sync::Weak<FileObject>>> =
    Mutex::new(BTreeMap::new());

/// The file object at `address`, if it is not yet closed.
pub(crate) fn live_file(address: usize) -> Option<Arc<FileObject>> {
    LIVE_FILES.lock().unwrap().get(&address)?.upgrade()
}

pub(crate) fn add_file_handle(file: &FileObject) {
    file.handles.fetch_add(1, Ordering::SeqCst);
}

/// A handle to a file object closed: the last one sends cleanup, then, unless the driver still
/// references the file object, close.
pub(crate) fn release_file_handle(process: &Arc<ProcessState>, file: Arc<FileObject>) {
    if file.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
        let status = send_irp(
            process,
            file.device,
            Some(&file),
            IRP_MJ_CLEANUP,
            0,
            Request::None,
        );
        assert_eq!(status, STATUS_SUCCESS, "cleanup failed");
        if !process::is_referenced(file.pointer() as usize) {
            close(&file);
        }
    }
}

/// The driver dropped its last reference to `file`: with no handle left, it is closed now, in
/// this thread's context, or in a worker thread's if this thread is above PASSIVE_LEVEL (as the
/// object manager defers deletion there).
pub(crate) fn file_dereferenced(file: Arc<FileObject>) {
    if file.handles.load(Ordering::SeqCst) != 0 {
        return;
    }
    if irql::current() == PASSIVE_LEVEL {
        close(&file);
    } else {
        std::thread::spawn(move || close(&file));
    }
}

fn close(file: &FileObject) {
    LIVE_FILES
        .lock()
        .unwrap()
        .remove(&(file.pointer() as usize));
    let status = send_irp(
        &process::current(),
        file.device,
        Some(file),
        IRP_MJ_CLOSE,
        0,
        Request::None,
    );
    assert_eq!(status, STATUS_SUCCESS, "close failed");
}

/// A process's handle to an adapter's device.
pub struct DeviceHandle<'a> {
    process: &'a Process,
    handle: u64,
    file: Arc<FileObject>,
}

impl Process {
    /// Opens the device with `access` (CreateFile), through the driver's IRP_MJ_CREATE.
    pub fn open(&self, device: PDEVICE_OBJECT, access: ACCESS_MASK) -> DeviceHandle<'_> {
        let file = FileObject::new(device);
        let status = send_irp(
            &self.state,
            device,
            Some(&file),
            IRP_MJ_CREATE,
            0,
            Request::None,
        );
        assert_eq!(status, STATUS_SUCCESS, "open failed");
        let handle = self.insert_file(file.clone(), access);
        DeviceHandle {
            process: self,
            handle,
            file,
        }
    }
}

impl DeviceHandle<'_> {
    /// The handle value, as the process sees it.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The file object, as the driver sees it.
    pub fn file_object(&self) -> PFILE_OBJECT {
        self.file.pointer()
    }

    /// DeviceIoControl with a METHOD_BUFFERED code. The I/O manager first checks the handle
    /// grants the access the code requires.
    pub fn device_control(&self, code: u32, input: &[u8]) -> NTSTATUS {
        let required = (code >> 14) & 3;
        let Some(entry_access) = self.process.handle_access(self.handle) else {
            return STATUS_INVALID_HANDLE;
        };
        if entry_access & required != required {
            return STATUS_ACCESS_DENIED;
        }
        send_irp(
            &self.process.state,
            self.file.device,
            Some(&self.file),
            IRP_MJ_DEVICE_CONTROL,
            0,
            Request::DeviceControl { code, input },
        )
    }

    /// CloseHandle.
    pub fn close(self) {
        self.process.close_handle(self.handle);
    }

    /// Whether the handle is still open (the driver may have closed it, on removal).
    pub fn is_open(&self) -> bool {
        self.process.has_handle(self.handle)
    }
}

/// A PnP request from the PnP manager to the device, in the System process (PnP IRPs carry no
/// file object).
pub(crate) fn pnp(device: PDEVICE_OBJECT, minor: u8) -> NTSTATUS {
    let system = process::system();
    send_irp(&system, device, None, IRP_MJ_PNP, minor, Request::None)
}

enum Request<'a> {
    None,
    DeviceControl { code: u32, input: &'a [u8] },
}

#[repr(C)]
struct IrpWithStack {
    irp: IRP,
    stack: IO_STACK_LOCATION,
}

/// IRPs sent and not yet completed, by address.
static PENDING_IRPS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

/// Sends an IRP to the driver object's dispatch routine, in `process`'s context at PASSIVE,
/// and checks it was completed exactly once, with the status the routine returned.
fn send_irp(
    process: &Arc<ProcessState>,
    device: PDEVICE_OBJECT,
    file: Option<&FileObject>,
    major: usize,
    minor: u8,
    request: Request,
) -> NTSTATUS {
    // SAFETY: plain data; all zeroes is a valid empty IRP and stack location.
    let mut packet: Box<IrpWithStack> = Box::new(unsafe { std::mem::zeroed() });
    let mut system_buffer = Vec::new();
    packet.irp.Type = IO_TYPE_IRP;
    packet.irp.Size = size_of::<IrpWithStack>() as u16;
    packet.irp.StackCount = 1;
    packet.irp.CurrentLocation = 1;
    packet.irp.RequestorMode = if process.token == process::Token::System && major == IRP_MJ_PNP {
        KernelMode
    } else {
        UserMode
    };
    packet.irp.IoStatus.Status = STATUS_PENDING;
    packet.stack.MajorFunction = major as u8;
    packet.stack.MinorFunction = minor;
    packet.stack.DeviceObject = device;
    packet.stack.FileObject = file.map_or(null_mut(), FileObject::pointer);
    if let Request::DeviceControl { code, input } = request {
        system_buffer = input.to_vec();
        packet.irp.SystemBuffer = if system_buffer.is_empty() {
            null_mut()
        } else {
            system_buffer.as_mut_ptr().cast()
        };
        packet.stack.InputBufferLength = input.len() as u32;
        packet.stack.IoControlCode = code;
    }
    packet.irp.CurrentStackLocation = &mut packet.stack;
    let irp: PIRP = &mut packet.irp;
    PENDING_IRPS.lock().unwrap().insert(irp as usize);
    let dispatch = {
        let driver = CURRENT_DRIVER.load(Ordering::SeqCst) as PDRIVER_OBJECT;
        // SAFETY: the loaded driver's object.
        unsafe { (*driver).MajorFunction[major] }
    };
    let Some(dispatch) = dispatch else {
        // The I/O manager fills every slot of the dispatch table before DriverEntry (with
        // IopInvalidDeviceRequest): an empty slot is one the driver cleared, and the I/O manager
        // would call through a null pointer.
        violation(format!("no dispatch routine for major function {major:#x}"));
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let registering = major == IRP_MJ_DEVICE_CONTROL
        && matches!(request, Request::DeviceControl { code, .. } if code == TUN_IOCTL_REGISTER_RINGS);
    if registering {
        begin_registration();
    }
    let returned = process::in_context(process, || {
        irql::call_at(PASSIVE_LEVEL, "a dispatch routine", || {
            // SAFETY: the driver's dispatch routine with its device and a live IRP.
            unsafe { dispatch(device, irp) }
        })
    });
    if registering {
        finish_registration(returned);
    }
    if PENDING_IRPS.lock().unwrap().remove(&(irp as usize)) {
        // A dispatch routine either completes the IRP or marks it pending and returns STATUS_PENDING
        // ("Completing IRPs", "DispatchXxx routines"); this driver never pends.
        violation(format!(
            "IRP for major function {major:#x} returned without completion"
        ));
    }
    let completed = packet.irp.IoStatus.Status;
    if returned != completed {
        // A dispatch routine that completes an IRP returns the status it set in IoStatus.Status
        // ("Completing IRPs").
        violation(format!(
            "dispatch returned {returned:#x} but completed the IRP with {completed:#x}"
        ));
    }
    drop(system_buffer);
    returned
}

#[kernel_export]
pub unsafe extern "efiapi" fn IofCompleteRequest(irp: PIRP, _boost: i8) {
    // IofCompleteRequest (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IofCompleteRequest");
    if !PENDING_IRPS.lock().unwrap().remove(&(irp as usize)) {
        // Completing an IRP twice is Bug Check 0x44 (MULTIPLE_IRP_COMPLETE_REQUESTS).
        violation(format!("completing IRP {irp:p}, which is not outstanding"));
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn IoIs32bitProcess(_irp: PIRP) -> u8 {
    u8::from(process::current().bitness == process::Bitness::Bits32)
}

/// What one ring registration made: the pool it allocated during its IOCTL and the MDLs whose
/// pages it locked. When those MDLs are all freed the registration has ended, and the pool must
/// be back too: memory a registration takes and only halt gives back is a leak per
/// registration, which the unload check cannot see.
#[derive(Default)]
struct RegistrationRecord {
    pool: BTreeSet<usize>,
    mdls: BTreeSet<usize>,
}

thread_local! {
    /// The registration whose IOCTL this thread is dispatching.
    static REGISTERING: std::cell::RefCell<Option<RegistrationRecord>> =
        const { std::cell::RefCell::new(None) };
    /// Registrations this thread ended (freed their last MDL), for the check when the driver
    /// callback it runs returns.
    static ENDED_HERE: std::cell::RefCell<Vec<RegistrationRecord>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Registrations that live.
static LIVE_REGISTRATIONS: Mutex<Vec<RegistrationRecord>> = Mutex::new(Vec::new());

fn begin_registration() {
    REGISTERING.with(|record| *record.borrow_mut() = Some(RegistrationRecord::default()));
}

fn finish_registration(status: NTSTATUS) {
    let Some(record) = REGISTERING.with(|record| record.borrow_mut().take()) else {
        return;
    };
    if NT_SUCCESS(status) {
        LIVE_REGISTRATIONS.lock().unwrap().push(record);
    } else {
        check_pool_returned(&record, "a refused registration");
    }
}

/// Pool the driver allocates: attributed to the registration this thread dispatches, if any.
pub(crate) fn note_pool_allocation(address: usize) {
    REGISTERING.with(|record| {
        if let Some(record) = record.borrow_mut().as_mut() {
            record.pool.insert(address);
        }
    });
}

fn note_locked_mdl(mdl: usize) {
    REGISTERING.with(|record| {
        if let Some(record) = record.borrow_mut().as_mut() {
            record.mdls.insert(mdl);
        }
    });
}

fn note_freed_mdl(mdl: usize) {
    let mut live = LIVE_REGISTRATIONS.lock().unwrap();
    let Some(index) = live.iter().position(|record| record.mdls.contains(&mdl)) else {
        return;
    };
    live[index].mdls.remove(&mdl);
    if live[index].mdls.is_empty() {
        let ended = live.remove(index);
        ENDED_HERE.with(|here| here.borrow_mut().push(ended));
    }
}

/// Once the driver callback that ended registrations returns: their pool is back.
pub(crate) fn check_ended_registrations() {
    let ended = ENDED_HERE.with(|here| std::mem::take(&mut *here.borrow_mut()));
    for record in &ended {
        check_pool_returned(record, "an ended registration");
    }
}

fn check_pool_returned(record: &RegistrationRecord, what: &str) {
    let outstanding = crate::mm::pool::outstanding();
    let kept: Vec<_> = record
        .pool
        .iter()
        .filter_map(|address| outstanding.get(address))
        .collect();
    if !kept.is_empty() {
        // A leak per registration, which the unload check (Driver Verifier's "Pool Tracking")
        // cannot see when halt frees it in the end.
        violation(format!(
            "{what} kept {} pool allocations it made: {kept:?}",
            kept.len()
        ));
    }
}

/// An MDL's state beyond what the MDL itself records.
#[derive(Default)]
struct MdlState {
    locked_by: Option<Arc<ProcessState>>,
    mapped: Option<(usize, u32)>,
    /// Pages the MDL can describe, as IoAllocateMdl sized it.
    pages: usize,
    /// For a partial MDL: the MDL whose locked pages it describes.
    partial_of: Option<usize>,
}

const PAGE_SIZE: usize = 4096;

fn pages_spanned(address: usize, length: usize) -> usize {
    (address % PAGE_SIZE + length).div_ceil(PAGE_SIZE)
}

static MDLS: Mutex<BTreeMap<usize, MdlState>> = Mutex::new(BTreeMap::new());

pub fn mdls_outstanding() -> usize {
    MDLS.lock().unwrap().len()
}

/// The priority flags of the last mapping, to check the driver maps no-execute.
pub static LAST_MAPPING_PRIORITY: AtomicU64 = AtomicU64::new(0);

#[kernel_export]
pub unsafe extern "efiapi" fn IoAllocateMdl(
    address: PVOID,
    length: ULONG,
    secondary: u8,
    charge_quota: u8,
    irp: PIRP,
) -> PMDL {
    // IoAllocateMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoAllocateMdl");
    if secondary != 0 || charge_quota != 0 || !irp.is_null() {
        unsupported("IoAllocateMdl for an IRP, as a secondary buffer or charging quota");
    }
    if should_fail(Site::IoAllocateMdl) {
        return null_mut();
    }
    // SAFETY: MDL is plain data.
    let mut mdl: Box<MDL> = Box::new(unsafe { std::mem::zeroed() });
    mdl.StartVa = address;
    mdl.ByteCount = length;
    let mdl = Box::into_raw(mdl);
    let state = MdlState {
        pages: pages_spanned(address as usize, length as usize),
        ..MdlState::default()
    };
    MDLS.lock().unwrap().insert(mdl as usize, state);
    mdl
}

#[kernel_export]
pub unsafe extern "efiapi" fn IoFreeMdl(mdl: PMDL) {
    // IoFreeMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoFreeMdl");
    let Some(state) = MDLS.lock().unwrap().remove(&(mdl as usize)) else {
        // IoFreeMdl releases "an MDL that was allocated by IoAllocateMdl" (IoFreeMdl).
        violation(format!("freeing unknown MDL {mdl:p}"));
        return;
    };
    // Pages locked through the MDL are unlocked first ("Using MDLs": MmUnlockPages, then
    // IoFreeMdl); else they stay locked until Bug Check 0x76 (PROCESS_HAS_LOCKED_PAGES). A mapping
    // goes with the unlock, and "if such a mapping exists, IoFreeMdl releases the
    // system-address-space mapping for a partial MDL" (IoBuildPartialMdl).
    if state.locked_by.is_some() {
        violation("freeing an MDL whose pages are still locked");
    }
    note_freed_mdl(mdl as usize);
    // SAFETY: allocated by IoAllocateMdl, removed from the table once.
    drop(unsafe { Box::from_raw(mdl) });
}

/// The SEH shim's counterpart: MmProbeAndLockPages with its exception returned as a status.
#[kernel_export]
pub unsafe extern "efiapi" fn OxtunProbeAndLockPages(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    operation: LOCK_OPERATION,
) -> NTSTATUS {
    // MmProbeAndLockPages (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, "MmProbeAndLockPages");
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmProbeAndLockPages fills an MDL the caller allocated (IoAllocateMdl).
        violation(format!("probing unknown MDL {mdl:p}"));
        return STATUS_INVALID_PARAMETER;
    };
    if state.locked_by.is_some() {
        // An MDL describes one locked range: probing it again overwrites the page array of pages
        // still locked, which are then never unlocked ("Using MDLs").
        violation("probing an MDL that is already locked");
    }
    // Windows probes for whatever access is asked (MmProbeAndLockPages); the driver writes both
    // rings' headers, and pages probed only for reading would let a read-only mapping through.
    if operation != IoWriteAccess {
        house_rule("the driver writes the rings: it must probe them for IoWriteAccess");
    }
    if should_fail(Site::ProbeAndLockPages) {
        return STATUS_ACCESS_VIOLATION;
    }
    // SAFETY: a live MDL from IoAllocateMdl.
    let (address, length) = unsafe { ((*mdl).StartVa as usize, (*mdl).ByteCount as usize) };
    let process = process::current();
    if mode == UserMode && !process::lock_user_range(&process, address, length, 1) {
        return STATUS_ACCESS_VIOLATION;
    }
    state.locked_by = Some(process);
    note_locked_mdl(mdl as usize);
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmUnlockPages(mdl: PMDL) {
    // MmUnlockPages (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmUnlockPages");
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmUnlockPages takes the MDL MmProbeAndLockPages filled (MmUnlockPages).
        violation(format!("unlocking unknown MDL {mdl:p}"));
        return;
    };
    let Some(process) = state.locked_by.take() else {
        // MmUnlockPages unlocks the pages a preceding MmProbeAndLockPages locked through this MDL
        // (MmUnlockPages).
        violation("unlocking an MDL that is not locked");
        return;
    };
    // "If the MDL was built by a call to MmProbeAndLockPages, you do not need to explicitly release
    // the system-address-space mapping. A call to MmUnlockPages releases the mapping, if one was
    // allocated." (MmGetSystemAddressForMdlSafe, Microsoft's wdm.h documentation.)
    if state.mapped.take().is_some() {
        // SAFETY: a live MDL, whose mapping goes with the lock.
        unsafe {
            (*mdl).MdlFlags &= !MDL_MAPPED_TO_SYSTEM_VA;
            (*mdl).MappedSystemVa = null_mut();
        }
    }
    let source = mdl as usize;
    let in_use = mdls
        .values()
        .any(|other| other.partial_of == Some(source) && other.mapped.is_some());
    if in_use {
        // A partial MDL with a mapping of its own maps the source's pages; unlocking them under it
        // leaves a system mapping of pages the memory manager may reuse (IoBuildPartialMdl: the
        // mapping lasts until MmPrepareMdlForReuse or IoFreeMdl releases it).
        violation("unlocking pages a mapped partial MDL still describes");
    }
    // SAFETY: a live MDL.
    let (address, length) = unsafe { ((*mdl).StartVa as usize, (*mdl).ByteCount as usize) };
    process::lock_user_range(&process, address, length, -1);
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmMapLockedPagesSpecifyCache(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    _cache: u32,
    requested: PVOID,
    bug_check_on_failure: ULONG,
    priority: u32,
) -> PVOID {
    // MmMapLockedPagesSpecifyCache (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmMapLockedPagesSpecifyCache");
    if mode != KernelMode || !requested.is_null() {
        unsupported("MmMapLockedPagesSpecifyCache into user space or at a requested address");
    }
    // Windows allows BugCheckOnFailure for KernelMode mappings (MmMapLockedPagesSpecifyCache);
    // a driver that can fail the request instead must not stop the system over it.
    if bug_check_on_failure != 0 {
        house_rule("MmMapLockedPagesSpecifyCache with BugCheckOnFailure: fail the request instead");
    }
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmMapLockedPagesSpecifyCache maps an MDL the caller allocated (IoAllocateMdl).
        violation(format!("mapping unknown MDL {mdl:p}"));
        return null_mut();
    };
    if (state.locked_by.is_none() && state.partial_of.is_none()) || state.mapped.is_some() {
        // MmMapLockedPagesSpecifyCache maps locked pages (its MemoryDescriptorList "describes the
        // physical pages to be mapped", locked by MmProbeAndLockPages or built on non-paged memory);
        // a second mapping of a mapped MDL leaks the first (MmGetSystemAddressForMdlSafe maps only
        // an MDL without MDL_MAPPED_TO_SYSTEM_VA).
        violation("mapping an MDL that is not locked, or already mapped");
    }
    if should_fail(Site::MmMapLockedPagesSpecifyCache) {
        return null_mut();
    }
    // The simulated system address is the user address: one address space.
    // SAFETY: a live MDL.
    let address = unsafe { (*mdl).StartVa as usize + (*mdl).ByteOffset as usize };
    state.mapped = Some((address, priority));
    // SAFETY: a live MDL, which the kernel marks as mapped (and a partial one as mapped by a
    // mapping of its own).
    unsafe {
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        (*mdl).MappedSystemVa = address as PVOID;
        if state.partial_of.is_some() {
            (*mdl).MdlFlags |= MDL_PARTIAL_HAS_BEEN_MAPPED;
        }
    }
    if state.partial_of.is_none() {
        LAST_MAPPING_PRIORITY.store(u64::from(priority), Ordering::SeqCst);
    }
    address as PVOID
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmUnmapLockedPages(address: PVOID, mdl: PMDL) {
    // MmUnmapLockedPages (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmUnmapLockedPages");
    let mut mdls = MDLS.lock().unwrap();
    match mdls.get_mut(&(mdl as usize)) {
        Some(state) if state.mapped.is_some_and(|(at, _)| at == address as usize) => {
            state.mapped = None;
            // SAFETY: a live MDL.
            unsafe {
                (*mdl).MdlFlags &= !(MDL_PARTIAL_HAS_BEEN_MAPPED | MDL_MAPPED_TO_SYSTEM_VA);
                (*mdl).MappedSystemVa = null_mut();
            }
        }
        // MmUnmapLockedPages "releases a mapping that was set up by a preceding call to the
        // MmMapLockedPages or MmMapLockedPagesSpecifyCache routine" (MmUnmapLockedPages).
        _ => violation(format!(
            "unmapping {address:p}, which this MDL does not map"
        )),
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn IoBuildPartialMdl(
    source: PMDL,
    target: PMDL,
    address: PVOID,
    length: ULONG,
) {
    // IoBuildPartialMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoBuildPartialMdl");
    let mut mdls = MDLS.lock().unwrap();
    let Some(source_state) = mdls.get(&(source as usize)) else {
        // SourceMdl is "an MDL that describes the original buffer" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl from an unknown MDL");
        return;
    };
    if source_state.locked_by.is_none() {
        // "Before the driver calls IoBuildPartialMdl, the physical pages that are described by the
        // source MDL must be locked" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl from an MDL that is not locked");
        return;
    }
    let source_mapping = source_state.mapped.map(|(at, _)| at);
    // SAFETY: a live MDL.
    let (start, count) = unsafe {
        (
            (*source).StartVa as usize + (*source).ByteOffset as usize,
            (*source).ByteCount as usize,
        )
    };
    let (address, length) = (address as usize, length as usize);
    if address < start || address + length > start + count {
        // Length and VirtualAddress "must specify a buffer that is a proper subrange of the buffer
        // that is described by SourceMdl" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl outside the source MDL's buffer");
        return;
    }
    let Some(state) = mdls.get_mut(&(target as usize)) else {
        // TargetMdl is "a pointer to a caller-allocated MDL" (IoBuildPartialMdl).
        violation(format!("IoBuildPartialMdl into unknown MDL {target:p}"));
        return;
    };
    if state.mapped.is_some() {
        // "To prevent this new mapping from leaking, the driver must call MmPrepareMdlForReuse before
        // it reuses the partial MDL" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl into an MDL that is still mapped: MmPrepareMdlForReuse first");
    }
    if pages_spanned(address, length) > state.pages {
        // TargetMdl "must be large enough to describe the pages in the subrange that are specified
        // by VirtualAddress and Length" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl into an MDL too small for the range");
        return;
    }
    state.partial_of = Some(source as usize);
    // SAFETY: a live MDL of the driver's, described anew. A mapped source's mapping covers the
    // part too, so the partial MDL inherits it (and is not to be unmapped on its own).
    unsafe {
        (*target).StartVa = (address & !(PAGE_SIZE - 1)) as PVOID;
        (*target).ByteOffset = (address % PAGE_SIZE) as u32;
        (*target).ByteCount = length as u32;
        (*target).MdlFlags = MDL_PARTIAL;
        (*target).MappedSystemVa = null_mut();
        if let Some(mapped) = source_mapping {
            (*target).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
            (*target).MappedSystemVa = (mapped + (address - start)) as PVOID;
        }
    }
}

/// The data an MDL chain describes from `offset`, `length` bytes, mapping MDLs as a consumer
/// of the driver's NBLs would (MmGetSystemAddressForMdlSafe); and the address of its first
/// byte.
pub(crate) fn read_mdl_chain(
    mut mdl: PMDL,
    mut offset: usize,
    mut length: usize,
) -> (Vec<u8>, usize) {
    let mut data = Vec::with_capacity(length);
    let mut first = 0;
    while length > 0 {
        if mdl.is_null() {
            // A NET_BUFFER's MDL chain maps its data (NET_BUFFER: MdlChain, the list of MDLs that
            // map the data buffer), so it holds at least DataLength bytes past the offset.
            violation("an NBL's MDL chain is shorter than its data");
            break;
        }
        // The stack's mapping, not one of the driver's calls to fail.
        let base = crate::bookkeeping::faults::as_system(|| {
            // SAFETY: a live MDL of the driver's chain; the simulator's own export maps it as a
            // consumer would.
            unsafe { MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority) }
        });
        // SAFETY: a live MDL.
        let count = unsafe { (*mdl).ByteCount as usize };
        let take = count.saturating_sub(offset).min(length);
        // SAFETY: the mapped buffer holds `count` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(base.cast::<u8>().add(offset), take) };
        if data.is_empty() {
            first = bytes.as_ptr() as usize;
        }
        data.extend_from_slice(bytes);
        length -= take;
        offset = 0;
        // SAFETY: a live MDL.
        mdl = unsafe { (*mdl).Next };
    }
    (data, first)
}
