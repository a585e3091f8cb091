//! The receive path on the simulated kernel: packets the client writes to the receive ring go up
//! the stack in place, in order, several per indication; Head moves only as NDIS returns them.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use oxtun_abi::{MAX_IP_PACKET_SIZE, RING_ENDED, TUN_IOCTL_REGISTER_RINGS};
use oxtun_driver::sys::*;
use oxtun_sim::{AdapterState, Bitness, Process, Received, ReturnMode, Token};
use support::*;

const PATIENCE: Duration = Duration::from_secs(20);

fn data(received: &[Received]) -> Vec<Vec<u8>> {
    received.iter().map(|packet| packet.data.clone()).collect()
}

#[oxtun_sim::test]
fn ip_packets_go_up_in_place_byte_exact_and_marked() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let packets = vec![
        ipv4(1, 20),
        ipv6(2, 40),
        ipv4(3, 1500),
        ipv6(4, 1280),
        ipv4(5, MAX_IP_PACKET_SIZE as usize),
        ipv4(6, 21),
    ];
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    let received = setup.adapter.wait_received(packets.len(), PATIENCE);
    assert_eq!(data(&received), packets);
    let ring = rings.receive_ring as usize
        ..rings.receive_ring as usize + rings.request.receive.ring_size as usize;
    for (packet, expected) in received.iter().zip(&packets) {
        assert!(
            ring.contains(&packet.address),
            "zero-copy: the data is in the ring"
        );
        let (flag, ether_type) = if expected[0] == 0x60 {
            (NDIS_NBL_FLAGS_IS_IPV6, 0x86DD)
        } else {
            (NDIS_NBL_FLAGS_IS_IPV4, 0x0800)
        };
        // Marked by the driver; NDIS's own flag from the NBL's allocation kept.
        assert_eq!(
            (packet.nbl_flags, packet.ether_type),
            (oxtun_sim::NDIS_ALLOCATION_FLAG | flag, ether_type)
        );
    }
    wait_released(&rings);
    let rcv_ok = u64::from_ne_bytes(
        setup
            .adapter
            .query(OID_GEN_RCV_OK, 8)
            .data
            .try_into()
            .unwrap(),
    );
    assert_eq!(rcv_ok, packets.len() as u64);
    let counters = statistics(&setup.adapter);
    assert_eq!(
        counters.ifHCInOctets,
        packets.iter().map(|p| p.len() as u64).sum::<u64>()
    );
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn what_is_not_ip_is_skipped_and_counted_while_ip_still_arrives() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let mut version_5 = ipv4(9, 60);
    version_5[0] = 0x55;
    let packets = vec![
        ipv4(1, 100),
        ipv4(2, 19),
        version_5,
        ipv6(3, 39),
        Vec::new(),
        ipv6(4, 100),
    ];
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    let received = setup.adapter.wait_received(2, PATIENCE);
    assert_eq!(data(&received), vec![ipv4(1, 100), ipv6(4, 100)]);
    wait_released(&rings);
    assert_eq!(statistics(&setup.adapter).ifInErrors, 4);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn a_hundred_thousand_packets_of_random_sizes_arrive_in_order() {
    const COUNT: u64 = 100_000;
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::with_capacity(&process, 1 << 20);
    let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_SUCCESS);
    let size = |seed: u64| -> usize {
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        match r % 100 {
            0 => [20, 40, MAX_IP_PACKET_SIZE as usize][(r / 100 % 3) as usize],
            1..=4 => 40 + (r / 100) as usize % (MAX_IP_PACKET_SIZE as usize - 39),
            _ => 40 + (r / 100) as usize % 1461,
        }
    };
    let packet = |seed: u64| {
        if seed % 2 == 0 {
            ipv4(seed, size(seed))
        } else {
            ipv6(seed, size(seed).max(40))
        }
    };
    thread::scope(|scope| {
        let rings = &rings;
        scope.spawn(move || {
            let mut writer = rings.receive_writer();
            let mut seed = 0;
            while seed < COUNT {
                let batch: Vec<Vec<u8>> = (seed..(seed + 1 + seed % 7).min(COUNT))
                    .map(packet)
                    .collect();
                if client_write(&mut writer, &rings.receive_event, &batch) {
                    seed += batch.len() as u64;
                } else {
                    thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < COUNT {
            let received = setup.adapter.wait_received(1, PATIENCE);
            assert!(
                !received.is_empty(),
                "nothing arrived for {PATIENCE:?}: a lost wakeup?"
            );
            for packet_received in received {
                assert_eq!(packet_received.data, packet(next), "packet {next}");
                next += 1;
            }
        }
    });
    let indications = setup.adapter.indications();
    let average = COUNT as f64 / indications.len() as f64;
    println!("{} indications, {average:.1} NBLs each", indications.len());
    handle.close();
    setup.finish();
}

/// A client without the handshake's fence (wintun.dll before 2026-02) now and then reads
/// Alertable as 0 while the driver goes to sleep, and so never sets the event for a packet it
/// wrote. Here every packet is written that way, just after the driver went to sleep: each must
/// still go up at the receive thread's one look after the sleep began, never wait for a next
/// packet.
#[oxtun_sim::test]
fn a_packet_whose_wake_up_was_missed_goes_up_within_the_recheck() {
    const ROUNDS: u64 = 100;
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    // SAFETY (test): the ring's memory is live in the process; Alertable is its third word.
    let alertable = unsafe { AtomicU32::from_ptr((rings.receive_ring as *mut u32).add(2)) };
    let mut worst = Duration::ZERO;
    for round in 0..ROUNDS {
        let asleep = std::time::Instant::now();
        while alertable.load(Ordering::SeqCst) == 0 {
            assert!(
                asleep.elapsed() < PATIENCE,
                "the receive thread never slept"
            );
            thread::yield_now();
        }
        let packet = ipv4(round, 60);
        let mut reservation = writer.reserve(64).unwrap();
        assert!(reservation.push_packet(60).unwrap().write(0, &packet));
        let _wake_up_missed = writer.complete(reservation);
        let written = std::time::Instant::now();
        let received = setup.adapter.wait_received(1, Duration::from_secs(2));
        assert_eq!(
            data(&received),
            [packet],
            "round {round}: the packet stalled"
        );
        worst = worst.max(written.elapsed());
    }
    println!("worst stall of {ROUNDS} missed wake-ups: {worst:?}");
    assert!(worst < Duration::from_millis(500), "worst stall {worst:?}");
    assert_eq!(
        rings.receive_event.set_count(),
        0,
        "the client never set the event"
    );
    wait_released(&rings);
    handle.close();
    setup.finish();
}

/// An idle registered session: after its first sleep, the receive thread wakes for nothing.
/// Relative timeouts end on the clock tick here, as on Windows, so a thread that looked at the
/// ring every few milliseconds would wake 64 times a second.
#[oxtun_sim::test]
fn an_idle_session_costs_no_wake_ups() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &[ipv4(1, 60)]
    ));
    assert_eq!(setup.adapter.wait_received(1, PATIENCE).len(), 1);
    // Asleep, and past the one look after the sleep began.
    thread::sleep(Duration::from_millis(100));
    let (timed_out, woken) = (
        oxtun_sim::dispatcher::timed_out_waits(),
        oxtun_sim::dispatcher::satisfied_waits(),
    );
    thread::sleep(Duration::from_millis(500));
    let wake_ups = oxtun_sim::dispatcher::timed_out_waits() - timed_out
        + (oxtun_sim::dispatcher::satisfied_waits() - woken);
    println!("wake-ups of an idle session in 500 ms: {wake_ups}");
    assert_eq!(wake_ups, 0, "an idle session woke the receive thread");
    handle.close();
    setup.finish();
}

