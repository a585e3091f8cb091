//! Packets built by hand for the offload tests, and the checks of what the offloads produce made
//! with an implementation that is not ours: the `etherparse` crate parses every segment and
//! computes the checksums it must carry.
#![allow(dead_code)]

use etherparse::{IpNumber, Ipv4Header, Ipv6Extensions, Ipv6Header, TcpHeader, UdpHeader};

pub const SOURCE4: [u8; 4] = [192, 0, 2, 1];
pub const DESTINATION4: [u8; 4] = [198, 51, 100, 7];
pub const SOURCE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const DESTINATION6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// A TCP header's fields; `options` is padded with NOPs to a multiple of 4.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub sequence: u32,
    pub flags: u8,
    pub options: Vec<u8>,
}

impl Default for Tcp {
    fn default() -> Self {
        Tcp {
            sequence: 1_000_000,
            flags: ACK,
            options: Vec::new(),
        }
    }
}

/// A TCP timestamp option (RFC 7323), preceded by two NOPs as senders align it.
pub fn timestamp_option(value: u32, echo: u32) -> Vec<u8> {
    let mut option = vec![1, 1, 8, 10];
    option.extend_from_slice(&value.to_be_bytes());
    option.extend_from_slice(&echo.to_be_bytes());
    option
}

pub fn tcp_segment(tcp: &Tcp, payload: &[u8]) -> Vec<u8> {
    let mut options = tcp.options.clone();
    while options.len() % 4 != 0 {
        options.push(1);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&4321u16.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out.extend_from_slice(&tcp.sequence.to_be_bytes());
    out.extend_from_slice(&77u32.to_be_bytes());
    out.push((((20 + options.len()) / 4) << 4) as u8);
    out.push(tcp.flags);
    out.extend_from_slice(&65535u16.to_be_bytes());
    out.extend_from_slice(&[0xAB, 0xCD]); // a checksum nobody computed
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&options);
    out.extend_from_slice(payload);
    out
}

pub fn udp_datagram(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&5353u16.to_be_bytes());
    out.extend_from_slice(&51820u16.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0x12, 0x34]);
    out.extend_from_slice(payload);
    out
}

/// An IPv4 packet (DF set, TTL 64) with `options` (a multiple of 4 bytes) and a correct header
/// checksum.
pub fn ipv4(id: u16, options: &[u8], protocol: u8, transport: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let header_len = 20 + options.len();
    let mut out = vec![0x40 | (header_len / 4) as u8, 0];
    out.extend_from_slice(&((header_len + transport.len()) as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x40, 0]);
    out.extend_from_slice(&[64, protocol, 0, 0]);
    out.extend_from_slice(&SOURCE4);
    out.extend_from_slice(&DESTINATION4);
    out.extend_from_slice(options);
    let checksum = !naive_sum(&out, 0);
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(transport);
    out
}

