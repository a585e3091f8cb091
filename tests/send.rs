//! The send path on the simulated kernel: NBLs from the stack become packets in the send ring,
//! byte-exact and in order, however they are fragmented and however many CPUs send at once.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use oxtun_abi::{MAX_IP_PACKET_SIZE, MIN_CAPACITY, RING_ENDED, SleepDecision};
use oxtun_driver::sys::*;
use oxtun_sim::{Bitness, Fragmentation, Process, Token};
use support::*;

/// xorshift64*: deterministic sizes and contents.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        (self.next() >> 32) % bound
    }

    /// Mostly small, sometimes large, now and then one of the edge sizes.
    fn packet_size(&mut self) -> usize {
        match self.below(100) {
            0 => [20, 40, MAX_IP_PACKET_SIZE as usize][self.below(3) as usize],
            1..=9 => self.below(u64::from(MAX_IP_PACKET_SIZE) + 1) as usize,
            _ => self.below(1501) as usize,
        }
    }
}

fn packet(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (seed.wrapping_mul(0x9E37_79B9) >> 8) as u8 ^ (i as u8).wrapping_mul(13))
        .collect();
    for (i, byte) in seed.to_le_bytes().iter().enumerate().take(len) {
        bytes[i] = *byte;
    }
    bytes
}

fn query_u64(setup: &Setup, oid: NDIS_OID) -> u64 {
    u64::from_ne_bytes(setup.adapter.query(oid, 8).data.try_into().unwrap())
}

const LAYOUTS: [Fragmentation; 4] = [
    Fragmentation::CONTIGUOUS,
    Fragmentation {
        leading: 7,
        chunk: 1,
    },
    Fragmentation {
        leading: 0,
        chunk: 100,
    },
    Fragmentation {
        leading: 3,
        chunk: 4096,
    },
];

