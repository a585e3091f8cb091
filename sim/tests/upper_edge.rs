//! The emulator's upper edge (`sim/src/upper_edge.rs`): what Linux may hand over for each offload
//! state, what becomes of each header Linux writes, and the header each indication goes up with.

use oxtun_abi::offload::{Checksums, OffloadError, fill_checksums};
use oxtun_abi::vnet::{
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4, VirtioNetHdr,
};
use oxtun_driver::sys::*;
use oxtun_sim::upper_edge::{
    FromLinux, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, from_linux, gather,
    gso_max_size, to_linux, tun_offload_flags,
};
use oxtun_sim::{OffloadRecord, ReceivedOffloads, SendOffload};

const MAX_OFFLOAD_SIZE: u32 = 65_397;

#[derive(Clone, Copy, Default)]
struct InForce {
    tx_checksums: bool,
    lso_v4: bool,
    lso_v6: bool,
    uso: bool,
    activated: bool,
}

/// NDIS's record of an adapter whose current configuration has what `in_force` says, activated
/// by the protocol (OID_OFFLOAD_ENCAPSULATION) if it says so.
fn record(in_force: InForce) -> OffloadRecord {
    let mut current = NDIS_OFFLOAD::default();
    current.Header.Revision = NDIS_OFFLOAD_REVISION_6;
    if in_force.tx_checksums {
        let fields = NDIS_OFFLOAD_SUPPORTED << NDIS_CHECKSUM_OFFLOAD_PATH::TCP_SHIFT
            | NDIS_OFFLOAD_SUPPORTED << NDIS_CHECKSUM_OFFLOAD_PATH::UDP_SHIFT;
        for path in [
            &mut current.Checksum.IPv4Transmit,
            &mut current.Checksum.IPv6Transmit,
        ] {
            path.Encapsulation = NDIS_ENCAPSULATION_IEEE_802_3;
            path.Fields = fields;
        }
    }
    let (max, min) = (MAX_OFFLOAD_SIZE, 2);
    if in_force.lso_v4 {
        let version = &mut current.LsoV2.IPv4;
        version.Encapsulation = NDIS_ENCAPSULATION_IEEE_802_3;
        (version.MaxOffLoadSize, version.MinSegmentCount) = (max, min);
    }
    if in_force.lso_v6 {
        let version = &mut current.LsoV2.IPv6;
        version.Encapsulation = NDIS_ENCAPSULATION_IEEE_802_3;
        (version.MaxOffLoadSize, version.MinSegmentCount) = (max, min);
    }
    if in_force.uso {
        let uso = &mut current.UdpSegmentation;
        uso.IPv4.Encapsulation = NDIS_ENCAPSULATION_IEEE_802_3;
        (uso.IPv4.MaxOffLoadSize, uso.IPv4.MinSegmentCount) = (60_000, min);
        uso.IPv6.Encapsulation = NDIS_ENCAPSULATION_IEEE_802_3;
        (uso.IPv6.MaxOffLoadSize, uso.IPv6.MinSegmentCount) = (60_000, min);
    }
    let mut encapsulation = NDIS_OFFLOAD_ENCAPSULATION::default();
    if in_force.activated {
        encapsulation.IPv4.Enabled = NDIS_OFFLOAD_SET_ON;
        encapsulation.IPv6.Enabled = NDIS_OFFLOAD_SET_ON;
    }
    OffloadRecord {
        current,
        encapsulation: Some(encapsulation),
        ..OffloadRecord::default()
    }
}

const EVERYTHING: InForce = InForce {
    tx_checksums: true,
    lso_v4: true,
    lso_v6: true,
    uso: true,
    activated: true,
};

