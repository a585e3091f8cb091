//! The ring reader while the region changes between its calls: a schedule from the input
//! interleaves the reader's calls (next packet, release, the sleep handshake) with a
//! well-behaved producer appending packets and a hostile one writing any word of the region,
//! Head, Tail and Size included. The reader loads each shared field once per call, so the values
//! a call can see are exactly those a change between calls can set up: a deterministic schedule
//! reaches them all, and reproduces.
//!
//! Every call must give what the rules (oxtun_fuzz::Rules) say for the words at that moment,
//! each packet must lie inside the region, and while no one has scribbled, the packets must be
//! the ones appended, byte for byte.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oxtun_abi::{MIN_CAPACITY, RING_ENDED, RingReader, SleepDecision, align};
use oxtun_fuzz::{FuzzRing, Rules, distance, outcome};

#[derive(Arbitrary, Debug)]
enum Start {
    /// Head and Tail at this 4-byte unit of the ring.
    Unit(u16),
    /// Head and Tail as given.
    Raw(u32, u32),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The reader asks for the next packet.
    Next,
    /// It releases everything it read.
    ReleaseRead,
    /// It releases up to any offset (allowed only within what it read).
    Release(u32),
    /// It announces that it is about to sleep.
    AnnounceSleep,
    /// It wakes.
    EndSleep,
    /// It looks whether Tail moved.
    HasUnread,
    /// The well-behaved producer appends a packet of this size, if it fits.
    Append(u16),
    /// The hostile producer writes a word of the region (any word: the index wraps).
    Scribble { word: u16, value: u32 },
    /// The hostile producer sets Tail.
    SetTail(u32),
}

#[derive(Arbitrary, Debug)]
struct Schedule {
    start: Start,
    ops: Vec<Op>,
}

fn packet_byte(seed: u32, i: usize) -> u8 {
    (seed as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7)
}

fuzz_target!(|schedule: Schedule| {
    const CAP: u32 = MIN_CAPACITY;
    let ring = FuzzRing::new(CAP);
    let (head, tail) = match schedule.start {
        Start::Unit(unit) => {
            let at = (u32::from(unit) * 4) % CAP;
            (at, at)
        }
        Start::Raw(head, tail) => (head, tail),
    };
    ring.set_word(0, head);
    ring.set_word(1, tail);
    let expected = Rules::attach(CAP, head);
    let (mut rules, mut reader) = match (expected, RingReader::attach(ring.region())) {
        (Ok(rules), Ok(reader)) => (rules, reader),
        (Err(expected), Err(error)) => {
            assert_eq!(error, expected);
            assert_eq!(ring.head(), RING_ENDED);
            return;
        }
        (expected, reader) => panic!("attach: expected {expected:?}, got {reader:?}"),
    };
    // The well-behaved producer: where it writes next, and what it wrote that is unread.
    let mut producer_tail = (tail % CAP) & !3;
    let mut appended: VecDeque<(u32, u32)> = VecDeque::new();
    let mut next_seed = 0u32;
    let mut scribbled = tail != head;

    for op in schedule.ops.into_iter().take(4096) {
        match op {
            Op::Next => {
                let was_reading = rules.stopped.is_none();
                let expected = rules.next(ring.tail(), ring.data_word(rules.read));
                let result = reader.next_packet();
                assert_eq!(outcome(result), expected);
                match result {
                    Ok(Some(packet)) => {
                        let bytes = ring.packet(&reader, &packet);
                        if !scribbled {
                            let (size, seed) = appended.pop_front().expect("a packet appended");
                            assert_eq!(packet.size(), size);
                            let pattern = (0..size as usize).map(|i| packet_byte(seed, i));
                            assert!(bytes.iter().copied().eq(pattern), "packet {seed} bytes");
                        }
                    }
                    Ok(None) => {
                        if !scribbled {
                            assert!(appended.is_empty(), "an appended packet missed");
                        }
                    }
                    // Stopping, the reader sets Head (the hostile producer may rewrite it later).
                    Err(_) if was_reading => {
                        assert_eq!(ring.head(), RING_ENDED, "a stopping reader sets Head")
                    }
                    Err(_) => {}
                }
            }
            Op::ReleaseRead => {
                let read = rules.read;
                let allowed = rules.release_to(read);
                assert_eq!(reader.release_to(read), allowed);
                if allowed {
                    assert_eq!(ring.head(), read);
                }
            }
            Op::Release(end) => {
                let allowed = rules.release_to(end);
                assert_eq!(reader.release_to(end), allowed, "release to {end:#x}");
                if allowed {
                    assert_eq!(ring.head(), end);
                }
            }
            Op::AnnounceSleep => {
                let expected = if ring.tail() == rules.read {
                    SleepDecision::Sleep
                } else {
                    SleepDecision::ReadAgain
                };
                assert_eq!(reader.announce_sleep(), expected);
                let alertable = u32::from(expected == SleepDecision::Sleep);
                assert_eq!(ring.alertable(), alertable);
            }
            Op::EndSleep => {
                reader.end_sleep();
                assert_eq!(ring.alertable(), 0);
            }
            Op::HasUnread => {
                let expected = rules.stopped.is_none() && ring.tail() != rules.read;
                assert_eq!(reader.has_unread(), expected);
            }
            Op::Append(size) => {
                let size = u32::from(size);
                let space = align(4 + size);
                // Free space as the producer sees it: up to the released Head, less one unit.
                let free = distance(CAP, producer_tail, rules.head.wrapping_sub(4));
                if scribbled || rules.stopped.is_some() || space > free {
                    continue;
                }
                let bytes: Vec<u8> = (0..size as usize)
                    .map(|i| packet_byte(next_seed, i))
                    .collect();
                ring.set_word(3 + producer_tail as usize / 4, size);
                ring.write_data(producer_tail + 4, &bytes);
                producer_tail = (producer_tail + space) % CAP;
                ring.set_word(1, producer_tail);
                appended.push_back((size, next_seed));
                next_seed += 1;
            }
            Op::Scribble { word, value } => {
                ring.set_word(usize::from(word) % ring.len_words(), value);
                scribbled = true;
            }
            Op::SetTail(value) => {
                ring.set_word(1, value);
                scribbled = true;
            }
        }
    }
});
