//! One test per rule of the offload header and of what is done with it, on packets built by hand;
//! every packet the offloads produce is checked by etherparse (tests/packets).

mod packets;

use oxtun_abi::offload::*;
use oxtun_abi::vnet::*;
use packets::*;

fn tcp_gso_header(packet: &[u8], mss: u16) -> VirtioNetHdr {
    let (at, _) = transport_of(packet);
    let gso_type = if packet[0] >> 4 == 4 {
        VIRTIO_NET_HDR_GSO_TCPV4
    } else {
        VIRTIO_NET_HDR_GSO_TCPV6
    };
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        hdr_len: (at + 20) as u16,
        gso_size: mss,
        csum_start: at as u16,
        csum_offset: 16,
    }
}

fn udp_gso_header(packet: &[u8], mss: u16) -> VirtioNetHdr {
    let (at, _) = transport_of(packet);
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
        hdr_len: (at + 8) as u16,
        gso_size: mss,
        csum_start: at as u16,
        csum_offset: 6,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Segments a validated super-packet into vectors.
fn segments_of(packet: &[u8], header: &VirtioNetHdr) -> Vec<Vec<u8>> {
    let gso = validate(header, packet).unwrap().gso.unwrap();
    let mut out = Vec::new();
    let count = segment(packet, &gso, |segment| {
        let mut bytes = vec![0xEE; segment.size()];
        assert_eq!(segment.write(&mut bytes)?, bytes.len());
        out.push(bytes);
        Ok::<(), OffloadError>(())
    })
    .unwrap();
    assert_eq!(count, out.len());
    out
}

#[test]
fn header_is_ten_little_endian_bytes_in_linux_order() {
    let header = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        hdr_len: 0x0102,
        gso_size: 0x0304,
        csum_start: 0x0506,
        csum_offset: 0x0708,
    };
    let bytes = header.encode();
    assert_eq!(VNET_HDR_LEN, 10);
    assert_eq!(bytes, [1, 0x81, 2, 1, 4, 3, 6, 5, 8, 7]);
    assert_eq!(VirtioNetHdr::decode(&bytes), header);
    let mut ring_packet = bytes.to_vec();
    ring_packet.extend_from_slice(&[0x45, 0]);
    assert_eq!(
        VirtioNetHdr::split(&ring_packet),
        Some((header, &[0x45, 0][..]))
    );
    assert_eq!(VirtioNetHdr::split(&bytes[..9]), None);
    // The constants are Linux's (include/uapi/linux/virtio_net.h).
    assert_eq!(
        (VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_DATA_VALID),
        (1, 2)
    );
    assert_eq!(
        [
            VIRTIO_NET_HDR_GSO_NONE,
            VIRTIO_NET_HDR_GSO_TCPV4,
            VIRTIO_NET_HDR_GSO_UDP,
            VIRTIO_NET_HDR_GSO_TCPV6,
            VIRTIO_NET_HDR_GSO_UDP_L4,
            VIRTIO_NET_HDR_GSO_ECN
        ],
        [0, 1, 3, 4, 5, 0x80]
    );
}

#[test]
fn ones_complement_sum_matches_rfc_1071() {
    // RFC 1071 section 3's example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(ones_complement_sum(&data), 0xddf2);
    for len in 0..data.len() {
        assert_eq!(
            ones_complement_sum(&data[..len]),
            naive_sum(&data[..len], 0),
            "{len} bytes"
        );
    }
    let long = payload(4099);
    for start in 0..9 {
        assert_eq!(
            ones_complement_sum(&long[start..]),
            naive_sum(&long[start..], 0)
        );
    }
    assert_eq!(transport_checksum(0xFFFF), 0xFFFF, "0 is sent as 0xFFFF");
    assert_eq!(transport_checksum(0x1234), !0x1234);
}

#[test]
fn a_plain_header_asks_nothing_and_only_flags_and_checksum_position_are_checked() {
    let packet = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), b"hello"));
    let offload = validate(&VirtioNetHdr::NONE, &packet).unwrap();
    assert_eq!(offload.checksum, Checksum::Complete);
    assert!(offload.gso.is_none());
    // As on Linux, hdr_len and gso_size mean nothing without a gso_type.
    let ignored = VirtioNetHdr {
        hdr_len: 9999,
        gso_size: 7,
        ..VirtioNetHdr::NONE
    };
    assert!(validate(&ignored, &packet).is_ok());
    let valid = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        ..VirtioNetHdr::NONE
    };
    assert_eq!(validate(&valid, &packet).unwrap().checksum, Checksum::Valid);
    // Not even an IP packet: the ring's business, not the header's.
    assert!(validate(&VirtioNetHdr::NONE, &[0xFF; 3]).is_ok());
}

