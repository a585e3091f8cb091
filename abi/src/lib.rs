//! The ring ABI of a layer-3 TUN adapter for Windows, byte-compatible with Wintun's, and the one
//! implementation of both halves of its protocol.
//!
//! A client process allocates two rings and registers them with the driver through
//! [`TUN_IOCTL_REGISTER_RINGS`]. On the send ring the driver is the producer ([`RingWriter`]) and
//! the client the consumer ([`RingReader`]); on the receive ring the roles swap. The same code
//! runs on both sides, so each side validates everything the other side controls: the ring's
//! memory is shared with a party that may change any byte at any moment.
//!
//! `no_std`, no dependencies, no allocation.

#![no_std]

pub mod emulator;
pub mod layout;
mod order;
mod reader;
mod region;
mod sync;
mod writer;

pub use layout::*;
pub use order::{CompletionOrder, Ticket};
pub use reader::{Packet, RingError, RingReader, SleepDecision};
pub use region::{RegionError, RingRegion};
#[cfg(loom)]
pub use sync::{MODEL_DATA_BYTES, ModelWords};
pub use writer::{PacketSlot, Published, Reservation, ReserveError, RingWriter};
