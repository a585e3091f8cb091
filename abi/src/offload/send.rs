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

use super::checksum::{
    Checksums, RunningSum, fill_checksums_head, seed_partial_checksum, set_ipv4_header_checksum,
};
use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, IpVersion, Transport, parse_head};
#[cfg(doc)]
use super::validate::MAX_UDP_SEGMENTS;
#[cfg(doc)]
use super::validate::validate;
use super::validate::{TCP_CWR, validate_head};
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
    header_for_client_head(packet, packet.len(), offload)
}

/// [`header_for_client`] for a packet of `len` bytes of which only the first, `head`, are given:
/// only its headers are read and rewritten, so the driver finishes a packet in its own copy of
/// them. The same header and bytes in the head as from the whole packet, or
/// [`OffloadError::PastHead`] if its headers run past the head.
pub fn header_for_client_head(
    head: &mut [u8],
    len: usize,
    offload: SendOffload,
) -> Result<VirtioNetHdr, OffloadError> {
    if head.len() > len {
        return Err(OffloadError::NotThisPacket);
    }
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
                    return Err(OffloadError::WrongTransport(
                        parse_head(head, len)?.protocol,
                    ));
                }
            };
            let Some(transport) = transport else {
                let which = Checksums {
                    ipv4_header,
                    transport: false,
                };
                // No transport checksum: the bytes after the head are not read.
                fill_checksums_head(head, len, which, 0)?;
                return Ok(VirtioNetHdr::NONE);
            };
            let layout = parse_head(head, len)?;
            if layout.transport()? != transport {
                return Err(OffloadError::WrongTransport(layout.protocol));
            }
            layout.transport_header_len(head, transport)?;
            if ipv4_header && layout.ip == IpVersion::V4 {
                set_ipv4_header_checksum(head, layout.ip_header_len);
            }
            seed_partial_checksum(head, &layout, transport);
            partial_checksum_header(layout.ip_header_len, transport)
        }
        SendOffload::Lso {
            mss,
            tcp_header_offset,
        } => super_packet_header(head, len, Transport::Tcp, mss, tcp_header_offset)?,
        SendOffload::Uso {
            mss,
            udp_header_offset,
        } => super_packet_header(head, len, Transport::Udp, mss, udp_header_offset)?,
    };
    validate_head(&header, head, len)?;
    Ok(header)
}

/// Bytes of a packet's beginning the send path keeps in memory of its own to finish: the headers
/// the offloads read and rewrite fit with room to spare (IPv4 with options and TCP with options
/// take at most 120 bytes; Windows hands a miniport at most 128 bytes of headers to replicate,
/// NDIS_LARGE_SEND_OFFLOAD_MAX_HEADER_LENGTH), and the driver's stack frame stays small.
pub const SEND_HEAD_LEN: usize = 256;

/// One packet on its way from Windows' buffers into a send-ring slot, which is only ever written
/// (the client may write it at any moment, so what the driver read back from it could be
/// anything). The packet's first [`SEND_HEAD_LEN`] bytes are kept here and finished: by
/// [`header_for_client_head`] for a client that takes the header, by [`fill_checksums_head`] for
/// any other. The rest goes straight on to the slot, summed on the way when a client without the
/// header is to get its transport checksum computed.
#[derive(Clone, Debug)]
pub struct SendCopy {
    head: [u8; SEND_HEAD_LEN],
    len: usize,
    /// Bytes pushed so far.
    copied: usize,
    offload: SendOffload,
    takes_header: bool,
    /// The sum of the bytes past the head, where the transport checksum is computed here.
    rest: Option<RunningSum>,
}

impl SendCopy {
    /// A packet of `len` bytes that Windows sent with `offload`, for a client that takes the
    /// header or not.
    pub fn new(len: usize, offload: SendOffload, takes_header: bool) -> Self {
        let sums = !takes_header
            && matches!(offload, SendOffload::Checksum { tcp, udp, .. } if tcp || udp);
        SendCopy {
            head: [0; SEND_HEAD_LEN],
            len,
            copied: 0,
            offload,
            takes_header,
            rest: sums.then(RunningSum::new),
        }
    }

    /// Takes the packet's next `chunk`: the bytes of the head are kept, the others handed to
    /// `write` with where they lie in the packet.
    pub fn push(&mut self, chunk: &[u8], mut write: impl FnMut(usize, &[u8])) {
        let head_len = self.head_len();
        let kept = head_len.saturating_sub(self.copied).min(chunk.len());
        let (to_head, past) = chunk.split_at(kept);
        if kept != 0 {
            self.head[self.copied..self.copied + kept].copy_from_slice(to_head);
        }
        if !past.is_empty() {
            write(self.copied + kept, past);
            if let Some(rest) = &mut self.rest {
                rest.push(past);
            }
        }
        self.copied = self.copied.saturating_add(chunk.len());
    }