#[test]
fn flags_other_than_the_two_checksum_flags_or_both_together_are_refused() {
    let packet = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), b"x"));
    for flags in [4u8, 8, 0x80, 0xFF] {
        let header = VirtioNetHdr {
            flags,
            ..VirtioNetHdr::NONE
        };
        assert_eq!(
            validate(&header, &packet),
            Err(OffloadError::UnknownFlags(flags))
        );
    }
    let both = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
        csum_start: 20,
        csum_offset: 16,
        ..VirtioNetHdr::NONE
    };
    assert_eq!(
        validate(&both, &packet),
        Err(OffloadError::ConflictingChecksumFlags)
    );
}

#[test]
fn a_partial_checksum_must_lie_inside_the_packet() {
    let packet = [0u8; 40];
    let at = |csum_start, csum_offset| VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start,
        csum_offset,
        ..VirtioNetHdr::NONE
    };
    assert_eq!(
        validate(&at(20, 18), &packet).unwrap().checksum,
        Checksum::Partial {
            start: 20,
            offset: 18
        }
    );
    for (start, offset) in [(20, 19), (39, 0), (40, 0), (0, 39), (u16::MAX, u16::MAX)] {
        assert_eq!(
            validate(&at(start, offset), &packet),
            Err(OffloadError::ChecksumOutsidePacket),
            "{start} + {offset}"
        );
    }
}

#[test]
fn gso_types_linux_does_not_define_or_we_do_not_take_are_refused() {
    let packet = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    let with_type = |gso_type| VirtioNetHdr {
        gso_type,
        ..tcp_gso_header(&packet, 1000)
    };
    for unknown in [2u8, 6, 7, 0x7F, 0x86] {
        assert_eq!(
            validate(&with_type(unknown), &packet),
            Err(OffloadError::UnknownGsoType(unknown))
        );
    }
    assert_eq!(
        validate(&with_type(VIRTIO_NET_HDR_GSO_UDP), &packet),
        Err(OffloadError::UnsupportedGsoType(3))
    );
    for no_tcp in [VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_UDP_L4 | 0x80] {
        assert_eq!(
            validate(&with_type(no_tcp), &packet),
            Err(OffloadError::EcnWithoutTcp)
        );
    }
    let ecn = validate(&with_type(VIRTIO_NET_HDR_GSO_TCPV4 | 0x80), &packet).unwrap();
    assert_eq!(ecn.gso.unwrap().kind(), GsoKind::Tcp { ecn: true });
}

