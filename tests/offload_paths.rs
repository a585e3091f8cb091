//! The data paths with offloads (docs/offloads.md, "The driver"): what a client that takes the
//! per-packet header gets and gives, what the driver does in software for one that does not, and
//! what it tells the stack, on the simulated kernel, whose rules check each NBL the driver
//! completes or indicates against Microsoft's documents.

mod support;

use oxtun_abi::offload::{Checksums, complete_partial_checksum, fill_checksums, parse, validate};
use oxtun_abi::vnet::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6, VIRTIO_NET_HDR_GSO_UDP_L4, VirtioNetHdr,
};
use oxtun_driver::sys::*;
use oxtun_sim::{
    AdapterSetup, Bitness, Fragmentation, Offloads, Process, ReturnMode, SendOffload, SendTiming,
    Token,
};
use support::*;

type ChecksumInfo = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;

// ---- packets ----

/// An IPv4 or IPv6 packet of `transport` (6 or 17) with `payload` bytes of a pattern, its
/// lengths and checksums right; TCP with ACK and PSH.
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
        packet[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        packet[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        packet[..20].copy_from_slice(&[
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, transport, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    }
    let t = ip_len;
    packet[t..t + 2].copy_from_slice(&4000u16.to_be_bytes());
    packet[t + 2..t + 4].copy_from_slice(&5000u16.to_be_bytes());
    if transport == 6 {
        packet[t + 4..t + 8].copy_from_slice(&0x0100_0000u32.to_be_bytes());
        packet[t + 12] = 5 << 4;
        packet[t + 13] = 0x18; // ACK, PSH
        packet[t + 14..t + 16].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        packet[t + 4..t + 6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    for (at, byte) in packet[t + transport_len..].iter_mut().enumerate() {
        *byte = (at * 7 + 3) as u8;
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

/// Whether a packet's checksums (its IPv4 header's and its transport's) are right.
fn checksums_right(packet: &[u8]) -> bool {
    let mut filled = packet.to_vec();
    fill_checksums(
        &mut filled,
        Checksums {
            ipv4_header: true,
            transport: true,
        },
    )
    .is_ok()
        && filled == packet
}

/// The transport's payload of a packet.
fn payload(packet: &[u8]) -> &[u8] {
    let layout = parse(packet).unwrap();
    let transport = layout.transport().unwrap();
    let header = layout.transport_header_len(packet, transport).unwrap();
    &packet[layout.ip_header_len + header..]
}

/// A ring packet: `header`, then `packet`.
fn with_header(header: VirtioNetHdr, packet: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(packet);
    bytes
}

/// A ring packet split into its header and IP packet.
fn split(ring_packet: &[u8]) -> (VirtioNetHdr, Vec<u8>) {
    let (header, packet) = VirtioNetHdr::split(ring_packet).expect("a header");
    (header, packet.to_vec())
}

/// The payloads of ring packets that are each a complete packet after a header asking for
/// nothing, its checksums right, joined.
fn plain_payloads(ring: &[Vec<u8>]) -> Vec<u8> {
    let mut joined = Vec::new();
    for ring_packet in ring {
        let (header, packet) = split(ring_packet);
        assert_eq!(header, VirtioNetHdr::NONE);
        assert!(checksums_right(&packet));
        joined.extend_from_slice(payload(&packet));
    }
    joined
}

/// A TCP packet's checksum field holding only its pseudo-header's sum (with the length), as a
/// NEEDS_CSUM sender leaves it.
fn partial(mut packet: Vec<u8>) -> Vec<u8> {
    let layout = parse(&packet).unwrap();
    let at = layout.ip_header_len + layout.transport().unwrap().checksum_offset();
    let sum = layout.pseudo_header_sum(&packet);
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    packet
}

fn setup_keywords(keywords: &[(&str, &str)]) -> Setup {
    let mut adapter_setup = AdapterSetup::default();
    for (keyword, value) in keywords {
        adapter_setup = adapter_setup.keyword(keyword, *value);
    }
    setup_with(adapter_setup)
}

const EVERY_OFFLOAD: [(&str, &str); 11] = [
    ("*IPChecksumOffloadIPv4", "3"),
    ("*TCPChecksumOffloadIPv4", "3"),
    ("*TCPChecksumOffloadIPv6", "3"),
    ("*UDPChecksumOffloadIPv4", "3"),
    ("*UDPChecksumOffloadIPv6", "3"),
    ("*LsoV2IPv4", "1"),
    ("*LsoV2IPv6", "1"),
    ("*UsoIPv4", "1"),
    ("*UsoIPv6", "1"),
    ("*RscIPv4", "1"),
    ("*RscIPv6", "1"),
];

// ---- what is in force ----

/// "Offloads are advertised to NDIS only while such a client is registered and the INF's
/// standard keywords allow them" (docs/design.md): a plain client brings nothing into force, a
/// client that takes the header what the keywords enable, until it goes.
#[oxtun_sim::test]
fn a_client_that_takes_the_header_puts_what_the_keywords_enable_in_force_while_it_is_registered() {
    let setup = setup_keywords(&[("*LsoV2IPv4", "1"), ("*UsoIPv6", "1"), ("*RscIPv4", "1")]);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, _rings) = register(&setup.adapter, &process);
    assert_eq!(setup.adapter.offloads().current(), Offloads::default());
    handle.close();
    let indications = setup.adapter.offloads().indications;
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let record = setup.adapter.offloads();
    assert_eq!(record.indications, indications + 1);
    let current = record.current();
    // Receive checksums are on by default; the rest as the keywords say.
    assert!(current.rx_v4.ip && current.rx_v4.tcp && current.rx_v4.udp);
    assert!(current.rx_v6.tcp && current.rx_v6.udp);
    assert_eq!(current.tx_v4, oxtun_sim::Checksums::default());
    assert!(current.lso_v4.is_some() && current.lso_v6.is_none());
    assert!(current.uso_v6.is_some() && current.uso_v4.is_none());
    assert!(current.rsc_v4 && !current.rsc_v6);
    handle.close();
    assert!(rings.ended());
    let record = setup.adapter.offloads();
    assert_eq!(record.indications, indications + 2);
    assert_eq!(record.current(), Offloads::default());
    setup.assert_nothing_held();
    setup.finish();
}

/// A filter whose status handler, on the thread that reports, issues an offload OID request of
/// its own before it passes the report on: the driver serves it from within its report (it holds
/// the offloads' lock there, and waiting for it would be waiting for itself), reports its change,
/// and, once its own report returns, reports again what is in force, so the last report the
/// stack sees is the state.
#[oxtun_sim::test]
fn an_offload_oid_from_within_the_drivers_report_is_served_and_the_state_reported_last() {
    let setup = setup_keywords(&[("*LsoV2IPv4", "1"), ("*RscIPv4", "1")]);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let off = offload_parameters(5, |parameters| {
        parameters.LsoV2IPv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED;
    });
    let answer = setup
        .adapter
        .set_within_next_offload_report(OID_TCP_OFFLOAD_PARAMETERS, &off);
    let indications = setup.adapter.offloads().indications;
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let answer = answer
        .lock()
        .unwrap()
        .clone()
        .expect("the request was issued");
    assert_eq!(answer.status, NDIS_STATUS_SUCCESS);
    let record = setup.adapter.offloads();
    // The registration's report, the request's from within it, and the state again after it.
    assert_eq!(record.indications, indications + 3);
    let current = record.current();
    assert!(
        current.lso_v4.is_none(),
        "LSO the request turned off is reported in force"
    );
    assert!(current.rsc_v4);
    handle.close();
    assert!(rings.ended());
    assert_eq!(setup.adapter.offloads().current(), Offloads::default());
    setup.assert_nothing_held();
    setup.finish();
}

// ---- the send path ----

/// Large sends and checksums left undone reach a client that takes the header whole, with the
/// header Linux would write for them (abi's header_for_client); an LSOv2 completion says so
/// (the simulator checks it), and the statistics count the segments the packets make.
#[oxtun_sim::test]
fn offloaded_sends_reach_a_client_that_takes_the_header_whole_with_linuxs_header() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let tcp4 = packet(false, 6, 3000);
    let tcp6 = packet(true, 6, 2500);
    let udp4 = packet(false, 17, 1800);
    let udp6 = packet(true, 17, 100);
    let plain = packet(false, 17, 10);
    let sends = [
        (
            tcp4.clone(),
            SendOffload::Lso {
                mss: 1000,
                tcp_header_offset: 20,
            },
        ),
        (
            tcp6.clone(),
            SendOffload::Lso {
                mss: 1200,
                tcp_header_offset: 40,
            },
        ),
        (
            udp4.clone(),
            SendOffload::Uso {
                mss: 500,
                udp_header_offset: 20,
            },
        ),
        (
            udp6.clone(),
            SendOffload::Checksum {
                ipv4_header: false,
                tcp: false,
                udp: true,
            },
        ),
        (plain.clone(), SendOffload::None),
    ];
    let before = statistics(&setup.adapter);
    let completed = setup.adapter.send_offloaded(
        &sends,
        Fragmentation {
            leading: 3,
            chunk: 700,
        },
        SendTiming::InForce,
        DISPATCH_LEVEL,
    );
    assert!(
        completed
            .iter()
            .all(|completion| completion.unwrap().status == NDIS_STATUS_SUCCESS),
        "{completed:?}"
    );
    let ring = drain(&mut rings.send_reader());
    assert_eq!(ring.len(), 5);
    let expected = [
        (VIRTIO_NET_HDR_GSO_TCPV4, 1000, 40, 20, 16, &tcp4),
        (VIRTIO_NET_HDR_GSO_TCPV6, 1200, 60, 40, 16, &tcp6),
        (VIRTIO_NET_HDR_GSO_UDP_L4, 500, 28, 20, 6, &udp4),
        (0, 0, 0, 40, 6, &udp6),
    ];
    for (ring_packet, (gso_type, gso_size, hdr_len, start, offset, original)) in
        ring.iter().zip(expected)
    {
        let (header, mut sent) = split(ring_packet);
        assert_eq!(
            (
                header.flags,
                header.gso_type,
                header.gso_size,
                header.hdr_len,
                header.csum_start,
                header.csum_offset
            ),
            (
                VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type,
                gso_size,
                hdr_len,
                start,
                offset
            )
        );
        // The packet is Linux's: its lengths real (tcpip left IPv4's Total Length 0), its
        // partial checksum the pseudo-header's with the length; completed, it is the original.
        assert!(validate(&header, &sent).is_ok());
        complete_partial_checksum(&mut sent, start.into(), offset.into()).unwrap();
        if sent[0] >> 4 == 4 {
            fill_checksums(
                &mut sent,
                Checksums {
                    ipv4_header: true,
                    transport: false,
                },
            )
            .unwrap();
        }
        assert_eq!(&sent, original);
    }
    let (header, sent) = split(&ring[4]);
    assert_eq!(header, VirtioNetHdr::NONE);
    assert_eq!(sent, plain);
    // Three TCP segments, two of IPv6, four datagrams, and two packets.
    let after = statistics(&setup.adapter);
    assert_eq!(
        after.ifHCOutUcastPkts - before.ifHCOutUcastPkts,
        3 + 3 + 4 + 2
    );
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// A client without the header never sees more than a packet of its own size or a checksum
/// missing: a large send or a checksum the stack built while one that takes the header was
/// registered (and that arrives after it went) is done in software, straight into the ring.
#[oxtun_sim::test]
fn a_client_without_the_header_gets_large_sends_cut_and_checksums_filled_in_software() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let tcp4 = packet(false, 6, 3000);
    let udp6 = packet(true, 17, 1100);
    let tcp6 = packet(true, 6, 50);
    let sends = [
        (
            tcp4.clone(),
            SendOffload::Lso {
                mss: 1000,
                tcp_header_offset: 20,
            },
        ),
        (
            udp6.clone(),
            SendOffload::Uso {
                mss: 500,
                udp_header_offset: 40,
            },
        ),
        (
            tcp6.clone(),
            SendOffload::Checksum {
                ipv4_header: false,
                tcp: true,
                udp: false,
            },
        ),
    ];
    let completed = setup.adapter.send_offloaded(
        &sends,
        Fragmentation::CONTIGUOUS,
        SendTiming::Late,
        DISPATCH_LEVEL,
    );
    assert!(
        completed
            .iter()
            .all(|completion| completion.unwrap().status == NDIS_STATUS_SUCCESS),
        "{completed:?}"
    );
    let ring = drain(&mut rings.send_reader());
    assert_eq!(ring.len(), 3 + 3 + 1);
    for segment in &ring {
        assert!(checksums_right(segment), "{segment:?}");
        assert!(segment.len() <= 60 + 1000);
    }
    let tcp4_payload: Vec<u8> = ring[..3]
        .iter()
        .flat_map(|segment| payload(segment).to_vec())
        .collect();
    assert_eq!(tcp4_payload, payload(&tcp4));
    // Only the last segment keeps PSH; the sequence numbers advance by the payload.
    assert_eq!(ring[0][33] & 0x08, 0);
    assert_eq!(ring[2][33] & 0x08, 0x08);
    assert_eq!(ring[1][24..28], (0x0100_0000u32 + 1000).to_be_bytes());
    let udp6_payload: Vec<u8> = ring[3..6]
        .iter()
        .flat_map(|segment| payload(segment).to_vec())
        .collect();
    assert_eq!(udp6_payload, payload(&udp6));
    assert_eq!(ring[6], tcp6);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// The send path never reads back the ring slot it fills, which the client may write at any
/// moment: a client scribbling over a packet's payload in its slot while the driver copies it
/// changes those bytes, and never the checksums the driver fills in, which are the stack's
/// packet's. (A driver that summed the packet where it lay in the slot would sum the scribbles.)
/// The client runs on another thread, so on a driver that reads the slot back this fails when
/// the two overlap, which over the rounds they do; on one that does not, it always passes.
#[oxtun_sim::test]
fn a_client_scribbling_on_a_slot_being_filled_changes_no_checksum() {
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
    /// Rounds go on until the client has scribbled this many times over a slot being filled,
    /// within a bound that a loaded machine still meets.
    const SCRIBBLES: u64 = 2000;
    const MAX_ROUNDS: usize = 50_000;
    /// The scribbles: every 16th byte from here on, clear of the headers and checksum fields.
    const FROM: usize = 300;
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let original = packet(false, 17, 40_000);
    let checksum = SendOffload::Checksum {
        ipv4_header: true,
        tcp: false,
        udp: true,
    };
    // Where the packet being sent lies in the ring (0: none), and whether the client is busy.
    let slot = AtomicU64::new(0);
    let (started, stop) = (AtomicBool::new(false), AtomicBool::new(false));
    let scribbled = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut value = 0u8;
            started.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::Relaxed) {
                let mut whole = true;
                for at in (FROM..original.len()).step_by(16) {
                    let base = slot.load(Ordering::SeqCst);
                    if base == 0 {
                        whole = false;
                        break;
                    }
                    // SAFETY (test): a byte of the packet's slot in the send ring, which the
                    // client's process mapped, written as a client writes its ring.
                    unsafe { AtomicU8::from_ptr((base as usize + at) as *mut u8) }
                        .store(value, Ordering::Relaxed);
                }
                if whole {
                    scribbled.fetch_add(1, Ordering::Relaxed);
                }
                value = value.wrapping_add(1);
            }
        });
        /// Stops the client however the rounds end, so that the scope can join it.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        while !started.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        for round in 0..MAX_ROUNDS {
            if scribbled.load(Ordering::Relaxed) >= SCRIBBLES {
                break;
            }
            // The next packet goes at Tail, after its Size.
            let at = rings.send_ring + 12 + u64::from(rings.send_tail()) + 4;
            slot.store(at, Ordering::SeqCst);
            let completed = setup.adapter.send_offloaded(
                &[(original.clone(), checksum)],
                Fragmentation {
                    leading: 0,
                    chunk: 1000,
                },
                SendTiming::Late,
                DISPATCH_LEVEL,
            );
            slot.store(0, Ordering::SeqCst);
            assert_eq!(completed[0].unwrap().status, NDIS_STATUS_SUCCESS);
            let ring = drain(&mut rings.send_reader());
            assert_eq!(ring.len(), 1);
            // The IPv4 header's checksum and UDP's, as the stack's packet has them.
            assert_eq!(
                (&ring[0][10..12], &ring[0][26..28]),
                (&original[10..12], &original[26..28]),
                "round {round}"
            );
        }
    });
    assert!(scribbled.load(Ordering::Relaxed) >= SCRIBBLES);
    handle.close();
    setup.finish();
}

