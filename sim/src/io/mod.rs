//! Layer: io, the I/O manager, above mm. It calls ob, ke and bookkeeping.
//!
//! The I/O manager: the driver object the driver is loaded with, device objects, file objects
//! and the IRPs sent through the driver object's dispatch table.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeSet;
use std::mem::size_of;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oxtun_driver::sys::*;

use crate::bookkeeping::leaks::{begin_registration, finish_registration};
use crate::bookkeeping::verifier::violation;
use crate::ke::irql;
use crate::ob::process::{self, ObjectBody, Process, ProcessState};
use oxtun_abi::TUN_IOCTL_REGISTER_RINGS;
use oxtun_sim_macros::kernel_export;

/// `IO_TYPE_DRIVER`, `IO_TYPE_DEVICE`, `IO_TYPE_IRP`.
const IO_TYPE_DRIVER: i16 = 4;
const IO_TYPE_DEVICE: i16 = 3;
const IO_TYPE_IRP: i16 = 6;
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
        let object: Arc<dyn ObjectBody> = file.clone();
        process::lend(&object);
        file
    }

    pub(crate) fn pointer(&self) -> PFILE_OBJECT {
        self.identity.as_ptr().cast_mut().cast()
    }
}

// A file object's type: cleanup when its last handle closes, close when, after that, its last
// reference goes.
impl ObjectBody for FileObject {
    fn address(&self) -> usize {
        self.pointer() as usize
    }

    fn is_of_type(&self, object_type: POBJECT_TYPE) -> bool {
        object_type == process::type_object(&process::IoFileObjectType)
    }

    fn type_index(&self) -> u16 {
        process::FILE_TYPE_INDEX
    }

    fn handle_added(&self) {
        self.handles.fetch_add(1, Ordering::SeqCst);
    }

    /// The last handle sends cleanup, then, unless the driver still references the file object,
    /// close.
    fn handle_closed(self: Arc<Self>, process: &Arc<ProcessState>) {
        if self.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            let status = send_irp(
                process,
                self.device,
                Some(&self),
                IRP_MJ_CLEANUP,
                0,
                Request::None,
            );
            assert_eq!(status, STATUS_SUCCESS, "cleanup failed");
            if !process::is_referenced(self.address()) {
                close(&self);
            }
        }
    }

    /// With no handle left, it is closed now, in this thread's context, or in a worker
    /// thread's if this thread is above PASSIVE_LEVEL (as the object manager defers deletion
    /// there).
    fn last_reference_dropped(self: Arc<Self>) {
        if self.handles.load(Ordering::SeqCst) != 0 {
            return;
        }
        if irql::current() == PASSIVE_LEVEL {
            close(&self);
        } else {
            std::thread::spawn(move || close(&self));
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn close(file: &FileObject) {
    process::stop_lending(file.address());
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

/// Handles, in any process, to file objects of `device`: what keeps PnP from removing it.
pub(crate) fn handles_to_device(device: PDEVICE_OBJECT) -> usize {
    process::handle_objects(|object| {
        object
            .as_any()
            .downcast_ref::<FileObject>()
            .is_some_and(|file| file.device == device)
    })
    .len()
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
        let handle = self.insert_object(file.clone(), access);
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
        if self.process.is_system() && !self.process.has_handle(self.handle) {
            // A kernel component closing its handle with ZwClose after someone else closed it:
            // "kernel code ... tried to close an invalid handle" (Bug Check 0x93,
            // INVALID_KERNEL_HANDLE).
            violation(format!(
                "a kernel component's ZwClose of its handle {:#x} to the device, which is no \
                 longer valid: bug check 0x93 (INVALID_KERNEL_HANDLE)",
                self.handle
            ));
            return;
        }
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
    // The System process's requests are kernel components': PnP's, or a driver's that opened
    // the device with ZwCreateFile (RequestorMode: "Indicates the execution mode of the original
    // requester of the operation", IRP).
    packet.irp.RequestorMode = if process.id == process::SYSTEM_PROCESS_ID {
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