/// A TCP (6) or UDP (17) packet with `payload` bytes, its lengths and checksums right.
fn packet(ipv6: bool, transport: u8, payload: usize) -> Vec<u8> {
    let ip_len = if ipv6 { 40 } else { 20 };
    let transport_len = if transport == 6 { 20 } else { 8 };
    let len = ip_len + transport_len + payload;
    let mut packet = vec![0u8; len];
    if ipv6 {
        packet[0] = 0x60;
        packet[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        packet[6] = transport;
        packet[7] = 64;
        packet[23] = 1;
        packet[39] = 2;
    } else {
        packet[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, transport, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
    let t = ip_len;
    packet[t..t + 4].copy_from_slice(&[0x0f, 0xa0, 0x13, 0x88]);
    if transport == 6 {
        packet[t + 12] = 5 << 4;
        packet[t + 13] = 0x10; // ACK
    } else {
        packet[t + 4..t + 6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    fill_checksums(
        &mut packet,
        Checksums {
            ipv4_header: true,
            transport: true,
        },
    )
    .unwrap();
    packet
}

fn gso(gso_type: u8, packet: &[u8], mss: u16) -> VirtioNetHdr {
    let ip_len = if packet[0] >> 4 == 6 { 40 } else { 20 };
    let udp = gso_type == VIRTIO_NET_HDR_GSO_UDP_L4;
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        hdr_len: ip_len + if udp { 8 } else { 20 },
        gso_size: mss,
        csum_start: ip_len,
        csum_offset: if udp { 6 } else { 16 },
    }
}

#[test]
fn linux_may_leave_what_is_in_force_and_activated() {
    assert_eq!(
        tun_offload_flags(&record(EVERYTHING)),
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6
    );
    assert_eq!(tun_offload_flags(&record(InForce::default())), 0);
    // Not activated by the protocol: nothing, whatever is in force.
    let inactive = InForce {
        activated: false,
        ..EVERYTHING
    };
    assert_eq!(tun_offload_flags(&record(inactive)), 0);
    // LSO without checksum offload still needs Linux's TUN_F_CSUM; IPv4 only.
    let lso_v4 = InForce {
        lso_v4: true,
        activated: true,
        ..InForce::default()
    };
    assert_eq!(tun_offload_flags(&record(lso_v4)), TUN_F_CSUM | TUN_F_TSO4);
    let checksums = InForce {
        tx_checksums: true,
        activated: true,
        ..InForce::default()
    };
    assert_eq!(tun_offload_flags(&record(checksums)), TUN_F_CSUM);
    assert_eq!(gso_max_size(&record(EVERYTHING)), Some(60_000));
    assert_eq!(gso_max_size(&record(lso_v4)), Some(MAX_OFFLOAD_SIZE));
    assert_eq!(gso_max_size(&record(checksums)), None);
}

#[test]
fn super_packets_become_large_sends_where_in_force_and_are_finished_otherwise() {
    let everything = record(EVERYTHING);
    let tcp4 = packet(false, 6, 4000);
    let tcp6 = packet(true, 6, 4000);
    let udp4 = packet(false, 17, 3000);
    assert_eq!(
        from_linux(
            &everything,
            &gso(VIRTIO_NET_HDR_GSO_TCPV4, &tcp4, 1448),
            &tcp4
        ),
        FromLinux::Send(SendOffload::Lso {
            mss: 1448,
            tcp_header_offset: 20
        })
    );
    assert_eq!(
        from_linux(
            &everything,
            &gso(VIRTIO_NET_HDR_GSO_TCPV6, &tcp6, 1428),
            &tcp6
        ),
        FromLinux::Send(SendOffload::Lso {
            mss: 1428,
            tcp_header_offset: 40
        })
    );
    assert_eq!(
        from_linux(
            &everything,
            &gso(VIRTIO_NET_HDR_GSO_UDP_L4, &udp4, 1000),
            &udp4
        ),
        FromLinux::Send(SendOffload::Uso {
            mss: 1000,
            udp_header_offset: 20
        })
    );
    // LSO for IPv4 only: an IPv6 super-packet is finished by the emulator.
    let lso_v4 = record(InForce {
        lso_v4: true,
        activated: true,
        ..InForce::default()
    });
    assert!(matches!(
        from_linux(&lso_v4, &gso(VIRTIO_NET_HDR_GSO_TCPV6, &tcp6, 1428), &tcp6),
        FromLinux::Finish(offload) if offload.gso.is_some()
    ));
    // CWR (GSO_ECN), which LSOv2 does not describe, is finished too.
    let mut cwr = tcp4.clone();
    cwr[33] |= 0x80;
    let ecn = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        ..gso(VIRTIO_NET_HDR_GSO_TCPV4, &cwr, 1448)
    };
    assert!(matches!(
        from_linux(&everything, &ecn, &cwr),
        FromLinux::Finish(_)
    ));
    // A super-packet of one segment is under MinSegmentCount: finished.
    let small = packet(false, 6, 1000);
    assert!(matches!(
        from_linux(
            &everything,
            &gso(VIRTIO_NET_HDR_GSO_TCPV4, &small, 1448),
            &small
        ),
        FromLinux::Finish(_)
    ));
}

#[test]
fn partial_checksums_become_checksum_offloads_where_in_force() {
    let tcp = packet(true, 6, 100);
    let udp = packet(false, 17, 100);
    let partial = |packet: &[u8], offset| VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: if packet[0] >> 4 == 6 { 40 } else { 20 },
        csum_offset: offset,
        ..VirtioNetHdr::NONE
    };
    let everything = record(EVERYTHING);
    assert_eq!(
        from_linux(&everything, &partial(&tcp, 16), &tcp),
        FromLinux::Send(SendOffload::Checksum {
            ipv4_header: false,
            tcp: true,
            udp: false
        })
    );
    assert_eq!(
        from_linux(&everything, &partial(&udp, 6), &udp),
        FromLinux::Send(SendOffload::Checksum {
            ipv4_header: false,
            tcp: false,
            udp: true
        })
    );
    let nothing = record(InForce {
        activated: true,
        ..InForce::default()
    });
    assert!(matches!(
        from_linux(&nothing, &partial(&tcp, 16), &tcp),
        FromLinux::Finish(_)
    ));
    // A complete packet is sent as it is, offloads or not.
    assert_eq!(
        from_linux(&nothing, &VirtioNetHdr::NONE, &tcp),
        FromLinux::Send(SendOffload::None)
    );
    // A header that does not describe its packet is refused.
    assert!(matches!(
        from_linux(&everything, &gso(VIRTIO_NET_HDR_GSO_TCPV6, &udp, 100), &udp),
        FromLinux::Refused(_)
    ));
    assert_eq!(
        from_linux(&everything, &partial(&udp, 200), &udp),
        FromLinux::Refused(OffloadError::ChecksumOutsidePacket)
    );
}

#[test]
fn verified_packets_go_up_with_a_partial_checksum_and_coalesced_units_as_super_packets() {
    type ChecksumInfo = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let tcp_valid =
        ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED;
    let unit = |segments: usize| ReceivedOffloads {
        checksum: tcp_valid,
        rsc: segments,
        timestamp_delta: 0,
    };
    // 4000 bytes of payload in three segments: gso_size 1334; the checksum field the
    // pseudo-header's sum with the TCP length, as Linux's partial checksums hold.
    let tcp4 = packet(false, 6, 4000);
    let pseudo = oxtun_abi::offload::parse(&tcp4)
        .unwrap()
        .pseudo_header_sum(&tcp4);
    // From its headers alone (the first 40 bytes) and its length.
    let up = to_linux(&tcp4[..40], tcp4.len(), &unit(3));
    assert_eq!(
        up.header,
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
            hdr_len: 40,
            gso_size: 1334,
            csum_start: 20,
            csum_offset: 16,
        }
    );
    assert_eq!(up.checksum_field, Some((36, pseudo.to_be_bytes())));
    // Completing that partial checksum gives the packet's own: nothing else changed.
    let mut partial = tcp4.clone();
    partial[36..38].copy_from_slice(&pseudo.to_be_bytes());
    oxtun_abi::offload::complete_partial_checksum(&mut partial, 20, 16).unwrap();
    assert_eq!(partial, tcp4);
    let tcp6 = packet(true, 6, 4000);
    assert_eq!(
        to_linux(&tcp6, tcp6.len(), &unit(4)).header.gso_type,
        VIRTIO_NET_HDR_GSO_TCPV6
    );
    // A verified UDP packet: partial, no super-packet (RSC is TCP's).
    let udp = packet(false, 17, 4000);
    let udp_valid = ReceivedOffloads {
        checksum: ChecksumInfo::RX_UDP_CHECKSUM_SUCCEEDED,
        rsc: 3,
        timestamp_delta: 0,
    };
    let up = to_linux(&udp, udp.len(), &udp_valid);
    assert_eq!(
        (up.header.flags, up.header.gso_type, up.header.csum_offset),
        (VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 6)
    );
    // Unverified, or verified for the other transport: as it is.
    for offloads in [ReceivedOffloads::default(), unit(1)] {
        let up = to_linux(&udp, udp.len(), &offloads);
        assert_eq!((up.header, up.checksum_field), (VirtioNetHdr::NONE, None));
    }
}

/// What goes to Linux is the packet as indicated, in however many pieces (its NET_BUFFER's MDLs),
/// with only the checksum field replaced, wherever the pieces split it.
#[test]
fn gathered_pieces_write_the_packet_with_its_checksum_field_replaced() {
    let packet: Vec<u8> = (0..60u8).collect();
    let field = [0xAA, 0xBB];
    let mut expected = packet.clone();
    expected[36..38].copy_from_slice(&field);
    for first_cut in 0..=packet.len() {
        for second_cut in first_cut..=packet.len() {
            let pieces = [
                &packet[..first_cut],
                &packet[first_cut..second_cut],
                &packet[second_cut..],
            ];
            assert_eq!(gather(&pieces, Some((36, &field))).concat(), expected);
            assert_eq!(gather(&pieces, None).concat(), packet);
        }
    }
}
