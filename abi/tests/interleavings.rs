//! Property test: any interleaving of reservations, out-of-order completions, reads, releases and
//! sleep announcements delivers exactly the published packets, byte-exact, in ring order.

mod support;

use std::collections::VecDeque;

use oxtun_abi::*;
use proptest::prelude::*;
use support::{TestRing, pattern};

#[derive(Clone, Debug)]
enum Op {
    Reserve(Vec<u32>),
    Complete(usize),
    Read,
    Release(usize),
    AnnounceSleep,
}

fn packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0u32..128,
        4 => 0u32..2000,
        1 => 0u32..=MAX_IP_PACKET_SIZE,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(packet_size(), 1..4).prop_map(Op::Reserve),
        3 => any::<usize>().prop_map(Op::Complete),
        4 => Just(Op::Read),
        2 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::AnnounceSleep),
    ]
}

struct Outstanding {
    reservation: Reservation,
    order: u64,
}

/// Cases, and most operations in one; fewer under Miri, which interprets every step.
const CASES: u32 = if cfg!(miri) { 4 } else { 512 };
const MAX_OPS: usize = if cfg!(miri) { 40 } else { 300 };

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Miri's isolation has no file system for the regression file.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            ProptestConfig::default().failure_persistence
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn interleavings_deliver_the_published_sequence(
        start in (0u32..MIN_CAPACITY / 4).prop_map(|unit| unit * 4),
        ops in prop::collection::vec(op(), 1..MAX_OPS),
    ) {
        let ring = TestRing::new(MIN_CAPACITY);
        ring.set_head(start);
        ring.set_tail(start);
        let mut writer = RingWriter::attach(ring.region()).unwrap();
        let mut reader = RingReader::attach(ring.region()).unwrap();

        let mut next_seed = 0u64;
        let mut next_order = 0u64;
        // Model: reservations in ring order with their packets, whether complete.
        let mut model_reservations: VecDeque<(u64, bool, Vec<Vec<u8>>)> = VecDeque::new();
        let mut outstanding: Vec<Outstanding> = Vec::new();
        let mut published: VecDeque<Vec<u8>> = VecDeque::new();
        let mut read_unreleased: VecDeque<Packet> = VecDeque::new();
        let mut sleeping = false;

        for op in ops {
            match op {
                Op::Reserve(sizes) => {
                    let bytes = sizes.iter().map(|&s| packet_space(s).unwrap()).sum();
                    match writer.reserve(bytes) {
                        Ok(mut reservation) => {
                            let mut packets = Vec::new();
                            for size in sizes {
                                let data = pattern(next_seed, size as usize);
                                next_seed += 1;
                                let mut slot = reservation.push_packet(size).unwrap();
                                prop_assert!(slot.write(0, &data));
                                packets.push(data);
                            }
                            prop_assert_eq!(reservation.remaining(), 0);
                            model_reservations.push_back((next_order, false, packets));
                            outstanding.push(Outstanding { reservation, order: next_order });
                            next_order += 1;
                        }
                        Err(ReserveError::Full { free }) => prop_assert!(free < bytes),
                        Err(other) => prop_assert!(false, "reserve failed: {:?}", other),
                    }
                }
                Op::Complete(pick) => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let done = outstanding.swap_remove(pick % outstanding.len());
                    let entry = model_reservations.iter_mut().find(|r| r.0 == done.order).unwrap();
                    entry.1 = true;
                    let mut moved = false;
                    while model_reservations.front().is_some_and(|r| r.1) {
                        published.extend(model_reservations.pop_front().unwrap().2);
                        moved = true;
                    }
                    let result = writer.complete(done.reservation);
                    prop_assert_eq!(result.tail_moved, moved);
                    prop_assert_eq!(result.wake_consumer, moved && sleeping);
                }
                Op::Read => match reader.next_packet() {
                    Ok(Some(packet)) => {
                        let expected = published.pop_front();
                        prop_assert!(expected.is_some(), "read an unpublished packet");
                        let mut data = vec![0; packet.size() as usize];
                        reader.copy_packet(&packet, &mut data);
                        prop_assert_eq!(Some(data), expected);
                        read_unreleased.push_back(packet);
                    }
                    Ok(None) => prop_assert!(published.is_empty(), "missed a published packet"),
                    Err(error) => prop_assert!(false, "reader stopped: {:?}", error),
                },
                Op::Release(pick) => {
                    if read_unreleased.is_empty() {
                        continue;
                    }
                    let count = pick % read_unreleased.len() + 1;
                    let last = read_unreleased.drain(..count).next_back().unwrap();
                    prop_assert!(reader.release_to(last.end()));
                    prop_assert_eq!(ring.head(), last.end());
                }
                Op::AnnounceSleep => {
                    if sleeping {
                        reader.end_sleep();
                        sleeping = false;
                    } else if reader.announce_sleep() == SleepDecision::Sleep {
                        prop_assert!(published.is_empty(), "slept with a packet waiting");
                        sleeping = true;
                    } else {
                        prop_assert!(!published.is_empty());
                    }
                }
            }
        }
        ring.assert_guard_intact();
    }
}