#[test]
fn a_super_packet_must_be_what_its_header_says() {
    let tcp4 = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    let tcp6 = ipv6(&[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    let udp4 = ipv4(1, &[], 17, &udp_datagram(&payload(3000)));
    let good = tcp_gso_header(&tcp4, 1000);
    assert!(validate(&good, &tcp4).is_ok());
    let cases = [
        (
            VirtioNetHdr {
                gso_size: 0,
                ..good
            },
            &tcp4,
            OffloadError::ZeroGsoSize,
        ),
        (
            VirtioNetHdr {
                hdr_len: tcp4.len() as u16 + 1,
                ..good
            },
            &tcp4,
            OffloadError::HdrLenPastPacket,
        ),
        (good, &tcp6, OffloadError::WrongIpVersion),
        (
            VirtioNetHdr {
                gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
                ..good
            },
            &tcp4,
            OffloadError::WrongIpVersion,
        ),
        (good, &udp4, OffloadError::WrongTransport(17)),
        (
            udp_gso_header(&tcp4, 1000),
            &tcp4,
            OffloadError::WrongTransport(6),
        ),
        (
            VirtioNetHdr {
                csum_start: 21,
                ..good
            },
            &tcp4,
            OffloadError::ChecksumNotAtTransport,
        ),
        (
            VirtioNetHdr {
                csum_offset: 6,
                ..good
            },
            &tcp4,
            OffloadError::ChecksumNotAtTransport,
        ),
        (
            VirtioNetHdr {
                flags: 0,
                ..udp_gso_header(&udp4, 1000)
            },
            &udp4,
            OffloadError::UdpGsoWithoutPartialChecksum,
        ),
    ];
    for (header, packet, error) in cases {
        assert_eq!(validate(&header, packet), Err(error), "{header:?}");
    }
    // A TCP super-packet without NEEDS_CSUM is taken, as Linux takes it.
    let complete = VirtioNetHdr { flags: 0, ..good };
    assert_eq!(
        validate(&complete, &tcp4).unwrap().checksum,
        Checksum::Complete
    );
}

#[test]
fn a_super_packet_whose_lengths_lie_is_refused() {
    let mut tcp4 = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    let header = tcp_gso_header(&tcp4, 1000);
    tcp4[2..4].copy_from_slice(&0u16.to_be_bytes()); // as LSOv2 leaves it
    assert_eq!(
        validate(&header, &tcp4),
        Err(OffloadError::LengthMismatch {
            field: 0,
            packet: tcp4.len()
        })
    );
    let mut tcp6 = ipv6(&[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    tcp6[4..6].copy_from_slice(&100u16.to_be_bytes());
    assert!(matches!(
        validate(&tcp_gso_header(&tcp6, 1000), &tcp6),
        Err(OffloadError::LengthMismatch { field: 100, .. })
    ));
    let mut udp4 = ipv4(1, &[], 17, &udp_datagram(&payload(3000)));
    let header = udp_gso_header(&udp4, 1000);
    udp4[24..26].copy_from_slice(&1008u16.to_be_bytes());
    assert!(matches!(
        validate(&header, &udp4),
        Err(OffloadError::LengthMismatch { field: 1008, .. })
    ));
    let mut short_ihl = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(100)));
    short_ihl[0] = 0x44;
    assert_eq!(
        validate(&tcp_gso_header(&short_ihl, 50), &short_ihl),
        Err(OffloadError::Ipv4HeaderLength(16))
    );
    let mut bad_offset = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(100)));
    bad_offset[32] = 0x40;
    assert_eq!(
        validate(&tcp_gso_header(&bad_offset, 50), &bad_offset),
        Err(OffloadError::TcpHeaderLength(16))
    );
    let mut past = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(10)));
    past[32] = 0xF0; // 60 bytes of TCP header in a 30-byte transport
    assert_eq!(
        validate(&tcp_gso_header(&past, 50), &past),
        Err(OffloadError::Truncated)
    );
    let no_checksum = VirtioNetHdr {
        flags: 0,
        hdr_len: 0,
        ..tcp_gso_header(&tcp4, 50)
    };
    assert_eq!(
        validate(&no_checksum, &[0x45; 12]),
        Err(OffloadError::Truncated)
    );
    assert_eq!(
        validate(&no_checksum, &[0x75; 60]),
        Err(OffloadError::NotIp(7))
    );
}

#[test]
fn fragments_routing_headers_and_syn_rst_urg_cannot_be_segmented() {
    let mut fragment = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &payload(3000)));
    fragment[6] = 0x20; // More Fragments
    assert_eq!(
        validate(&tcp_gso_header(&fragment, 1000), &fragment),
        Err(OffloadError::Fragment)
    );
    let routed = ipv6(
        &[(43, vec![0; 6])],
        6,
        &tcp_segment(&Tcp::default(), &[0; 3000]),
    );
    let header = VirtioNetHdr {
        csum_start: 48,
        ..tcp_gso_header(&ipv6(&[], 6, &[0; 20]), 1000)
    };
    assert_eq!(
        validate(&header, &routed),
        Err(OffloadError::UnsupportedExtensionHeader(43))
    );
    for flag in [SYN, 0x04, 0x20] {
        let tcp = Tcp {
            flags: ACK | flag,
            ..Tcp::default()
        };
        let packet = ipv4(1, &[], 6, &tcp_segment(&tcp, &payload(3000)));
        assert_eq!(
            validate(&tcp_gso_header(&packet, 1000), &packet),
            Err(OffloadError::TcpFlagsNotSegmentable(ACK | flag))
        );
    }
}

