//! The Internet checksum (RFC 1071) and the three ways the offloads fill it in: completing a
//! partial checksum (NEEDS_CSUM), computing a packet's checksums from scratch, and seeding a
//! transport checksum field with its pseudo-header's sum for the other side to complete.

use super::packet::{IpVersion, Layout, Transport, parse_head};
use super::{OffloadError, set_u16};

/// The one's complement sum of `data` read as big-endian 16-bit words (a trailing odd byte is
/// the high half of a last word), folded to 16 bits, not complemented.
///
/// Reads 32-bit little-endian words into a 64-bit accumulator, which cannot overflow for any
/// slice shorter than 64 GiB, and folds once at the end; the sum of byte-swapped words is the
/// byte-swapped sum (RFC 1071, section 2(B)), so one swap at the end gives the big-endian sum.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(4);
    let mut sum: u64 = 0;
    for word in &mut words {
        sum += u64::from(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    sum += u64::from(u32::from_le_bytes(tail));
    fold(sum).swap_bytes()
}

/// The one's complement sum of a span met in pieces of any length (a packet as it is copied,
/// chunk by chunk), equal to [`ones_complement_sum`] of the whole span. A piece that starts at an
/// odd offset puts its bytes into the other halves of the span's words, so its sum goes in
/// byte-swapped (RFC 1071, section 2(B)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunningSum {
    sum: u16,
    /// The pieces so far end at an odd offset.
    odd: bool,
}

impl RunningSum {
    pub const fn new() -> Self {
        RunningSum { sum: 0, odd: false }
    }

    /// Adds the span's next bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.push_sum(ones_complement_sum(bytes), bytes.len());
    }

    /// Adds the span's next `len` bytes by their sum, as [`ones_complement_sum`] (or another
    /// running sum) gives it.
    pub fn push_sum(&mut self, sum: u16, len: usize) {
        let sum = if self.odd { sum.swap_bytes() } else { sum };
        self.sum = add(self.sum, sum);
        self.odd ^= len % 2 == 1;
    }

    /// The sum of the bytes pushed so far.
    pub fn sum(&self) -> u16 {
        self.sum
    }
}

/// `a + b` in one's complement arithmetic.
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// The checksum to store for a `sum` that covers the whole checksummed span: its complement. A
/// transport checksum of 0 is stored as 0xFFFF, the same value in one's complement, since UDP
/// reads 0 as "no checksum" (RFC 768); Linux does the same for every protocol
/// (net/core/dev.c, `skb_checksum_help`, CSUM_MANGLED_0).
pub fn transport_checksum(sum: u16) -> u16 {
    match !sum {
        0 => 0xFFFF,
        checksum => checksum,
    }
}

/// The sum of a TCP or UDP pseudo-header (RFC 793 section 3.1, RFC 768, RFC 8200 section 8.1):
/// the source and destination addresses (`addresses`, the two as they lie in the IP header), the
/// protocol and the transport's length.
pub fn pseudo_header_sum(addresses: &[u8], protocol: u8, transport_len: u32) -> u16 {
    let length = add((transport_len >> 16) as u16, transport_len as u16);
    add(
        ones_complement_sum(addresses),
        add(u16::from(protocol), length),
    )
}

/// Completes a partial checksum as NEEDS_CSUM asks: sums the packet from `start` to its end (the
/// checksum field inside that span holds the pseudo-header's sum) and stores the checksum at
/// `start + offset`, as Linux's `skb_checksum_help` does. Refused, changing nothing, when the
/// field does not lie inside the packet.
pub fn complete_partial_checksum(
    packet: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), OffloadError> {
    let field = start
        .checked_add(offset)
        .filter(|&field| field.checked_add(2).is_some_and(|end| end <= packet.len()));
    let Some(field) = field else {
        return Err(OffloadError::ChecksumOutsidePacket);
    };
    let sum = ones_complement_sum(&packet[start..]);
    set_u16(packet, field, transport_checksum(sum));
    Ok(())
}

/// Which checksums [`fill_checksums`] computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksums {
    /// The IPv4 header checksum (ignored for IPv6, which has none).
    pub ipv4_header: bool,
    /// The TCP or UDP checksum, over its pseudo-header.
    pub transport: bool,
}

/// Computes a packet's checksums from scratch, whatever their fields hold: what a miniport does
/// for a send whose NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO asks for them, when the client
/// cannot take a partial checksum. The packet must parse (IPv4 or IPv6 whose lengths match the
/// packet, then TCP or UDP, not a fragment) when `transport` is asked for.
pub fn fill_checksums(packet: &mut [u8], which: Checksums) -> Result<(), OffloadError> {
    fill_checksums_head(packet, packet.len(), which, 0)
}

/// [`fill_checksums`] for a packet of `len` bytes of which only the first, `head`, are given
/// (and written): `rest` is the one's complement sum of the bytes after the head, as a
/// [`RunningSum`] of them gives it (read only for the transport checksum). The same result in
/// the head as on the whole packet, or [`OffloadError::PastHead`] if its headers run past the
/// head.
pub fn fill_checksums_head(
    head: &mut [u8],
    len: usize,
    which: Checksums,
    rest: u16,
) -> Result<(), OffloadError> {
    let layout = parse_head(head, len)?;
    if which.ipv4_header && layout.ip == IpVersion::V4 {
        set_ipv4_header_checksum(head, layout.ip_header_len);
    }
    if which.transport {
        let transport = layout.transport()?;
        layout.transport_header_len(head, transport)?;
        let field = layout.ip_header_len + transport.checksum_offset();
        set_u16(head, field, 0);
        let mut transport_sum = RunningSum::new();
        transport_sum.push(&head[layout.ip_header_len..]);
        transport_sum.push_sum(rest, len - head.len());
        let sum = add(layout.pseudo_header_sum(head), transport_sum.sum());
        set_u16(head, field, transport_checksum(sum));
    }
    Ok(())
}

/// Stores the transport's pseudo-header sum (not complemented) in its checksum field: the partial
/// checksum a NEEDS_CSUM header promises, which [`complete_partial_checksum`] completes. The
/// length in it is the whole transport's, as Linux's `__tcp_v4_send_check` and its kin leave
/// it, also for a super-packet. `layout` is the packet's, with its transport header checked.
pub(crate) fn seed_partial_checksum(packet: &mut [u8], layout: &Layout, transport: Transport) {
    let sum = layout.pseudo_header_sum(packet);
    set_u16(
        packet,
        layout.ip_header_len + transport.checksum_offset(),
        sum,
    );
}

/// Computes and stores an IPv4 header's checksum over its `header_len` bytes.
pub(crate) fn set_ipv4_header_checksum(packet: &mut [u8], header_len: usize) {
    set_u16(packet, 10, 0);
    let checksum = !ones_complement_sum(&packet[..header_len]);
    set_u16(packet, 10, checksum);
}