#[oxtun_sim::test]
fn packets_reach_the_send_ring_byte_exact_however_fragmented() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut reader = rings.send_reader();
    let sizes = [20, 40, 1, 0, 1399, 1500, 9000, MAX_IP_PACKET_SIZE as usize];
    let mut sent = 0u64;
    let mut octets = 0u64;
    for (round, layout) in LAYOUTS.into_iter().enumerate() {
        let mut nbls: Vec<Vec<Vec<u8>>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| vec![packet((round * 100 + i) as u64, size)])
            .collect();
        nbls.push(vec![packet(1, 60), packet(2, 61), packet(3, 62)]);
        let statuses = setup.adapter.send(&nbls, layout, DISPATCH_LEVEL);
        assert_eq!(
            statuses,
            vec![NDIS_STATUS_SUCCESS; nbls.len()],
            "{layout:?}"
        );
        let expected: Vec<Vec<u8>> = nbls.into_iter().flatten().collect();
        sent += expected.len() as u64;
        octets += expected.iter().map(|p| p.len() as u64).sum::<u64>();
        assert_eq!(drain(&mut reader), expected, "{layout:?}");
    }
    assert_eq!(query_u64(&setup, OID_GEN_XMIT_OK), sent);
    let counters = statistics(&setup.adapter);
    assert_eq!(counters.ifHCOutUcastPkts, sent);
    assert_eq!(counters.ifHCOutOctets, octets);
    assert_eq!((counters.ifOutErrors, counters.ifOutDiscards), (0, 0));
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn a_hundred_thousand_packets_of_random_sizes_arrive_in_order() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::with_capacity(&process, 1 << 20);
    let status = handle.device_control(oxtun_abi::TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_SUCCESS);
    let mut reader = rings.send_reader();
    let mut random = Random(0x5EED);
    let mut seed = 0;
    let mut received = 0;
    while received < 100_000 {
        let nbls: Vec<Vec<Vec<u8>>> = (0..1 + random.below(8))
            .map(|_| {
                (0..1 + random.below(3))
                    .map(|_| {
                        seed += 1;
                        packet(seed, random.packet_size())
                    })
                    .collect()
            })
            .collect();
        let layout = LAYOUTS[random.below(LAYOUTS.len() as u64) as usize];
        let layout = Fragmentation {
            chunk: layout.chunk.max(64),
            ..layout
        };
        let statuses = setup.adapter.send(&nbls, layout, DISPATCH_LEVEL);
        assert!(
            statuses.iter().all(|&s| s == NDIS_STATUS_SUCCESS),
            "{statuses:x?}"
        );
        let expected: Vec<Vec<u8>> = nbls.into_iter().flatten().collect();
        received += expected.len();
        assert_eq!(drain(&mut reader), expected);
    }
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn a_full_ring_fails_the_whole_call_and_writes_nothing() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let big = |seed| vec![vec![packet(seed, 30_000)]];
    let mut sent = 0;
    loop {
        let statuses = setup
            .adapter
            .send(&big(sent), Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
        if statuses[0] != NDIS_STATUS_SUCCESS {
            assert_eq!(statuses, vec![NDIS_STATUS_BUFFER_OVERFLOW]);
            break;
        }
        sent += 1;
    }
    assert_eq!(sent, u64::from(MIN_CAPACITY) / 30_004);
    let tail = rings.send_tail();
    let two = vec![vec![packet(90, 20)], vec![packet(91, 30_000)]];
    let statuses = setup
        .adapter
        .send(&two, Fragmentation::CONTIGUOUS, PASSIVE_LEVEL);
    assert_eq!(
        statuses,
        vec![NDIS_STATUS_BUFFER_OVERFLOW; 2],
        "all or nothing"
    );
    assert_eq!(rings.send_tail(), tail, "nothing written");
    assert_eq!(statistics(&setup.adapter).ifOutDiscards, 3);
    let mut reader = rings.send_reader();
    assert_eq!(drain(&mut reader).len() as u64, sent);
    let statuses = setup
        .adapter
        .send(&two, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(statuses, vec![NDIS_STATUS_SUCCESS; 2]);
    assert_eq!(drain(&mut reader), vec![packet(90, 20), packet(91, 30_000)]);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn a_packet_over_0xffff_bytes_fails_only_its_nbl() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let nbls = vec![
        vec![packet(1, 100)],
        vec![packet(2, 20), packet(3, MAX_IP_PACKET_SIZE as usize + 1)],
        vec![packet(4, 20), packet(5, 30)],
    ];
    let statuses = setup
        .adapter
        .send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(
        statuses,
        vec![
            NDIS_STATUS_SUCCESS,
            NDIS_STATUS_INVALID_LENGTH,
            NDIS_STATUS_SUCCESS
        ]
    );
    let mut reader = rings.send_reader();
    assert_eq!(
        drain(&mut reader),
        vec![packet(1, 100), packet(4, 20), packet(5, 30)]
    );
    assert_eq!(statistics(&setup.adapter).ifOutErrors, 1);
    handle.close();
    setup.finish();
}

/// Deployed wintun.dll clients never write the send ring's Alertable and wait on the event after
/// every empty read (WintunReceivePacket, then WaitForSingleObject on WintunGetReadWaitEvent), so
/// the event must come on every move of Tail: once per send call that moved it.
#[oxtun_sim::test]
fn the_send_event_is_set_on_every_move_of_tail_whatever_alertable_says() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut reader = rings.send_reader();
    let one = vec![vec![packet(1, 40)]];
    let send = |nbls: &[Vec<Vec<u8>>]| {
        setup
            .adapter
            .send(nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL)
    };
    send(&one);
    assert_eq!(
        rings.send_event.set_count(),
        1,
        "Alertable is 0: set anyway"
    );
    assert!(rings.send_event.take());
    let ten: Vec<Vec<Vec<u8>>> = (0..10).map(|i| vec![packet(i, 60)]).collect();
    send(&ten);
    assert_eq!(
        rings.send_event.set_count(),
        2,
        "one set per call, not per packet"
    );
    assert_eq!(drain(&mut reader).len(), 11);
    assert_eq!(reader.announce_sleep(), SleepDecision::Sleep);
    send(&one);
    assert_eq!(rings.send_event.set_count(), 3, "and with Alertable set");
    reader.end_sleep();
    let too_large = vec![vec![vec![0x45; MAX_IP_PACKET_SIZE as usize + 1]]];
    assert_eq!(send(&too_large), [NDIS_STATUS_INVALID_LENGTH]);
    assert_eq!(rings.send_event.set_count(), 3, "Tail did not move: no set");
    assert_eq!(drain(&mut reader).len(), 1);
    handle.close();
    setup.finish();
}

