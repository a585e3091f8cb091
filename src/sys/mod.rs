//! The NT and NDIS surface the driver uses: types, constants and imported functions, named as
//! the WDK headers (and bindgen) name them, with their x86_64 layouts asserted.
//!
//! On Windows the functions are imported from the kernel's own images through raw-dylib, so the
//! cross build needs no import libraries. On the host they resolve to the simulated kernel's
//! exports of the same names.
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

mod event;
mod lock;
mod nbl;
pub mod ndis;
pub mod nt;
mod pool;
mod receive;
mod resource;
mod rundown;
mod security;
mod user;

pub use event::{KernelEvent, SystemThread, Waitable, wait, wait_any};
pub use lock::{SpinLock, SpinLockGuard};
pub use nbl::{Nbl, NblChain, NetBuffer};
pub use ndis::*;
pub use nt::*;
pub use pool::{POOL_TAG, PoolBox};
pub use receive::{NblList, NblPool, PacketNbl};
pub use resource::{Resource, ResourceGuard};
pub use rundown::{RundownGuard, RundownSlot};
pub use security::caller_is_system_or_administrator;
pub use user::{EventReference, LockedPages, LockedUserBuffer};