/// A client that gives a manual-reset event for the receive ring and sets it, as it should when
/// the driver sleeps, but never resets it: the driver resets it once awake, so its later sleeps
/// are sleeps and not a spin.
#[oxtun_sim::test]
fn a_manual_reset_receive_event_left_set_does_not_make_the_driver_spin() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let mut rings = ClientRings::new(&process);
    let (event_handle, event) = process.create_manual_reset_event(EVENT_ALL_ACCESS);
    rings.request.receive.tail_moved = event_handle;
    rings.receive_event = event;
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    let mut writer = rings.receive_writer();
    let packets = [ipv4(1, 60), ipv4(2, 60)];
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &packets[..1]
    ));
    // Set whatever the driver said, and left set.
    rings.receive_event.set();
    assert_eq!(setup.adapter.wait_received(1, PATIENCE).len(), 1);
    thread::sleep(Duration::from_millis(100));
    let woken = oxtun_sim::dispatcher::satisfied_waits();
    thread::sleep(Duration::from_millis(200));
    let wake_ups = oxtun_sim::dispatcher::satisfied_waits() - woken;
    println!("wake-ups in 200 ms after a manual-reset event was left set: {wake_ups}");
    assert!(
        wake_ups <= 1,
        "{wake_ups} wake-ups: the receive thread spins"
    );
    // And the event still wakes it.
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &packets[1..]
    ));
    assert_eq!(
        data(&setup.adapter.wait_received(1, PATIENCE)),
        packets[1..]
    );
    wait_released(&rings);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn head_moves_only_as_nbls_return_and_only_in_ring_order() {
    let setup = setup();
    setup.adapter.set_return_mode(ReturnMode::Hold);
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let packets: Vec<Vec<u8>> = (0..10).map(|seed| ipv4(seed, 100)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    assert_eq!(data(&setup.adapter.wait_received(10, PATIENCE)), packets);
    let start = rings.receive_head();
    assert_ne!(
        start,
        rings.receive_tail(),
        "nothing is released while the stack holds it"
    );
    // Return all but the oldest, newest first, one per call: Head stays.
    setup.adapter.return_held(
        |held| {
            held.remove(0);
            held.reverse();
        },
        1,
    );
    thread::sleep(Duration::from_millis(20));
    assert_eq!(
        rings.receive_head(),
        start,
        "Head may not pass the unreturned oldest packet"
    );
    assert_eq!(setup.adapter.held(), 1);
    setup.adapter.return_held(|_| {}, 1);
    wait_released(&rings);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn waiting_packets_go_up_several_per_indication() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let packets: Vec<Vec<u8>> = (0..50).map(|seed| ipv6(seed, 200)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    assert_eq!(data(&setup.adapter.wait_received(50, PATIENCE)), packets);
    let indications = setup.adapter.indications();
    assert!(indications.iter().any(|&n| n > 1), "{indications:?}");
    assert!(indications.iter().all(|&n| n <= 64));
    handle.close();
    setup.finish();
}

/// NDIS may pause the adapter while an indication is under way and return that indication's
/// NBLs before it returns. The pause must not complete inside the indication (the simulator
/// flags NdisMPauseComplete there), and no indication may begin once MiniportPause returned.
#[oxtun_sim::test]
fn a_pause_during_an_indication_completes_after_it() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    setup
        .adapter
        .set_return_mode(ReturnMode::PauseDuringIndication);
    let first: Vec<Vec<u8>> = (0..8).map(|seed| ipv4(seed, 60)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &first));
    let start = std::time::Instant::now();
    while setup.adapter.state() == AdapterState::Running {
        assert!(start.elapsed() < PATIENCE, "the pause never came");
        thread::yield_now();
    }
    setup.adapter.wait_paused_if_pending();
    assert_eq!(setup.adapter.state(), AdapterState::Paused);
    assert_eq!(setup.adapter.restart(), NDIS_STATUS_SUCCESS);
    let received = setup.adapter.wait_received(first.len(), PATIENCE);
    let later: Vec<Vec<u8>> = (8..16).map(|seed| ipv6(seed, 80)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &later));
    let received_later = setup.adapter.wait_received(later.len(), PATIENCE);
    assert!(!received.is_empty(), "the indication under way went up");
    assert_eq!(data(&received_later), later);
    wait_released(&rings);
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn pause_completes_only_when_every_nbl_is_back() {
    let setup = setup();
    setup.adapter.set_return_mode(ReturnMode::Hold);
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let packets: Vec<Vec<u8>> = (0..5).map(|seed| ipv4(seed, 60)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    setup.adapter.wait_received(5, PATIENCE);
    assert_eq!(setup.adapter.pause(), NDIS_STATUS_PENDING);
    assert_eq!(setup.adapter.state(), AdapterState::Pausing);
    setup.adapter.return_held(|held| held.reverse(), 2);
    setup.adapter.wait_paused();
    assert_eq!(setup.adapter.state(), AdapterState::Paused);
    wait_released(&rings);
    assert_eq!(setup.adapter.restart(), NDIS_STATUS_SUCCESS);
    setup.adapter.set_return_mode(ReturnMode::Immediately);
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &[ipv4(99, 80)]
    ));
    assert_eq!(
        data(&setup.adapter.wait_received(1, PATIENCE)),
        vec![ipv4(99, 80)]
    );
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn packets_arriving_while_paused_are_dropped_not_indicated() {
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    assert_eq!(setup.adapter.pause(), NDIS_STATUS_SUCCESS);
    let packets: Vec<Vec<u8>> = (0..3).map(|seed| ipv4(seed, 60)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    wait_released(&rings);
    assert!(setup.adapter.take_received().is_empty());
    assert_eq!(statistics(&setup.adapter).ifInDiscards, 3);
    assert_eq!(setup.adapter.restart(), NDIS_STATUS_SUCCESS);
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &[ipv6(7, 70)]
    ));
    assert_eq!(
        data(&setup.adapter.wait_received(1, PATIENCE)),
        vec![ipv6(7, 70)]
    );
    handle.close();
    setup.finish();
}

