//! The receive path's half (the client to Windows): may a TCP super-packet a client wrote go up
//! as one receive-segment-coalescing (RSC) unit, and with what NDIS_RSC_NBL_INFO?
//!
//! An RSC unit must look like what a NIC would have coalesced, so one that a NIC could not have
//! made is refused, and the driver cuts it into segments instead. The conditions are the
//! exceptions that end coalescing (exception-conditions-that-terminate-coalescing): a flag other
//! than ACK and PSH (ECE is allowed, being the same in every segment; CWR is not, since only the
//! first segment carries it), a TCP option other than the timestamp, IPv4 options or IPv6
//! extension headers. The count is the number of data segments coalesced
//! (rules-for-coalescing-tcp-ip-packets: "CoalescedSegCount ... only represents data segments");
//! no duplicate ACKs are in a client's super-packet, so DupAckCount is 0; and since Linux's GRO
//! coalesces only segments whose options are identical (net/ipv4/tcp_offload.c,
//! `tcp_gro_receive`), the timestamps were equal and RscTcpTimestampDelta is 0.
//!
//! The unit's checksums must be right or flagged (indicating-coalesced-segments): the driver
//! recomputes them, or flags the TCP checksum as not recomputed and leaves it as it is.

use super::packet::{IPV4_HEADER_LEN, IPV6_HEADER_LEN, IpVersion, TCP_HEADER_LEN};
use super::validate::{GsoKind, TCP_ACK, TCP_ECE, TCP_PSH};
use super::{Gso, OffloadError};

/// NDIS_RSC_NBL_INFO for one coalesced unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RscInfo {
    /// `CoalescedSegCount`: data segments in the unit, at least 2.
    pub coalesced_segments: u16,
    /// `DupAckCount`.
    pub duplicate_acks: u16,
}

/// How a super-packet a client wrote goes up to Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receive {
    /// As a plain packet: its payload fits one segment.
    Single,
    /// As one RSC unit.
    Coalesced(RscInfo),
    /// Cut into segments: a NIC could not have coalesced it, for this reason.
    Segmented(NotCoalescible),
}

/// Why a super-packet cannot go up as an RSC unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotCoalescible {
    /// UDP: Windows has no coalescing for it here (URO is a separate offload).
    NotTcp,
    /// A TCP flag other than ACK, PSH and ECE.
    TcpFlags(u8),
    /// A TCP option other than NOP, End of Option List and the timestamp.
    TcpOptions,
    /// IPv4 options.
    Ipv4Options,
    /// IPv6 extension headers.
    Ipv6ExtensionHeaders,
}

/// Decides how a super-packet (`packet`, validated as `gso`) goes up when RSC is on.
pub fn receive_as(packet: &[u8], gso: &Gso) -> Result<Receive, OffloadError> {
    receive_as_head(packet, packet.len(), gso)
}

/// [`receive_as`] for a super-packet of `len` bytes of which only the first, `head`, are given
/// (as [`validate_head`](super::validate_head) validated it): only its headers are read.
pub fn receive_as_head(head: &[u8], len: usize, gso: &Gso) -> Result<Receive, OffloadError> {
    if len != gso.packet_len() || head.len() > len {
        return Err(OffloadError::NotThisPacket);
    }
    if head.len() < gso.header_len() {
        return Err(OffloadError::PastHead);
    }
    if !matches!(gso.kind(), GsoKind::Tcp { .. }) {
        return Ok(Receive::Segmented(NotCoalescible::NotTcp));
    }
    let segments = gso.segment_count();
    if segments == 1 {
        return Ok(Receive::Single);
    }
    let layout = gso.layout();
    let fixed_header = match layout.ip {
        IpVersion::V4 => IPV4_HEADER_LEN,
        IpVersion::V6 => IPV6_HEADER_LEN,
    };
    if layout.ip_header_len != fixed_header {
        return Ok(Receive::Segmented(match layout.ip {
            IpVersion::V4 => NotCoalescible::Ipv4Options,
            IpVersion::V6 => NotCoalescible::Ipv6ExtensionHeaders,
        }));
    }
    let tcp = &head[layout.ip_header_len..gso.header_len()];
    let flags = tcp[13];
    if flags & !(TCP_ACK | TCP_PSH | TCP_ECE) != 0 {
        return Ok(Receive::Segmented(NotCoalescible::TcpFlags(flags)));
    }
    if !only_timestamp_option(&tcp[TCP_HEADER_LEN..]) {
        return Ok(Receive::Segmented(NotCoalescible::TcpOptions));
    }
    // At most 65535 bytes of payload at an MSS of at least 1.
    let coalesced_segments = u16::try_from(segments).unwrap_or(u16::MAX);
    Ok(Receive::Coalesced(RscInfo {
        coalesced_segments,
        duplicate_acks: 0,
    }))
}

/// True if TCP `options` hold nothing but padding and at most one well-formed timestamp option
/// (RFC 7323 section 3.2: kind 8, length 10).
fn only_timestamp_option(options: &[u8]) -> bool {
    const END: u8 = 0;
    const NOP: u8 = 1;
    const TIMESTAMP: u8 = 8;
    const TIMESTAMP_LEN: usize = 10;
    let mut at = 0;
    let mut timestamps = 0;
    while let Some(&kind) = options.get(at) {
        match kind {
            END => return true,
            NOP => at += 1,
            TIMESTAMP
                if timestamps == 0
                    && options.get(at + 1) == Some(&(TIMESTAMP_LEN as u8))
                    && at + TIMESTAMP_LEN <= options.len() =>
            {
                timestamps += 1;
                at += TIMESTAMP_LEN;
            }
            _ => return false,
        }
    }
    true
}