/// "A client ported from Linux may count on" UDP_MAX_SEGMENTS (abi): a USO send of more
/// datagrams reaches a client that takes the header cut in software, each datagram after a
/// header that asks for nothing.
#[oxtun_sim::test]
fn a_udp_send_of_more_datagrams_than_linux_makes_is_cut_for_a_client_that_takes_the_header() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let udp4 = packet(false, 17, 650);
    let completed = setup.adapter.send_offloaded(
        &[(
            udp4.clone(),
            SendOffload::Uso {
                mss: 10,
                udp_header_offset: 20,
            },
        )],
        Fragmentation::CONTIGUOUS,
        SendTiming::InForce,
        PASSIVE_LEVEL,
    );
    assert_eq!(completed[0].unwrap().status, NDIS_STATUS_SUCCESS);
    let ring = drain(&mut rings.send_reader());
    assert_eq!(ring.len(), 65);
    assert_eq!(plain_payloads(&ring), payload(&udp4));
    handle.close();
    setup.finish();
}

/// The MTU NDIS is told (0xFFFF, as Wintun's) lets the stack send a packet that no longer fits a
/// ring packet once the header goes before it: a TCP one reaches a client that takes the header
/// cut in two (TCP may be resegmented anywhere), its payload whole; a UDP one fails alone.
#[oxtun_sim::test]
fn a_packet_too_large_for_the_ring_after_the_header_is_cut_if_tcp_and_fails_otherwise() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let tcp4 = packet(false, 6, 65535 - 40);
    let udp4 = packet(false, 17, 65535 - 28);
    let completed = setup.adapter.send_offloaded(
        &[(tcp4.clone(), SendOffload::None), (udp4, SendOffload::None)],
        Fragmentation::CONTIGUOUS,
        SendTiming::InForce,
        PASSIVE_LEVEL,
    );
    assert_eq!(completed[0].unwrap().status, NDIS_STATUS_SUCCESS);
    assert_ne!(completed[1].unwrap().status, NDIS_STATUS_SUCCESS);
    let ring = drain(&mut rings.send_reader());
    assert_eq!(ring.len(), 2);
    assert!(ring.iter().all(|ring_packet| ring_packet.len() <= 0xFFFF));
    assert_eq!(plain_payloads(&ring), payload(&tcp4));
    handle.close();
    setup.finish();
}

