//! Property tests of the offloads: any super-packet, as a Linux client writes it or as Windows
//! sends it, cuts into segments that fit the MTU, verify (by etherparse, not our code) and
//! concatenate to the original payload; any partial checksum completes to the right one; and any
//! header with any bytes, however hostile, never panics or makes anything leave its slice, and is
//! judged the same from the packet's headers alone as from the whole packet.

mod packets;

use oxtun_abi::offload::*;
use oxtun_abi::vnet::*;
use oxtun_abi::{CallerWidth, ExtendedRegistration};
use packets::*;
use proptest::prelude::*;

/// Cases, and the largest payload; fewer and smaller under Miri, which interprets every step.
const CASES: u32 = if cfg!(miri) { 6 } else { 256 };
const MAX_PAYLOAD: usize = if cfg!(miri) { 3000 } else { 24_000 };

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Miri's isolation has no file system for the regression file.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Debug)]
struct Shape {
    ipv6: bool,
    /// IPv4: words of NOP options; IPv6: Hop-by-Hop and Destination Options headers.
    ip_options: usize,
    udp: bool,
    tcp: Tcp,
    ip_id: u16,
    mtu: usize,
    payload_len: usize,
    seed: u64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        0usize..3,
        any::<bool>(),
        (any::<u32>(), any::<u8>(), any::<bool>()),
        any::<u16>(),
        prop_oneof![Just(1280usize), Just(1500), 576usize..9001],
        0..=MAX_PAYLOAD,
        any::<u64>(),
    )
        .prop_map(
            |(
                ipv6,
                ip_options,
                udp,
                (sequence, flags, timestamp),
                ip_id,
                mtu,
                payload_len,
                seed,
            )| {
                let flags = ACK | flags & (FIN | PSH | ECE | CWR);
                let options = if timestamp {
                    timestamp_option(seed as u32, 7)
                } else {
                    Vec::new()
                };
                Shape {
                    ipv6,
                    ip_options,
                    udp,
                    tcp: Tcp {
                        sequence,
                        flags,
                        options,
                    },
                    ip_id,
                    mtu,
                    payload_len,
                    seed,
                }
            },
        )
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

impl Shape {
    fn payload(&self) -> Vec<u8> {
        pattern(self.seed, self.payload_len)
    }

    fn packet(&self) -> Vec<u8> {
        let payload = self.payload();
        let (protocol, transport) = if self.udp {
            (17, udp_datagram(&payload))
        } else {
            (6, tcp_segment(&self.tcp, &payload))
        };
        if self.ipv6 {
            let extensions = [(0, vec![1, 0]), (60, vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 0])];
            ipv6(&extensions[..self.ip_options.min(2)], protocol, &transport)
        } else {
            ipv4(
                self.ip_id,
                &vec![1; 4 * self.ip_options],
                protocol,
                &transport,
            )
        }
    }

    fn mss(&self, packet: &[u8]) -> usize {
        let (at, _) = transport_of(packet);
        let header_len = at
            + if self.udp {
                8
            } else {
                20 + self.tcp.options.len()
            };
        let mss = self.mtu - header_len;
        if self.udp {
            // At most 64 datagrams, as Linux allows.
            mss.max(self.payload_len.div_ceil(MAX_UDP_SEGMENTS))
        } else {
            mss
        }
    }
}

