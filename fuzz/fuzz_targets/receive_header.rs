//! Hostile per-packet headers through the driver's receive path, on the simulated kernel: a
//! client that took the header writes ring packets of any bytes (each a `virtio_net_hdr` and
//! what follows it), and the driver reads, checks, completes, coalesces or cuts them. The
//! simulator checks every NBL the driver indicates against NDIS's rules (an offending one aborts
//! the run); AddressSanitizer sees any access outside a copy or the ring. What goes up is what
//! abi's own reading of the same bytes says should (as many packets: one for a packet of its own
//! size, one coalesced unit where RSC for IPv4 is in force and `receive_as` allows it, else its
//! segments); every other ring packet is counted as an error; each segment the driver cut has
//! its checksums right and the packets' payloads add up to the super-packet's; and the ring is
//! given back whole.
//!
//! Input: a byte of fix-ups (bit 0: set each packet's IP and UDP lengths to its own, so the
//! mutations that matter are not all refused for a length), then ring packets, each a
//! little-endian u16 length and that many bytes, up to eight.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use oxtun_abi::offload::{
    Checksum, Checksums, Receive, Segments, complete_partial_checksum, fill_checksums, parse,
    receive_as, validate,
};
use oxtun_abi::vnet::{VNET_HDR_LEN, VirtioNetHdr};
use oxtun_abi::{
    Features, MIN_CAPACITY, RingDescriptor, RingRegion, RingRegistration, RingWriter,
    TUN_IOCTL_REGISTER_RINGS_EX, ring_size,
};
use oxtun_driver::sys::*;
use oxtun_sim::{
    Adapter, AdapterSetup, Bitness, DeviceHandle, Driver, EventObject, Process, Token,
};

const READ_WRITE: ACCESS_MASK = FILE_READ_DATA | FILE_WRITE_DATA;
const EVENT_ALL_ACCESS: ACCESS_MASK = 0x001F_0003;
/// The driver's cap on the segments of one super-packet (`MAX_RECEIVE_SEGMENTS`).
const MAX_RECEIVE_SEGMENTS: usize = 512;

/// The simulated kernel, an adapter with RSC for IPv4 on (so both coalescing and cutting are
/// reached), and a registration that takes the header, kept for the fuzzing process.
struct Client {
    adapter: Adapter,
    _handle: DeviceHandle<'static>,
    process: &'static Process,
    receive_ring: u64,
    receive_size: u32,
    receive_event: std::sync::Arc<EventObject>,
    _driver: Driver,
}

thread_local! {
    static CLIENT: Client = {
        let driver = Driver::load().expect("the driver loads");
        let adapter = driver
            .add_adapter_with(AdapterSetup::default().keyword("*RscIPv4", "1"))
            .expect("an adapter comes up");
        let process: &'static Process =
            Box::leak(Box::new(Process::new(Token::Administrator, Bitness::Bits64)));
        let size = ring_size(MIN_CAPACITY);
        let send_ring = process.allocate(size as usize);
        let receive_ring = process.allocate(size as usize);
        let (send_handle, _send_event) = process.create_event(EVENT_ALL_ACCESS);
        let (receive_handle, receive_event) = process.create_event(EVENT_ALL_ACCESS);
        let registration = oxtun_abi::ExtendedRegistration {
            rings: RingRegistration {
                send: RingDescriptor { ring_size: size, ring: send_ring, tail_moved: send_handle },
                receive: RingDescriptor {
                    ring_size: size,
                    ring: receive_ring,
                    tail_moved: receive_handle,
                },
            },
            features: Features::VNET_HDR,
        };
        let mut bytes = [0u8; 64];
        let len = registration
            .encode(oxtun_abi::CallerWidth::Bits64, &mut bytes)
            .unwrap();
        let handle = process.open(adapter.device(), READ_WRITE);
        assert_eq!(
            handle.device_control(TUN_IOCTL_REGISTER_RINGS_EX, &bytes[..len]),
            STATUS_SUCCESS
        );
        adapter.set_recording(true);
        Client {
            adapter,
            _handle: handle,
            process,
            receive_ring,
            receive_size: size,
            receive_event,
            _driver: driver,
        }
    };
}

