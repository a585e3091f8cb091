//! One test per rule of the ring ABI.

mod support;

use std::ptr::NonNull;

use oxtun_abi::*;
use support::{TestRing, pattern};

const CAP: u32 = MIN_CAPACITY;

fn write_packets(writer: &mut RingWriter, packets: &[&[u8]]) -> Published {
    let bytes = packets
        .iter()
        .map(|p| packet_space(p.len() as u32).unwrap())
        .sum();
    let mut reservation = writer.reserve(bytes).unwrap();
    for packet in packets {
        let mut slot = reservation.push_packet(packet.len() as u32).unwrap();
        assert!(slot.write(0, packet));
    }
    writer.complete(reservation)
}

fn read_packet(reader: &mut RingReader) -> Option<Vec<u8>> {
    let packet = reader.next_packet().unwrap()?;
    let mut out = vec![0; packet.size() as usize];
    assert_eq!(reader.copy_packet(&packet, &mut out), out.len());
    assert!(reader.release_to(packet.end()));
    Some(out)
}

fn pair(ring: &TestRing) -> (RingWriter, RingReader) {
    let writer = RingWriter::attach(ring.region()).unwrap();
    let reader = RingReader::attach(ring.region()).unwrap();
    (writer, reader)
}

#[test]
fn ring_size_gives_capacity_for_powers_of_two_in_range() {
    for shift in 17..=26 {
        let capacity = 1u32 << shift;
        assert_eq!(capacity_for_ring_size(ring_size(capacity)), Ok(capacity));
    }
    assert_eq!(ring_size(MIN_CAPACITY), 12 + 0x20000 + 0x10000);
}

#[test]
fn ring_size_refuses_capacities_out_of_range_or_not_powers_of_two() {
    use RingSizeError::*;
    assert_eq!(
        capacity_for_ring_size(ring_size(MIN_CAPACITY / 2)),
        Err(CapacityOutOfRange)
    );
    assert_eq!(
        capacity_for_ring_size(ring_size(MAX_CAPACITY * 2)),
        Err(CapacityOutOfRange)
    );
    assert_eq!(
        capacity_for_ring_size(ring_size(MIN_CAPACITY) + 4),
        Err(CapacityNotPowerOfTwo)
    );
    assert_eq!(
        capacity_for_ring_size(ring_size(MIN_CAPACITY) - 1),
        Err(CapacityOutOfRange)
    );
    assert_eq!(capacity_for_ring_size(0), Err(CapacityOutOfRange));
    assert_eq!(capacity_for_ring_size(u32::MAX), Err(CapacityOutOfRange));
}

#[test]
fn ioctl_code_is_built_from_its_ctl_code_parts() {
    assert_eq!(TUN_IOCTL_REGISTER_RINGS, 0xCA6C_E5C0);
    assert_eq!(TUN_IOCTL_REGISTER_RINGS >> 16, 51820);
    assert_eq!((TUN_IOCTL_REGISTER_RINGS >> 2) & 0xFFF, 0x970);
    assert_eq!(
        (TUN_IOCTL_REGISTER_RINGS >> 14) & 3,
        FILE_READ_DATA | FILE_WRITE_DATA
    );
    assert_eq!(TUN_IOCTL_REGISTER_RINGS & 3, METHOD_BUFFERED);
}

fn sample_registration() -> RingRegistration {
    RingRegistration {
        send: RingDescriptor {
            ring_size: ring_size(CAP),
            ring: 0x1000_0000,
            tail_moved: 0x44,
        },
        receive: RingDescriptor {
            ring_size: ring_size(CAP * 2),
            ring: 0x2000_0000,
            tail_moved: 0x48,
        },
    }
}

