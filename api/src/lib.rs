//! oxtun.dll (Windows) and liboxtun.so (Linux): wintun.h's fourteen functions, with their names,
//! types, calling convention and observable semantics (those of wintun.dll 0.14), and our own,
//! prefixed `Oxtun`, for what Wintun has not (offloads through the ring, docs/offloads.md), over
//! the client crate, which holds the one implementation of adapters and sessions. This file is
//! the C boundary only: it checks every argument, turns handles into objects (`handles`), errors
//! into the codes GetLastError returns (`status`), and lets no panic cross into the caller.
//!
//! The header is `include/oxtun.h`.

#![allow(non_snake_case, reason = "the exported names are wintun.h's")]

mod handles;
#[cfg(windows)]
mod package;
mod status;

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::null_mut;
use std::sync::Arc;

use oxtun_client::log::{self, Level};
use oxtun_client::{Adapter, Features, MAX_IP_PACKET_SIZE, Session, Version};

use handles::Object;
use status::*;

/// MAX_ADAPTER_NAME: a name or tunnel type has at most 127 characters and a NUL.
const MAX_ADAPTER_NAME: usize = 128;

/// The caller's GUID, as laid out in memory.
#[repr(C)]
pub struct Guid {
    data1: u32,
    data2: u16,
    data3: u16,
    data4: [u8; 8],
}

/// WINTUN_LOGGER_CALLBACK.
pub type LoggerCallback = extern "system" fn(level: u32, timestamp: u64, message: *const u16);

/// Runs `body`; a panic becomes `failed` with ERROR_GEN_FAILURE, logged.
fn guard<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        log::error("internal error (a panic), the call failed");
        set_last_error(ERROR_GEN_FAILURE);
        failed
    })
}

/// Sets the last error to `code`; returns `failed`.
fn fail<T>(code: u32, failed: T) -> T {
    set_last_error(code);
    failed
}

/// Copies a NUL-terminated UTF-16 string of at most `MAX_ADAPTER_NAME - 1` characters, each
/// unit read once (the caller's memory may change while we read). The error code otherwise:
/// ERROR_BUFFER_OVERFLOW when no NUL comes within reach, as wintun.dll answers a name of 128
/// characters or more (api/adapter.c); ERROR_INVALID_PARAMETER for NULL or ill-formed UTF-16
/// (which wintun.dll passes on; docs/compatibility.md).
///
/// # Safety
/// `string` is NULL or readable up to its NUL or `MAX_ADAPTER_NAME` units, whichever is first.
unsafe fn read_name(string: *const u16) -> Result<String, u32> {
    // SAFETY: the caller's promise.
    unsafe { read_wide(string, MAX_ADAPTER_NAME) }
}

/// As [`read_name`], up to `limit` units.
///
/// # Safety
/// `string` is NULL or readable up to its NUL or `limit` units, whichever is first.
unsafe fn read_wide(string: *const u16, limit: usize) -> Result<String, u32> {
    if string.is_null() {
        return Err(ERROR_INVALID_PARAMETER);
    }
    let mut units = Vec::new();
    for index in 0..limit {
        // SAFETY: within the caller's promise: we stop at the NUL or at the limit.
        let unit = unsafe { string.add(index).read_unaligned() };
        if unit == 0 {
            return String::from_utf16(&units).map_err(|_| ERROR_INVALID_PARAMETER);
        }
        units.push(unit);
    }
    Err(ERROR_BUFFER_OVERFLOW)
}

impl Guid {
    fn to_u128(&self) -> u128 {
        (u128::from(self.data1) << 96)
            | (u128::from(self.data2) << 80)
            | (u128::from(self.data3) << 64)
            | u128::from(u64::from_be_bytes(self.data4))
    }
}

fn adapter_handle(adapter: Adapter) -> *mut c_void {
    handles::insert(Object::Adapter(Arc::new(adapter))) as *mut c_void
}

