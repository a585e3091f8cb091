//! A header checked against the packet it prefixes. Whoever wrote them (the client on the
//! receive ring, the driver on the send ring) may have lied in any field; what passes here
//! describes the packet truthfully enough that completing its checksum or cutting it into
//! segments stays inside it.
//!
//! The rules are Linux's for a header written to a TUN device (include/linux/virtio_net.h,
//! `virtio_net_hdr_to_skb`; drivers/net/tun_vnet.h, `tun_vnet_hdr_get`), with three additions
//! of our own, each for a super-packet (gso_type set) only: its IP length field must describe
//! the packet exactly (Linux trims a longer packet to it instead), its IPv6 headers may not
//! include a Routing or Fragment header, and TCP's SYN, RST and URG may not be set. No source a
//! client ports its code from produces those: Linux's GRO and Windows' LSO (see
//! offloading-the-segmentation-of-large-tcp-packets) never do.

use super::packet::{IpVersion, Layout, Transport, parse_head};
use super::{OffloadError, u16_at};
use crate::vnet::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP, VIRTIO_NET_HDR_GSO_UDP_L4, VirtioNetHdr,
};

/// The most datagrams a UDP super-packet from Linux carries: `UDP_MAX_SEGMENTS`
/// (include/linux/udp.h), which `virtio_net_hdr_to_skb` also enforces on what a client writes to
/// a TUN device. Code a client ports from Linux may rely on it, so the driver hands a client that
/// asked for headers no UDP super-packet of more ([`Gso::segment_count`]): it cuts such a USO
/// send in software instead. What a client writes may carry more; it is cut in software anyway.
pub const MAX_UDP_SEGMENTS: usize = 64;

/// TCP flag bits (RFC 9293 section 3.1; CWR and ECE, RFC 3168 section 6.1).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;
pub(crate) const TCP_URG: u8 = 0x20;
pub(crate) const TCP_ECE: u8 = 0x40;
pub(crate) const TCP_CWR: u8 = 0x80;

/// What a packet's checksums are, by its header's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// No flag: the packet's checksums are filled in (whether right is not said).
    Complete,
    /// NEEDS_CSUM: the checksum at `start + offset` holds only the pseudo-header's sum; the
    /// sum from `start` to the packet's end completes it. Both lie inside the packet.
    Partial { start: u16, offset: u16 },
    /// DATA_VALID: the writer verified the packet's checksums.
    Valid,
}

/// What a super-packet is cut into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP segments (TSO, LSOv2); `ecn` is GSO_ECN: the super-packet has CWR, which only the first
    /// segment keeps.
    Tcp { ecn: bool },
    /// UDP datagrams, each with its own UDP header (USO, UDP_L4).
    Udp,
}

/// A super-packet, checked: its headers, where its payload starts and what each segment carries.
/// Made only by [`validate`], for one packet of `len()` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    kind: GsoKind,
    mss: u16,
    layout: Layout,
    header_len: usize,
}

impl Gso {
    pub fn kind(&self) -> GsoKind {
        self.kind
    }

    /// Payload bytes per segment (`gso_size`), at least 1.
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// The packet's IP and transport headers, as parsed.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn transport(&self) -> Transport {
        match self.kind {
            GsoKind::Tcp { .. } => Transport::Tcp,
            GsoKind::Udp => Transport::Udp,
        }
    }

    /// Bytes of headers (IP and transport, with options): where the payload starts.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The super-packet's length.
    pub fn packet_len(&self) -> usize {
        self.layout.len
    }

    /// Bytes of payload, to be cut into segments of `mss()`.
    pub fn payload_len(&self) -> usize {
        self.layout.len - self.header_len
    }

    /// How many segments the packet is cut into: one per `mss()` bytes of payload, and one for a
    /// packet without payload.
    pub fn segment_count(&self) -> usize {
        self.payload_len().div_ceil(usize::from(self.mss)).max(1)
    }

    /// The length of the largest segment: the headers and at most `mss()` bytes of payload.
    pub fn largest_segment(&self) -> usize {
        self.header_len + self.payload_len().min(usize::from(self.mss))
    }
}

/// A header found consistent with its packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    pub checksum: Checksum,
    /// `Some` for a super-packet (gso_type set).
    pub gso: Option<Gso>,
}

/// Checks a header against the IP packet it prefixes; every refusal says why, so it can be
/// counted. `packet` is the IP packet alone (the ring packet less the header).
///
/// For a packet of its own size (GSO_NONE) only the flags and the partial checksum's position
/// are checked, as Linux does: its other fields are ignored, and the packet itself is the ring's
/// business. A super-packet is parsed: its IP and transport headers must describe it exactly.
pub fn validate(header: &VirtioNetHdr, packet: &[u8]) -> Result<Offload, OffloadError> {
    validate_head(header, packet, packet.len())
}