/// A client that takes the header and closes its handle (overlapped) while its registration is
/// being made: the offloads it brought into force go with it, whichever comes first, the close
/// or the registration's publication.
#[oxtun_sim::test]
fn a_header_client_closed_while_it_registers_leaves_nothing_in_force() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    oxtun_sim::process::after_next_handle_reference(process.handle_closer(handle.handle()));
    assert_eq!(
        handle.device_control(
            oxtun_abi::TUN_IOCTL_REGISTER_RINGS_EX,
            &rings.extended_bytes(oxtun_abi::Features::VNET_HDR)
        ),
        STATUS_SUCCESS
    );
    std::mem::forget(handle);
    assert!(rings.ended());
    assert_eq!(setup.adapter.offloads().current(), Offloads::default());
    setup.finish();
}

/// "When a send operation is complete, the miniport driver must set" LsoV2TransmitComplete
/// (offloading-the-segmentation-of-large-tcp-packets), also for a large send the stack built
/// while a client that takes the header was registered and that arrives after it went: it fails
/// with NDIS_STATUS_MEDIA_DISCONNECTED, its completion information written (the simulator
/// checks every LSOv2 completion).
#[oxtun_sim::test]
fn a_large_send_failed_without_a_client_completes_with_its_lso_information() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let tcp4 = packet(false, 6, 3000);
    let completed = setup.adapter.send_offloaded(
        &[(
            tcp4,
            SendOffload::Lso {
                mss: 1000,
                tcp_header_offset: 20,
            },
        )],
        Fragmentation::CONTIGUOUS,
        SendTiming::Late,
        DISPATCH_LEVEL,
    );
    assert_eq!(completed[0].unwrap().status, NDIS_STATUS_MEDIA_DISCONNECTED);
    setup.finish();
}

