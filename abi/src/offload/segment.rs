//! Cutting a super-packet into segments in software, as a NIC does for LSOv2 and USO: what the
//! driver does for a client that cannot take super-packets (or for Windows, when a client writes
//! one and RSC is off), and what a client may do with one it cannot pass on whole.
//!
//! Each segment is the super-packet's headers as a template (IPv4 options, IPv6 extension headers
//! and TCP options copied unaltered) with its share of the payload, then:
//! - IPv4: Total Length of the segment; Identification incremented per segment, for TCP within
//!   0x0000..=0x7FFF when the template's is there (LSOv2: "use IP ID values in the range from
//!   0x0000 to 0x7FFF", offloading-the-segmentation-of-large-tcp-packets), for UDP through
//!   0xFFFF (udp-segmentation-offload-uso-); the header checksum computed.
//! - IPv6: Payload Length of the segment.
//! - TCP: the sequence number advanced by the payload before it; FIN and PSH only on the last segment
//!   (LSOv2's rules, and Linux's net/ipv4/tcp_offload.c, `tcp_gso_segment`), CWR only on the
//!   first (`tcp_gso_segment` clears it after the first); the checksum computed.
//! - UDP: Length of the datagram, the checksum computed (net/ipv4/udp_offload.c,
//!   `__udp_gso_segment`: each datagram its own header).
//!
//! Checksums are computed from scratch over each segment, so the super-packet's own checksum
//! field may hold anything: Windows' pseudo-header sum without the length, Linux's with it, or
//! garbage.
//!
//! Segments are written into space the caller lends, one at a time ([`Segment::write`]), so the
//! driver can write each straight into a ring reservation or an NBL's buffer.

use core::ops::Range;

use super::checksum::{add, ones_complement_sum, set_ipv4_header_checksum, transport_checksum};
use super::packet::{IPV6_HEADER_LEN, IpVersion};
use super::validate::{GsoKind, TCP_CWR, TCP_FIN, TCP_PSH};
use super::{Gso, OffloadError, set_u16, u16_at};

/// A super-packet and the segments it is cut into.
#[derive(Clone, Copy, Debug)]
pub struct Segments<'p> {
    packet: &'p [u8],
    gso: Gso,
}

/// One segment of a super-packet, not yet written.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'s> {
    segments: &'s Segments<'s>,
    index: usize,
}

impl<'p> Segments<'p> {
    /// The segments of `packet`, which `gso` was validated for (refused if its length differs).
    /// The packet's bytes may have changed since: the segments are then garbage, but are still
    /// written only from and into the bytes they own.
    pub fn new(packet: &'p [u8], gso: &Gso) -> Result<Self, OffloadError> {
        if packet.len() != gso.packet_len() {
            return Err(OffloadError::NotThisPacket);
        }
        Ok(Segments { packet, gso: *gso })
    }

    /// The segments of a packet of which only the first bytes, `head`, are given, at least its
    /// headers: they write only their headers ([`Segment::write_headers`]), their payload staying
    /// where it lies in the packet.
    pub fn of_head(head: &'p [u8], gso: &Gso) -> Result<Self, OffloadError> {
        if head.len() > gso.packet_len() {
            return Err(OffloadError::NotThisPacket);
        }
        if head.len() < gso.header_len() {
            return Err(OffloadError::PastHead);
        }
        Ok(Segments {
            packet: &head[..gso.header_len()],
            gso: *gso,
        })
    }

    pub fn count(&self) -> usize {
        self.gso.segment_count()
    }

    /// Segment `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Segment<'_>> {
        (index < self.count()).then_some(Segment {
            segments: self,
            index,
        })
    }

    /// The segments in order.
    pub fn iter(&self) -> impl Iterator<Item = Segment<'_>> {
        (0..self.count()).map(|index| Segment {
            segments: self,
            index,
        })
    }
}

