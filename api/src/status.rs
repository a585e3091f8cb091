//! The Windows error codes callers read from GetLastError, and the thread's last error itself
//! (kernel32's on Windows; on Linux, a thread-local that the library's `GetLastError` returns).

use oxtun_client::Error;

pub const ERROR_FILE_NOT_FOUND: u32 = 2;
pub const ERROR_ACCESS_DENIED: u32 = 5;
pub const ERROR_INVALID_HANDLE: u32 = 6;
#[cfg(unix)]
pub const ERROR_NOT_ENOUGH_MEMORY: u32 = 8;
pub const ERROR_INVALID_DATA: u32 = 13;
pub const ERROR_GEN_FAILURE: u32 = 31;
pub const ERROR_NOT_SUPPORTED: u32 = 50;
pub const ERROR_HANDLE_EOF: u32 = 38;
pub const ERROR_INVALID_PARAMETER: u32 = 87;
pub const ERROR_BUFFER_OVERFLOW: u32 = 111;
pub const ERROR_ALREADY_EXISTS: u32 = 183;
pub const ERROR_NO_MORE_ITEMS: u32 = 259;
pub const ERROR_OPERATION_ABORTED: u32 = 995;
pub const ERROR_NOT_FOUND: u32 = 1168;
pub const ERROR_ALREADY_INITIALIZED: u32 = 1247;
pub const ERROR_NO_SYSTEM_RESOURCES: u32 = 1450;
/// SetupAPI's answer when a driver package to remove still has devices: what
/// WintunDeleteDriver reports while adapters exist.
pub const ERROR_INF_IN_USE_BY_DEVICES: u32 = 0xE000_023D;

const STATUS_ACCESS_DENIED: u32 = 0xC000_0022;
const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
const STATUS_INSUFFICIENT_RESOURCES: u32 = 0xC000_009A;
const STATUS_ALREADY_INITIALIZED: u32 = 0xC000_0510;

/// The Windows error code of `error`, as wintun.dll's callers read it.
pub fn code(error: &Error) -> u32 {
    match error {
        Error::Io(error) => io_code(error),
        Error::Refused(status) => match *status {
            STATUS_ACCESS_DENIED => ERROR_ACCESS_DENIED,
            STATUS_INVALID_PARAMETER => ERROR_INVALID_PARAMETER,
            STATUS_INSUFFICIENT_RESOURCES => ERROR_NO_SYSTEM_RESOURCES,
            STATUS_ALREADY_INITIALIZED => ERROR_ALREADY_INITIALIZED,
            _ => ERROR_GEN_FAILURE,
        },
        Error::BadCapacity(_)
        | Error::TooLarge(_)
        | Error::TooSmall(_)
        | Error::NotOutstanding
        | Error::BadName(_) => ERROR_INVALID_PARAMETER,
        // A packet whose offload header it does not bear out: refused, as a corrupt ring is.
        Error::Offload(_) => ERROR_INVALID_DATA,
        // Session::allocate_with_header, which the C API never calls.
        Error::NoHeaders => ERROR_NOT_SUPPORTED,
        Error::Full => ERROR_BUFFER_OVERFLOW,
        Error::Ended => ERROR_HANDLE_EOF,
        // Session::shutdown, which the C API never calls.
        Error::ShutDown => ERROR_OPERATION_ABORTED,
        Error::Ring(_) => ERROR_INVALID_DATA,
        Error::NotFound => ERROR_FILE_NOT_FOUND,
        // wintun.dll's WintunOpenAdapter (api/adapter.c): LOG_ERROR(ERROR_NOT_FOUND, ...).
        Error::NoSuchAdapter => ERROR_NOT_FOUND,
        Error::AlreadyExists => ERROR_ALREADY_EXISTS,
        Error::InUse => ERROR_INF_IN_USE_BY_DEVICES,
    }
}

/// On Windows a system error is already a Win32 code.
#[cfg(windows)]
fn io_code(error: &std::io::Error) -> u32 {
    error
        .raw_os_error()
        .map_or(ERROR_GEN_FAILURE, |code| code as u32)
}

/// On Linux, the errno's nearest Win32 code.
#[cfg(unix)]
fn io_code(error: &std::io::Error) -> u32 {
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::ECONNREFUSED) => ERROR_FILE_NOT_FOUND,
        Some(libc::EACCES | libc::EPERM) => ERROR_ACCESS_DENIED,
        Some(libc::ENOMEM) => ERROR_NOT_ENOUGH_MEMORY,
        Some(libc::EINVAL) => ERROR_INVALID_PARAMETER,
        Some(libc::EEXIST) => ERROR_ALREADY_EXISTS,
        _ => ERROR_GEN_FAILURE,
    }
}

#[cfg(unix)]
thread_local! {
    static LAST_ERROR: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(unix)]
pub fn set_last_error(code: u32) {
    LAST_ERROR.with(|last| last.set(code));
}

#[cfg(unix)]
pub fn last_error() -> u32 {
    LAST_ERROR.with(|last| last.get())
}

#[cfg(windows)]
pub fn set_last_error(code: u32) {
    // SAFETY: sets this thread's last-error value; no memory involved.
    unsafe { windows_sys::Win32::Foundation::SetLastError(code) };
}
