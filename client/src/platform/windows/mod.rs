//! Windows: ring memory from VirtualAlloc, auto-reset events, the registration IOCTL on the
//! adapter's device (`adapter`), and installing the driver (`driver`).

mod adapter;
mod driver;
mod lock;
mod notify;
mod system;
mod wow64;

use super::windows_rules as rules;

pub use adapter::Adapter;
pub use driver::{DriverPackage, delete_driver, driver_version, register_driver_package};
pub use wow64::{native_machine, register_wow64_helper, serve_wow64_helper};

use std::io;
use std::ptr::null_mut;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};

use notify::{DeviceHandle, RemovalNotification};
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_READWRITE, VirtualAlloc, VirtualFree,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, SetEvent, WaitForSingleObject,
};

pub type RawHandle = HANDLE;

/// Ring memory: committed pages of this process.
pub struct Memory {
    base: *mut u8,
}

// SAFETY: plain process memory, accessed through the ring types' atomics and bounded copies.
unsafe impl Send for Memory {}
// SAFETY: as for Send.
unsafe impl Sync for Memory {}

impl Memory {
    pub fn allocate(len: usize) -> io::Result<Memory> {
        // SAFETY: a new committed, zeroed, read-write allocation anywhere.
        let base =
            unsafe { VirtualAlloc(null_mut(), len, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE) };
        if base.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Memory { base: base.cast() })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the allocation made in allocate, released once.
        unsafe { VirtualFree(self.base.cast(), 0, MEM_RELEASE) };
    }
}

/// An auto-reset event.
pub struct Event {
    handle: HANDLE,
}

// SAFETY: an event handle may be used from any thread.
unsafe impl Send for Event {}
// SAFETY: as for Send.
unsafe impl Sync for Event {}

impl Event {
    pub fn new() -> io::Result<Event> {
        // SAFETY: an unnamed auto-reset event, not signalled.
        let handle = unsafe { CreateEventW(null_mut(), 0, 0, null_mut()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Event { handle })
    }

    pub fn set(&self) -> io::Result<()> {
        // SAFETY: our event handle.
        if unsafe { SetEvent(self.handle) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn wait(&self) -> io::Result<()> {
        // SAFETY: our event handle.
        match unsafe { WaitForSingleObject(self.handle, INFINITE) } {
            WAIT_OBJECT_0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Nothing to do: a wait that returns resets the auto-reset event itself.
    pub fn consume(&self) {}

    pub fn raw(&self) -> HANDLE {
        self.handle
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}

/// The open handle that holds the registration: closing it ends the session. It closes when
/// the session is dropped, or before, when the adapter's device is being removed (`notify`).
pub struct Registration {
    /// Boxed: the removal notification's callback holds its address.
    device: Box<DeviceHandle>,
    removal: Option<RemovalNotification>,
}

impl Registration {
    pub(super) fn new(handle: HANDLE) -> Registration {
        Registration {
            device: Box::new(DeviceHandle::new(handle)),
            removal: None,
        }
    }

    pub(super) fn handle(&self) -> HANDLE {
        self.device.raw()
    }

    /// From now on, the handle closes when the adapter's device is being removed.
    pub(super) fn close_on_removal(&mut self) {
        // SAFETY: the handle is boxed and outlives the notification, which the drop below
        // unregisters first.
        self.removal = unsafe { RemovalNotification::register(&self.device) };
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Unregistered first (waiting for a callback under way), then closed, if the callback
        // has not closed it already.
        drop(self.removal.take());
        self.device.close();
    }
}