/// WintunCreateAdapter: creates an adapter named `name` (installing the driver when needed).
///
/// # Safety
/// `name` and `tunnel_type` are NUL-terminated UTF-16 strings (or NULL, refused);
/// `requested_guid` is NULL or points to a GUID.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WintunCreateAdapter(
    name: *const u16,
    tunnel_type: *const u16,
    requested_guid: *const Guid,
) -> *mut c_void {
    guard(null_mut(), || {
        // SAFETY: the caller's promise for both strings.
        let strings = unsafe { read_name(name) }.and_then(|name| {
            // SAFETY: as above.
            Ok((name, unsafe { read_name(tunnel_type) }?))
        });
        let (name, tunnel_type) = match strings {
            Ok(strings) => strings,
            Err(code) => {
                log::error(
                    "WintunCreateAdapter: the name or tunnel type is not a string of 1 to 127 \
                     characters",
                );
                return fail(code, null_mut());
            }
        };
        // SAFETY: the caller's promise: NULL or a GUID, read once.
        let guid = (!requested_guid.is_null())
            .then(|| unsafe { requested_guid.read_unaligned() }.to_u128());
        #[cfg(windows)]
        package::register_embedded();
        match Adapter::create(&name, &tunnel_type, guid) {
            Ok(adapter) => adapter_handle(adapter),
            Err(error) => {
                log::error(&format!("failed to create adapter {name}: {error}"));
                fail(code(&error), null_mut())
            }
        }
    })
}

/// WintunOpenAdapter: opens the existing adapter named `name`.
///
/// # Safety
/// `name` is a NUL-terminated UTF-16 string (or NULL, refused).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WintunOpenAdapter(name: *const u16) -> *mut c_void {
    guard(null_mut(), || {
        // SAFETY: the caller's promise.
        let name = match unsafe { read_name(name) } {
            Ok(name) => name,
            Err(code) => return fail(code, null_mut()),
        };
        match Adapter::open(&name) {
            Ok(adapter) => adapter_handle(adapter),
            Err(error) => fail(code(&error), null_mut()),
        }
    })
}

/// WintunCloseAdapter: releases the handle, and removes the adapter if this handle created it.
/// NULL is allowed and does nothing.
#[unsafe(no_mangle)]
pub extern "system" fn WintunCloseAdapter(adapter: *mut c_void) {
    guard((), || {
        if adapter.is_null() {
            return;
        }
        match handles::remove_adapter(adapter as usize) {
            // Removed (and the adapter with it) once no call in flight holds it.
            Some(adapter) => drop(adapter),
            None => fail(ERROR_INVALID_HANDLE, ()),
        }
    })
}

/// WintunDeleteDriver: removes the driver if no adapter of ours exists.
#[unsafe(no_mangle)]
pub extern "system" fn WintunDeleteDriver() -> i32 {
    guard(0, || {
        // It removes orphaned adapters first, which a 32-bit process does with the helper.
        #[cfg(windows)]
        package::register_embedded();
        match oxtun_client::delete_driver() {
            Ok(()) => 1,
            Err(error) => fail(code(&error), 0),
        }
    })
}

/// WintunGetAdapterLUID: the adapter's NET_LUID.
///
/// # Safety
/// `luid` is NULL (refused) or points to 8 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WintunGetAdapterLUID(adapter: *mut c_void, luid: *mut u64) {
    guard((), || {
        let Some(adapter) = handles::adapter(adapter as usize) else {
            return fail(ERROR_INVALID_HANDLE, ());
        };
        if luid.is_null() {
            return fail(ERROR_INVALID_PARAMETER, ());
        }
        // SAFETY: the caller's promise: 8 writable bytes.
        unsafe { luid.write_unaligned(adapter.luid()) };
    })
}

/// WintunGetRunningDriverVersion: major << 16 | minor, or 0 with ERROR_FILE_NOT_FOUND when no
/// driver of ours runs.
#[unsafe(no_mangle)]
pub extern "system" fn WintunGetRunningDriverVersion() -> u32 {
    guard(0, || match oxtun_client::driver_version() {
        Ok(version) => Version::to_dword(version),
        Err(error) => fail(code(&error), 0),
    })
}

/// WintunSetLogger: the callback gets every message from now on, from any thread; NULL stops.
#[unsafe(no_mangle)]
pub extern "system" fn WintunSetLogger(logger: Option<LoggerCallback>) {
    guard((), || {
        log::set_logger(logger.map(|callback| {
            Arc::new(move |level: Level, timestamp: u64, message: &str| {
                let text: Vec<u16> = message.encode_utf16().chain([0]).collect();
                callback(level as u32, timestamp, text.as_ptr());
            }) as log::Logger
        }));
    })
}

/// WintunStartSession: registers rings of `capacity` bytes each (a power of two from
/// WINTUN_MIN_RING_CAPACITY to WINTUN_MAX_RING_CAPACITY).
#[unsafe(no_mangle)]
pub extern "system" fn WintunStartSession(adapter: *mut c_void, capacity: u32) -> *mut c_void {
    guard(null_mut(), || {
        let Some(adapter) = handles::adapter(adapter as usize) else {
            return fail(ERROR_INVALID_HANDLE, null_mut());
        };
        start_session(&adapter, capacity, Features::NONE)
    })
}