/// Cuts `packet` by `offload` and checks every segment with etherparse; returns the payloads
/// joined.
fn cut_and_check(shape: &Shape, packet: &mut [u8], offload: &Offload, mss: usize) -> Vec<u8> {
    let gso = offload.gso.expect("a super-packet");
    let segments = finish_in_software(packet, offload).unwrap().unwrap();
    let count = segments.count();
    assert_eq!(count, shape.payload_len.div_ceil(mss).max(1));
    let mut joined = Vec::new();
    for segment in segments.iter() {
        let mut bytes = vec![0; segment.size()];
        assert_eq!(segment.write(&mut bytes), Ok(bytes.len()));
        assert!(bytes.len() <= gso.largest_segment());
        assert!(bytes.len() <= shape.mtu || shape.udp, "fits the MTU");
        let checked = check_packet(&bytes);
        let index = segment.index();
        if !segment.is_last() {
            assert_eq!(checked.payload.len(), mss, "only the last is short");
        }
        if let Some(tcp) = checked.tcp {
            let last = segment.is_last();
            assert_eq!(
                tcp.sequence_number,
                shape.tcp.sequence.wrapping_add((index * mss) as u32)
            );
            assert_eq!(tcp.fin, last && shape.tcp.flags & FIN != 0);
            assert_eq!(tcp.psh, last && shape.tcp.flags & PSH != 0);
            assert_eq!(tcp.cwr, index == 0 && shape.tcp.flags & CWR != 0);
            assert_eq!(tcp.ece, shape.tcp.flags & ECE != 0);
        }
        if let Some(id) = checked.ipv4_id {
            let next = u32::from(shape.ip_id) + index as u32;
            let expected = if !shape.udp && shape.ip_id <= 0x7FFF {
                next & 0x7FFF
            } else {
                next & 0xFFFF
            };
            assert_eq!(u32::from(id), expected);
        }
        joined.extend_from_slice(&checked.payload);
    }
    joined
}

