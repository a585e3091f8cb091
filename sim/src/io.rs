//! The I/O manager: the driver object the driver is loaded with, and device objects.

use std::collections::BTreeSet;
use std::mem::size_of;
use std::sync::Mutex;

use oxtun::sys::*;

use crate::irql;
use crate::ndis;
use crate::verifier::violation;

/// `IO_TYPE_DRIVER` and `IO_TYPE_DEVICE`.
const IO_TYPE_DRIVER: i16 = 4;
const IO_TYPE_DEVICE: i16 = 3;

static DRIVER_OBJECTS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

pub fn is_driver_object(object: PDRIVER_OBJECT) -> bool {
    DRIVER_OBJECTS.lock().unwrap().contains(&(object as usize))
}

pub fn new_driver_object() -> PDRIVER_OBJECT {
    // SAFETY: DRIVER_OBJECT is plain data; all zeroes is its state before DriverEntry.
    let mut object: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    object.Type = IO_TYPE_DRIVER;
    object.Size = size_of::<DRIVER_OBJECT>() as i16;
    let object = Box::into_raw(object);
    DRIVER_OBJECTS.lock().unwrap().insert(object as usize);
    object
}

pub fn free_driver_object(object: PDRIVER_OBJECT) {
    if DRIVER_OBJECTS.lock().unwrap().remove(&(object as usize)) {
        // SAFETY: created by new_driver_object, removed from the set once.
        drop(unsafe { Box::from_raw(object) });
    }
}

pub fn new_device_object() -> PDEVICE_OBJECT {
    // SAFETY: DEVICE_OBJECT is plain data; all zeroes is a valid starting state.
    let mut device: Box<DEVICE_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    device.Type = IO_TYPE_DEVICE;
    device.Size = size_of::<DEVICE_OBJECT>() as u16;
    device.DriverObject = DRIVER_OBJECTS
        .lock()
        .unwrap()
        .first()
        .map_or(std::ptr::null_mut(), |&object| object as PDRIVER_OBJECT);
    Box::into_raw(device)
}

pub fn free_device_object(device: PDEVICE_OBJECT) {
    // SAFETY: created by new_device_object; its adapter is gone.
    let device = unsafe { Box::from_raw(device) };
    if !device.Reserved.is_null() {
        violation("the driver left its context in DEVICE_OBJECT.Reserved after halt");
    }
}

/// What NDIS installs in a miniport's driver object: its dispatch routines and unload routine.
pub fn install_ndis_dispatch(object: PDRIVER_OBJECT) {
    // SAFETY: a live driver object of ours, not otherwise in use during registration.
    let object = unsafe { &mut *object };
    for slot in object.MajorFunction.iter_mut() {
        *slot = Some(ndis_dispatch);
    }
    object.DriverUnload = Some(ndis_unload);
}

/// NDIS's own dispatch routine: requests the miniport does not handle itself end here.
unsafe extern "system" fn ndis_dispatch(_device: PDEVICE_OBJECT, _irp: PIRP) -> NTSTATUS {
    NDIS_DISPATCHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    STATUS_INVALID_DEVICE_REQUEST
}

/// Requests that reached NDIS's dispatch routine.
pub static NDIS_DISPATCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const STATUS_INVALID_DEVICE_REQUEST: NTSTATUS = 0xC000_0010_u32 as i32;

/// NDIS's unload routine: calls the miniport's, which deregisters.
unsafe extern "system" fn ndis_unload(object: PDRIVER_OBJECT) {
    irql::require_at_most(PASSIVE_LEVEL, "DriverUnload");
    if let Some(unload) = ndis::handlers().and_then(|handlers| handlers.unload) {
        // SAFETY: the driver's unload handler with its driver object.
        unsafe { unload(object) };
    }
}