/// Linux caps a UDP super-packet at 64 datagrams; ours are cut in software whatever their
/// count, and the count tells the driver when a client must not get one whole.
#[test]
fn a_udp_super_packet_counts_its_datagrams_against_linuxs_cap() {
    let packet = ipv4(1, &[], 17, &udp_datagram(&payload(6400)));
    let at_cap = validate(&udp_gso_header(&packet, 100), &packet).unwrap();
    assert_eq!(at_cap.gso.unwrap().segment_count(), MAX_UDP_SEGMENTS);
    let past_cap = validate(&udp_gso_header(&packet, 99), &packet).unwrap();
    assert_eq!(past_cap.gso.unwrap().segment_count(), 65);
    assert_eq!(segments_of(&packet, &udp_gso_header(&packet, 99)).len(), 65);
}

#[test]
fn partial_checksums_complete_to_what_etherparse_computes() {
    let mut tcp = ipv4(9, &[], 6, &tcp_segment(&Tcp::default(), &payload(1001)));
    let mut udp6 = ipv6(&[(0, vec![1, 0, 0, 0])], 17, &udp_datagram(&payload(77)));
    for packet in [&mut tcp, &mut udp6] {
        seed_linux_partial(packet);
        let (at, protocol) = transport_of(packet);
        let offset = if protocol == 6 { 16 } else { 6 };
        complete_partial_checksum(packet, at, offset).unwrap();
        check_packet(packet);
    }
    let before = tcp.clone();
    assert_eq!(
        complete_partial_checksum(&mut tcp, before.len() - 1, 0),
        Err(OffloadError::ChecksumOutsidePacket)
    );
    assert_eq!(
        complete_partial_checksum(&mut tcp, usize::MAX, 2),
        Err(OffloadError::ChecksumOutsidePacket)
    );
    assert_eq!(tcp, before, "a refused completion writes nothing");
}

#[test]
fn fill_checksums_computes_them_from_scratch() {
    let mut tcp6 = ipv6(
        &[(60, vec![1, 2, 0, 0])],
        6,
        &tcp_segment(&Tcp::default(), b"abc"),
    );
    let mut udp4 = ipv4(3, &[1, 1, 1, 0], 17, &udp_datagram(&payload(1500)));
    udp4[10] ^= 0xFF; // a header checksum left undone
    for packet in [&mut tcp6, &mut udp4] {
        let both = Checksums {
            ipv4_header: true,
            transport: true,
        };
        fill_checksums(packet, both).unwrap();
        check_packet(packet);
    }
}

#[test]
fn tcp_segments_follow_lsov2_and_linux() {
    let tcp = Tcp {
        sequence: u32::MAX - 1500, // wraps inside the second segment
        flags: ACK | PSH | FIN | CWR | ECE,
        options: timestamp_option(1, 2),
    };
    let data = payload(1448 * 2 + 100);
    let packet = ipv4(0x7FFE, &[1, 1, 1, 0], 6, &tcp_segment(&tcp, &data));
    let header = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        hdr_len: 24 + 32,
        ..tcp_gso_header(&packet, 1448)
    };
    let segments = segments_of(&packet, &header);
    assert_eq!(segments.len(), 3);
    let mut joined = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let checked = check_packet(segment);
        let tcp_header = checked.tcp.unwrap();
        assert_eq!(checked.header_len, 24 + 32, "options copied unaltered");
        assert_eq!(&segment[20..24], &[1, 1, 1, 0]);
        assert_eq!(&segment[24 + 20..24 + 32], &timestamp_option(1, 2)[..]);
        // LSOv2: IDs stay within 0..=0x7FFF, wrapping from 0x7FFF to 0.
        assert_eq!(checked.ipv4_id, Some([0x7FFE, 0x7FFF, 0][index]));
        assert_eq!(
            tcp_header.sequence_number,
            tcp.sequence.wrapping_add(1448 * index as u32)
        );
        let last = index == 2;
        assert_eq!((tcp_header.fin, tcp_header.psh), (last, last));
        assert_eq!(tcp_header.cwr, index == 0, "CWR on the first only");
        assert!(tcp_header.ece && tcp_header.ack);
        assert!(checked.payload.len() <= 1448);
        joined.extend_from_slice(&checked.payload);
    }
    assert_eq!(joined, data);
}