/// offloading-the-segmentation-of-large-tcp-packets: once OID_TCP_OFFLOAD_PARAMETERS has turned
/// LSO off, "the miniport shall drop all NET_BUFFER_LIST which contain any non-zero LSOv1 or
/// LSOv2 OOB data" (one the stack built before); the NBLs around it go on.
#[oxtun_sim::test]
fn a_large_send_ndis_turned_off_is_dropped_alone() {
    let setup = setup_keywords(&EVERY_OFFLOAD);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let off = offload_parameters(5, |parameters| {
        parameters.LsoV2IPv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED;
    });
    assert_eq!(
        setup.adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &off).status,
        NDIS_STATUS_SUCCESS
    );
    let plain = packet(false, 17, 10);
    let completed = setup.adapter.send_offloaded(
        &[
            (
                packet(false, 6, 3000),
                SendOffload::Lso {
                    mss: 1000,
                    tcp_header_offset: 20,
                },
            ),
            (
                packet(true, 6, 3000),
                SendOffload::Lso {
                    mss: 1000,
                    tcp_header_offset: 40,
                },
            ),
            (plain.clone(), SendOffload::None),
        ],
        Fragmentation::CONTIGUOUS,
        SendTiming::Late,
        DISPATCH_LEVEL,
    );
    let statuses: Vec<NDIS_STATUS> = completed
        .iter()
        .map(|completion| completion.unwrap().status)
        .collect();
    assert_eq!(
        statuses,
        [
            NDIS_STATUS_FAILURE,
            NDIS_STATUS_SUCCESS,
            NDIS_STATUS_SUCCESS
        ]
    );
    // The dropped one wrote nothing; IPv6's LSO is still on.
    let ring = drain(&mut rings.send_reader());
    assert_eq!(ring.len(), 2);
    assert_eq!(split(&ring[0]).0.gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
    assert_eq!(split(&ring[1]).1, plain);
    handle.close();
    setup.finish();
}

