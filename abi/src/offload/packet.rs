//! Finding an IP packet's headers: the IP header (IPv4 with its options, IPv6 with the extension
//! headers that do not change the pseudo-header), then the TCP or UDP header. Every length field
//! is checked against the packet's own length, so nothing built on a [`Layout`] reads or writes
//! outside the packet.

use super::checksum::pseudo_header_sum;
use super::{OffloadError, u16_at};

/// TCP's protocol number.
pub const PROTOCOL_TCP: u8 = 6;
/// UDP's protocol number.
pub const PROTOCOL_UDP: u8 = 17;

/// Bytes of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Bytes of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Bytes of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;
/// Bytes of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// IPv6 extension headers that may stand between the fixed header and TCP or UDP in a packet
/// the offloads handle: Hop-by-Hop Options (only first, RFC 8200 section 4.1) and Destination
/// Options. A Routing header is refused: with one, the pseudo-header's destination is the last
/// address it lists (RFC 8200 section 8.1), not the header's.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_DESTINATION_OPTIONS: u8 = 60;
/// Every other extension header (RFC 8200 section 4, and the IANA registry of them).
const IPV6_OTHER_EXTENSIONS: [u8; 7] = [43, 44, 51, 135, 139, 140, 253];

/// The IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// The transports the offloads handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// Where the checksum lies in this transport's header (`offsetof(struct tcphdr, check)`,
    /// `offsetof(struct udphdr, check)`).
    pub const fn checksum_offset(self) -> usize {
        match self {
            Transport::Tcp => 16,
            Transport::Udp => 6,
        }
    }

    pub const fn protocol(self) -> u8 {
        match self {
            Transport::Tcp => PROTOCOL_TCP,
            Transport::Udp => PROTOCOL_UDP,
        }
    }
}

/// Where an IP packet's headers are; made only by [`parse`], which checked them against the
/// packet's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub ip: IpVersion,
    /// Bytes of the IPv4 header with its options, or of the IPv6 header with its extension
    /// headers: where the transport header starts.
    pub ip_header_len: usize,
    /// The transport's protocol number (after any IPv6 extension headers).
    pub protocol: u8,
    /// An IPv4 fragment: More Fragments set or a non-zero offset.
    pub fragment: bool,
    /// The packet's length, which its IP length field matches.
    pub len: usize,
}

/// Parses an IP packet's IP header and checks its length field: an IPv4 Total Length or an IPv6
/// Payload Length that does not describe exactly this packet is refused.
pub fn parse(packet: &[u8]) -> Result<Layout, OffloadError> {
    parse_head(packet, packet.len())
}

/// [`parse`] for a packet of `len` bytes of which only the first, `head`, are given: the same
/// verdict as on the whole packet, or [`OffloadError::PastHead`] if its headers run past `head`.
pub fn parse_head(head: &[u8], len: usize) -> Result<Layout, OffloadError> {
    if head.len() > len {
        return Err(OffloadError::NotThisPacket);
    }
    let Some(&first) = head.first() else {
        return Err(if len == 0 {
            OffloadError::NotIp(0)
        } else {
            OffloadError::PastHead
        });
    };
    match first >> 4 {
        4 => parse_ipv4(head, len),
        6 => parse_ipv6(head, len),
        version => Err(OffloadError::NotIp(version)),
    }
}

/// Checks that the packet's first `end` bytes are there: inside the packet's `len` bytes, else
/// [`OffloadError::Truncated`], and inside `head`, else [`OffloadError::PastHead`].
fn within(head: &[u8], len: usize, end: usize) -> Result<(), OffloadError> {
    if end > len {
        Err(OffloadError::Truncated)
    } else if end > head.len() {
        Err(OffloadError::PastHead)
    } else {
        Ok(())
    }
}

