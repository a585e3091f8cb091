//! The library a VPN links to, to be the user-space end of a layer-3 TUN adapter whose rings
//! are Wintun's: create or open an adapter, start a session, receive the packets the system
//! sends through the adapter, send packets into the system, wait for more.
//!
//! The ring protocol is `oxtun-abi`'s, the one implementation the driver uses too; this crate
//! adds the session's semantics (deployed wintun.dll's: any thread, release in any order) and the
//! platform: on Windows the adapter's software device, the driver's installation and
//! `DeviceIoControl`; on Linux an emulator process (`wintun-emu`) per adapter, reached through
//! its socket, with memfd rings and eventfd events.
//!
//! A session may ask for the offload header ([`Adapter::start_session_with`] and
//! [`Features::VNET_HDR`], docs/offloads.md): every packet then carries Linux's
//! `virtio_net_hdr`, so large TCP and UDP sends arrive whole and the VPN may write coalesced
//! ones; a driver without the extension gives a session without it.

pub mod log;
mod platform;
mod session;

use std::fmt;

use oxtun_abi::RingError;
use oxtun_abi::offload::OffloadError;

/// The offload header and what it asks, and doing it in software: abi's, the one implementation
/// the driver uses too (docs/offloads.md).
pub use oxtun_abi::{Features, offload, vnet};
pub use oxtun_abi::{
    MAX_CAPACITY as MAX_RING_CAPACITY, MAX_IP_PACKET_SIZE, MIN_CAPACITY as MIN_RING_CAPACITY,
};
#[cfg(unix)]
pub use platform::emulator_binary;
/// Sends bytes with descriptors attached over a Unix socket (SCM_RIGHTS): the emulator
/// protocol's transport, for tools that speak it directly.
#[cfg(unix)]
pub use platform::send_with_descriptors;
pub use platform::{Adapter, RawHandle, delete_driver, driver_version};
#[cfg(windows)]
pub use platform::{
    DriverPackage, native_machine, register_driver_package, register_wow64_helper,
    serve_wow64_helper,
};
pub use session::{Received, SendPacket, Session};

/// The adapter's type in its LUID, as Wintun's: IF_TYPE_PROP_VIRTUAL.
pub const IF_TYPE_PROP_VIRTUAL: u64 = 53;

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// A system call failed.
    Io(std::io::Error),
    /// The driver refused the registration with this NTSTATUS.
    Refused(u32),
    /// The capacity is not a power of two from 128 KiB to 64 MiB.
    BadCapacity(u32),
    /// A packet that does not fit a ring packet: over 0xFFFF bytes, its header included.
    TooLarge(usize),
    /// With headers in force, a ring packet too short to hold one (C API allocations).
    TooSmall(usize),
    /// A packet's offload header that the packet does not bear out (see
    /// [`offload::validate`]), or what it asks cannot be done.
    Offload(OffloadError),
    /// An offload header for a session that runs without them.
    NoHeaders,
    /// The receive ring has no room now; try again after the driver reads.
    Full,
    /// The driver ended the session (the adapter went away, or the handle closed).
    Ended,
    /// [`Session::shutdown`] ended receiving.
    ShutDown,
    /// A ring broke its rules.
    Ring(RingError),
    /// A pointer that is not a packet of this session still outstanding (received and not
    /// released, or allocated and not sent).
    NotOutstanding,
    /// An adapter name or tunnel type this platform cannot take.
    BadName(String),
    /// No driver of ours is running, or none can be installed.
    NotFound,
    /// No adapter of ours has that name (wintun.dll's ERROR_NOT_FOUND, not ERROR_FILE_NOT_FOUND).
    NoSuchAdapter,
    /// An adapter of that name exists and is in use.
    AlreadyExists,
    /// Adapters of ours still exist, so the driver stays.
    InUse,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Refused(status) => {
                write!(f, "the driver refused the rings: status {status:#010x}")
            }
            Error::BadCapacity(capacity) => write!(
                f,
                "ring capacity {capacity} is not a power of two from 128 KiB to 64 MiB"
            ),
            Error::TooLarge(size) => write!(
                f,
                "a {size}-byte packet does not fit a ring packet of 0xFFFF bytes"
            ),
            Error::TooSmall(size) => write!(
                f,
                "a {size}-byte ring packet cannot hold the 10-byte offload header"
            ),
            Error::Offload(error) => write!(f, "the offload header was refused: {error:?}"),
            Error::NoHeaders => write!(f, "the session runs without offload headers"),
            Error::Full => write!(f, "the receive ring is full"),
            Error::Ended => write!(f, "the session ended"),
            Error::ShutDown => write!(f, "the session was shut down"),
            Error::Ring(error) => write!(f, "the ring broke its rules: {error:?}"),
            Error::NotOutstanding => write!(f, "not an outstanding packet of this session"),
            Error::BadName(why) => write!(f, "{why}"),
            Error::NotFound => write!(f, "not found"),
            Error::NoSuchAdapter => write!(f, "no adapter of ours has that name"),
            Error::AlreadyExists => write!(f, "an adapter of that name exists and is in use"),
            Error::InUse => write!(f, "adapters of ours still exist"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error)
    }
}

impl From<OffloadError> for Error {
    fn from(error: OffloadError) -> Self {
        Error::Offload(error)
    }
}

/// A driver version as Wintun reports it: major in the high 16 bits, minor in the low.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub fn from_dword(version: u32) -> Version {
        Version {
            major: (version >> 16) as u16,
            minor: version as u16,
        }
    }

    pub fn to_dword(self) -> u32 {
        (u32::from(self.major) << 16) | u32::from(self.minor)
    }
}

/// The NET_LUID of an interface: its type in bits 48 to 63, the index in bits 24 to 47.
pub fn luid_for(if_type: u64, index: u32) -> u64 {
    (if_type << 48) | ((u64::from(index) & 0xFF_FFFF) << 24)
}