// ---- the receive path ----

/// A client's packets of their own size whose checksums it verified (DATA_VALID) go up in place
/// (zero-copy, as plain packets do), their checksums marked valid where receive checksums are in
/// force, as WireGuardNT marks its packets; an IPv4 header's checksum only where the driver
/// checked it. Without a flag, nothing is marked.
#[oxtun_sim::test]
fn verified_packets_go_up_in_place_with_their_checksums_marked_valid() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let verified = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        ..VirtioNetHdr::NONE
    };
    let tcp4 = packet(false, 6, 100);
    let mut bad_ip_checksum = packet(false, 17, 100);
    bad_ip_checksum[10] ^= 0xFF;
    let udp6 = packet(true, 17, 100);
    let plain = packet(false, 6, 10);
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &[
            with_header(verified, &tcp4),
            with_header(verified, &bad_ip_checksum),
            with_header(verified, &udp6),
            with_header(VirtioNetHdr::NONE, &plain),
        ]
    ));
    let received = setup
        .adapter
        .wait_received(4, std::time::Duration::from_secs(20));
    let ring = rings.request.receive.ring
        ..rings.request.receive.ring + u64::from(rings.request.receive.ring_size);
    let got: Vec<(Vec<u8>, usize)> = received
        .iter()
        .map(|packet| {
            assert!(ring.contains(&(packet.address as u64)), "in place");
            (packet.data.clone(), packet.offloads.checksum)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                tcp4,
                ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED
            ),
            (bad_ip_checksum, ChecksumInfo::RX_UDP_CHECKSUM_SUCCEEDED),
            (udp6, ChecksumInfo::RX_UDP_CHECKSUM_SUCCEEDED),
            (plain, 0),
        ]
    );
    wait_released(&rings);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// What a header asks that the stack does not take is done on a copy of the packet: a partial