/// A pause that NDIS issues while a send call is under way returns only once that call has
/// completed its NBLs: a pausing miniport completes every outstanding send ("Pausing an Adapter",
/// NDIS documentation; the simulator checks it when the pause returns).
#[oxtun_sim::test]
fn a_pause_during_a_send_returns_after_it_completes() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut reader = rings.send_reader();
    setup.adapter.pause_during_next_send();
    let nbls: Vec<Vec<Vec<u8>>> = (0..3).map(|i| vec![packet(i, 80)]).collect();
    let statuses = setup
        .adapter
        .send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(statuses, [NDIS_STATUS_SUCCESS; 3]);
    let start = std::time::Instant::now();
    while setup.adapter.state() != oxtun_sim::AdapterState::Paused {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "never paused"
        );
        thread::yield_now();
    }
    let paused = setup
        .adapter
        .send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(paused, [NDIS_STATUS_PAUSED; 3]);
    assert_eq!(setup.adapter.restart(), NDIS_STATUS_SUCCESS);
    assert_eq!(drain(&mut reader).len(), 3);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn concurrent_senders_keep_every_packet_intact_and_in_their_order() {
    const SENDERS: u64 = 4;
    const PER_SENDER: u64 = 5_000;
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut reader = rings.send_reader();
    let adapter = &setup.adapter;
    thread::scope(|scope| {
        for sender in 0..SENDERS {
            scope.spawn(move || {
                let mut random = Random(sender + 1);
                let mut next = 0;
                while next < PER_SENDER {
                    let size = 8 + random.below(1400) as usize;
                    let nbls = vec![vec![packet(sender << 32 | next, size)]];
                    let layout = LAYOUTS[random.below(4) as usize];
                    match adapter.send(&nbls, layout, DISPATCH_LEVEL)[0] {
                        NDIS_STATUS_SUCCESS => next += 1,
                        NDIS_STATUS_BUFFER_OVERFLOW => thread::yield_now(),
                        other => panic!("send failed: {other:#x}"),
                    }
                }
            });
        }
        let mut expected_next = [0u64; SENDERS as usize];
        let mut received = 0;
        while received < SENDERS * PER_SENDER {
            for data in drain(&mut reader) {
                let id = u64::from_le_bytes(data[..8].try_into().unwrap());
                let sender = (id >> 32) as usize;
                assert_eq!(
                    id & 0xFFFF_FFFF,
                    expected_next[sender],
                    "sender {sender} order"
                );
                assert_eq!(data, packet(id, data.len()));
                expected_next[sender] += 1;
                received += 1;
            }
        }
    });
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn a_client_scribbling_on_head_stops_the_ring_and_nothing_else() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    // SAFETY (test): the send ring's Head, the first word of its memory.
    unsafe { (rings.send_ring as *mut u32).write(MIN_CAPACITY + 4) };
    let nbls = vec![vec![packet(1, 40)]];
    let statuses = setup
        .adapter
        .send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(statuses, vec![NDIS_STATUS_ADAPTER_NOT_READY]);
    assert_eq!(
        setup.adapter.query(OID_GEN_VENDOR_ID, 4).status,
        NDIS_STATUS_SUCCESS
    );
    handle.close();
    assert_eq!(rings.send_tail(), RING_ENDED);
    setup.assert_nothing_held();
    let (handle, rings) = register(&setup.adapter, &process);
    let statuses = setup
        .adapter
        .send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    assert_eq!(statuses, vec![NDIS_STATUS_SUCCESS]);
    assert_eq!(drain(&mut rings.send_reader()), vec![packet(1, 40)]);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn closing_during_traffic_completes_every_send_and_holds_nothing() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let stop = AtomicBool::new(false);
    let [written, refused] = [AtomicU64::new(0), AtomicU64::new(0)];
    let adapter = &setup.adapter;
    thread::scope(|scope| {
        for sender in 0..2u64 {
            let (stop, written, refused) = (&stop, &written, &refused);
            scope.spawn(move || {
                let mut seed = sender << 32;
                while !stop.load(Ordering::SeqCst) {
                    seed += 1;
                    let nbls = vec![vec![packet(seed, 200)], vec![packet(seed, 1300)]];
                    for status in adapter.send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL) {
                        assert!(
                            [
                                NDIS_STATUS_SUCCESS,
                                NDIS_STATUS_MEDIA_DISCONNECTED,
                                NDIS_STATUS_BUFFER_OVERFLOW
                            ]
                            .contains(&status),
                            "{status:#x}"
                        );
                        let counter = if status == NDIS_STATUS_SUCCESS {
                            written
                        } else {
                            refused
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        for _ in 0..200 {
            // Counted before registering: the senders may fill the new ring at once.
            let before = written.load(Ordering::SeqCst);
            let (handle, rings) = register(adapter, &process);
            while written.load(Ordering::SeqCst) < before + 4 {
                thread::yield_now();
            }
            drain(&mut rings.send_reader());
            handle.close();
            assert_eq!(rings.send_tail(), RING_ENDED);
        }
        stop.store(true, Ordering::SeqCst);
    });
    // Sends really overlapped the registrations and their ends.
    assert!(written.load(Ordering::SeqCst) >= 800);
    assert!(refused.load(Ordering::SeqCst) > 0);
    setup.assert_nothing_held();
    setup.finish();
}