/// An IPv6 packet with extension headers `(number, options)`, each padded to 8-byte units.
pub fn ipv6(extensions: &[(u8, Vec<u8>)], protocol: u8, transport: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (index, (_, options)) in extensions.iter().enumerate() {
        let next = extensions
            .get(index + 1)
            .map_or(protocol, |(number, _)| *number);
        let mut header = vec![next, 0];
        header.extend_from_slice(options);
        while header.len() % 8 != 0 {
            header.push(0); // Pad1 options
        }
        header[1] = (header.len() / 8 - 1) as u8;
        chain.extend_from_slice(&header);
    }
    let first = extensions.first().map_or(protocol, |(number, _)| *number);
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&((chain.len() + transport.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[first, 64]);
    out.extend_from_slice(&SOURCE6);
    out.extend_from_slice(&DESTINATION6);
    out.extend_from_slice(&chain);
    out.extend_from_slice(transport);
    out
}

/// The one's complement sum of 16-bit big-endian words, a word at a time: the plain reading of
/// RFC 1071, to compare the fast one with.
pub fn naive_sum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// Where the transport starts and its protocol, found the plain way (fixed IPv4 header length
/// from IHL; IPv6 extension headers walked by their length bytes).
pub fn transport_of(packet: &[u8]) -> (usize, u8) {
    if packet[0] >> 4 == 4 {
        return (usize::from(packet[0] & 0x0F) * 4, packet[9]);
    }
    let (mut at, mut next) = (40, packet[6]);
    while next == 0 || next == 60 {
        next = packet[at];
        at += (usize::from(packet[at + 1]) + 1) * 8;
    }
    (at, next)
}

/// Writes the partial checksum a Linux sender leaves with NEEDS_CSUM: the pseudo-header's sum
/// with the transport's whole length, not complemented.
pub fn seed_linux_partial(packet: &mut [u8]) {
    let (at, protocol) = transport_of(packet);
    let addresses = if packet[0] >> 4 == 4 {
        &packet[12..20]
    } else {
        &packet[8..40]
    };
    let length = (packet.len() - at) as u32;
    let sum = naive_sum(
        addresses,
        u32::from(protocol) + (length >> 16) + (length & 0xFFFF),
    );
    let field = at + if protocol == 6 { 16 } else { 6 };
    packet[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Checksums that are the same in one's complement: 0x0000 and 0xFFFF are both zero.
pub fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xFFFF && (a == 0 || b == 0))
}

/// What etherparse reads in a packet whose every length and checksum it has checked.
#[derive(Debug)]
pub struct Checked {
    pub ipv4_id: Option<u16>,
    pub tcp: Option<TcpHeader>,
    pub udp: Option<UdpHeader>,
    /// Bytes before the payload.
    pub header_len: usize,
    pub payload: Vec<u8>,
}

/// Parses `packet` with etherparse and checks its IP length, its IPv4 header checksum and its
/// TCP or UDP checksum against etherparse's own computation. Panics on any mismatch.
pub fn check_packet(packet: &[u8]) -> Checked {
    let (ipv4, ipv6, protocol, transport) = match packet[0] >> 4 {
        4 => {
            let (header, rest) = Ipv4Header::from_slice(packet).expect("IPv4 header");
            assert_eq!(usize::from(header.total_len), packet.len(), "Total Length");
            assert_eq!(
                header.header_checksum,
                header.calc_header_checksum(),
                "IPv4 header checksum"
            );
            let protocol = header.protocol;
            (Some(header), None, protocol, rest)
        }
        6 => {
            let (header, rest) = Ipv6Header::from_slice(packet).expect("IPv6 header");
            assert_eq!(
                usize::from(header.payload_length),
                packet.len() - 40,
                "Payload Length"
            );
            let (_, protocol, rest) =
                Ipv6Extensions::from_slice(header.next_header, rest).expect("extension headers");
            (None, Some(header), protocol, rest)
        }
        version => panic!("IP version {version}"),
    };
    let header_len;
    let mut checked = Checked {
        ipv4_id: ipv4.as_ref().map(|header| header.identification),
        tcp: None,
        udp: None,
        header_len: 0,
        payload: Vec::new(),
    };
    if protocol == IpNumber::TCP {
        let (tcp, payload) = TcpHeader::from_slice(transport).expect("TCP header");
        let expected = match (&ipv4, &ipv6) {
            (Some(ip), _) => tcp.calc_checksum_ipv4(ip, payload),
            (_, Some(ip)) => tcp.calc_checksum_ipv6(ip, payload),
            _ => unreachable!(),
        }
        .unwrap();
        assert!(
            same_checksum(tcp.checksum, expected),
            "TCP checksum {:#06x}, etherparse computes {expected:#06x}",
            tcp.checksum
        );
        header_len = packet.len() - payload.len();
        checked.payload = payload.to_vec();
        checked.tcp = Some(tcp);
    } else if protocol == IpNumber::UDP {
        let (udp, payload) = UdpHeader::from_slice(transport).expect("UDP header");
        assert_eq!(usize::from(udp.length), transport.len(), "UDP Length");
        let expected = match (&ipv4, &ipv6) {
            (Some(ip), _) => udp.calc_checksum_ipv4(ip, payload),
            (_, Some(ip)) => udp.calc_checksum_ipv6(ip, payload),
            _ => unreachable!(),
        }
        .unwrap();
        assert!(
            same_checksum(udp.checksum, expected),
            "UDP checksum {:#06x}, etherparse computes {expected:#06x}",
            udp.checksum
        );
        assert_ne!(udp.checksum, 0, "a computed UDP checksum is never 0");
        header_len = packet.len() - payload.len();
        checked.payload = payload.to_vec();
        checked.udp = Some(udp);
    } else {
        panic!("protocol {protocol:?}");
    }
    checked.header_len = header_len;
    checked
}