impl Client {
    fn writer(&self) -> RingWriter {
        let base = std::ptr::NonNull::new(self.receive_ring as *mut u8).unwrap();
        // SAFETY: the ring's memory lives in the process for the fuzzing process's life.
        let region = unsafe { RingRegion::new(base, self.receive_size as usize) }.unwrap();
        RingWriter::attach(region).unwrap()
    }

    /// The receive ring's Head and Tail.
    fn head_and_tail(&self) -> (u32, u32) {
        // SAFETY: the ring's first two words, in the process's memory.
        unsafe {
            let words = self.process.memory(self.receive_ring).cast::<u32>();
            (words.read_volatile(), words.add(1).read_volatile())
        }
    }

    fn errors(&self) -> u64 {
        let answer = self.adapter.query(OID_GEN_STATISTICS, 0x98);
        // SAFETY: the answer is a whole NDIS_STATISTICS_INFO, plain data.
        unsafe {
            answer
                .data
                .as_ptr()
                .cast::<NDIS_STATISTICS_INFO>()
                .read_unaligned()
        }
        .ifInErrors
    }
}

/// Sets a packet's IP length (and a UDP header's Length, where the packet is UDP with no IPv6
/// extension header) to its own.
fn fix_lengths(packet: &mut [u8]) {
    let len = packet.len();
    let udp_at = match packet.first().map(|byte| byte >> 4) {
        Some(4) if len >= 20 => {
            packet[2..4].copy_from_slice(&(len.min(0xFFFF) as u16).to_be_bytes());
            (packet[9] == 17).then(|| usize::from(packet[0] & 0x0F) * 4)
        }
        Some(6) if len >= 40 => {
            packet[4..6].copy_from_slice(&((len - 40).min(0xFFFF) as u16).to_be_bytes());
            (packet[6] == 17).then_some(40)
        }
        _ => None,
    };
    if let Some(at) = udp_at.filter(|&at| at >= 20 && at + 8 <= len) {
        packet[at + 4..at + 6].copy_from_slice(&((len - at).min(0xFFFF) as u16).to_be_bytes());
    }
}

/// What the driver should indicate for one ring packet: the packets' count, or `None` for an
/// error; and whether they are segments it cut (whose checksums it computed).
fn expected(ring_packet: &[u8]) -> Option<(usize, bool)> {
    let (header, packet) = VirtioNetHdr::split(ring_packet)?;
    let offload = validate(&header, packet).ok()?;
    let ip: u8 = match packet.first().map(|byte| byte >> 4) {
        Some(4) if packet.len() >= 20 => 4,
        Some(6) if packet.len() >= 40 => 6,
        _ => return None,
    };
    let Some(gso) = offload.gso else {
        // A partial checksum completed where the header says, which may be on the IP version:
        // the packet goes up only as the IP packet it still is.
        let mut completed = packet.to_vec();
        if let Checksum::Partial { start, offset } = offload.checksum {
            complete_partial_checksum(&mut completed, start.into(), offset.into()).ok()?;
            let still = completed[0] >> 4;
            if still != ip {
                return None;
            }
        }
        return Some((1, false));
    };
    let count = gso.segment_count();
    if count > MAX_RECEIVE_SEGMENTS {
        return None;
    }
    if count == 1 {
        return Some((1, false));
    }
    if ip == 4 {
        match receive_as(packet, &gso) {
            Ok(Receive::Coalesced(_) | Receive::Single) => return Some((1, false)),
            Ok(Receive::Segmented(_)) => {}
            Err(_) => return None,
        }
    }
    Segments::new(packet, &gso)
        .ok()
        .map(|segments| (segments.count(), true))
}

