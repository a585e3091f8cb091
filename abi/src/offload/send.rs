//! The send path's half (Windows to the client): turning what Windows asked of the miniport for
//! one send into the header a client that asked for headers reads, with the packet made to say
//! what Linux's would.
//!
//! What Windows leaves undone is not what the header promises, so the packet is rewritten first:
//! - LSOv2 leaves an IPv4 Total Length of 0 ("For LSOv2, set the Total Length field ... to 0. The
//!   miniport driver should determine the length of the packet from the length of the first
//!   NET_BUFFER", offloading-the-segmentation-of-large-tcp-packets); a Linux super-packet carries
//!   its real length (the IPv6 Payload Length likewise), so both are set from the packet's
//!   length, and USO's UDP Length too.
//! - Windows' partial transport checksum for LSO and USO is the pseudo-header without the length
//!   (the same pages); NEEDS_CSUM promises Linux's, with the transport's length
//!   (`__tcp_v4_send_check`), so the field is seeded anew.
//! - An IPv4 header checksum Windows left to the miniport has no flag in the header: it is
//!   computed here.

use super::checksum::{Checksums, fill_checksums, seed_partial_checksum, set_ipv4_header_checksum};
use super::packet::{IPV6_HEADER_LEN, IpVersion, Transport, parse};
#[cfg(doc)]
use super::validate::MAX_UDP_SEGMENTS;
use super::validate::{TCP_CWR, validate};
use super::{OffloadError, set_u16, u16_at};
use crate::vnet::{
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4, VirtioNetHdr,
};

/// What Windows asked of the miniport for one send: its NBL's out-of-band offload information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOffload {
    /// Nothing: the packet is complete.
    None,
    /// NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Transmit: the IPv4 header checksum and the TCP
    /// or UDP checksum to compute.
    Checksum {
        ipv4_header: bool,
        tcp: bool,
        udp: bool,
    },
    /// NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO.LsoV2Transmit: segment at `mss`; the TCP
    /// header is `tcp_header_offset` bytes into the packet.
    Lso { mss: u32, tcp_header_offset: u32 },
    /// NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO.Transmit: datagrams of `mss` payload
    /// bytes; the UDP header is `udp_header_offset` bytes into the packet.
    Uso { mss: u32, udp_header_offset: u32 },
}

/// Rewrites a packet Windows sent with `offload` as described in this module, and returns the
/// header that goes before it in the ring; the two pass [`validate`]. For a client that did not
/// ask for headers, or a UDP super-packet of more than [`MAX_UDP_SEGMENTS`] datagrams, validate
/// them and pass them to [`finish_in_software`](super::finish_in_software) instead. On an error
/// the packet may be partly rewritten: Windows asked what it cannot have, and the send fails.
pub fn header_for_client(
    packet: &mut [u8],
    offload: SendOffload,
) -> Result<VirtioNetHdr, OffloadError> {
    let header = match offload {
        SendOffload::None => return Ok(VirtioNetHdr::NONE),
        SendOffload::Checksum {
            ipv4_header,
            tcp,
            udp,
        } => {
            let transport = match (tcp, udp) {
                (false, false) => None,
                (true, false) => Some(Transport::Tcp),
                (false, true) => Some(Transport::Udp),
                (true, true) => {
                    // One of the two is not the packet's.
                    return Err(OffloadError::WrongTransport(parse(packet)?.protocol));
                }
            };
            let Some(transport) = transport else {
                fill_checksums(
                    packet,
                    Checksums {
                        ipv4_header,
                        transport: false,
                    },
                )?;
                return Ok(VirtioNetHdr::NONE);
            };
            let layout = parse(packet)?;
            if layout.transport()? != transport {
                return Err(OffloadError::WrongTransport(layout.protocol));
            }
            layout.transport_header_len(packet, transport)?;
            if ipv4_header && layout.ip == IpVersion::V4 {
                set_ipv4_header_checksum(packet, layout.ip_header_len);
            }
            seed_partial_checksum(packet, &layout, transport);
            partial_checksum_header(layout.ip_header_len, transport)
        }
        SendOffload::Lso {
            mss,
            tcp_header_offset,
        } => super_packet_header(packet, Transport::Tcp, mss, tcp_header_offset)?,
        SendOffload::Uso {
            mss,
            udp_header_offset,
        } => super_packet_header(packet, Transport::Udp, mss, udp_header_offset)?,
    };
    validate(&header, packet)?;
    Ok(header)
}

fn partial_checksum_header(transport_at: usize, transport: Transport) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: transport_at as u16,
        csum_offset: transport.checksum_offset() as u16,
        ..VirtioNetHdr::NONE
    }
}

fn super_packet_header(
    packet: &mut [u8],
    transport: Transport,
    mss: u32,
    transport_offset: u32,
) -> Result<VirtioNetHdr, OffloadError> {
    let mss = match u16::try_from(mss) {
        Ok(0) => return Err(OffloadError::ZeroGsoSize),
        Ok(mss) => mss,
        Err(_) => return Err(OffloadError::MssTooLarge),
    };
    set_ip_length(packet)?;
    let layout = parse(packet)?;
    if layout.ip_header_len != transport_offset as usize {
        return Err(OffloadError::TransportOffsetMismatch);
    }
    if layout.transport()? != transport {
        return Err(OffloadError::WrongTransport(layout.protocol));
    }
    let header_len = layout.ip_header_len + layout.transport_header_len(packet, transport)?;
    if layout.ip == IpVersion::V4 {
        set_ipv4_header_checksum(packet, layout.ip_header_len);
    }
    let gso_type = match (transport, layout.ip) {
        (Transport::Udp, _) => {
            let udp_length = packet.len() - layout.ip_header_len;
            set_u16(packet, layout.ip_header_len + 4, udp_length as u16);
            VIRTIO_NET_HDR_GSO_UDP_L4
        }
        (Transport::Tcp, ip) => {
            let base = match ip {
                IpVersion::V4 => VIRTIO_NET_HDR_GSO_TCPV4,
                IpVersion::V6 => VIRTIO_NET_HDR_GSO_TCPV6,
            };
            // Linux marks a super-packet with CWR as GSO_ECN (net/ipv4/tcp_output.c, `tcp_ecn_send`).
            let cwr = packet[layout.ip_header_len + 13] & TCP_CWR != 0;
            if cwr {
                base | VIRTIO_NET_HDR_GSO_ECN
            } else {
                base
            }
        }
    };
    seed_partial_checksum(packet, &layout, transport);
    Ok(VirtioNetHdr {
        gso_type,
        hdr_len: header_len as u16,
        gso_size: mss,
        ..partial_checksum_header(layout.ip_header_len, transport)
    })
}

/// Sets the IP length field from the packet's length (LSOv2 leaves the IPv4 one 0).
fn set_ip_length(packet: &mut [u8]) -> Result<(), OffloadError> {
    let (at, length) = match packet.first().map(|first| first >> 4) {
        Some(4) if packet.len() >= 20 => (2, packet.len()),
        Some(6) if packet.len() >= IPV6_HEADER_LEN => (4, packet.len() - IPV6_HEADER_LEN),
        Some(4 | 6) => return Err(OffloadError::Truncated),
        version => return Err(OffloadError::NotIp(version.unwrap_or(0))),
    };
    let length = u16::try_from(length).map_err(|_| OffloadError::TooLong)?;
    if u16_at(packet, at) != length {
        set_u16(packet, at, length);
    }
    Ok(())
}