proptest! {
    #![proptest_config(config())]

    /// A super-packet as a Linux client writes it (NEEDS_CSUM, Linux's partial checksum) cuts
    /// into segments that fit the MTU, verify, and join to the original payload.
    #[test]
    fn a_clients_super_packet_cuts_into_segments_that_verify_and_join(shape in shape()) {
        let mut packet = shape.packet();
        seed_linux_partial(&mut packet);
        let mss = shape.mss(&packet);
        let header = client_header(&shape, &packet);
        let offload = validate(&header, &packet).unwrap();
        let joined = cut_and_check(&shape, &mut packet, &offload, mss);
        prop_assert_eq!(joined, shape.payload());
    }

    /// A large send as Windows hands it to the miniport (LSOv2: Total Length 0 and a checksum
    /// field the miniport must redo) becomes a header a client validates, and the same packet
    /// cut for a plain client verifies and joins to the original payload.
    #[test]
    fn a_windows_large_send_becomes_a_valid_header_and_segments(shape in shape()) {
        let mut packet = shape.packet();
        let (at, _) = transport_of(&packet);
        if !shape.ipv6 {
            packet[2..4].copy_from_slice(&[0, 0]);
        }
        let field = at + if shape.udp { 6 } else { 16 };
        packet[field..field + 2].copy_from_slice(&(shape.seed as u16).to_be_bytes());
        let mss = shape.mss(&packet);
        let offload = if shape.udp {
            SendOffload::Uso { mss: mss as u32, udp_header_offset: at as u32 }
        } else {
            SendOffload::Lso { mss: mss as u32, tcp_header_offset: at as u32 }
        };
        let header = header_for_client(&mut packet, offload).unwrap();
        prop_assert_eq!(header.gso_size as usize, mss);
        prop_assert_eq!(header.csum_start as usize, at);
        prop_assert_eq!(
            header.gso_type & VIRTIO_NET_HDR_GSO_ECN != 0,
            !shape.udp && shape.tcp.flags & CWR != 0
        );
        // The partial checksum it leaves completes to the whole packet's.
        let mut whole = packet.clone();
        complete_partial_checksum(&mut whole, at, field - at).unwrap();
        check_packet(&whole);
        let offload = validate(&header, &packet).unwrap();
        let joined = cut_and_check(&shape, &mut packet, &offload, mss);
        prop_assert_eq!(joined, shape.payload());
    }

    /// Any TCP or UDP packet's partial checksum, Linux's or the driver's, completes to the
    /// checksum etherparse computes.
    #[test]
    fn partial_checksums_complete_to_the_right_checksum(shape in shape(), driver in any::<bool>()) {
        let mut packet = shape.packet();
        let (at, protocol) = transport_of(&packet);
        let offset = if protocol == 6 { 16 } else { 6 };
        let header = if driver {
            let checksum = SendOffload::Checksum {
                ipv4_header: true,
                tcp: !shape.udp,
                udp: shape.udp,
            };
            header_for_client(&mut packet, checksum).unwrap()
        } else {
            seed_linux_partial(&mut packet);
            VirtioNetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: at as u16,
                csum_offset: offset as u16,
                ..VirtioNetHdr::NONE
            }
        };
        prop_assert_eq!((header.csum_start as usize, header.csum_offset as usize), (at, offset));
        let offload = validate(&header, &packet).unwrap();
        prop_assert!(finish_in_software(&mut packet, &offload).unwrap().is_none());
        check_packet(&packet);
    }

    /// Whatever the header and however the packet lies, nothing panics, and what is accepted
    /// is cut inside its slices: every segment is written into exactly its own size.
    #[test]
    fn hostile_headers_and_packets_never_panic_or_overrun(
        shape in shape(),
        random_header in prop::option::weighted(0.25, prop::array::uniform10(prop_oneof![
            Just(0u8), Just(1), Just(4), Just(5), Just(16), Just(20), Just(40), Just(0x80),
            any::<u8>(),
        ])),
        header_scribbles in prop::collection::vec((0usize..VNET_HDR_LEN, any::<u8>()), 0..3),
        scribbles in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop_oneof![3 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
        send in (0u8..4, any::<u32>(), any::<u32>(), any::<[bool; 3]>()),
    ) {
        let mut packet = shape.packet();
        seed_linux_partial(&mut packet);
        // Mostly the header a client would write for the packet, with a few bytes changed.
        let mut header = random_header.unwrap_or_else(|| client_header(&shape, &packet).encode());
        for (at, byte) in header_scribbles {
            header[at] = byte;
        }
        for (at, byte) in &scribbles {
            let at = at.index(packet.len());
            packet[at] = *byte;
        }
        if let Some(cut) = cut {
            packet.truncate(cut.index(packet.len() + 1));
        }
        let header = VirtioNetHdr::decode(&header);
        exercise(&header, &mut packet.clone());
        // The same bytes as a send Windows asked something of.
        let (kind, mss, offset, [ipv4_header, tcp, udp]) = send;
        let offload = match kind {
            0 => SendOffload::Checksum { ipv4_header, tcp, udp },
            1 => SendOffload::Lso { mss: mss % 70_000, tcp_header_offset: offset % 80 },
            2 => SendOffload::Uso { mss: mss % 70_000, udp_header_offset: offset % 80 },
            _ => SendOffload::None,
        };
        if let Ok(made) = header_for_client(&mut packet, offload) {
            let offload = validate(&made, &packet);
            prop_assert!(offload.is_ok(), "the driver's header is refused: {:?}", offload);
            exercise(&made, &mut packet);
        }
    }

    /// The sum of a span met in chunks of any lengths, odd ones included, is the sum of the
    /// whole span.
    #[test]
    fn a_running_sum_over_any_chunks_is_the_whole_sum(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut sum = RunningSum::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            sum.push(&bytes[from..cut]);
            from = cut;
        }
        prop_assert_eq!(sum.sum(), ones_complement_sum(&bytes));
        prop_assert!(same_checksum(sum.sum(), naive_sum(&bytes, 0)));
    }

    /// A send copied chunk by chunk into a slot that is only written, its headers finished in
    /// a copy of its first bytes ([`SendCopy`]), comes out as the whole packet finished where it
    /// lies: the same header and the same bytes (or the same refusal), for every offload, for a
    /// client with the header or without, however the packet is cut into chunks; only a packet
    /// whose headers run past the copied head is refused instead.
    #[test]
    fn a_send_finished_while_copied_is_the_packet_finished_in_place(
        shape in shape(),
        long_options in prop::bool::weighted(0.15),
        scribbles in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        hostile in prop::bool::weighted(0.3),
        chunks in prop::collection::vec(prop_oneof![1usize..4, 1usize..300, 1usize..3000], 1..6),
        send in (0u8..4, any::<[bool; 3]>()),
        takes_header in any::<bool>(),
    ) {
        let mut packet = if long_options {
            // Destination Options of 256 bytes (one PadN option): the transport header lies
            // past the head the send path copies.
            let mut options = vec![1, 250];
            options.resize(252, 0);
            let transport = if shape.udp {
                udp_datagram(&shape.payload())
            } else {
                tcp_segment(&shape.tcp, &shape.payload())
            };
            ipv6(&[(60, options)], if shape.udp { 17 } else { 6 }, &transport)
        } else {
            shape.packet()
        };
        let (at, _) = transport_of(&packet);
        if hostile {
            for (index, byte) in &scribbles {
                let index = index.index(packet.len());
                packet[index] = *byte;
            }
        }
        let mss = shape.mss(&packet) as u32;
        let (kind, [ipv4_header, tcp, udp]) = send;
        let offload = match kind {
            0 => SendOffload::Checksum { ipv4_header, tcp, udp },
            1 if !shape.udp => SendOffload::Lso { mss, tcp_header_offset: at as u32 },
            2 if shape.udp => SendOffload::Uso { mss, udp_header_offset: at as u32 },
            _ => SendOffload::None,
        };
        let mut in_place = packet.clone();
        let expected = finish_in_place(&mut in_place, offload, takes_header);

        let mut slot = vec![0xA5; packet.len()];
        let mut written = 0;
        let head_len = packet.len().min(SEND_HEAD_LEN);
        let mut copy = SendCopy::new(packet.len(), offload, takes_header);
        let mut from = 0;
        for size in chunks.iter().cycle() {
            if from == packet.len() {
                break;
            }
            let to = packet.len().min(from + size);
            copy.push(&packet[from..to], |at, bytes| {
                assert!(at >= head_len, "the head is not written before it is finished");
                slot[at..at + bytes.len()].copy_from_slice(bytes);
                written += bytes.len();
            });
            from = to;
        }
        prop_assert_eq!(written, packet.len() - head_len);
        let finished = copy.finish();
        if finished == Err(OffloadError::PastHead) {
            prop_assert!(packet.len() > SEND_HEAD_LEN);
            prop_assert!(expected.is_err() || long_options, "{:?}", expected);
            return Ok(());
        }
        prop_assert_eq!(finished, expected);
        if finished.is_ok() {
            slot[..head_len].copy_from_slice(copy.head());
            prop_assert_eq!(slot, in_place);
        }
    }

    #[test]
    fn extended_registration_decodes_any_bytes_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..80),
        size_right in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if size_right && bytes.len() >= 4 {
            let len = bytes.len() as u32;
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        for width in [CallerWidth::Bits64, CallerWidth::Bits32] {
            if let Ok(registration) = ExtendedRegistration::decode(&bytes, width) {
                let mut encoded = [0u8; 64];
                let layout = if bytes.len() == 64 { CallerWidth::Bits64 } else { CallerWidth::Bits32 };
                let len = registration.encode(layout, &mut encoded).unwrap();
                prop_assert_eq!(len, bytes.len());
                prop_assert_eq!(&encoded[..16], &bytes[..16]);
            }
        }
    }
}