/// checksum completed. A packet the driver completes on a copy gives its ring space back only
/// when the stack returns the copy's NBLs, as a packet indicated in place does: while the stack
/// holds them, Head stays, so what the stack holds stays bounded by the ring whatever the client
/// writes.
#[oxtun_sim::test]
fn a_copied_packet_holds_its_ring_space_until_the_stack_returns_it() {
    let setup = setup();
    setup.adapter.set_return_mode(ReturnMode::Hold);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let needs_checksum = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 40,
        csum_offset: 16,
        ..VirtioNetHdr::NONE
    };
    let packets: Vec<Vec<u8>> = (0..4)
        .map(|_| with_header(needs_checksum, &partial(packet(true, 6, 300))))
        .collect();
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &packets
    ));
    assert_eq!(
        setup
            .adapter
            .wait_received(4, std::time::Duration::from_secs(20))
            .len(),
        4
    );
    let start = rings.receive_head();
    assert_ne!(start, rings.receive_tail(), "Head moved past held copies");
    setup.adapter.return_held(|_| {}, 4);
    wait_released(&rings);
    handle.close();
    setup.finish();
}

/// A super-packet cut into segments while RSC is not in force (the default) goes up as NBLs
/// of the segments' own headers and their payload in place in the ring: its ring space comes
/// back only with the last of them, in whatever order the stack returns them.
#[oxtun_sim::test]
fn segments_of_a_super_packet_hold_its_ring_space_until_the_last_returns() {
    let setup = setup();
    setup.adapter.set_return_mode(ReturnMode::Hold);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let super_packet = packet(false, 6, 4000);
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1448,
        csum_start: 20,
        csum_offset: 16,
    };
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &[with_header(gso, &partial(super_packet.clone()))]
    ));
    let segments = setup
        .adapter
        .wait_received(3, std::time::Duration::from_secs(20));
    assert_eq!(segments.len(), 3);
    for segment in &segments {
        assert!(checksums_right(&segment.data));
    }
    let start = rings.receive_head();
    assert_ne!(start, rings.receive_tail(), "Head moved past held segments");
    // The first and the last back: the middle one still holds the packet.
    setup.adapter.return_held(
        |held| {
            held.remove(1);
        },
        1,
    );
    assert_eq!(
        rings.receive_head(),
        start,
        "Head moved before every segment was back"
    );
    setup.adapter.return_held(|_| {}, 1);
    wait_released(&rings);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// The receive thread holds the ring's spin lock only to take each packet and its ticket: every