impl Segment<'_> {
    pub fn index(&self) -> usize {
        self.index
    }

    pub fn is_last(&self) -> bool {
        self.index + 1 == self.segments.count()
    }

    /// Where this segment's payload lies in the super-packet.
    pub fn payload(&self) -> Range<usize> {
        let gso = &self.segments.gso;
        let mss = usize::from(gso.mss());
        let start = gso.header_len() + self.index * mss;
        start..gso.packet_len().min(start + mss)
    }

    /// The segment's length in bytes: headers and payload.
    pub fn size(&self) -> usize {
        self.segments.gso.header_len() + self.payload().len()
    }

    /// Writes the segment into the start of `out`, returning its length; refused, writing
    /// nothing, if `out` is shorter, or if the segments know only the packet's head.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, OffloadError> {
        let Segments { packet, gso } = self.segments;
        if packet.len() != gso.packet_len() {
            return Err(OffloadError::NotThisPacket);
        }
        let len = self.size();
        let Some(out) = out.get_mut(..len) else {
            return Err(OffloadError::OutputTooSmall);
        };
        let (headers, payload) = out.split_at_mut(gso.header_len());
        payload.copy_from_slice(&packet[self.payload()]);
        self.write_headers(headers, ones_complement_sum(payload))?;
        Ok(len)
    }

    /// Writes the segment's headers alone into the start of `out`, returning their length (the
    /// packet's header length), for a payload whose one's complement sum is `payload_sum` (the
    /// payload starts at an even offset, so its sum adds to the headers'); refused, writing
    /// nothing, if `out` is shorter.
    pub fn write_headers(&self, out: &mut [u8], payload_sum: u16) -> Result<usize, OffloadError> {
        let Segments { packet, gso } = self.segments;
        let header_len = gso.header_len();
        let Some(out) = out.get_mut(..header_len) else {
            return Err(OffloadError::OutputTooSmall);
        };
        out.copy_from_slice(&packet[..header_len]);
        let len = self.size();
        let layout = gso.layout();
        let transport_at = layout.ip_header_len;
        match layout.ip {
            IpVersion::V4 => {
                set_u16(out, 2, len as u16);
                let id = self.ip_id(u16_at(packet, 4));
                set_u16(out, 4, id);
                set_ipv4_header_checksum(out, transport_at);
            }
            IpVersion::V6 => set_u16(out, 4, (len - IPV6_HEADER_LEN) as u16),
        }
        match gso.kind() {
            GsoKind::Tcp { .. } => {
                let sequence_at = transport_at + 4;
                let first_sequence = u32::from_be_bytes([
                    packet[sequence_at],
                    packet[sequence_at + 1],
                    packet[sequence_at + 2],
                    packet[sequence_at + 3],
                ]);
                let sent_before = (self.index * usize::from(gso.mss())) as u32;
                let sequence = first_sequence.wrapping_add(sent_before);
                out[sequence_at..sequence_at + 4].copy_from_slice(&sequence.to_be_bytes());
                let flags_at = transport_at + 13;
                if !self.is_last() {
                    out[flags_at] &= !(TCP_FIN | TCP_PSH);
                }
                if self.index != 0 {
                    out[flags_at] &= !TCP_CWR;
                }
            }
            GsoKind::Udp => set_u16(out, transport_at + 4, (len - transport_at) as u16),
        }
        let checksum_at = transport_at + gso.transport().checksum_offset();
        set_u16(out, checksum_at, 0);
        let sum = add(
            layout.pseudo_header_sum_for(out, len - transport_at),
            add(ones_complement_sum(&out[transport_at..]), payload_sum),
        );
        set_u16(out, checksum_at, transport_checksum(sum));
        Ok(header_len)
    }

    /// The IPv4 Identification of this segment, counting from the template's `first`.
    fn ip_id(&self, first: u16) -> u16 {
        let next = u32::from(first).wrapping_add(self.index as u32);
        match self.segments.gso.kind() {
            GsoKind::Tcp { .. } if first <= 0x7FFF => (next & 0x7FFF) as u16,
            _ => next as u16,
        }
    }
}

/// Cuts `packet` (validated as `gso`) into its segments, handing each to `sink` in order, which
/// writes it wherever it likes with [`Segment::write`]. Stops at the first error, the sink's
/// or its own; returns how many segments the sink took.
pub fn segment<E: From<OffloadError>>(
    packet: &[u8],
    gso: &Gso,
    mut sink: impl FnMut(Segment<'_>) -> Result<(), E>,
) -> Result<usize, E> {
    let segments = Segments::new(packet, gso)?;
    for segment in segments.iter() {
        sink(segment)?;
    }
    Ok(segments.count())
}
