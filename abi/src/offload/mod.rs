//! Offloads through the ring: the one implementation, for the driver and clients alike, of what
//! a packet's [`VirtioNetHdr`](crate::vnet::VirtioNetHdr) asks and of doing it in software.
//!
//! - [`validate`]: a header checked against its packet (hostile in every field); [`validate_head`]
//!   against the packet's headers and length alone.
//! - [`complete_partial_checksum`], [`fill_checksums`]: checksums in software.
//! - [`Segments`], [`segment`]: a TCP or UDP super-packet cut into segments (TSO, USO).
//! - [`header_for_client`]: the send path, from what Windows asked of the miniport to the header;
//!   [`SendCopy`] does it while the packet is copied into the ring, from its headers alone.
//! - [`receive_as`]: the receive path, a client's super-packet as an RSC unit or segments.
//! - [`finish_in_software`]: everything a header asks, done for a side that takes only complete
//!   packets of their own size.
//!
//! Pure functions over byte slices: no allocation, no unsafe code. Whatever the bytes and the
//! header say, nothing reads or writes outside the slices it is given, and nothing panics.
//!
//! Design and sources: docs/offloads.md.

mod checksum;
mod coalesce;
mod packet;
mod segment;
mod send;
mod validate;

pub use checksum::{
    Checksums, RunningSum, add, complete_partial_checksum, fill_checksums, fill_checksums_head,
    ones_complement_sum, pseudo_header_sum, transport_checksum,
};
pub use coalesce::{NotCoalescible, Receive, RscInfo, receive_as, receive_as_head};
pub use packet::{IpVersion, Layout, PROTOCOL_TCP, PROTOCOL_UDP, Transport, parse, parse_head};
pub use segment::{Segment, Segments, segment};
pub use send::{SEND_HEAD_LEN, SendCopy, SendOffload, header_for_client, header_for_client_head};
pub use validate::{Checksum, Gso, GsoKind, MAX_UDP_SEGMENTS, Offload, validate, validate_head};

/// Why a header, a packet or a request was refused; one variant per rule, so each can be
/// counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Flag bits other than NEEDS_CSUM and DATA_VALID.
    UnknownFlags(u8),
    /// NEEDS_CSUM and DATA_VALID together: the checksum is both missing and verified.
    ConflictingChecksumFlags,
    /// `csum_start + csum_offset + 2` runs past the packet.
    ChecksumOutsidePacket,
    /// A `gso_type` Linux does not define.
    UnknownGsoType(u8),
    /// GSO_UDP (UFO), which neither Windows nor Linux offers as a transmit offload any more.
    UnsupportedGsoType(u8),
    /// GSO_ECN with a `gso_type` that is not TCP.
    EcnWithoutTcp,
    /// A super-packet with `gso_size` 0.
    ZeroGsoSize,
    /// An MSS Windows gave that does not fit `gso_size`.
    MssTooLarge,
    /// `hdr_len` runs past the packet.
    HdrLenPastPacket,
    /// A TCPV4 super-packet that is IPv6, or a TCPV6 one that is IPv4.
    WrongIpVersion,
    /// A super-packet or checksum request whose transport is not the one asked for (its
    /// protocol number).
    WrongTransport(u8),
    /// A super-packet's partial checksum that is not at its transport header's checksum field
    /// (Linux refuses it too).
    ChecksumNotAtTransport,
    /// A UDP super-packet without NEEDS_CSUM (Linux refuses it too).
    UdpGsoWithoutPartialChecksum,
    /// SYN, RST or URG in a TCP super-packet.
    TcpFlagsNotSegmentable(u8),
    /// The transport header is not where Windows said it is.
    TransportOffsetMismatch,
    /// Not IPv4 or IPv6 (the version nibble; 0 for an empty packet).
    NotIp(u8),
    /// Headers that run past the packet.
    Truncated,
    /// Headers that run past the bytes given of a packet (its head; [`parse_head`],
    /// [`validate_head`]): no fault of the packet's, whose headers need more of it read.
    PastHead,
    /// A packet too long for its IP length field.
    TooLong,
    /// An IPv4 IHL under 5 or past the packet (in bytes).
    Ipv4HeaderLength(usize),
    /// An IP length field (or UDP's) that does not describe the packet exactly.
    LengthMismatch { field: usize, packet: usize },
    /// An IPv6 extension header the offloads do not handle (its number).
    UnsupportedExtensionHeader(u8),
    /// An IPv4 fragment where the transport header is needed.
    Fragment,
    /// A transport that is not TCP or UDP where one is needed (its protocol number).
    NotTcpOrUdp(u8),
    /// A TCP data offset under 5 (in bytes).
    TcpHeaderLength(usize),
    /// A packet other than the one its [`Gso`] was validated for.
    NotThisPacket,
    /// Space lent for a segment that is shorter than it.
    OutputTooSmall,
}

/// Does in software everything `offload` (the packet's validated header) asks, for a receiver
/// that takes only complete packets of their own size: a deployed client on the send ring, or
/// Windows without the offload on the receive ring. Completes a partial checksum in place; for a
/// super-packet returns its segments instead, which compute their own.
pub fn finish_in_software<'p>(
    packet: &'p mut [u8],
    offload: &Offload,
) -> Result<Option<Segments<'p>>, OffloadError> {
    if let Some(gso) = &offload.gso {
        return Segments::new(packet, gso).map(Some);
    }
    if let Checksum::Partial { start, offset } = offload.checksum {
        complete_partial_checksum(packet, usize::from(start), usize::from(offset))?;
    }
    Ok(None)
}

/// The big-endian 16-bit word at `at`; the caller checked `at + 2 <= packet.len()`.
pub(crate) fn u16_at(packet: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([packet[at], packet[at + 1]])
}

/// Stores a big-endian 16-bit word at `at`; the caller checked `at + 2 <= packet.len()`.
pub(crate) fn set_u16(packet: &mut [u8], at: usize, value: u16) {
    packet[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