/// Validating from any head of the packet (its first bytes and its length) gives the verdict
/// validating the whole packet gives, or says the headers run past the head; once the head holds
/// the headers, the verdict and the receive path's decision are the whole packet's.
fn same_verdict_from_the_head(header: &VirtioNetHdr, packet: &[u8]) {
    let whole = validate(header, packet);
    let whole_receive = whole
        .ok()
        .and_then(|offload| offload.gso)
        .map(|gso| receive_as(packet, &gso));
    for cut in 0..=packet.len().min(200) {
        let head = &packet[..cut];
        let from_head = validate_head(header, head, packet.len());
        if from_head == Err(OffloadError::PastHead) {
            let needed = whole
                .ok()
                .and_then(|offload| offload.gso)
                .map(|gso| gso.header_len());
            assert!(
                needed.is_none_or(|needed| cut < needed),
                "past a head of {cut} bytes"
            );
            continue;
        }
        assert_eq!(from_head, whole, "from a head of {cut} bytes");
        if let Some(gso) = from_head.ok().and_then(|offload| offload.gso) {
            assert_eq!(
                Some(receive_as_head(head, packet.len(), &gso)),
                whole_receive
            );
        }
    }
}

/// Each segment's headers written from the packet's headers alone and its payload's sum, followed
/// by its payload, are the segment written whole.
fn same_segments_from_the_head(packet: &[u8], gso: &Gso) {
    let whole = Segments::new(packet, gso).unwrap();
    let from_head = Segments::of_head(&packet[..gso.header_len()], gso).unwrap();
    for (segment, headers_only) in whole.iter().zip(from_head.iter()) {
        let mut written = vec![0; segment.size()];
        segment.write(&mut written).unwrap();
        let payload = &packet[segment.payload()];
        let mut split = vec![0; gso.header_len()];
        let sum = ones_complement_sum(payload);
        assert_eq!(
            headers_only.write_headers(&mut split, sum),
            Ok(gso.header_len())
        );
        split.extend_from_slice(payload);
        assert_eq!(split, written);
        assert!(
            headers_only.write(&mut written).is_err(),
            "no payload to write from a head"
        );
    }
}