    /// Finishes the head once the whole packet was pushed, and returns the header that goes
    /// before the packet for a client that takes it (for any other, nothing is left to say:
    /// [`VirtioNetHdr::NONE`]). Refused as [`header_for_client`] and [`fill_checksums`] refuse
    /// the whole packet, or with [`OffloadError::PastHead`] if its headers run past the head,
    /// or [`OffloadError::NotThisPacket`] if the chunks were not `len` bytes.
    ///
    /// [`fill_checksums`]: super::fill_checksums
    pub fn finish(&mut self) -> Result<VirtioNetHdr, OffloadError> {
        if self.copied != self.len {
            return Err(OffloadError::NotThisPacket);
        }
        let head_len = self.head_len();
        let head = &mut self.head[..head_len];
        if self.takes_header {
            return header_for_client_head(head, self.len, self.offload);
        }
        // A large send is cut before it comes here; only checksums are left to fill.
        if let SendOffload::Checksum {
            ipv4_header,
            tcp,
            udp,
        } = self.offload
        {
            let which = Checksums {
                ipv4_header,
                transport: tcp || udp,
            };
            let rest = self.rest.map_or(0, |rest| rest.sum());
            fill_checksums_head(head, self.len, which, rest)?;
        }
        Ok(VirtioNetHdr::NONE)
    }

    /// The packet's first bytes, finished once [`finish`](Self::finish) succeeded: they go
    /// at the start of the packet's slot, the rest having gone after them.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len()]
    }

    fn head_len(&self) -> usize {
        self.len.min(SEND_HEAD_LEN)
    }
}

fn partial_checksum_header(transport_at: usize, transport: Transport) -> VirtioNetHdr {
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: transport_at as u16,
        csum_offset: transport.checksum_offset() as u16,
        ..VirtioNetHdr::NONE
    }
}

/// The header of a super-packet of `len` bytes whose first bytes are `head`.
fn super_packet_header(
    head: &mut [u8],
    len: usize,
    transport: Transport,
    mss: u32,
    transport_offset: u32,
) -> Result<VirtioNetHdr, OffloadError> {
    let mss = match u16::try_from(mss) {
        Ok(0) => return Err(OffloadError::ZeroGsoSize),
        Ok(mss) => mss,
        Err(_) => return Err(OffloadError::MssTooLarge),
    };
    set_ip_length(head, len)?;
    let layout = parse_head(head, len)?;
    if layout.ip_header_len != transport_offset as usize {
        return Err(OffloadError::TransportOffsetMismatch);
    }
    if layout.transport()? != transport {
        return Err(OffloadError::WrongTransport(layout.protocol));
    }
    let header_len = layout.ip_header_len + layout.transport_header_len(head, transport)?;
    if layout.ip == IpVersion::V4 {
        set_ipv4_header_checksum(head, layout.ip_header_len);
    }
    let gso_type = match (transport, layout.ip) {
        (Transport::Udp, _) => {
            let udp_length = len - layout.ip_header_len;
            set_u16(head, layout.ip_header_len + 4, udp_length as u16);
            VIRTIO_NET_HDR_GSO_UDP_L4
        }
        (Transport::Tcp, ip) => {
            let base = match ip {
                IpVersion::V4 => VIRTIO_NET_HDR_GSO_TCPV4,
                IpVersion::V6 => VIRTIO_NET_HDR_GSO_TCPV6,
            };
            // Linux marks a super-packet with CWR as GSO_ECN (net/ipv4/tcp_output.c, `tcp_ecn_send`).
            let cwr = head[layout.ip_header_len + 13] & TCP_CWR != 0;
            if cwr {
                base | VIRTIO_NET_HDR_GSO_ECN
            } else {
                base
            }
        }
    };
    seed_partial_checksum(head, &layout, transport);
    Ok(VirtioNetHdr {
        gso_type,
        hdr_len: header_len as u16,
        gso_size: mss,
        ..partial_checksum_header(layout.ip_header_len, transport)
    })
}

/// Sets the IP length field of a packet of `len` bytes, whose first bytes are `head`, from its
/// length (LSOv2 leaves the IPv4 one 0).
fn set_ip_length(head: &mut [u8], len: usize) -> Result<(), OffloadError> {
    let Some(&first) = head.first() else {
        return Err(if len == 0 {
            OffloadError::NotIp(0)
        } else {
            OffloadError::PastHead
        });
    };
    let (at, header_len, length) = match first >> 4 {
        4 if len >= IPV4_HEADER_LEN => (2, IPV4_HEADER_LEN, len),
        6 if len >= IPV6_HEADER_LEN => (4, IPV6_HEADER_LEN, len - IPV6_HEADER_LEN),
        4 | 6 => return Err(OffloadError::Truncated),
        version => return Err(OffloadError::NotIp(version)),
    };
    if head.len() < header_len {
        return Err(OffloadError::PastHead);
    }
    let length = u16::try_from(length).map_err(|_| OffloadError::TooLong)?;
    if u16_at(head, at) != length {
        set_u16(head, at, length);
    }
    Ok(())
}