#[test]
fn ip_ids_above_the_lsov2_range_and_for_udp_wrap_at_0xffff() {
    let tcp = ipv4(0xFFFF, &[], 6, &tcp_segment(&Tcp::default(), &payload(30)));
    let ids: Vec<_> = segments_of(&tcp, &tcp_gso_header(&tcp, 10))
        .iter()
        .map(|segment| check_packet(segment).ipv4_id.unwrap())
        .collect();
    assert_eq!(ids, [0xFFFF, 0, 1]);
    let udp = ipv4(0xFFFE, &[], 17, &udp_datagram(&payload(30)));
    let ids: Vec<_> = segments_of(&udp, &udp_gso_header(&udp, 10))
        .iter()
        .map(|segment| check_packet(segment).ipv4_id.unwrap())
        .collect();
    assert_eq!(ids, [0xFFFE, 0xFFFF, 0], "USO: 0x0000 to 0xFFFF");
}

#[test]
fn udp_datagrams_each_get_their_own_header_and_checksum() {
    let data = payload(1000 * 3 + 1);
    let packet = ipv6(
        &[(0, vec![1, 0]), (60, vec![1, 0])],
        17,
        &udp_datagram(&data),
    );
    let segments = segments_of(&packet, &udp_gso_header(&packet, 1000));
    assert_eq!(segments.len(), 4);
    let mut joined = Vec::new();
    for segment in &segments {
        let checked = check_packet(segment);
        assert_eq!(checked.header_len, 40 + 16 + 8);
        joined.extend_from_slice(&checked.payload);
    }
    assert_eq!(joined, data);
    assert_eq!(check_packet(&segments[3]).payload.len(), 1);
}

#[test]
fn a_super_packet_without_payload_or_within_one_mss_is_one_segment() {
    for len in [0, 1, 1000] {
        let packet = ipv4(5, &[], 6, &tcp_segment(&Tcp::default(), &payload(len)));
        let segments = segments_of(&packet, &tcp_gso_header(&packet, 1000));
        assert_eq!(segments.len(), 1);
        assert_eq!(check_packet(&segments[0]).payload, payload(len));
    }
}

#[test]
fn segments_are_written_only_into_space_that_holds_them_and_only_for_their_packet() {
    let packet = ipv4(5, &[], 6, &tcp_segment(&Tcp::default(), &payload(2500)));
    let gso = validate(&tcp_gso_header(&packet, 1000), &packet)
        .unwrap()
        .gso
        .unwrap();
    let segments = Segments::new(&packet, &gso).unwrap();
    assert_eq!(segments.count(), 3);
    let first = segments.get(0).unwrap();
    assert_eq!(first.size(), 1040);
    assert!(segments.get(3).is_none());
    let mut short = vec![0xEE; 1039];
    assert_eq!(first.write(&mut short), Err(OffloadError::OutputTooSmall));
    assert!(short.iter().all(|&byte| byte == 0xEE), "nothing written");
    let mut long = vec![0xEE; 2000];
    assert_eq!(first.write(&mut long), Ok(1040));
    assert!(long[1040..].iter().all(|&byte| byte == 0xEE));
    assert_eq!(
        Segments::new(&packet[..packet.len() - 1], &gso).unwrap_err(),
        OffloadError::NotThisPacket
    );
    // The sink's own error stops the cutting.
    let mut taken = 0;
    let result = segment(&packet, &gso, |_| {
        taken += 1;
        if taken == 2 {
            Err(OffloadError::OutputTooSmall)
        } else {
            Ok(())
        }
    });
    assert_eq!(result, Err(OffloadError::OutputTooSmall));
    assert_eq!(taken, 2);
}

/// An LSOv2 send as Windows' transport leaves it: Total Length 0, and in the TCP checksum field
/// the pseudo-header's sum without the length.
fn lsov2_send(data: &[u8]) -> Vec<u8> {
    let tcp = Tcp {
        flags: ACK | PSH,
        ..Tcp::default()
    };
    let mut packet = ipv4(0x1234, &[], 6, &tcp_segment(&tcp, data));
    packet[2..4].copy_from_slice(&[0, 0]);
    packet[10..12].copy_from_slice(&[0, 0]);
    let windows_partial = naive_sum(&packet[12..20], 6);
    packet[36..38].copy_from_slice(&windows_partial.to_be_bytes());
    packet
}