#[test]
fn registration_64_bit_layout_round_trips_and_matches_the_c_struct() {
    let registration = RingRegistration {
        send: RingDescriptor {
            ring: 0x1234_5678_9ABC_DEF0,
            ..sample_registration().send
        },
        ..sample_registration()
    };
    let mut buffer = [0xAAu8; 64];
    assert_eq!(
        registration.encode(CallerWidth::Bits64, &mut buffer),
        Some(48)
    );
    assert_eq!(&buffer[0..4], &ring_size(CAP).to_le_bytes());
    assert_eq!(&buffer[4..8], &[0; 4], "padding after RingSize");
    assert_eq!(&buffer[8..16], &0x1234_5678_9ABC_DEF0u64.to_le_bytes());
    assert_eq!(&buffer[16..24], &0x44u64.to_le_bytes());
    assert_eq!(&buffer[24..28], &ring_size(CAP * 2).to_le_bytes());
    assert_eq!(
        RingRegistration::decode(&buffer[..48], CallerWidth::Bits64),
        Ok(registration)
    );
}

#[test]
fn registration_32_bit_layout_round_trips_and_matches_the_c_struct() {
    let registration = sample_registration();
    let mut buffer = [0u8; 24];
    assert_eq!(
        registration.encode(CallerWidth::Bits32, &mut buffer),
        Some(24)
    );
    assert_eq!(&buffer[4..8], &0x1000_0000u32.to_le_bytes());
    assert_eq!(&buffer[8..12], &0x44u32.to_le_bytes());
    assert_eq!(&buffer[12..16], &ring_size(CAP * 2).to_le_bytes());
    assert_eq!(
        RingRegistration::decode(&buffer, CallerWidth::Bits32),
        Ok(registration)
    );
}

#[test]
fn registration_of_the_wrong_length_is_refused() {
    let buffer = [0u8; 49];
    let lengths = [
        (CallerWidth::Bits64, 48, [0, 23, 24, 25, 47, 49]),
        (CallerWidth::Bits32, 24, [0, 23, 25, 47, 49, 12]),
    ];
    for (width, expected, refused) in lengths {
        for len in refused {
            assert_eq!(
                RingRegistration::decode(&buffer[..len], width),
                Err(RegistrationError::WrongLength {
                    expected,
                    actual: len
                })
            );
        }
    }
}

/// A 32-bit process may pass the 64-bit layout (Wintun's driver takes it whenever the buffer is
/// 48 bytes); only a 32-bit caller's 24-byte buffer is read as the 32-bit layout.
#[test]
fn a_32_bit_caller_may_pass_either_layout() {
    let registration = sample_registration();
    let mut wide = [0u8; 48];
    registration.encode(CallerWidth::Bits64, &mut wide).unwrap();
    assert_eq!(
        RingRegistration::decode(&wide, CallerWidth::Bits32),
        Ok(registration)
    );
    let mut narrow = [0u8; 24];
    registration
        .encode(CallerWidth::Bits32, &mut narrow)
        .unwrap();
    assert_eq!(
        RingRegistration::decode(&narrow, CallerWidth::Bits32),
        Ok(registration)
    );
    assert_eq!(
        RingRegistration::layout_of(24, CallerWidth::Bits64),
        None,
        "a 64-bit caller has one layout"
    );
}

#[test]
fn registration_with_a_64_bit_pointer_cannot_be_encoded_for_a_32_bit_caller() {
    let mut registration = sample_registration();
    registration.receive.ring = 1 << 32;
    assert_eq!(registration.encode(CallerWidth::Bits32, &mut [0; 24]), None);
    assert_eq!(
        sample_registration().encode(CallerWidth::Bits64, &mut [0; 47]),
        None
    );
}

#[test]
fn region_must_be_aligned_and_sized_for_a_valid_capacity() {
    let mut memory = vec![0u32; ring_size(CAP) as usize / 4 + 1];
    let aligned = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY (test): the memory is live and large enough for every length tried.
    unsafe {
        let misaligned = aligned.add(1);
        assert_eq!(
            RingRegion::new(misaligned, ring_size(CAP) as usize).unwrap_err(),
            RegionError::Misaligned
        );
        assert_eq!(
            RingRegion::new(aligned, ring_size(CAP) as usize + 4).unwrap_err(),
            RegionError::Size(RingSizeError::CapacityNotPowerOfTwo)
        );
        assert_eq!(
            RingRegion::new(aligned, 1 << 32).unwrap_err(),
            RegionError::TooLong
        );
        assert_eq!(
            RingRegion::new(aligned, ring_size(CAP) as usize)
                .unwrap()
                .capacity(),
            CAP
        );
    }
}