/// How a test corrupts the receive ring, given the offset of the next packet.
type Corruption = fn(&ClientRings, u32);

fn corrupt_size(rings: &ClientRings, at: u32) {
    // SAFETY (test): the receive ring's memory: the Size word of the packet at `at`, then Tail.
    unsafe {
        let data = (rings.receive_ring as *mut u8).add(12);
        (data.add(at as usize) as *mut u32).write(MAX_IP_PACKET_SIZE + 1);
    }
    set_tail(rings, at + 8);
}

fn set_tail(rings: &ClientRings, tail: u32) {
    // SAFETY (test): the receive ring's Tail, its second word.
    unsafe { AtomicU32::from_ptr((rings.receive_ring as *mut u32).add(1)) }
        .store(tail, Ordering::SeqCst);
}

#[oxtun_sim::test]
fn a_corrupt_size_or_tail_stops_reading_and_nothing_else() {
    let corruptions: [(&str, Corruption); 4] = [
        ("Size over 0xFFFF", corrupt_size),
        ("Tail past the capacity", |rings, _| {
            set_tail(rings, rings.request.receive.ring_size)
        }),
        ("Tail misaligned", |rings, at| set_tail(rings, at + 2)),
        ("Tail 0xFFFFFFFF", |rings, _| set_tail(rings, RING_ENDED)),
    ];
    let setup = setup();
    let process = Process::new(Token::System, Bitness::Bits64);
    for (name, corrupt) in corruptions {
        let (handle, rings) = register(&setup.adapter, &process);
        let mut writer = rings.receive_writer();
        assert!(client_write(
            &mut writer,
            &rings.receive_event,
            &[ipv4(1, 40)]
        ));
        setup.adapter.wait_received(1, PATIENCE);
        wait_released(&rings);
        corrupt(&rings, rings.receive_head());
        rings.receive_event.set();
        let start = std::time::Instant::now();
        while rings.receive_head() != RING_ENDED {
            assert!(
                start.elapsed() < PATIENCE,
                "{name}: the driver never gave up the ring"
            );
            thread::yield_now();
        }
        assert_eq!(
            setup.adapter.query(OID_GEN_VENDOR_ID, 4).status,
            NDIS_STATUS_SUCCESS
        );
        // The send direction still works until the owner closes.
        let nbls = vec![vec![ipv4(2, 40)]];
        let statuses =
            setup
                .adapter
                .send(&nbls, oxtun_sim::Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
        assert_eq!(statuses, vec![NDIS_STATUS_SUCCESS], "{name}");
        handle.close();
        setup.assert_nothing_held();
    }
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &[ipv6(2, 50)]
    ));
    assert_eq!(
        data(&setup.adapter.wait_received(1, PATIENCE)),
        vec![ipv6(2, 50)]
    );
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn teardown_waits_for_nbls_the_stack_holds() {
    let setup = setup();
    setup.adapter.set_return_mode(ReturnMode::Hold);
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let mut writer = rings.receive_writer();
    let packets: Vec<Vec<u8>> = (0..4).map(|seed| ipv4(seed, 60)).collect();
    assert!(client_write(&mut writer, &rings.receive_event, &packets));
    setup.adapter.wait_received(4, PATIENCE);
    thread::scope(|scope| {
        let closing = scope.spawn(move || handle.close());
        thread::sleep(Duration::from_millis(50));
        assert!(
            !closing.is_finished(),
            "the ring was unmapped under NBLs the stack holds"
        );
        setup.adapter.return_held(|held| held.reverse(), 1);
        closing.join().unwrap();
    });
    assert_eq!(rings.send_tail(), RING_ENDED);
    setup.assert_nothing_held();
    setup.finish();
}