fuzz_target!(|input: &[u8]| {
    let Some((&fixups, mut rest)) = input.split_first() else {
        return;
    };
    let mut ring_packets = Vec::new();
    while ring_packets.len() < 8 {
        let Some((len, after)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(after.len());
        let mut ring_packet = after[..len].to_vec();
        rest = &after[len..];
        if fixups & 1 != 0 && ring_packet.len() > VNET_HDR_LEN {
            fix_lengths(&mut ring_packet[VNET_HDR_LEN..]);
        }
        ring_packets.push(ring_packet);
    }
    if ring_packets.is_empty() {
        return;
    }
    let expectations: Vec<Option<(usize, bool)>> =
        ring_packets.iter().map(|packet| expected(packet)).collect();
    let expected_packets: usize = expectations.iter().flatten().map(|(count, _)| count).sum();
    let expected_errors = expectations
        .iter()
        .filter(|expected| expected.is_none())
        .count() as u64;
    CLIENT.with(|client| {
        let errors_before = client.errors();
        let packets_before = client.adapter.packets_received();
        let mut writer = client.writer();
        let bytes = ring_packets
            .iter()
            .map(|packet| oxtun_abi::packet_space(packet.len() as u32).unwrap())
            .sum();
        let Ok(mut reservation) = writer.reserve(bytes) else {
            return;
        };
        for packet in &ring_packets {
            let mut slot = reservation.push_packet(packet.len() as u32).unwrap();
            assert!(slot.write(0, packet));
        }
        if writer.complete(reservation).wake_consumer {
            client.receive_event.set();
        }
        // Every ring packet read and given back, and what it made indicated or counted (the
        // simulated stack returns NBLs at once; the space of a packet the driver copies is given
        // back before it goes up).
        let start = Instant::now();
        loop {
            let (head, tail) = client.head_and_tail();
            let packets = client.adapter.packets_received() - packets_before;
            let errors = client.errors() - errors_before;
            if head == tail && packets == expected_packets as u64 && errors == expected_errors {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "after 20 s: Head {head:#x}, Tail {tail:#x}, {packets} packets indicated of \
                 {expected_packets}, {errors} errors of {expected_errors}"
            );
            std::thread::yield_now();
        }
        let received = client.adapter.take_received();
        assert_eq!(received.len(), expected_packets, "packets indicated");
        let mut at = 0;
        for (ring_packet, expectation) in ring_packets.iter().zip(&expectations) {
            let Some((count, cut)) = *expectation else {
                continue;
            };
            let packets = &received[at..at + count];
            at += count;
            for packet in packets {
                assert!(
                    matches!(packet.data.first().map(|b| b >> 4), Some(4 | 6)),
                    "{:x?} from {:x?}",
                    &packet.data[..packet.data.len().min(48)],
                    &ring_packet[..ring_packet.len().min(58)]
                );
            }
            if cut {
                let (header, super_packet) = VirtioNetHdr::split(ring_packet).unwrap();
                let gso = validate(&header, super_packet).unwrap().gso.unwrap();
                let mut payload = Vec::new();
                for packet in packets {
                    let mut filled = packet.data.clone();
                    let which = Checksums {
                        ipv4_header: true,
                        transport: true,
                    };
                    assert!(fill_checksums(&mut filled, which).is_ok());
                    assert_eq!(filled, packet.data, "a segment's checksums");
                    let layout = parse(&packet.data).unwrap();
                    let transport = layout.transport().unwrap();
                    let header_len = layout.ip_header_len
                        + layout
                            .transport_header_len(&packet.data, transport)
                            .unwrap();
                    payload.extend_from_slice(&packet.data[header_len..]);
                }
                assert_eq!(
                    payload,
                    super_packet[gso.header_len()..],
                    "the segments' payloads"
                );
            }
        }
    });
});