/// OxtunStartSessionEx: as WintunStartSession, asking for `features` (OXTUN_FEATURE_* bits). A
/// driver that does not take them registers the rings without (OxtunGetSessionFeatures says
/// which are in force); a bit this library does not know fails with ERROR_NOT_SUPPORTED.
#[unsafe(no_mangle)]
pub extern "system" fn OxtunStartSessionEx(
    adapter: *mut c_void,
    capacity: u32,
    features: u32,
) -> *mut c_void {
    guard(null_mut(), || {
        let Some(adapter) = handles::adapter(adapter as usize) else {
            return fail(ERROR_INVALID_HANDLE, null_mut());
        };
        let Some(features) = Features::from_bits(features) else {
            log::error(&format!(
                "OxtunStartSessionEx: unknown feature bits {features:#x}"
            ));
            return fail(ERROR_NOT_SUPPORTED, null_mut());
        };
        start_session(&adapter, capacity, features)
    })
}

fn start_session(adapter: &Adapter, capacity: u32, features: Features) -> *mut c_void {
    match adapter.start_session_with(capacity, features) {
        Ok(session) => handles::insert(Object::Session(Arc::new(session))) as *mut c_void,
        Err(error) => {
            log::error(&format!("failed to start a session: {error}"));
            fail(code(&error), null_mut())
        }
    }
}

/// OxtunGetSessionFeatures: writes the features in force (OXTUN_FEATURE_* bits; 0 for
/// Wintun's plain ABI) to `*features`; TRUE, or FALSE with ERROR_INVALID_HANDLE or
/// ERROR_INVALID_PARAMETER (NULL `features`).
///
/// # Safety
/// `features` is NULL (refused) or points to 4 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn OxtunGetSessionFeatures(
    session: *mut c_void,
    features: *mut u32,
) -> i32 {
    guard(0, || {
        let Some(session) = handles::session(session as usize) else {
            return fail(ERROR_INVALID_HANDLE, 0);
        };
        if features.is_null() {
            return fail(ERROR_INVALID_PARAMETER, 0);
        }
        // SAFETY: the caller's promise: 4 writable bytes.
        unsafe { features.write_unaligned(session.features().bits()) };
        1
    })
}

/// WintunEndSession: ends the session. Its packets are invalid afterwards.
#[unsafe(no_mangle)]
pub extern "system" fn WintunEndSession(session: *mut c_void) {
    guard((), || {
        if handles::remove_session(session as usize).is_none() {
            fail(ERROR_INVALID_HANDLE, ())
        }
    })
}

/// WintunGetReadWaitEvent: the event to wait on after ERROR_NO_MORE_ITEMS; owned by the session.
/// On Linux a descriptor to poll, cast to a HANDLE.
#[unsafe(no_mangle)]
pub extern "system" fn WintunGetReadWaitEvent(session: *mut c_void) -> *mut c_void {
    guard(null_mut(), || match handles::session(session as usize) {
        Some(session) => session.wait_handle() as usize as *mut c_void,
        None => fail(ERROR_INVALID_HANDLE, null_mut()),
    })
}

/// WintunReceivePacket: the next packet and its size, or NULL with ERROR_NO_MORE_ITEMS (none
/// waiting), ERROR_HANDLE_EOF (the adapter is going away) or ERROR_INVALID_DATA (a corrupt ring).
/// With headers in force, the packet starts with its header (validated; the session skips a
/// packet that does not bear its header out) and the size counts it.
///
/// # Safety
/// `packet_size` is NULL (refused) or points to 4 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WintunReceivePacket(
    session: *mut c_void,
    packet_size: *mut u32,
) -> *mut u8 {
    guard(null_mut(), || {
        let Some(session) = handles::session(session as usize) else {
            return fail(ERROR_INVALID_HANDLE, null_mut());
        };
        if packet_size.is_null() {
            return fail(ERROR_INVALID_PARAMETER, null_mut());
        }
        match session.try_receive() {
            Ok(Some(packet)) => {
                // SAFETY: the caller's promise: 4 writable bytes.
                unsafe { packet_size.write_unaligned(packet.ring_len() as u32) };
                // Outstanding until WintunReleaseReceivePacket hands the pointer back.
                packet.into_raw()
            }
            Ok(None) => fail(ERROR_NO_MORE_ITEMS, null_mut()),
            Err(error) => fail(code(&error), null_mut()),
        }
    })
}

