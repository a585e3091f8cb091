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
mod driver;
mod oid;
pub mod sys;

pub use driver::DriverEntry;

/// The bug check a panic raises: an invariant of the driver broke, so stop the machine with a
/// crash dump that names the place, rather than run on in an unknown state. Parameters: the
/// address and length of the source file's name, the line, the column.
#[cfg(windows)]
pub const PANIC_BUGCHECK_CODE: u32 = 0x204F_5854;

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