#[test]
fn empty_ring_reads_nothing() {
    let ring = TestRing::new(CAP);
    let (_writer, mut reader) = pair(&ring);
    assert_eq!(reader.next_packet(), Ok(None));
}

#[test]
fn packets_arrive_byte_exact_and_in_order() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    let packets: Vec<Vec<u8>> = [20, 1, 0, 40, 1399, 9000]
        .iter()
        .map(|&n| pattern(n as u64, n))
        .collect();
    let slices: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let published = write_packets(&mut writer, &slices);
    assert!(published.tail_moved);
    let expected_tail: u32 = packets
        .iter()
        .map(|p| packet_space(p.len() as u32).unwrap())
        .sum();
    assert_eq!(ring.tail(), expected_tail);
    for packet in &packets {
        assert_eq!(read_packet(&mut reader).as_ref(), Some(packet));
    }
    assert_eq!(reader.next_packet(), Ok(None));
    assert_eq!(ring.head(), expected_tail);
    ring.assert_guard_intact();
}

#[test]
fn packets_wrap_around_the_end_of_the_ring() {
    let ring = TestRing::new(CAP);
    let start = CAP - 3 * 1024;
    ring.set_head(start);
    ring.set_tail(start);
    let (mut writer, mut reader) = pair(&ring);
    for round in 0..16u64 {
        let packet = pattern(round, 1500);
        write_packets(&mut writer, &[&packet]);
        assert_eq!(read_packet(&mut reader), Some(packet));
    }
    let tail = ring.tail();
    assert!(tail < start, "tail wrapped to the start, now {tail:#x}");
    assert_eq!(tail, (start + 16 * packet_space(1500).unwrap()) % CAP);
    ring.assert_guard_intact();
}

#[test]
fn a_full_ring_leaves_one_alignment_unit_free() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    assert_eq!(
        writer.reserve(CAP).unwrap_err(),
        ReserveError::Full {
            free: CAP - ALIGNMENT
        }
    );
    let reservation = writer.reserve(CAP - ALIGNMENT).unwrap();
    writer.complete(reservation);
    assert_eq!(
        ring.tail(),
        CAP - ALIGNMENT,
        "Tail stops one unit short of Head"
    );
    assert_eq!(
        writer.reserve(ALIGNMENT).unwrap_err(),
        ReserveError::Full { free: 0 }
    );
    // The unfilled reservation became empty packets: a full ring is not an empty one.
    let first = reader.next_packet().unwrap().unwrap();
    assert_eq!(first.size(), 0);
    assert!(reader.release_to(first.end()));
    assert!(writer.reserve(ALIGNMENT).is_ok());
}

#[test]
fn ring_filled_exactly_with_packets_then_drained_and_refilled() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    let size = 1020; // a packet takes exactly 1024 bytes
    let per_ring = (CAP - ALIGNMENT) / 1024; // the last 1024 bytes would swallow the free unit
    let mut sent = 0u64;
    for _ in 0..per_ring {
        write_packets(&mut writer, &[&pattern(sent, size)]);
        sent += 1;
    }
    assert_eq!(
        writer.reserve(1024).unwrap_err(),
        ReserveError::Full {
            free: 1024 - ALIGNMENT
        }
    );
    for seed in 0..sent {
        assert_eq!(read_packet(&mut reader), Some(pattern(seed, size)));
    }
    assert_eq!(reader.next_packet(), Ok(None));
    write_packets(&mut writer, &[&pattern(sent, size)]);
    assert_eq!(read_packet(&mut reader), Some(pattern(sent, size)));
}

#[test]
fn largest_packet_at_the_last_offset_runs_into_the_trailing_bytes() {
    let ring = TestRing::new(CAP);
    let last = CAP - ALIGNMENT;
    ring.set_head(last);
    ring.set_tail(last);
    let (mut writer, mut reader) = pair(&ring);
    let packet = pattern(7, MAX_IP_PACKET_SIZE as usize);
    write_packets(&mut writer, &[&packet]);
    assert_eq!(ring.tail(), (last + MAX_PACKET_SPACE) % CAP);
    assert_eq!(ring.data_word(last), MAX_IP_PACKET_SIZE);
    assert_eq!(read_packet(&mut reader), Some(packet));
    ring.assert_guard_intact();
}

