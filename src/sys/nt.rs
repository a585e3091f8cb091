//! NT kernel types and functions (wdm.h, ntddk.h).

use core::ffi::c_void;

pub type NTSTATUS = i32;
pub type ULONG = u32;
pub type ULONG_PTR = usize;
pub type PVOID = *mut c_void;

pub const STATUS_SUCCESS: NTSTATUS = 0;

/// `NT_SUCCESS()`.
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// `DRIVER_OBJECT`; only NDIS and the I/O manager look inside it so far.
#[repr(C)]
pub struct DRIVER_OBJECT {
    _opaque: [u8; 0],
}
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `UNICODE_STRING`, as the registry path DriverEntry receives.
#[repr(C)]
pub struct UNICODE_STRING {
    pub Length: u16,
    pub MaximumLength: u16,
    pub Buffer: *mut u16,
}
pub type PUNICODE_STRING = *mut UNICODE_STRING;

const _: () = {
    assert!(core::mem::size_of::<UNICODE_STRING>() == 16);
    assert!(core::mem::offset_of!(UNICODE_STRING, Buffer) == 8);
};

#[cfg_attr(
    windows,
    link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    /// Stops the system with a bug check; never returns.
    pub fn KeBugCheckEx(
        BugCheckCode: ULONG,
        BugCheckParameter1: ULONG_PTR,
        BugCheckParameter2: ULONG_PTR,
        BugCheckParameter3: ULONG_PTR,
        BugCheckParameter4: ULONG_PTR,
    ) -> !;
}
