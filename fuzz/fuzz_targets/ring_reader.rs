//! The ring reader on arbitrary region bytes and an arbitrary Head and Tail: the input is Head,
//! Tail and a release pattern (12 bytes, little-endian), then Data bytes written from where Head
//! points. The reader must find exactly what the rules (oxtun_fuzz::Rules) say, never read outside
//! the region (AddressSanitizer, and each packet's bounds checked), and write nothing but Head
//! and Alertable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::{MIN_CAPACITY, RING_ENDED, RingReader, SleepDecision};
use oxtun_fuzz::{FuzzRing, Rules, outcome};

fuzz_target!(|input: &[u8]| {
    let Some((header, data)) = input.split_first_chunk::<12>() else {
        return;
    };
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
    let (head, tail, release_every) = (word(0), word(4), word(8) % 8);
    let ring = FuzzRing::new(MIN_CAPACITY);
    ring.set_word(0, head);
    ring.set_word(1, tail);
    ring.write_data(head & (MIN_CAPACITY - 1) & !3, data);
    let before = ring.snapshot();

    let expected = Rules::attach(MIN_CAPACITY, head);
    let reader = RingReader::attach(ring.region());
    let (mut rules, mut reader) = match (expected, reader) {
        (Ok(rules), Ok(reader)) => (rules, reader),
        (Err(expected), Err(error)) => {
            assert_eq!(error, expected);
            let head_now = ring.head();
            assert_eq!(head_now, RING_ENDED, "a refused ring is stopped");
            assert_eq!(&ring.snapshot()[1..], &before[1..]);
            return;
        }
        (expected, reader) => panic!("attach: expected {expected:?}, got {reader:?}"),
    };

    let mut read = 0u32;
    loop {
        let size_at_read = ring.data_word(rules.read);
        let expected = rules.next(tail, size_at_read);
        let result = reader.next_packet();
        assert_eq!(outcome(result), expected);
        match result {
            Ok(Some(packet)) => {
                let bytes = ring.packet(&reader, &packet);
                assert_eq!(bytes, ring.data_bytes(packet.offset() + 4, bytes.len()));
                read += 1;
                if release_every != 0 && read.is_multiple_of(release_every) {
                    assert!(rules.release_to(packet.end()));
                    assert!(reader.release_to(packet.end()));
                    assert_eq!(ring.head(), packet.end());
                }
            }
            Ok(None) => {
                // Nothing moves Tail here: the consumer must decide to sleep.
                assert_eq!(reader.announce_sleep(), SleepDecision::Sleep);
                assert_eq!(ring.alertable(), 1);
                reader.end_sleep();
                assert_eq!(ring.alertable(), 0);
                assert!(rules.release_to(rules.read));
                assert!(reader.release_all());
                assert_eq!(ring.head(), rules.read);
                break;
            }
            Err(_) => {
                assert_eq!(ring.head(), RING_ENDED, "a stopped reader sets Head");
                assert!(!reader.release_all());
                break;
            }
        }
    }
    // The reader wrote only Head (and Alertable, back to 0).
    assert_eq!(&ring.snapshot()[1..], &before[1..]);
});