#[test]
fn packet_over_0xffff_bytes_cannot_be_pushed() {
    let ring = TestRing::new(CAP);
    let (mut writer, _reader) = pair(&ring);
    assert_eq!(packet_space(MAX_IP_PACKET_SIZE + 1), None);
    let mut reservation = writer.reserve(MAX_PACKET_SPACE + 8).unwrap();
    assert!(reservation.push_packet(MAX_IP_PACKET_SIZE + 1).is_none());
    assert!(reservation.push_packet(MAX_IP_PACKET_SIZE).is_some());
    assert!(
        reservation.push_packet(5).is_none(),
        "needs 12 bytes, 8 remain"
    );
    let mut slot = reservation.push_packet(4).unwrap();
    assert!(!slot.write(1, &[0; 4]), "write past the packet's end");
    assert!(slot.write(0, &[1; 4]));
    assert_eq!(reservation.remaining(), 0);
    writer.complete(reservation);
}

#[test]
fn reserve_refuses_sizes_that_are_not_whole_alignment_units() {
    let ring = TestRing::new(CAP);
    let (mut writer, _reader) = pair(&ring);
    assert_eq!(writer.reserve(0).unwrap_err(), ReserveError::BadSize(0));
    assert_eq!(writer.reserve(6).unwrap_err(), ReserveError::BadSize(6));
}

/// The reader's verdict on a ring after a hostile producer's `setup`; checks the reader stopped.
fn reader_error_after(setup: impl FnOnce(&TestRing)) -> (RingError, TestRing) {
    let ring = TestRing::new(CAP);
    let mut reader = RingReader::attach(ring.region()).unwrap();
    setup(&ring);
    let error = reader.next_packet().unwrap_err();
    assert_eq!(
        ring.head(),
        RING_ENDED,
        "a stopped reader sets Head to 0xFFFFFFFF"
    );
    assert_eq!(
        reader.next_packet(),
        Err(error),
        "a stopped reader stays stopped"
    );
    assert!(!reader.release_all());
    (error, ring)
}

#[test]
fn corrupt_tail_stops_the_reader() {
    let cases = [
        (CAP, RingError::TailOutOfRange(CAP)),
        (0x8000_0000, RingError::TailOutOfRange(0x8000_0000)),
        (6, RingError::TailMisaligned(6)),
        (RING_ENDED, RingError::Ended),
    ];
    for (tail, expected) in cases {
        let (error, _) = reader_error_after(|ring| ring.set_tail(tail));
        assert_eq!(error, expected);
    }
}

#[test]
fn tail_moving_behind_read_packets_stops_the_reader() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    write_packets(&mut writer, &[&[1; 20], &[2; 20]]);
    let first = reader.next_packet().unwrap().unwrap();
    let second = reader.next_packet().unwrap().unwrap();
    assert!(reader.release_to(first.end()));
    ring.set_tail(first.end()); // behind `second`, which was read
    assert_eq!(
        reader.next_packet(),
        Err(RingError::TailBehindRead(first.end()))
    );
    assert_ne!(second.end(), first.end());
}

#[test]
fn corrupt_size_stops_the_reader() {
    let (error, _) = reader_error_after(|ring| {
        ring.set_data_word(0, MAX_IP_PACKET_SIZE + 1);
        ring.set_tail(MAX_PACKET_SPACE + 4);
    });
    assert_eq!(error, RingError::SizeTooLarge(MAX_IP_PACKET_SIZE + 1));
    let (error, _) = reader_error_after(|ring| {
        ring.set_data_word(0, 100);
        ring.set_tail(100);
    });
    assert_eq!(error, RingError::SizePastTail(100));
    let (error, _) = reader_error_after(|ring| {
        ring.set_data_word(0, u32::MAX);
        ring.set_tail(8);
    });
    assert_eq!(error, RingError::SizeTooLarge(u32::MAX));
}

