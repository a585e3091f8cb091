//! oxtun: a layer-3 TUN miniport driver for Windows (NDIS 6, NdisMediumIP) whose packets go to a
//! user process through two shared-memory rings, byte-compatible with Wintun's.
//!
//! One source for every build: the Windows target makes the kernel image; the host build runs
//! the same code on the simulated kernel (the functions of [`sys`] resolve to its exports).

#![no_std]

// Host builds take std's panic runtime; the kernel image has its own handler below.
#[cfg(not(windows))]
extern crate std;

mod adapter;
mod device;
mod driver;
mod offload;
mod oid;
mod receive;
mod rings;
mod statistics;
pub mod sys;

pub use driver::DriverEntry;
/// The task offloads' standardized keywords the driver reads, each with the value it takes when
/// the key lacks one, for the check that the INF's defaults are the same.
pub use offload::KEYWORDS as OFFLOAD_KEYWORDS;
/// The driver version OID_GEN_VENDOR_DRIVER_VERSION answers, for the check that the image's
/// version resource says the same.
pub use oid::VENDOR_DRIVER_VERSION;

/// The bug check a panic raises: an invariant of the driver broke, so stop the machine with a
/// crash dump that names the place, rather than run on in an unknown state. Parameters: the
/// address and length of the source file's name, the line, the column. (Public on every build:
/// the simulated kernel spells out the parameters when the kernel image it runs panics.)
pub const PANIC_BUGCHECK_CODE: u32 = 0x204F_5854;

/// Symbols the precompiled `core` refers to, which the kernel has no CRT to provide.
#[cfg(windows)]
mod runtime {
    /// Marks that floating point is used; MSVC's CRT defines it, the kernel image must.
    #[unsafe(no_mangle)]
    pub static _fltused: i32 = 0;

    /// The C++ exception personality routine `core`'s unwind tables name. Nothing unwinds in
    /// this driver (a panic bug-checks), so reaching it is a bug.
    #[unsafe(no_mangle)]
    pub extern "C" fn __CxxFrameHandler3() -> ! {
        // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
        unsafe { crate::sys::KeBugCheckEx(super::PANIC_BUGCHECK_CODE, 0, 0, 0, 0) }
    }

    /// `memcmp`, which the kernel does not export for drivers to import.
    ///
    /// # Safety
    /// `a` and `b` are readable for `len` bytes.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
        for index in 0..len {
            // SAFETY: the caller guarantees both are readable for len bytes.
            let (x, y) = unsafe { (a.add(index).read_volatile(), b.add(index).read_volatile()) };
            if x != y {
                return i32::from(x) - i32::from(y);
            }
        }
        0
    }
}

#[cfg(all(windows, not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let (file, line, column) = info
        .location()
        .map_or(("", 0, 0), |at| (at.file(), at.line(), at.column()));
    // SAFETY: KeBugCheckEx may be called at any IRQL and never returns.
    unsafe {
        sys::KeBugCheckEx(
            PANIC_BUGCHECK_CODE,
            file.as_ptr() as usize,
            file.len(),
            line as usize,
            column as usize,
        )
    }
}