/// packet, in place, copied, coalesced or cut, is described (its MDL built) with no spin lock held,
/// so returns on other processors, which take that lock, never spin while the thread reads,
/// checks, sums or cuts a packet.
#[oxtun_sim::test]
fn packets_are_read_and_described_outside_the_rings_lock() {
    let setup = setup_keywords(&[("*RscIPv4", "1")]);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    oxtun_sim::mm::mdl::most_spin_locks_held_building_partial_mdls();
    let needs_checksum = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VirtioNetHdr::NONE
    };
    let gso = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1000,
        ..needs_checksum
    };
    let mut with_cwr = packet(false, 6, 2000);
    with_cwr[33] |= 0x80;
    let ecn = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        ..gso
    };
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &[
            with_header(VirtioNetHdr::NONE, &packet(false, 6, 100)),
            with_header(needs_checksum, &partial(packet(false, 6, 100))),
            with_header(gso, &partial(packet(false, 6, 3000))),
            with_header(ecn, &partial(with_cwr)),
        ]
    ));
    let received = setup
        .adapter
        .wait_received(5, std::time::Duration::from_secs(20));
    assert_eq!(received.len(), 5);
    assert_eq!(
        oxtun_sim::mm::mdl::most_spin_locks_held_building_partial_mdls(),
        0,
        "a packet described while a spin lock was held"
    );
    wait_released(&rings);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn partial_checksums_are_completed_and_super_packets_cut_without_rsc() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let tcp6 = packet(true, 6, 300);
    let needs_checksum = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        csum_start: 40,
        csum_offset: 16,
        ..VirtioNetHdr::NONE
    };
    let super_packet = packet(false, 6, 4000);
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1448,
        csum_start: 20,
        csum_offset: 16,
    };
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &[
            with_header(needs_checksum, &partial(tcp6.clone())),
            with_header(gso, &partial(super_packet.clone())),
        ]
    ));
    let received = setup
        .adapter
        .wait_received(4, std::time::Duration::from_secs(20));
    assert_eq!(received[0].data, tcp6);
    assert_eq!(
        received[0].offloads.checksum,
        ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED
    );
    let segments = &received[1..];
    assert_eq!(segments.len(), 3);
    let mut cut = Vec::new();
    for segment in segments {
        assert!(checksums_right(&segment.data));
        assert!(segment.data.len() <= 40 + 1448);
        assert_eq!(segment.offloads.coalesced_segments(), 0);
        assert_eq!(
            segment.offloads.checksum,
            ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED
        );
        cut.extend_from_slice(payload(&segment.data));
    }
    assert_eq!(cut, payload(&super_packet));
    wait_released(&rings);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// With RSC in force, a TCP super-packet a NIC could have coalesced goes up whole as one
/// coalesced unit (NDIS_RSC_NBL_INFO: its segments), its headers the driver's copy and its payload
/// in place: the TCP checksum left as the client wrote it and flagged TcpChecksumValueInvalid,
/// the IPv4 header's recomputed (indicating-coalesced-segments). One a NIC could not have made
/// (here, with CWR: GSO_ECN) is cut into segments all the same.
#[oxtun_sim::test]
fn with_rsc_in_force_a_coalescible_super_packet_goes_up_as_one_unit() {
    let setup = setup_keywords(&[("*RscIPv4", "1"), ("*RscIPv6", "1")]);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let tcp6 = packet(true, 6, 5000);
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
        hdr_len: 60,
        gso_size: 1000,
        csum_start: 40,
        csum_offset: 16,
    };
    let tcp4 = partial(packet(false, 6, 3000));
    let mut tcp4_unsummed = tcp4.clone();
    tcp4_unsummed[10..12].fill(0);
    let gso4 = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        csum_start: 20,
        hdr_len: 40,
        ..gso
    };
    let mut with_cwr = packet(false, 6, 2000);
    with_cwr[33] |= 0x80;
    let ecn = VirtioNetHdr {
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN,
        ..gso4
    };
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &[
            with_header(gso, &partial(tcp6.clone())),
            with_header(gso4, &tcp4_unsummed),
            with_header(ecn, &partial(with_cwr.clone())),
        ]
    ));
    let received = setup
        .adapter
        .wait_received(4, std::time::Duration::from_secs(20));
    assert_eq!(received[0].data, partial(tcp6));
    assert_eq!(received[0].offloads.coalesced_segments(), 5);
    assert_eq!(
        received[0].offloads.checksum,
        ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_TCP_CHECKSUM_VALUE_INVALID
    );
    assert_eq!(received[1].data, tcp4);
    assert_eq!(received[1].offloads.coalesced_segments(), 3);
    assert_eq!(
        received[1].offloads.checksum,
        ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED
            | ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED
            | ChecksumInfo::RX_TCP_CHECKSUM_VALUE_INVALID
    );
    assert_eq!(received.len(), 4);
    assert!(
        received[2..]
            .iter()
            .all(|segment| segment.offloads.rsc == 0 && checksums_right(&segment.data))
    );
    wait_released(&rings);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// Every header field is client input: a header that does not describe its packet, or asks