/// WintunReleaseReceivePacket: gives a received packet's space back, in any order. A pointer
/// that is not an unreleased packet of this session is refused (ERROR_INVALID_PARAMETER).
#[unsafe(no_mangle)]
pub extern "system" fn WintunReleaseReceivePacket(session: *mut c_void, packet: *const u8) {
    hand_back(
        "WintunReleaseReceivePacket",
        session,
        packet,
        Session::release_data,
    );
}

/// WintunAllocateSendPacket: room for a packet of `packet_size` bytes (at most
/// WINTUN_MAX_IP_PACKET_SIZE; with headers in force counting the header, so at least
/// OXTUN_VNET_HDR_LEN), or NULL with ERROR_BUFFER_OVERFLOW (the ring is full),
/// ERROR_HANDLE_EOF (the adapter is going away) or ERROR_INVALID_PARAMETER (a bad size).
#[unsafe(no_mangle)]
pub extern "system" fn WintunAllocateSendPacket(session: *mut c_void, packet_size: u32) -> *mut u8 {
    guard(null_mut(), || {
        let Some(session) = handles::session(session as usize) else {
            return fail(ERROR_INVALID_HANDLE, null_mut());
        };
        if packet_size > MAX_IP_PACKET_SIZE {
            return fail(ERROR_INVALID_PARAMETER, null_mut());
        }
        match session.allocate_data(packet_size as usize) {
            Ok(data) => data.as_ptr(),
            Err(error) => fail(code(&error), null_mut()),
        }
    })
}

/// WintunSendPacket: sends an allocated packet; the system receives packets in the order they
/// were allocated. A pointer that is not an unsent packet of this session is refused
/// (ERROR_INVALID_PARAMETER). With headers in force, a packet that does not bear its header out
/// is not delivered (zeroed, it is passed over) and the last error is ERROR_INVALID_DATA.
#[unsafe(no_mangle)]
pub extern "system" fn WintunSendPacket(session: *mut c_void, packet: *const u8) {
    hand_back("WintunSendPacket", session, packet, Session::send_data);
}

/// Gives a packet back to its session (`give`: release it or send it), logging a refusal.
fn hand_back(
    function: &str,
    session: *mut c_void,
    packet: *const u8,
    give: fn(&Session, *const u8) -> Result<(), oxtun_client::Error>,
) {
    guard((), || {
        let Some(session) = handles::session(session as usize) else {
            return fail(ERROR_INVALID_HANDLE, ());
        };
        if let Err(error) = give(&session, packet) {
            log::error(&format!("{function}: {error}"));
            fail(code(&error), ())
        }
    })
}

/// The native helper's entry point, only in the x64 build that the x86 DLL carries (build.rs):
/// a 32-bit oxtun.dll on 64-bit Windows runs it through rundll32 (`"<helper>.dll",
/// OxtunWow64Helper remove <instance ID>`) to remove a device, which the class installer refuses
/// to do from a 32-bit process; rundll32 calls `<entry point>W` with the rest of its command
/// line. The answer goes to standard output (oxtun_client's wow64 module). Not one of wintun.h's
/// functions, and not in oxtun.h.
///
/// # Safety
/// `command_line` is NULL or a NUL-terminated UTF-16 string, as rundll32 passes it.
#[cfg(all(windows, wow64_helper))]
#[unsafe(no_mangle)]
pub unsafe extern "system" fn OxtunWow64HelperW(
    _window: *mut c_void,
    _instance: *mut c_void,
    command_line: *const u16,
    _show: i32,
) {
    /// Far more than a request and a device instance ID (at most 199 characters) take.
    const MAX_COMMAND_LINE: usize = 1024;
    guard((), || {
        // SAFETY: the caller's promise, read at most up to the limit.
        let command_line = unsafe { read_wide(command_line, MAX_COMMAND_LINE) }.ok();
        oxtun_client::serve_wow64_helper(command_line.as_deref().unwrap_or_default());
    })
}

/// GetLastError, on Linux: the code the last failed call of this library set on this thread.
/// (On Windows it is kernel32's, which the library sets.)
#[cfg(unix)]
#[unsafe(no_mangle)]
pub extern "C" fn GetLastError() -> u32 {
    last_error()
}

/// SetLastError, on Linux: sets the calling thread's last error, as kernel32's does on Windows.
#[cfg(unix)]
#[unsafe(no_mangle)]
pub extern "C" fn SetLastError(code: u32) {
    set_last_error(code);
}