fn parse_ipv4(packet: &[u8], len: usize) -> Result<Layout, OffloadError> {
    within(packet, len, IPV4_HEADER_LEN)?;
    let header_len = usize::from(packet[0] & 0x0F) * 4;
    if header_len < IPV4_HEADER_LEN || header_len > len {
        return Err(OffloadError::Ipv4HeaderLength(header_len));
    }
    within(packet, len, header_len)?;
    let total_length = usize::from(u16_at(packet, 2));
    if total_length != len {
        return Err(OffloadError::LengthMismatch {
            field: total_length,
            packet: len,
        });
    }
    let flags_and_offset = u16_at(packet, 6);
    const MORE_FRAGMENTS: u16 = 0x2000;
    const OFFSET: u16 = 0x1FFF;
    Ok(Layout {
        ip: IpVersion::V4,
        ip_header_len: header_len,
        protocol: packet[9],
        fragment: flags_and_offset & (MORE_FRAGMENTS | OFFSET) != 0,
        len,
    })
}

fn parse_ipv6(packet: &[u8], len: usize) -> Result<Layout, OffloadError> {
    within(packet, len, IPV6_HEADER_LEN)?;
    let payload_length = usize::from(u16_at(packet, 4));
    if payload_length != len - IPV6_HEADER_LEN {
        return Err(OffloadError::LengthMismatch {
            field: payload_length,
            packet: len,
        });
    }
    let mut next_header = packet[6];
    let mut offset = IPV6_HEADER_LEN;
    loop {
        let first = offset == IPV6_HEADER_LEN;
        match next_header {
            IPV6_HOP_BY_HOP if first => {}
            IPV6_DESTINATION_OPTIONS => {}
            IPV6_HOP_BY_HOP => return Err(OffloadError::UnsupportedExtensionHeader(next_header)),
            other if IPV6_OTHER_EXTENSIONS.contains(&other) => {
                return Err(OffloadError::UnsupportedExtensionHeader(other));
            }
            protocol => {
                return Ok(Layout {
                    ip: IpVersion::V6,
                    ip_header_len: offset,
                    protocol,
                    fragment: false,
                    len,
                });
            }
        }
        // Hdr Ext Len counts 8-byte units beyond the first 8 (RFC 8200 section 4.3, 4.6).
        within(packet, len, offset + 2)?;
        let (following, units) = (packet[offset], packet[offset + 1]);
        offset += (usize::from(units) + 1) * 8;
        if offset > len {
            return Err(OffloadError::Truncated);
        }
        next_header = following;
    }
}

impl Layout {
    /// The transport, if the packet carries TCP or UDP and is not a fragment.
    pub fn transport(&self) -> Result<Transport, OffloadError> {
        if self.fragment {
            return Err(OffloadError::Fragment);
        }
        match self.protocol {
            PROTOCOL_TCP => Ok(Transport::Tcp),
            PROTOCOL_UDP => Ok(Transport::Udp),
            other => Err(OffloadError::NotTcpOrUdp(other)),
        }
    }

    /// Bytes of the transport's header (TCP's with its options), checked to lie inside the
    /// packet, of which `head` (all of it, or its first bytes) is given: if the header runs past
    /// `head`, [`OffloadError::PastHead`].
    pub fn transport_header_len(
        &self,
        head: &[u8],
        transport: Transport,
    ) -> Result<usize, OffloadError> {
        let start = self.ip_header_len;
        let header_len = match transport {
            Transport::Udp => UDP_HEADER_LEN,
            Transport::Tcp => {
                within(head, self.len, start + 13)?;
                let header_len = usize::from(head[start + 12] >> 4) * 4;
                if header_len < TCP_HEADER_LEN {
                    return Err(OffloadError::TcpHeaderLength(header_len));
                }
                header_len
            }
        };
        within(head, self.len, start + header_len)?;
        Ok(header_len)
    }

    /// The sum of the transport's pseudo-header, with the transport's whole length.
    pub fn pseudo_header_sum(&self, packet: &[u8]) -> u16 {
        self.pseudo_header_sum_for(packet, self.len - self.ip_header_len)
    }

    /// The sum of the transport's pseudo-header for a transport of `transport_len` bytes (a
    /// segment's). The addresses are read from `packet`, whose IP header [`parse`] checked.
    pub fn pseudo_header_sum_for(&self, packet: &[u8], transport_len: usize) -> u16 {
        let addresses = match self.ip {
            IpVersion::V4 => &packet[12..20],
            IpVersion::V6 => &packet[8..40],
        };
        pseudo_header_sum(addresses, self.protocol, transport_len as u32)
    }
}
