//! Windows: ring memory from VirtualAlloc, auto-reset events, and the registration IOCTL on the
//! adapter's device, found through its device interface.

use std::io;
use std::ptr::null_mut;

use oxtun_abi::{CallerWidth, RingDescriptor, RingRegistration, TUN_IOCTL_REGISTER_RINGS};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_BUFFER_SMALL, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Memory::{
    MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_READWRITE, VirtualAlloc, VirtualFree,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, INFINITE, SetEvent, WaitForSingleObject,
};
use windows_sys::core::GUID;

use crate::Error;

pub type RawHandle = HANDLE;

/// `GUID_DEVINTERFACE_NET`: the interface every network adapter's device exposes.
const GUID_DEVINTERFACE_NET: GUID = GUID::from_u128(0xcac88484_7515_4c03_82e6_71a87abac361);

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

/// An installed adapter, by its device instance ID (as the SetupAPI or `pnputil /enum-devices`
/// names it).
pub struct Adapter {
    instance_id: Vec<u16>,
}

impl Adapter {
    pub fn from_instance_id(instance_id: &str) -> Adapter {
        Adapter {
            instance_id: instance_id.encode_utf16().chain([0]).collect(),
        }
    }

    /// The path of the adapter's network device interface.
    fn interface_path(&self) -> Result<Vec<u16>, Error> {
        loop {
            let mut len = 0u32;
            // SAFETY: our NUL-terminated instance ID and an out parameter.
            let status = unsafe {
                CM_Get_Device_Interface_List_SizeW(
                    &mut len,
                    &GUID_DEVINTERFACE_NET,
                    self.instance_id.as_ptr(),
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            if status != CR_SUCCESS {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no network interface for the adapter (CONFIGRET {status})"),
                )));
            }
            let mut list = vec![0u16; len as usize];
            // SAFETY: a buffer of `len` characters, as the size call asked for.
            let status = unsafe {
                CM_Get_Device_Interface_ListW(
                    &GUID_DEVINTERFACE_NET,
                    self.instance_id.as_ptr(),
                    list.as_mut_ptr(),
                    len,
                    CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
                )
            };
            match status {
                CR_SUCCESS => {
                    let first_end = list.iter().position(|&c| c == 0).unwrap_or(list.len());
                    if first_end == 0 {
                        return Err(Error::Io(io::ErrorKind::NotFound.into()));
                    }
                    list.truncate(first_end + 1);
                    return Ok(list);
                }
                // The list grew between the two calls: ask again.
                CR_BUFFER_SMALL => continue,
                other => {
                    return Err(Error::Io(io::Error::other(format!(
                        "listing the adapter's interfaces failed (CONFIGRET {other})"
                    ))));
                }
            }
        }
    }

    pub(crate) fn register(
        &self,
        send: (&Memory, u32, &Event),
        receive: (&Memory, u32, &Event),
    ) -> Result<Registration, Error> {
        let path = self.interface_path()?;
        // SAFETY: a NUL-terminated path; the handle is ours until Registration drops.
        let handle = unsafe {
            CreateFileW(
                path.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                null_mut(),
                OPEN_EXISTING,
                0,
                null_mut(),
            )
        };
        if handle == INVALID_HANDLE_VALUE {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        let registration = Registration { handle };
        let descriptor = |(memory, size, event): (&Memory, u32, &Event)| RingDescriptor {
            ring_size: size,
            ring: memory.as_ptr() as u64,
            tail_moved: event.raw() as u64,
        };
        let request = RingRegistration {
            send: descriptor(send),
            receive: descriptor(receive),
        };
        let width = if cfg!(target_pointer_width = "64") {
            CallerWidth::Bits64
        } else {
            CallerWidth::Bits32
        };
        let mut buffer = [0u8; 48];
        let len = request
            .encode(width, &mut buffer)
            .expect("this process's pointers fit its own layout");
        let mut returned = 0u32;
        // SAFETY: our device handle, an input buffer of `len` bytes, no output, synchronous.
        let ok = unsafe {
            DeviceIoControl(
                registration.handle,
                TUN_IOCTL_REGISTER_RINGS,
                buffer.as_ptr().cast(),
                len as u32,
                null_mut(),
                0,
                &mut returned,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(registration)
    }
}

/// The open handle that holds the registration: closing it ends the session.
pub struct Registration {
    handle: HANDLE,
}

// SAFETY: a file handle may be used from any thread.
unsafe impl Send for Registration {}
// SAFETY: as for Send.
unsafe impl Sync for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}