/// Every way a registration ends, while packets flow both ways, a thousand times: owner close,
/// owner exit, close while paused, and halt (then a new adapter).
#[oxtun_sim::test]
fn teardown_during_traffic_a_thousand_times() {
    let driver = oxtun_sim::Driver::load().unwrap();
    let mut adapter = driver.add_adapter().unwrap();
    for round in 0..1000u64 {
        let process = Process::new(Token::System, Bitness::Bits64);
        let (handle, rings) = register(&adapter, &process);
        let mut writer = rings.receive_writer();
        let packets: Vec<Vec<u8>> = (0..1 + round % 5)
            .map(|seed| ipv4(seed, 64 + seed as usize))
            .collect();
        assert!(client_write(&mut writer, &rings.receive_event, &packets));
        let nbls = vec![vec![ipv4(round, 40)]];
        adapter.send(&nbls, oxtun_sim::Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
        match round % 4 {
            0 => handle.close(),
            1 => {
                drop(handle);
                process.exit();
            }
            2 => {
                adapter.pause();
                adapter.wait_paused_if_pending();
                handle.close();
                assert_eq!(adapter.restart(), NDIS_STATUS_SUCCESS);
            }
            _ => {
                drop(handle);
                adapter.halt();
                assert_eq!(rings.send_tail(), RING_ENDED);
                adapter = driver.add_adapter().unwrap();
            }
        }
        adapter.take_received();
    }
    adapter.halt();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
}
