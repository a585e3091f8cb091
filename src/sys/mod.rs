//! The NT and NDIS surface the driver uses: types, constants and imported functions, named as
//! the WDK headers (and bindgen) name them, with their x86_64 layouts asserted.
//!
//! On Windows the functions are imported from the kernel's own images through raw-dylib, so the
//! cross build needs no import libraries. On the host they resolve to the simulated kernel's
//! exports of the same names.
//!
//! Every function that crosses the boundary with the kernel, both ways (imports, and the
//! handlers, dispatch routines and thread and notify routines the kernel calls), is
//! `extern "efiapi"`: Rust's name for the Microsoft x64 convention on x86_64 and the C
//! convention elsewhere. On both Windows targets that is exactly `extern "system"`; on the
//! x86_64 host it keeps the Windows convention too, so the simulated kernel calls the host build
//! and the shipped kernel image the same way, and the image's calls land on the same exports.
//!
//! Only what the driver uses is here. Small accessors for the header macros
//! (`NET_BUFFER_LIST_NEXT_NBL`, ...) sit next to their types, so the rest of the driver never
//! pokes at raw fields.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

/// A block of kernel imports from `$dll`. On Windows they are linked through raw-dylib, which
/// accepts the kernel's convention only under its name `"system"`; on the host they are the
/// simulated kernel's exports, called with the same convention under the name `"efiapi"`.
macro_rules! kernel_imports {
    ($dll:literal { $($item:tt)* }) => {
        #[cfg(windows)]
        #[link(name = $dll, kind = "raw-dylib", modifiers = "+verbatim")]
        unsafe extern "system" { $($item)* }
        #[cfg(not(windows))]
        unsafe extern "efiapi" { $($item)* }
    };
}

mod config;
mod event;
mod handles;
mod irp;
mod lock;
mod nbl;
pub mod ndis;
pub mod nt;
pub mod offload;
mod pool;
mod receive;
mod rundown;
mod security;
mod user;

pub use config::AdapterConfiguration;
pub use event::{KernelEvent, SystemThread, Waitable, wait, wait_any, wait_any_for};
pub use handles::close_user_handles;
pub use irp::{DeviceObject, FileReference, Irp, SavedDispatch};
pub use lock::{PassiveLock, PassiveLockGuard, SpinLock, SpinLockGuard};
pub use nbl::{Nbl, NblChain, NetBuffer};
pub use ndis::*;
pub use nt::*;
pub use offload::*;
pub use pool::{POOL_TAG, PagedBuffer, PoolBox, PoolBuffer};
pub use receive::{
    NblList, NblPool, PacketNbl, PacketOwner, RECEIVE_NBL_POOL_BYTES, ReceiveInfo,
    SPLIT_HEADERS_CAPACITY, SharedBuffer,
};
pub use rundown::{Rundown, RundownGuard, RundownProtection, RundownSlot};
pub use security::caller_is_system_or_administrator;
pub use user::{EventReference, LockedPages, LockedUserBuffer};