#[test]
fn corrupt_head_at_attach_refuses_the_ring() {
    let cases = [
        (CAP, RingError::HeadOutOfRange(CAP)),
        (2, RingError::HeadMisaligned(2)),
        (RING_ENDED, RingError::ConsumerStopped),
    ];
    for (head, expected) in cases {
        let ring = TestRing::new(CAP);
        ring.set_head(head);
        assert_eq!(RingWriter::attach(ring.region()).unwrap_err(), expected);
        assert_eq!(RingReader::attach(ring.region()).unwrap_err(), expected);
        assert_eq!(ring.head(), RING_ENDED);
    }
}

#[test]
fn corrupt_tail_at_attach_refuses_the_ring_for_the_writer() {
    for (tail, expected) in [
        (CAP + 4, RingError::TailOutOfRange(CAP + 4)),
        (10, RingError::TailMisaligned(10)),
        (RING_ENDED, RingError::Ended),
    ] {
        let ring = TestRing::new(CAP);
        ring.set_tail(tail);
        assert_eq!(RingWriter::attach(ring.region()).unwrap_err(), expected);
    }
}

#[test]
fn corrupt_head_stops_the_writer() {
    let cases = [
        (CAP, RingError::HeadOutOfRange(CAP)),
        (14, RingError::HeadMisaligned(14)),
        (RING_ENDED, RingError::ConsumerStopped),
        (64, RingError::HeadOutsidePublished(64)),
    ];
    for (head, expected) in cases {
        let ring = TestRing::new(CAP);
        let mut writer = RingWriter::attach(ring.region()).unwrap();
        write_packets(&mut writer, &[&[9; 24]]); // published up to 28
        ring.set_head(head);
        assert_eq!(writer.reserve(4).unwrap_err(), ReserveError::Ring(expected));
        assert_eq!(writer.stopped(), Some(expected));
        ring.set_head(0);
        assert_eq!(
            writer.reserve(4).unwrap_err(),
            ReserveError::Ring(expected),
            "a stopped writer stays stopped"
        );
        assert_eq!(ring.tail(), 28);
    }
}

#[test]
fn head_moving_backwards_stops_the_writer() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    write_packets(&mut writer, &[&[1; 60], &[2; 60]]);
    assert!(read_packet(&mut reader).is_some());
    assert!(
        writer
            .reserve(4)
            .is_ok_and(|r| writer.complete(r).tail_moved)
    );
    ring.set_head(CAP - 4); // behind the last Head seen (64)
    assert_eq!(
        writer.reserve(4).unwrap_err(),
        ReserveError::Ring(RingError::HeadOutsidePublished(CAP - 4))
    );
}

#[test]
fn tail_moves_only_over_reservations_that_completed_in_ring_order() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    let mut first = writer.reserve(64).unwrap();
    let mut second = writer.reserve(32).unwrap();
    assert!(second.push_packet(28).unwrap().write(0, &[2; 28]));
    let published = writer.complete(second);
    assert!(!published.tail_moved);
    assert_eq!(ring.tail(), 0);
    assert_eq!(reader.next_packet(), Ok(None));
    assert!(first.push_packet(60).unwrap().write(0, &[1; 60]));
    assert!(writer.complete(first).tail_moved);
    assert_eq!(ring.tail(), 96);
    assert_eq!(read_packet(&mut reader), Some(vec![1; 60]));
    assert_eq!(read_packet(&mut reader), Some(vec![2; 28]));
    assert!(writer.is_idle());
}

#[test]
fn space_returns_only_when_released_and_only_in_order() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    let big = vec![5u8; 60_000];
    write_packets(&mut writer, &[&big, &big]);
    let first = reader.next_packet().unwrap().unwrap();
    let second = reader.next_packet().unwrap().unwrap();
    let free_before = match writer.reserve(CAP) {
        Err(ReserveError::Full { free }) => free,
        other => panic!("{other:?}"),
    };
    assert!(!reader.release_to(second.end() + 4), "past what was read");
    assert!(reader.release_to(first.end()));
    assert_eq!(ring.head(), first.end());
    assert!(!reader.release_to(first.offset()), "backwards");
    let Err(ReserveError::Full { free }) = writer.reserve(CAP) else {
        panic!()
    };
    assert_eq!(free, free_before + first.end() - first.offset());
    assert!(reader.release_to(second.end()));
    assert!(reader.all_released());
}

