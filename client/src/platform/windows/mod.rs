//! Windows: ring memory from VirtualAlloc, auto-reset events, the registration IOCTL on the
//! adapter's device, adapters (`adapter`), and installing the driver (`driver`).

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

use oxtun_abi::{CallerWidth, Features, RingDescriptor, RingRegistration};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::IO::DeviceIoControl;

use notify::{DeviceHandle, RemovalNotification};

use crate::Error;
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

/// The adapter's device, opened: the handle that holds the registration, so that closing it ends
/// the session. It closes when the session is dropped, or before, when the adapter's device is
/// being removed (`notify`).
pub struct Device {
    /// Boxed: the removal notification's callback holds its address.
    handle: Box<DeviceHandle>,
    removal: Option<RemovalNotification>,
}

impl Device {
    pub(super) fn new(handle: HANDLE) -> Device {
        Device {
            handle: Box::new(DeviceHandle::new(handle)),
            removal: None,
        }
    }

    /// Registers the rings, asking for `features` unless there are none: the IOCTL
    /// `rules::registration_ioctl` builds, in this process's own layout. Once registered, the
    /// handle closes when the adapter's device is being removed.
    pub fn register(
        &mut self,
        send: (&Memory, u32, &Event),
        receive: (&Memory, u32, &Event),
        features: Features,
    ) -> Result<(), Error> {
        let descriptor = |(memory, size, event): (&Memory, u32, &Event)| RingDescriptor {
            ring_size: size,
            ring: memory.as_ptr() as u64,
            tail_moved: event.raw() as u64,
        };
        let rings = RingRegistration {
            send: descriptor(send),
            receive: descriptor(receive),
        };
        let width = if cfg!(target_pointer_width = "64") {
            CallerWidth::Bits64
        } else {
            CallerWidth::Bits32
        };
        let ioctl = rules::registration_ioctl(&rings, features, width)
            .expect("this process's pointers fit its own layout");
        let input = ioctl.input();
        let mut returned = 0u32;
        // SAFETY: our device handle, an input buffer of `input.len()` bytes, no output,
        // synchronous.
        let ok = unsafe {
            DeviceIoControl(
                self.handle.raw(),
                ioctl.code,
                input.as_ptr().cast(),
                input.len() as u32,
                null_mut(),
                0,
                &mut returned,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        // SAFETY: the handle is boxed and outlives the notification, which the drop below
        // unregisters first.
        self.removal = unsafe { RemovalNotification::register(&self.handle) };
        Ok(())
    }

    /// A device that reaches no driver (no handle), for the session's tests, which play the
    /// driver.
    #[cfg(test)]
    pub fn detached() -> Device {
        Device::new(null_mut())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Unregistered first (waiting for a callback under way), then closed, if the callback
        // has not closed it already.
        drop(self.removal.take());
        self.handle.close();
    }
}
