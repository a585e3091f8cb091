//! Layer: above NDIS, where tcpip sits: the emulator's upper edge, a Linux TUN interface opened
//! with IFF_VNET_HDR, speaking the offloads both ways. Linux hands the emulator super-packets
//! and partial checksums (`struct virtio_net_hdr`), which become sends with the NBL information
//! tcpip would write; indications with NDIS's receive offload information go back to Linux as
//! a header of its own kind. Pure decisions: `wintun-emu` makes the system calls.

use oxtun_abi::offload::{
    Checksum, GsoKind, IpVersion, Offload, OffloadError, Transport, parse, parse_head, validate,
};
use oxtun_abi::vnet::{
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VirtioNetHdr,
};
use oxtun_driver::sys::NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;

use crate::ndis::{OffloadRecord, ReceivedOffloads, Segmentation, SendOffload, stack_may_send};

/// TUNSETOFFLOAD's flags (include/uapi/linux/if_tun.h): what the reader of the TUN device takes
/// from the kernel. TSO and USO are honoured only with TUN_F_CSUM, and the two USO flags only
/// together (drivers/net/tun.c, `set_offload`).
pub use libc::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6};

/// What Linux may hand the emulator while `record` is the adapter's offload state: what tcpip may
/// offload on it (in force, and activated for the IP version by OID_OFFLOAD_ENCAPSULATION), in
/// Linux's terms. Linux's switches are coarser than NDIS's (one for every checksum, one for USO
/// on both versions), so they may let through a little more than is in force: the emulator does
/// that part itself ([`FromLinux::Finish`]), as tcpip would never have asked it of the miniport.
pub fn tun_offload_flags(record: &OffloadRecord) -> u32 {
    let current = record.current();
    let mut flags = 0;
    let mut checksums = false;
    for (ipv6, tx, lso, uso, tso_flag) in [
        (
            false,
            current.tx_v4,
            current.lso_v4,
            current.uso_v4,
            TUN_F_TSO4,
        ),
        (
            true,
            current.tx_v6,
            current.lso_v6,
            current.uso_v6,
            TUN_F_TSO6,
        ),
    ] {
        if !record.activated(ipv6) {
            continue;
        }
        checksums |= tx.tcp || tx.udp;
        if lso.is_some() {
            flags |= TUN_F_CSUM | tso_flag;
        }
        if uso.is_some() {
            flags |= TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6;
        }
    }
    if checksums {
        flags |= TUN_F_CSUM;
    }
    flags
}

/// The largest super-packet Linux should make (the device's gso_max_size, which counts headers):
/// the smallest MaxOffLoadSize of the segmentation offloads in force, which counts payload only,
/// so every super-packet Linux makes is within it. `None` while none is in force.
pub fn gso_max_size(record: &OffloadRecord) -> Option<u32> {
    let current = record.current();
    [
        current.lso_v4,
        current.lso_v6,
        current.uso_v4,
        current.uso_v6,
    ]
    .into_iter()
    .flatten()
    .map(
        |Segmentation {
             max_offload_size, ..
         }| max_offload_size,
    )
    .min()
}

/// What becomes of a packet Linux handed the emulator with its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromLinux {
    /// Sent to the miniport with this offload (tcpip's form of it written by the simulator).
    Send(SendOffload),
    /// Valid, but asks for what is not in force: finished in software by the emulator
    /// (`oxtun_abi::offload::finish_in_software`) and sent as plain packets.
    Finish(Offload),
    /// A header that does not describe its packet: Linux never writes one, so it is dropped and
    /// counted.
    Refused(OffloadError),
}

/// What the emulator does with `packet`, which Linux handed it after `header`, while `record` is
/// the adapter's offload state: the NDIS offload that asks the miniport for what the header asks,
/// if tcpip may use it now (`stack_may_send`).
pub fn from_linux(record: &OffloadRecord, header: &VirtioNetHdr, packet: &[u8]) -> FromLinux {
    let offload = match validate(header, packet) {
        Ok(offload) => offload,
        Err(error) => return FromLinux::Refused(error),
    };
    let Some(send) = send_offload_of(&offload, packet) else {
        return FromLinux::Finish(offload);
    };
    match stack_may_send(record, packet, send) {
        Ok(()) => FromLinux::Send(send),
        Err(_) => FromLinux::Finish(offload),
    }
}