/// What the driver's send path did before it finished packets while copying them, in the
/// packet's ring slot: for a client that takes the header, `header_for_client`; for any other, the
/// checksums filled in.
fn finish_in_place(
    packet: &mut [u8],
    offload: SendOffload,
    takes_header: bool,
) -> Result<VirtioNetHdr, OffloadError> {
    if takes_header {
        return header_for_client(packet, offload);
    }
    if let SendOffload::Checksum {
        ipv4_header,
        tcp,
        udp,
    } = offload
    {
        let which = Checksums {
            ipv4_header,
            transport: tcp || udp,
        };
        fill_checksums(packet, which)?;
    }
    Ok(VirtioNetHdr::NONE)
}

/// The header a Linux client writes before a super-packet of `shape`.
fn client_header(shape: &Shape, packet: &[u8]) -> VirtioNetHdr {
    let (at, _) = transport_of(packet);
    let gso_type = match (shape.udp, shape.ipv6) {
        (true, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
        (false, false) => VIRTIO_NET_HDR_GSO_TCPV4,
        (false, true) => VIRTIO_NET_HDR_GSO_TCPV6,
    };
    VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type,
        hdr_len: at as u16,
        gso_size: shape.mss(packet) as u16,
        csum_start: at as u16,
        csum_offset: if shape.udp { 6 } else { 16 },
    }
}

/// Everything a reader does with a header: validation, then what it asks done in software, and
/// the receive path's decision.
fn exercise(header: &VirtioNetHdr, packet: &mut [u8]) {
    same_verdict_from_the_head(header, packet);
    let Ok(offload) = validate(header, packet) else {
        return;
    };
    if let Some(gso) = &offload.gso {
        assert!(receive_as(packet, gso).is_ok());
    }
    let payload_len = offload.gso.map(|gso| gso.payload_len());
    if let Some(gso) = &offload.gso {
        same_segments_from_the_head(packet, gso);
    }
    match finish_in_software(packet, &offload).unwrap() {
        None => assert!(offload.gso.is_none()),
        Some(segments) => {
            let mut joined = 0;
            for segment in segments.iter() {
                let mut bytes = vec![0; segment.size()];
                assert_eq!(segment.write(&mut bytes), Ok(bytes.len()));
                joined += segment.payload().len();
            }
            assert_eq!(Some(joined), payload_len);
        }
    }
}