#[test]
fn packet_data_points_into_the_region() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    write_packets(&mut writer, &[&[0x45, 0, 0, 20]]);
    let packet = reader.next_packet().unwrap().unwrap();
    let data = reader.packet_data(&packet);
    // SAFETY (test): the packet's bytes are inside the live ring and nobody writes them now.
    let first = unsafe { data.read() };
    assert_eq!(first, 0x45);
    assert_eq!(ring.data_word(4), u32::from_le_bytes([0x45, 0, 0, 20]));
}

#[test]
fn consumer_sleeps_only_when_nothing_arrived_and_producer_wakes_it() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    assert_eq!(reader.announce_sleep(), SleepDecision::Sleep);
    assert_eq!(ring.alertable(), 1);
    let published = write_packets(&mut writer, &[&[1; 20]]);
    assert!(published.wake_consumer, "the consumer announced it sleeps");
    reader.end_sleep();
    assert_eq!(ring.alertable(), 0);
    let published = write_packets(&mut writer, &[&[2; 20]]);
    assert!(published.tail_moved && !published.wake_consumer);
    // Tail moved since the last read: announcing finds it and does not sleep.
    assert_eq!(reader.announce_sleep(), SleepDecision::ReadAgain);
    assert_eq!(ring.alertable(), 0);
    assert!(read_packet(&mut reader).is_some());
}

#[test]
fn closing_the_writer_ends_the_ring_for_the_reader() {
    let ring = TestRing::new(CAP);
    let (mut writer, mut reader) = pair(&ring);
    write_packets(&mut writer, &[&[1; 20]]);
    let pending = writer.reserve(8).unwrap();
    writer.close();
    assert_eq!(ring.tail(), RING_ENDED);
    assert!(
        !writer.complete(pending).tail_moved,
        "nothing moves Tail after the end"
    );
    assert_eq!(ring.tail(), RING_ENDED);
    assert_eq!(reader.next_packet(), Err(RingError::Ended));
    assert_eq!(
        writer.reserve(8).unwrap_err(),
        ReserveError::Ring(RingError::Ended)
    );
}

#[test]
fn extended_registration_ioctl_is_ours_beside_wintuns() {
    assert_eq!(TUN_IOCTL_REGISTER_RINGS_EX, 0xCA6C_E800);
    assert_eq!(TUN_IOCTL_REGISTER_RINGS_EX >> 16, TUN_DEVICE_TYPE);
    assert_eq!(TUN_IOCTL_REGISTER_RINGS_EX & 3, METHOD_BUFFERED);
    assert_eq!(
        (TUN_IOCTL_REGISTER_RINGS_EX >> 14) & 3,
        FILE_READ_DATA | FILE_WRITE_DATA
    );
    // Wintun's functions: 0x970 registers, 0x971 force-closes handles (wintun.dll).
    let function = (TUN_IOCTL_REGISTER_RINGS_EX >> 2) & 0xFFF;
    assert!(function != 0x970 && function != 0x971);
}

fn sample_extended() -> ExtendedRegistration {
    ExtendedRegistration {
        rings: sample_registration(),
        features: Features::VNET_HDR,
    }
}