/// The NDIS offload that does what a validated header asks, if there is one: LSOv2 for TCP
/// super-packets (but those with CWR, GSO_ECN, which LSOv2 does not describe), USO for UDP ones,
/// the TCP or UDP checksum for a partial checksum where the transport's checksum field is.
fn send_offload_of(offload: &Offload, packet: &[u8]) -> Option<SendOffload> {
    if let Some(gso) = &offload.gso {
        let mss = u32::from(gso.mss());
        let header_offset = gso.layout().ip_header_len as u32;
        return match gso.kind() {
            GsoKind::Tcp { ecn: false } => Some(SendOffload::Lso {
                mss,
                tcp_header_offset: header_offset,
            }),
            GsoKind::Tcp { ecn: true } => None,
            GsoKind::Udp => Some(SendOffload::Uso {
                mss,
                udp_header_offset: header_offset,
            }),
        };
    }
    match offload.checksum {
        Checksum::Complete | Checksum::Valid => Some(SendOffload::None),
        Checksum::Partial { start, offset } => {
            let layout = parse(packet).ok()?;
            let transport = layout.transport().ok()?;
            let at_transport_checksum = usize::from(start) == layout.ip_header_len
                && usize::from(offset) == transport.checksum_offset();
            at_transport_checksum.then_some(SendOffload::Checksum {
                ipv4_header: false,
                tcp: transport == Transport::Tcp,
                udp: transport == Transport::Udp,
            })
        }
    }
}

/// How an indicated packet goes up to Linux: after `header`, with its transport checksum field
/// replaced by `checksum_field` (two bytes at the offset) where that is `Some`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToLinux {
    pub header: VirtioNetHdr,
    pub checksum_field: Option<(usize, [u8; 2])>,
}

/// How an indicated packet goes up to Linux, from what its NBL says:
/// - a TCP or UDP checksum the NBL says succeeded: Linux's TUN takes no word for a verified
///   checksum (include/linux/virtio_net.h, `virtio_net_hdr_to_skb`, reads NEEDS_CSUM and the GSO
///   fields only; a UDP packet with a wrong checksum and DATA_VALID written to a TUN device here
///   was dropped), but trusts a partial one (CHECKSUM_PARTIAL, `skb_csum_unnecessary` in
///   include/linux/skbuff.h), as tcpip trusts the NBL. So the packet goes
///   up with NEEDS_CSUM and its checksum field holding the pseudo-header's sum, as Linux's own
///   partial checksums do: right wherever Linux takes it, delivered or forwarded.
/// - a coalesced unit (NDIS_RSC_NBL_INFO's CoalescedSegCount over 1) of TCP becomes a TCP
///   super-packet of that many segments, which Linux receives as one GRO made. NDIS_RSC_NBL_INFO
///   carries no MSS, so gso_size is the payload over the count, rounded up: a hint, as Linux
///   takes it for a received super-packet.
///
/// Anything else goes up as it is, after a header that asks for nothing. Only the packet's
/// headers are read: `head` is its first bytes, `len` its length.
pub fn to_linux(head: &[u8], len: usize, offloads: &ReceivedOffloads) -> ToLinux {
    type ChecksumInfo = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let mut up = ToLinux {
        header: VirtioNetHdr::NONE,
        checksum_field: None,
    };
    let Ok(layout) = parse_head(head, len) else {
        return up;
    };
    let Ok(transport) = layout.transport() else {
        return up;
    };
    let succeeded = match transport {
        Transport::Tcp => ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED,
        Transport::Udp => ChecksumInfo::RX_UDP_CHECKSUM_SUCCEEDED,
    };
    let Ok(transport_header_len) = layout.transport_header_len(head, transport) else {
        return up;
    };
    if offloads.checksum & succeeded != 0 {
        let sum = layout.pseudo_header_sum(head);
        up.header.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        up.header.csum_start = layout.ip_header_len as u16;
        up.header.csum_offset = transport.checksum_offset() as u16;
        up.checksum_field = Some((
            layout.ip_header_len + transport.checksum_offset(),
            sum.to_be_bytes(),
        ));
    }
    let segments = usize::from(offloads.coalesced_segments());
    if segments > 1 && transport == Transport::Tcp {
        let header_len = layout.ip_header_len + transport_header_len;
        up.header.gso_type = match layout.ip {
            IpVersion::V4 => VIRTIO_NET_HDR_GSO_TCPV4,
            IpVersion::V6 => VIRTIO_NET_HDR_GSO_TCPV6,
        };
        up.header.hdr_len = header_len as u16;
        up.header.gso_size = (layout.len - header_len).div_ceil(segments) as u16;
    }
    up
}

/// The slices that write a packet (`pieces`, its bytes in order) with the two bytes at
/// `field`'s offset replaced by its bytes: what `writev` gathers, nothing copied.
pub fn gather<'a>(pieces: &[&'a [u8]], field: Option<(usize, &'a [u8; 2])>) -> Vec<&'a [u8]> {
    let mut slices = Vec::with_capacity(pieces.len() + 2);
    let mut start = 0;
    for piece in pieces {
        let end = start + piece.len();
        let mut from = start;
        if let Some((at, bytes)) = field {
            // The field begins in this piece, or began in an earlier one and runs into it.
            if (start..end).contains(&at) {
                slices.push(&piece[..at - start]);
                slices.push(&bytes[..]);
            }
            if at < end && at + 2 > start {
                from = (at + 2).max(start);
            }
        }
        if from < end {
            slices.push(&piece[from - start..]);
        }
        start = end;
    }
    slices
}
