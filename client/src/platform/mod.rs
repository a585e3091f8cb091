//! What differs between Windows and the Linux emulator: ring memory, events, and registering.

#[cfg(unix)]
mod emulator;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use emulator::{Adapter, Event, Memory, RawHandle, Registration, send_with_descriptors};
#[cfg(windows)]
pub use windows::{Adapter, Event, Memory, RawHandle, Registration};