#[test]
fn extended_registration_layouts_round_trip_with_size_version_and_features_first() {
    for (width, len) in [(CallerWidth::Bits64, 64), (CallerWidth::Bits32, 40)] {
        let mut buffer = [0xAAu8; 80];
        assert_eq!(sample_extended().encode(width, &mut buffer), Some(len));
        assert_eq!(&buffer[0..4], &(len as u32).to_le_bytes(), "Size");
        assert_eq!(&buffer[4..8], &1u32.to_le_bytes(), "Version");
        assert_eq!(&buffer[8..12], &OXTUN_FEATURE_VNET_HDR.to_le_bytes());
        assert_eq!(&buffer[12..16], &[0; 4], "Reserved");
        let mut rings = [0u8; 48];
        let rings_len = sample_registration().encode(width, &mut rings).unwrap();
        assert_eq!(
            &buffer[16..len],
            &rings[..rings_len],
            "then TUN_REGISTER_RINGS"
        );
        assert_eq!(
            ExtendedRegistration::decode(&buffer[..len], width),
            Ok(sample_extended())
        );
    }
    // A 32-bit process may pass the 64-bit layout, as with the plain IOCTL.
    let mut wide = [0u8; 64];
    sample_extended().encode(CallerWidth::Bits64, &mut wide);
    assert_eq!(
        ExtendedRegistration::decode(&wide, CallerWidth::Bits32),
        Ok(sample_extended())
    );
}

#[test]
fn extended_registration_refuses_every_field_it_does_not_know() {
    use ExtendedRegistrationError::*;
    let mut good = [0u8; 64];
    sample_extended().encode(CallerWidth::Bits64, &mut good);
    let with_word = |at: usize, value: u32| {
        let mut buffer = good;
        buffer[at..at + 4].copy_from_slice(&value.to_le_bytes());
        buffer
    };
    let decode = |buffer: &[u8]| ExtendedRegistration::decode(buffer, CallerWidth::Bits64);
    assert_eq!(decode(&good[..15]), Err(TooShort(15)));
    assert_eq!(
        decode(&with_word(0, 65)),
        Err(SizeMismatch {
            size: 65,
            buffer: 64
        })
    );
    assert_eq!(decode(&with_word(4, 2)), Err(UnknownVersion(2)));
    assert_eq!(decode(&with_word(4, 0)), Err(UnknownVersion(0)));
    assert_eq!(decode(&with_word(8, 2)), Err(UnknownFeatures(2)));
    assert_eq!(
        decode(&with_word(8, 1 << 31)),
        Err(UnknownFeatures(1 << 31))
    );
    assert_eq!(decode(&with_word(12, 1)), Err(ReservedNotZero(1)));
    // A Size that matches a buffer of no layout: the rings' part is refused as the plain
    // registration refuses it.
    let mut short = [0u8; 40];
    short.copy_from_slice(&good[..40]);
    short[0..4].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        decode(&short),
        Err(Rings(RegistrationError::WrongLength {
            expected: 48,
            actual: 24
        }))
    );
    let none = ExtendedRegistration {
        features: Features::NONE,
        ..sample_extended()
    };
    assert_eq!(decode(&with_word(8, 0)), Ok(none));
    assert_eq!(Features::from_bits(1), Some(Features::VNET_HDR));
    assert!(Features::KNOWN.contains(Features::VNET_HDR));
}

/// The emulator's message for the extension stands for TUN_IOCTL_REGISTER_RINGS_EX with its
/// flags as the Features word: the emulator hands it to the driver as that IOCTL, which the driver
/// answers as it answers a client's.
#[test]
fn the_emulator_message_for_the_extension_stands_for_the_extended_ioctl() {
    use oxtun_abi::emulator::{
        EMULATOR_FLAG_VNET_HDR, EmulatorIoctl, EmulatorRegistration, EmulatorRequest,
    };
    assert_eq!(EMULATOR_FLAG_VNET_HDR, OXTUN_FEATURE_VNET_HDR);
    let rings = EmulatorRegistration {
        send_ring_size: ring_size(CAP),
        receive_ring_size: ring_size(CAP),
    };
    let mut message = rings.encode();
    message[0..4].copy_from_slice(&TUN_IOCTL_REGISTER_RINGS_EX.to_le_bytes());
    message[12..16].copy_from_slice(&EMULATOR_FLAG_VNET_HDR.to_le_bytes());
    assert_eq!(message, rings.encode_extended(Features::VNET_HDR));
    assert_eq!(
        EmulatorRequest::decode(&message),
        Ok(EmulatorRequest {
            rings,
            ioctl: EmulatorIoctl::RegisterEx {
                features: OXTUN_FEATURE_VNET_HDR
            }
        })
    );
}