#[test]
fn an_lso_send_becomes_a_linux_super_packet_for_a_client_that_asked() {
    let data = payload(1460 * 4);
    let mut packet = lsov2_send(&data);
    let offload = SendOffload::Lso {
        mss: 1460,
        tcp_header_offset: 20,
    };
    let header = header_for_client(&mut packet, offload).unwrap();
    assert_eq!(
        header,
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 40,
            gso_size: 1460,
            csum_start: 20,
            csum_offset: 16,
        }
    );
    assert_eq!(
        usize::from(u16::from_be_bytes([packet[2], packet[3]])),
        packet.len()
    );
    // Completing the partial checksum as NEEDS_CSUM says gives the whole packet's checksum: the
    // field holds Linux's pseudo-header sum, with the length.
    let mut whole = packet.clone();
    complete_partial_checksum(&mut whole, 20, 16).unwrap();
    check_packet(&whole);
    // And a client that cuts it with the same code gets segments that verify.
    let segments = segments_of(&packet, &header);
    assert_eq!(segments.len(), 4);
    let joined: Vec<u8> = segments
        .iter()
        .flat_map(|segment| check_packet(segment).payload)
        .collect();
    assert_eq!(joined, data);
}

#[test]
fn an_lso_send_is_segmented_in_software_for_a_plain_client() {
    let data = payload(1460 * 2 + 7);
    let mut packet = lsov2_send(&data);
    let offload = SendOffload::Lso {
        mss: 1460,
        tcp_header_offset: 20,
    };
    let header = header_for_client(&mut packet, offload).unwrap();
    let checked = validate(&header, &packet).unwrap();
    let segments = finish_in_software(&mut packet, &checked).unwrap().unwrap();
    let mut joined = Vec::new();
    for segment in segments.iter() {
        let mut bytes = vec![0; segment.size()];
        segment.write(&mut bytes).unwrap();
        assert!(bytes.len() <= 1500, "fits the MTU");
        let checked = check_packet(&bytes);
        assert_eq!(checked.tcp.unwrap().psh, segment.is_last());
        joined.extend_from_slice(&checked.payload);
    }
    assert_eq!(joined, data);
}

#[test]
fn a_uso_send_becomes_a_udp_l4_super_packet() {
    let data = payload(1200 * 3);
    let mut packet = ipv6(&[], 17, &udp_datagram(&data));
    packet[44..46].copy_from_slice(&1208u16.to_be_bytes()); // a Length of one datagram
    let header = header_for_client(
        &mut packet,
        SendOffload::Uso {
            mss: 1200,
            udp_header_offset: 40,
        },
    )
    .unwrap();
    assert_eq!(header.gso_type, VIRTIO_NET_HDR_GSO_UDP_L4);
    assert_eq!((header.csum_start, header.csum_offset), (40, 6));
    assert_eq!((header.hdr_len, header.gso_size), (48, 1200));
    let mut whole = packet.clone();
    complete_partial_checksum(&mut whole, 40, 6).unwrap();
    check_packet(&whole);
    assert_eq!(segments_of(&packet, &header).len(), 3);
}

#[test]
fn a_checksum_send_gets_its_ipv4_header_checksum_and_a_partial_transport_one() {
    let mut packet = ipv4(7, &[], 17, &udp_datagram(&payload(99)));
    packet[10..12].copy_from_slice(&[0, 0]);
    let header = header_for_client(
        &mut packet,
        SendOffload::Checksum {
            ipv4_header: true,
            tcp: false,
            udp: true,
        },
    )
    .unwrap();
    assert_eq!(
        header,
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VirtioNetHdr::NONE
        }
    );
    // A plain client gets it completed in software.
    let offload = validate(&header, &packet).unwrap();
    assert!(finish_in_software(&mut packet, &offload).unwrap().is_none());
    check_packet(&packet);

    let mut only_ip = ipv4(7, &[], 6, &tcp_segment(&Tcp::default(), b"z"));
    only_ip[10..12].copy_from_slice(&[0, 0]);
    let ip_only = SendOffload::Checksum {
        ipv4_header: true,
        tcp: false,
        udp: false,
    };
    assert_eq!(
        header_for_client(&mut only_ip, ip_only),
        Ok(VirtioNetHdr::NONE)
    );
    assert_eq!(
        only_ip,
        ipv4(7, &[], 6, &tcp_segment(&Tcp::default(), b"z"))
    );
}