/// more than the driver serves, makes the packet an error (counted in the statistics, ifInErrors),
/// never indicated, and never read or written outside the packet; the packets around it go up.
#[oxtun_sim::test]
fn lying_headers_are_counted_and_their_packets_never_go_up() {
    let setup = setup_keywords(&[("*RscIPv4", "1")]);
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let tcp4 = packet(false, 6, 3000);
    let tcp6 = packet(true, 6, 3000);
    let udp4 = packet(false, 17, 3000);
    let mut syn = tcp4.clone();
    syn[33] |= 0x02;
    let mut short_length = tcp4.clone();
    short_length[2..4].copy_from_slice(&1000u16.to_be_bytes());
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1000,
        csum_start: 20,
        csum_offset: 16,
    };
    let lies = [
        // Shorter than a header.
        vec![0u8; 5],
        // Flags Linux does not define, or both checksum flags.
        with_header(
            VirtioNetHdr {
                flags: 4,
                ..VirtioNetHdr::NONE
            },
            &tcp4,
        ),
        with_header(
            VirtioNetHdr {
                flags: 3,
                ..VirtioNetHdr::NONE
            },
            &tcp4,
        ),
        // A checksum past the packet's end.
        with_header(
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: 3030,
                csum_offset: 16,
                ..VirtioNetHdr::NONE
            },
            &tcp4,
        ),
        // TCPV4 on an IPv6 packet; gso_size 0; hdr_len past the packet; an unknown gso_type.
        with_header(gso, &tcp6),
        with_header(VirtioNetHdr { gso_size: 0, ..gso }, &tcp4),
        with_header(
            VirtioNetHdr {
                hdr_len: 9000,
                ..gso
            },
            &tcp4,
        ),
        with_header(VirtioNetHdr { gso_type: 9, ..gso }, &tcp4),
        // A UDP super-packet with ECN; one without NEEDS_CSUM; TCP with SYN; an IP length
        // that is not the packet's.
        with_header(
            VirtioNetHdr {
                gso_type: VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_ECN,
                hdr_len: 28,
                csum_offset: 6,
                ..gso
            },
            &udp4,
        ),
        with_header(
            VirtioNetHdr {
                flags: 0,
                gso_type: VIRTIO_NET_HDR_GSO_UDP_L4,
                hdr_len: 28,
                csum_offset: 6,
                ..gso
            },
            &udp4,
        ),
        with_header(gso, &syn),
        with_header(gso, &short_length),
        // More segments than the driver takes in one super-packet (an MSS of 1 byte), whole
        // (RSC is in force) or cut.
        with_header(VirtioNetHdr { gso_size: 1, ..gso }, &tcp4),
        // A packet of its own size that is not IP.
        with_header(VirtioNetHdr::NONE, &[0x10; 40]),
        // A partial checksum whose field is the IP version (the fuzzer's find): completed, the
        // packet is no longer IPv6.
        with_header(
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                ..VirtioNetHdr::NONE
            },
            &tcp6,
        ),
    ];
    let mut completed = tcp6.clone();
    complete_partial_checksum(&mut completed, 0, 0).unwrap();
    assert_ne!(
        completed[0] >> 4,
        6,
        "the last lie makes the packet other than IPv6"
    );
    let good = packet(false, 17, 20);
    let before = statistics(&setup.adapter);
    for lie in &lies {
        assert!(client_write(
            &mut rings.receive_writer(),
            &rings.receive_event,
            &[lie.clone(), with_header(VirtioNetHdr::NONE, &good)]
        ));
    }
    let received = setup
        .adapter
        .wait_received(lies.len(), std::time::Duration::from_secs(20));
    assert_eq!(received.len(), lies.len());
    assert!(received.iter().all(|packet| packet.data == good));
    wait_released(&rings);
    let after = statistics(&setup.adapter);
    assert_eq!(after.ifInErrors - before.ifInErrors, lies.len() as u64);
    handle.close();
    setup.assert_nothing_held();
    setup.finish();
}

/// The stack turns a receive checksum off while a client that takes the header sends verified
/// packets: from the report on, none is marked with it (the simulator checks every indication
/// against the configuration in force).
#[oxtun_sim::test]
fn a_receive_checksum_the_stack_turns_off_is_no_longer_marked() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_with_headers(&setup.adapter, &process);
    let verified = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        ..VirtioNetHdr::NONE
    };
    let tcp4 = packet(false, 6, 100);
    let send = || {
        assert!(client_write(
            &mut rings.receive_writer(),
            &rings.receive_event,
            &[with_header(verified, &tcp4)]
        ));
        setup
            .adapter
            .wait_received(1, std::time::Duration::from_secs(20))[0]
            .offloads
            .checksum
    };
    assert_eq!(
        send(),
        ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED
    );
    let off = offload_parameters(5, |parameters| {
        parameters.TCPIPv4Checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED;
    });
    assert_eq!(
        setup.adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &off).status,
        NDIS_STATUS_SUCCESS
    );
    assert_eq!(send(), ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED);
    wait_released(&rings);
    handle.close();
    setup.finish();
}
