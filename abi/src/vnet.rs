//! The per-packet header of the offload extension: Linux's `struct virtio_net_hdr`, byte for
//! byte, so a VPN reuses the code it has for a Linux TUN interface opened with IFF_VNET_HDR.
//!
//! Layout and constants: include/uapi/linux/virtio_net.h (`struct virtio_net_hdr`, 10 bytes; the
//! legacy layout without `num_buffers`, the one TUNSETVNETHDRSZ's minimum and IFF_VNET_HDR's
//! default give). Its 16-bit fields are `__virtio16`, whose byte order the Linux TUN driver
//! picks per device: little-endian when TUNSETVNETLE is set, otherwise the "legacy" order, which
//! is the host's own unless TUNSETVNETBE asks otherwise (drivers/net/tun_vnet.h,
//! `tun_vnet_is_little_endian`; include/linux/virtio_byteorder.h,
//! `virtio_legacy_is_little_endian`). On the little-endian hosts Windows runs on (x86, x64,
//! ARM64) both give little-endian, so that is the byte order here, fixed: a client ported from
//! Linux reads and writes the header as it did there.
//!
//! Nothing here is validated: [`crate::offload::validate`] checks a header against its packet.

use core::mem::{offset_of, size_of};

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is not computed; the field at
/// `csum_start + csum_offset` holds the pseudo-header's sum, and the sum from `csum_start` to the
/// end of the packet completes it.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the packet's checksums have been verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`: a packet of its own size.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP over IPv4 super-packet, to be cut into `gso_size` segments.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation offload (UFO), which Linux dropped as a transmit
/// offload and neither Windows nor this driver offers; refused.
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: a TCP over IPv6 super-packet.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: a UDP super-packet (IPv4 or IPv6) to be cut into datagrams of
/// `gso_size` payload bytes, each with its own UDP header (USO).
pub const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into a TCP `gso_type`: the super-packet has CWR set, which only
/// the first segment keeps.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// `struct virtio_net_hdr`, with its fields in host order; [`VirtioNetHdr::decode`] and
/// [`VirtioNetHdr::encode`] convert from and to the ring's little-endian bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Bytes of headers (IP and transport) in a super-packet; a hint, as on Linux.
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-packet (the MSS).
    pub gso_size: u16,
    /// Where the checksummed span starts (with NEEDS_CSUM).
    pub csum_start: u16,
    /// Where, after `csum_start`, the checksum goes (with NEEDS_CSUM).
    pub csum_offset: u16,
}

/// Bytes of the header before each ring packet's IP packet, when the client asked for it.
pub const VNET_HDR_LEN: usize = size_of::<VirtioNetHdr>();

const _: () = {
    assert!(size_of::<VirtioNetHdr>() == 10);
    assert!(offset_of!(VirtioNetHdr, flags) == 0);
    assert!(offset_of!(VirtioNetHdr, gso_type) == 1);
    assert!(offset_of!(VirtioNetHdr, hdr_len) == 2);
    assert!(offset_of!(VirtioNetHdr, gso_size) == 4);
    assert!(offset_of!(VirtioNetHdr, csum_start) == 6);
    assert!(offset_of!(VirtioNetHdr, csum_offset) == 8);
};

impl VirtioNetHdr {
    /// The header of a packet that asks for nothing: checksums complete, no segmentation.
    pub const NONE: VirtioNetHdr = VirtioNetHdr {
        flags: 0,
        gso_type: VIRTIO_NET_HDR_GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// The header from its ring bytes (little-endian), as they are: nothing is checked.
    pub fn decode(bytes: &[u8; VNET_HDR_LEN]) -> Self {
        let word = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        VirtioNetHdr {
            flags: bytes[offset_of!(VirtioNetHdr, flags)],
            gso_type: bytes[offset_of!(VirtioNetHdr, gso_type)],
            hdr_len: word(offset_of!(VirtioNetHdr, hdr_len)),
            gso_size: word(offset_of!(VirtioNetHdr, gso_size)),
            csum_start: word(offset_of!(VirtioNetHdr, csum_start)),
            csum_offset: word(offset_of!(VirtioNetHdr, csum_offset)),
        }
    }

    /// The header's ring bytes (little-endian).
    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut bytes = [0u8; VNET_HDR_LEN];
        bytes[offset_of!(VirtioNetHdr, flags)] = self.flags;
        bytes[offset_of!(VirtioNetHdr, gso_type)] = self.gso_type;
        for (at, value) in [
            (offset_of!(VirtioNetHdr, hdr_len), self.hdr_len),
            (offset_of!(VirtioNetHdr, gso_size), self.gso_size),
            (offset_of!(VirtioNetHdr, csum_start), self.csum_start),
            (offset_of!(VirtioNetHdr, csum_offset), self.csum_offset),
        ] {
            bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    /// A ring packet of a client that asked for headers, split into its header and its IP
    /// packet; `None` if it is shorter than the header.
    pub fn split(ring_packet: &[u8]) -> Option<(Self, &[u8])> {
        let (header, packet) = ring_packet.split_first_chunk::<VNET_HDR_LEN>()?;
        Some((Self::decode(header), packet))
    }
}
