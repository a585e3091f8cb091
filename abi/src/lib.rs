//! The ring ABI of a layer-3 TUN adapter for Windows, byte-compatible with Wintun's, and the one
//! implementation of both halves of its protocol.
//!
//! A client process allocates two rings and registers them with the driver through
//! [`TUN_IOCTL_REGISTER_RINGS`]. On the send ring the driver is the producer ([`RingWriter`]) and
//! the client the consumer ([`RingReader`]); on the receive ring the roles swap. The same code
//! runs on both sides, so each side validates everything the other side controls: the ring's
//! memory is shared with a party that may change any byte at any moment.
//!
//! Waking the consumer differs between the rings, as deployed clients (wintun.dll 0.14 and
//! later, and every application on it) observably rely on:
//! - Send ring (driver to client): the driver sets the send TailMoved event after **every** move
//!   of `Tail`, whatever `Alertable` says, and once more when it ends the ring. Deployed clients
//!   never write the send ring's `Alertable` (it stays 0) and wait on the event whenever a read
//!   finds the ring empty. The seed README's sample reader sets `Alertable` before it waits;
//!   that is one client's choice, never something the driver may rely on.
//! - Receive ring (client to driver): the driver sets the receive ring's `Alertable` before it
//!   sleeps ([`RingReader::announce_sleep`]), and the client sets the receive TailMoved event
//!   after it moves `Tail` only if it sees `Alertable` set ([`Published::wake_consumer`]). Clients
//!   before 2026-02 lack the fence that handshake needs, so the driver never relies on the event
//!   alone: it looks at the ring again every few milliseconds while it sleeps.
//!
//! A client may ask for more at registration ([`extension`]): every packet then carries Linux's
//! `virtio_net_hdr` ([`vnet`]), and [`offload`] holds what both sides do with it.
//!
//! `no_std`, no dependencies, no allocation.

#![no_std]

pub mod emulator;
pub mod extension;
pub mod layout;
pub mod offload;
mod order;
mod reader;
mod region;
mod sync;
pub mod vnet;
mod writer;

pub use extension::{
    ExtendedRegistration, ExtendedRegistrationError, Features, OXTUN_FEATURE_VNET_HDR,
    REGISTRATION_EX_VERSION, TUN_IOCTL_REGISTER_RINGS_EX,
};
pub use layout::*;
pub use order::{CompletionOrder, Ticket};
pub use reader::{Packet, RingError, RingReader, SleepDecision};
pub use region::{RegionError, RingRegion};
#[cfg(loom)]
pub use sync::{MODEL_DATA_BYTES, ModelWords};
pub use writer::{PacketSlot, Published, Reservation, ReserveError, RingWriter};
