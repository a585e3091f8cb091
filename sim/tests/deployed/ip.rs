//! The IPv4 and IPv6 packets the suite makes and checks on the client's side: echo replies to
//! the Linux stack's echo requests, UDP datagrams both ways, and a payload anyone can recompute
//! from its stream and sequence number.

use std::net::{IpAddr, SocketAddr};

const ICMP: u8 = 1;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;

/// The one's complement sum of `bytes` (big-endian words, an odd byte padded), folded,
/// added to `start`.
fn sum(start: u32, bytes: &[u8]) -> u32 {
    let mut total = u64::from(start);
    for pair in bytes.chunks(2) {
        total += u64::from(u16::from_be_bytes([
            pair[0],
            pair.get(1).copied().unwrap_or(0),
        ]));
    }
    while total > 0xFFFF {
        total = (total & 0xFFFF) + (total >> 16);
    }
    total as u32
}

pub fn checksum(start: u32, bytes: &[u8]) -> u16 {
    !(sum(start, bytes) as u16)
}

/// The sum of the pseudo-header UDP and ICMPv6 checksums cover (RFC 768, RFC 8200 8.1).
fn pseudo_header(source: &[u8], destination: &[u8], protocol: u8, length: usize) -> u32 {
    let length = length as u32;
    let fixed = sum(0, source) + sum(0, destination) + u32::from(protocol);
    sum(fixed + (length >> 16) + (length & 0xFFFF), &[])
}

fn octets(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An IP packet's header length, protocol and addresses, if it is IPv4 or IPv6 (no extension
/// headers) and its lengths agree with `packet`'s.
struct Header {
    length: usize,
    protocol: u8,
    source: IpAddr,
    destination: IpAddr,
}

fn header(packet: &[u8]) -> Option<Header> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let length = usize::from(packet[0] & 0x0F) * 4;
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            let address =
                |at: usize| IpAddr::from(<[u8; 4]>::try_from(&packet[at..at + 4]).unwrap());
            (length >= 20 && total == packet.len() && checksum(0, &packet[..length]) == 0).then(
                || Header {
                    length,
                    protocol: packet[9],
                    source: address(12),
                    destination: address(16),
                },
            )
        }
        6 if packet.len() >= 40 => {
            let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let address =
                |at: usize| IpAddr::from(<[u8; 16]>::try_from(&packet[at..at + 16]).unwrap());
            (payload + 40 == packet.len()).then(|| Header {
                length: 40,
                protocol: packet[6],
                source: address(8),
                destination: address(24),
            })
        }
        _ => None,
    }
}

/// The reply a host at the request's destination would give an ICMP or ICMPv6 echo request;
/// None for any other packet.
pub fn echo_reply(request: &[u8]) -> Option<Vec<u8>> {
    let header = header(request)?;
    let at = header.length;
    let (request_type, reply_type) = match header.protocol {
        ICMP => (8, 0),
        ICMPV6 => (128, 129),
        _ => return None,
    };
    if request.len() < at + 8 || request[at] != request_type {
        return None;
    }
    let mut reply = request.to_vec();
    let (source, destination) = (octets(header.source), octets(header.destination));
    // The addresses trade places; IPv4's header checksum is a sum, so it stays right.
    let (first, width) = if header.protocol == ICMP {
        (12, 4)
    } else {
        (8, 16)
    };
    reply[first..first + width].copy_from_slice(&destination);
    reply[first + width..first + 2 * width].copy_from_slice(&source);
    reply[at] = reply_type;
    reply[at + 2..at + 4].fill(0);
    let start = if header.protocol == ICMPV6 {
        pseudo_header(&destination, &source, ICMPV6, reply.len() - at)
    } else {
        0
    };
    let sum = checksum(start, &reply[at..]);
    reply[at + 2..at + 4].copy_from_slice(&sum.to_be_bytes());
    Some(reply)
}

/// A UDP datagram from `source` to `destination` (the same family), checksummed.
pub fn udp(source: SocketAddr, destination: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let length = 8 + payload.len();
    let (from, to) = (octets(source.ip()), octets(destination.ip()));
    let mut packet = match source {
        SocketAddr::V4(_) => {
            let total = (20 + length) as u16;
            let mut header = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, UDP, 0, 0];
            header[2..4].copy_from_slice(&total.to_be_bytes());
            header.extend_from_slice(&from);
            header.extend_from_slice(&to);
            let sum = checksum(0, &header);
            header[10..12].copy_from_slice(&sum.to_be_bytes());
            header
        }
        SocketAddr::V6(_) => {
            let mut header = vec![0x60, 0, 0, 0, 0, 0, UDP, 64];
            header[4..6].copy_from_slice(&(length as u16).to_be_bytes());
            header.extend_from_slice(&from);
            header.extend_from_slice(&to);
            header
        }
    };
    let at = packet.len();
    packet.extend_from_slice(&source.port().to_be_bytes());
    packet.extend_from_slice(&destination.port().to_be_bytes());
    packet.extend_from_slice(&(length as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let sum = match checksum(pseudo_header(&from, &to, UDP, length), &packet[at..]) {
        0 => 0xFFFF,
        sum => sum,
    };
    packet[at + 6..at + 8].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// A UDP datagram whose IP header and UDP checksum are right.
pub struct Datagram<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub payload: &'a [u8],
}

pub fn parse_udp(packet: &[u8]) -> Option<Datagram<'_>> {
    let header = header(packet)?;
    let udp = packet.get(header.length..).filter(|udp| udp.len() >= 8)?;
    let length = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let pseudo = pseudo_header(
        &octets(header.source),
        &octets(header.destination),
        UDP,
        udp.len(),
    );
    if header.protocol != UDP || length != udp.len() || checksum(pseudo, udp) != 0 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    Some(Datagram {
        source: SocketAddr::new(header.source, port(0)),
        destination: SocketAddr::new(header.destination, port(2)),
        payload: &udp[8..],
    })
}

/// `len` bytes (at least 8): the stream and the sequence number, then a pattern of both.
pub fn payload(stream: u32, sequence: u32, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (sequence.wrapping_mul(31) ^ stream).wrapping_add(i as u32 * 7) as u8)
        .collect();
    bytes[..4].copy_from_slice(&stream.to_le_bytes());
    bytes[4..8].copy_from_slice(&sequence.to_le_bytes());
    bytes
}

/// The stream and sequence number a payload says it carries.
pub fn payload_label(payload: &[u8]) -> Option<(u32, u32)> {
    let word = |at: usize| {
        Some(u32::from_le_bytes(
            payload.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    Some((word(0)?, word(4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_datagram_parses_back_in_both_families() {
        for (source, destination) in [("10.1.0.2:7", "10.1.0.1:9"), ("[fd01::2]:7", "[fd01::1]:9")]
        {
            let (source, destination) = (source.parse().unwrap(), destination.parse().unwrap());
            let data = payload(1, 2, 333);
            let packet = udp(source, destination, &data);
            let parsed = parse_udp(&packet).unwrap();
            assert_eq!((parsed.source, parsed.destination), (source, destination));
            assert_eq!(parsed.payload, data);
            let mut broken = packet.clone();
            *broken.last_mut().unwrap() ^= 1;
            assert!(
                parse_udp(&broken).is_none(),
                "a flipped bit passes the checksum"
            );
        }
    }
}