/// [`validate`] for a packet of `len` bytes of which only the first, `head`, are given: the same
/// verdict as on the whole packet, or [`OffloadError::PastHead`] if the headers it must read run
/// past `head`. Nothing but the headers is read, so a packet whose payload is where its writer
/// can still change it is validated on a copy of its headers alone.
pub fn validate_head(
    header: &VirtioNetHdr,
    head: &[u8],
    len: usize,
) -> Result<Offload, OffloadError> {
    if head.len() > len {
        return Err(OffloadError::NotThisPacket);
    }
    let checksum = checksum_of(header, len)?;
    let ecn = header.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0;
    let gso_kind = match header.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE if !ecn => None,
        VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => Some(GsoKind::Tcp { ecn }),
        VIRTIO_NET_HDR_GSO_UDP_L4 if !ecn => Some(GsoKind::Udp),
        VIRTIO_NET_HDR_GSO_NONE | VIRTIO_NET_HDR_GSO_UDP_L4 => {
            return Err(OffloadError::EcnWithoutTcp);
        }
        VIRTIO_NET_HDR_GSO_UDP => return Err(OffloadError::UnsupportedGsoType(header.gso_type)),
        _ => return Err(OffloadError::UnknownGsoType(header.gso_type)),
    };
    let Some(kind) = gso_kind else {
        return Ok(Offload {
            checksum,
            gso: None,
        });
    };
    let gso = check_super_packet(header, head, len, kind, checksum)?;
    Ok(Offload {
        checksum,
        gso: Some(gso),
    })
}

fn checksum_of(header: &VirtioNetHdr, len: usize) -> Result<Checksum, OffloadError> {
    const KNOWN: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
    if header.flags & !KNOWN != 0 {
        return Err(OffloadError::UnknownFlags(header.flags));
    }
    match header.flags {
        0 => Ok(Checksum::Complete),
        VIRTIO_NET_HDR_F_DATA_VALID => Ok(Checksum::Valid),
        VIRTIO_NET_HDR_F_NEEDS_CSUM => {
            let field_end = usize::from(header.csum_start) + usize::from(header.csum_offset) + 2;
            if field_end > len {
                return Err(OffloadError::ChecksumOutsidePacket);
            }
            Ok(Checksum::Partial {
                start: header.csum_start,
                offset: header.csum_offset,
            })
        }
        _ => Err(OffloadError::ConflictingChecksumFlags),
    }
}

/// A super-packet of `len` bytes, whose headers lie in `packet` (all of it, or its head).
fn check_super_packet(
    header: &VirtioNetHdr,
    packet: &[u8],
    len: usize,
    kind: GsoKind,
    checksum: Checksum,
) -> Result<Gso, OffloadError> {
    if header.gso_size == 0 {
        return Err(OffloadError::ZeroGsoSize);
    }
    // hdr_len is a hint (Linux only checks that it lies inside the packet).
    if usize::from(header.hdr_len) > len {
        return Err(OffloadError::HdrLenPastPacket);
    }
    let layout = parse_head(packet, len)?;
    let expected_version = match header.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_TCPV4 => Some(IpVersion::V4),
        VIRTIO_NET_HDR_GSO_TCPV6 => Some(IpVersion::V6),
        _ => None,
    };
    if expected_version.is_some_and(|version| version != layout.ip) {
        return Err(OffloadError::WrongIpVersion);
    }
    let transport = match kind {
        GsoKind::Tcp { .. } => Transport::Tcp,
        GsoKind::Udp => Transport::Udp,
    };
    let found = layout.transport()?;
    if found != transport {
        return Err(OffloadError::WrongTransport(layout.protocol));
    }
    let transport_header_len = layout.transport_header_len(packet, transport)?;
    let header_len = layout.ip_header_len + transport_header_len;
    match checksum {
        Checksum::Partial { start, offset }
            if usize::from(start) != layout.ip_header_len
                || usize::from(offset) != transport.checksum_offset() =>
        {
            return Err(OffloadError::ChecksumNotAtTransport);
        }
        Checksum::Complete | Checksum::Valid if transport == Transport::Udp => {
            return Err(OffloadError::UdpGsoWithoutPartialChecksum);
        }
        _ => {}
    }
    let gso = Gso {
        kind,
        mss: header.gso_size,
        layout,
        header_len,
    };
    match transport {
        Transport::Tcp => {
            let flags = packet[layout.ip_header_len + 13];
            if flags & (TCP_SYN | TCP_RST | TCP_URG) != 0 {
                return Err(OffloadError::TcpFlagsNotSegmentable(flags));
            }
        }
        Transport::Udp => {
            let udp_length = usize::from(u16_at(packet, layout.ip_header_len + 4));
            if udp_length != len - layout.ip_header_len {
                return Err(OffloadError::LengthMismatch {
                    field: udp_length,
                    packet: len,
                });
            }
        }
    }
    Ok(gso)
}