#[test]
fn a_send_request_that_disagrees_with_its_packet_is_refused() {
    let data = payload(3000);
    let lso = |mss, tcp_header_offset| SendOffload::Lso {
        mss,
        tcp_header_offset,
    };
    let cases = [
        (lso(1460, 24), OffloadError::TransportOffsetMismatch),
        (lso(0, 20), OffloadError::ZeroGsoSize),
        (lso(65536, 20), OffloadError::MssTooLarge),
        (
            SendOffload::Uso {
                mss: 1000,
                udp_header_offset: 20,
            },
            OffloadError::WrongTransport(6),
        ),
        (
            SendOffload::Checksum {
                ipv4_header: false,
                tcp: false,
                udp: true,
            },
            OffloadError::WrongTransport(6),
        ),
    ];
    for (offload, error) in cases {
        let mut packet = lsov2_send(&data);
        if let SendOffload::Checksum { .. } = offload {
            // Only LSOv2 leaves the Total Length 0.
            packet = ipv4(1, &[], 6, &tcp_segment(&Tcp::default(), &data));
        }
        assert_eq!(
            header_for_client(&mut packet, offload),
            Err(error),
            "{offload:?}"
        );
    }
    let mut too_long = vec![0x45; 65536];
    assert_eq!(
        header_for_client(&mut too_long, lso(1000, 20)),
        Err(OffloadError::TooLong)
    );
}

#[test]
fn a_coalesced_tcp_packet_goes_up_as_one_rsc_unit_with_its_segment_count() {
    let tcp = Tcp {
        flags: ACK | PSH | ECE,
        options: timestamp_option(5, 6),
        ..Tcp::default()
    };
    let packet = ipv4(1, &[], 6, &tcp_segment(&tcp, &payload(1448 * 5 + 1)));
    let gso = validate(&tcp_gso_header(&packet, 1448), &packet)
        .unwrap()
        .gso
        .unwrap();
    assert_eq!(
        receive_as(&packet, &gso),
        Ok(Receive::Coalesced(RscInfo {
            coalesced_segments: 6,
            duplicate_acks: 0
        }))
    );
    let single = ipv6(&[], 6, &tcp_segment(&tcp, &payload(1448)));
    let gso = validate(&tcp_gso_header(&single, 1448), &single)
        .unwrap()
        .gso
        .unwrap();
    assert_eq!(receive_as(&single, &gso), Ok(Receive::Single));
    assert_eq!(
        receive_as(&single[1..], &gso),
        Err(OffloadError::NotThisPacket)
    );
}

#[test]
fn what_a_nic_could_not_have_coalesced_is_segmented_instead() {
    let data = payload(3000);
    let sack = vec![1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    let cases: [(Vec<u8>, NotCoalescible); 6] = [
        (
            ipv4(1, &[1, 1, 1, 0], 6, &tcp_segment(&Tcp::default(), &data)),
            NotCoalescible::Ipv4Options,
        ),
        (
            ipv6(&[(60, vec![1, 0])], 6, &tcp_segment(&Tcp::default(), &data)),
            NotCoalescible::Ipv6ExtensionHeaders,
        ),
        (
            ipv4(
                1,
                &[],
                6,
                &tcp_segment(
                    &Tcp {
                        flags: ACK | CWR,
                        ..Tcp::default()
                    },
                    &data,
                ),
            ),
            NotCoalescible::TcpFlags(ACK | CWR),
        ),
        (
            ipv4(
                1,
                &[],
                6,
                &tcp_segment(
                    &Tcp {
                        flags: ACK | FIN,
                        ..Tcp::default()
                    },
                    &data,
                ),
            ),
            NotCoalescible::TcpFlags(ACK | FIN),
        ),
        (
            ipv4(
                1,
                &[],
                6,
                &tcp_segment(
                    &Tcp {
                        options: sack,
                        ..Tcp::default()
                    },
                    &data,
                ),
            ),
            NotCoalescible::TcpOptions,
        ),
        (
            ipv4(1, &[], 17, &udp_datagram(&data)),
            NotCoalescible::NotTcp,
        ),
    ];
    for (packet, reason) in cases {
        let header = if reason == NotCoalescible::NotTcp {
            udp_gso_header(&packet, 1000)
        } else {
            tcp_gso_header(&packet, 1000)
        };
        let gso = validate(&header, &packet).unwrap().gso.unwrap();
        assert_eq!(receive_as(&packet, &gso), Ok(Receive::Segmented(reason)));
    }
}
