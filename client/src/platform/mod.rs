//! What differs between Windows and Linux: ring memory, events, registering, and adapters.

#[cfg(unix)]
mod emulator;
#[cfg(unix)]
mod linux;
#[cfg(unix)]
mod netlink;
#[cfg(windows)]
mod windows;
/// The Windows backend's decisions, apart from its system calls: compiled everywhere, so that
/// their tests run on Linux too.
#[cfg(any(windows, test))]
#[path = "windows/rules.rs"]
mod windows_rules;

#[cfg(unix)]
pub use emulator::{Device, Event, Memory, RawHandle, send_with_descriptors};
#[cfg(unix)]
pub use linux::{Adapter, delete_driver, driver_version, emulator_binary};
#[cfg(windows)]
pub use windows::{
    Adapter, Device, DriverPackage, Event, Memory, RawHandle, delete_driver, driver_version,
    native_machine, register_driver_package, register_wow64_helper, serve_wow64_helper,
};
