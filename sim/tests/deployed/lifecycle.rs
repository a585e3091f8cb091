//! A registration's life as a deployed client sees it: exclusive while its handle is open,
//! refused with a status for bad requests, ended by a close, a halt or the client's death.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::Emulator;
use crate::device::{
    self, Device, STATUS_ALREADY_INITIALIZED, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_PARAMETER, TUN_IOCTL_REGISTER_RINGS,
};
use crate::session::{self, ENDED, Error, Handshake, MIN_CAPACITY, Rings, Session};
use crate::{
    REFLECT, TEARDOWN_LIMIT, WAKE_LIMIT, WATCHDOG, assert_reflects, receive_batch, start_when_free,
    time_until, udp_packet,
};

#[test]
fn a_registration_is_exclusive_until_its_handle_closes() {
    let emulator = Emulator::start(REFLECT);
    let (first_rings, second_rings) = (
        Rings::new(MIN_CAPACITY).unwrap(),
        Rings::new(MIN_CAPACITY).unwrap(),
    );
    let first = Device::open(&emulator.socket).unwrap();
    assert_eq!(first.register(&first_rings).unwrap(), 0);
    let again = Rings::new(MIN_CAPACITY).unwrap();
    assert_eq!(
        first.register(&again).unwrap(),
        STATUS_ALREADY_INITIALIZED,
        "a second registration on the same handle"
    );
    let second = Device::open(&emulator.socket).unwrap();
    assert_eq!(
        second.register(&second_rings).unwrap(),
        STATUS_ALREADY_INITIALIZED,
        "a registration on another handle"
    );
    let first = Session::registered(first, first_rings, Handshake::Unfenced);
    assert_reflects(&first, &udp_packet(1, 100));
    first.close_handle();
    // The refused handle stays open and registers once the first one is closed.
    let start = Instant::now();
    let status = loop {
        let status = second.register(&second_rings).unwrap();
        if status != STATUS_ALREADY_INITIALIZED || start.elapsed() > WATCHDOG {
            break status;
        }
        thread::sleep(Duration::from_millis(1));
    };
    let waited = start.elapsed();
    println!("registered on the second handle {waited:?} after the first closed");
    assert_eq!(status, 0);
    assert!(waited < TEARDOWN_LIMIT, "{waited:?}");
    let second = Session::registered(second, second_rings, Handshake::Unfenced);
    assert_reflects(&second, &udp_packet(2, 200));
    // Neither side ever wrote Send.Alertable.
    assert_eq!(second.rings().send.alertable().load(Ordering::SeqCst), 0);
}

/// Messages and descriptors a registration must refuse, each answered with its status on a
/// connection that registers good rings afterwards.
#[test]
fn malformed_registrations_are_refused_and_the_handle_registers_after() {
    let emulator = Emulator::start(REFLECT);
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let size = session::ring_size(MIN_CAPACITY);
    let good = device::registration(size, size);
    let fds = |rings: &Rings| {
        [
            rings.send.memory.as_raw_fd(),
            rings.send.event.as_raw_fd(),
            rings.receive.memory.as_raw_fd(),
            rings.receive.event.as_raw_fd(),
        ]
    };
    let all = fds(&rings);
    let small = Rings::new(MIN_CAPACITY).unwrap();
    // SAFETY: shrinking our own memfd below its ring's size.
    assert_eq!(
        unsafe { libc::ftruncate(small.send.memory.as_raw_fd(), 4096) },
        0
    );
    let ended = Rings::new(MIN_CAPACITY).unwrap();
    ended.send.tail().store(ENDED, Ordering::SeqCst);
    let with = |field: usize, value: u32| {
        let mut message = good;
        message[field * 4..field * 4 + 4].copy_from_slice(&value.to_le_bytes());
        message.to_vec()
    };
    let bad_messages = [
        ("8 bytes", good[..8].to_vec()),
        ("20 bytes", [&good[..], &[0; 4]].concat()),
        ("flags", with(3, 1)),
        ("RingSize 4 past a capacity", with(1, size + 4)),
        (
            "capacity 64 KiB",
            with(2, session::ring_size(MIN_CAPACITY / 2)),
        ),
        ("capacity 128 MiB", with(1, session::ring_size(128 << 20))),
        ("RingSize 0", with(2, 0)),
    ];
    let bad_descriptors = [
        ("none", Vec::new()),
        ("3", all[..3].to_vec()),
        ("5", [&all[..], &all[..1]].concat()),
        ("an event for a ring", vec![all[1], all[1], all[2], all[3]]),
        ("a ring for an event", vec![all[0], all[0], all[2], all[3]]),
        ("a memfd smaller than its ring", fds(&small).to_vec()),
        ("a send ring already ended", fds(&ended).to_vec()),
    ];
    let device = Device::open(&emulator.socket).unwrap();
    let ask = |message: &[u8], descriptors: &[RawFd]| device.request(message, descriptors).unwrap();
    for (name, message) in bad_messages {
        assert_eq!(ask(&message, &all), STATUS_INVALID_PARAMETER, "{name}");
    }
    for (name, descriptors) in bad_descriptors {
        assert_eq!(ask(&good, &descriptors), STATUS_INVALID_PARAMETER, "{name}");
    }
    let another_ioctl = with(0, TUN_IOCTL_REGISTER_RINGS ^ 4);
    assert_eq!(ask(&another_ioctl, &all), STATUS_INVALID_DEVICE_REQUEST);
    assert_eq!(device.register(&rings).unwrap(), 0);
    let session = Session::registered(device, rings, Handshake::Unfenced);
    assert_reflects(&session, &udp_packet(3, 300));
}

/// A client process SIGKILLed while it sends from two threads and receives: the emulator ends
/// its registration as a handle close does (the send ring's Tail becomes 0xFFFFFFFF), and
/// the next client registers and carries traffic.
#[test]
fn a_client_killed_mid_traffic_ends_its_registration() {
    let mut emulator = Emulator::start(REFLECT);
    let rings = Rings::new(MIN_CAPACITY).unwrap();
    let mut busy = [0 as libc::c_int; 2];
    // SAFETY: a new pipe into our array.
    assert_eq!(unsafe { libc::pipe(busy.as_mut_ptr()) }, 0);
    // SAFETY: fork; the child only runs the client on the rings made above and never returns
    // into the test harness.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_until_killed(&emulator, rings, busy[1])
        }));
        // SAFETY: leaving the child at once, whatever happened.
        unsafe { libc::_exit(if outcome.is_ok() { 0 } else { 3 }) };
    }
    // SAFETY: the pipe's ends are ours; the parent keeps the read end only, so that it reads
    // the end of the pipe if the child dies.
    let busy_read = unsafe {
        libc::close(busy[1]);
        OwnedFd::from_raw_fd(busy[0])
    };
    let mut byte = [0u8];
    let in_full_flow = session::readable_before(&busy_read, Instant::now() + WATCHDOG) && {
        // SAFETY: one byte into a local from our pipe, which is readable.
        unsafe { libc::read(busy_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) == 1 }
    };
    // SAFETY: killing and reaping our own child, in full flow or not.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    assert!(in_full_flow, "the child client never had 1000 packets back");
    let killed = Instant::now();
    while rings.send.tail().load(Ordering::SeqCst) != ENDED {
        assert!(
            killed.elapsed() < TEARDOWN_LIMIT,
            "the dead client's send ring was never ended"
        );
        thread::yield_now();
    }
    let ended = killed.elapsed();
    assert!(emulator.alive());
    let (session, registered) = start_when_free(&emulator, Handshake::Unfenced);
    println!(
        "send ring ended {ended:?} after SIGKILL; the next client registered in {registered:?}"
    );
    assert!(registered < TEARDOWN_LIMIT);
    for seed in 0..100 {
        assert_reflects(&session, &udp_packet(seed, 40 + seed as usize));
    }
    let (status, log) = emulator.terminate();
    assert!(
        status.success() && log.contains("nothing leaked"),
        "{status}: {log}"
    );
}

/// The killed child's life: register `rings`, then send from two threads and receive, saying
/// on `busy` once a thousand packets came back.
fn run_until_killed(emulator: &Emulator, rings: Rings, busy: libc::c_int) {
    let device = Device::open(&emulator.socket).unwrap();
    assert_eq!(device.register(&rings).unwrap(), 0);
    let session = Session::registered(device, rings, Handshake::Unfenced);
    let received = AtomicU64::new(0);
    let told = AtomicBool::new(false);
    thread::scope(|scope| {
        for stream in 0..2 {
            let (session, received) = (&session, &received);
            scope.spawn(move || {
                for sequence in 0.. {
                    while sequence >= received.load(Ordering::SeqCst) / 2 + 32 {
                        thread::yield_now();
                    }
                    let packet = udp_packet(stream * 1_000_000 + sequence as u32, 300);
                    session.send_retrying(&packet).unwrap();
                }
            });
        }
        loop {
            let count = receive_batch(&session, |_| {}).unwrap();
            let total = received.fetch_add(count as u64, Ordering::SeqCst) + count as u64;
            if total >= 1000 && !told.swap(true, Ordering::SeqCst) {
                // SAFETY: one byte from a local into our pipe.
                unsafe { libc::write(busy, [1u8].as_ptr().cast(), 1) };
            }
        }
    });
}

/// Closing the handle while a reader waits on the read-wait event, a received packet is
/// unreleased and an allocated one unsent: the reader wakes at once to ERROR_HANDLE_EOF (the
/// send ring's Tail is 0xFFFFFFFF) and the adapter is free for the next registration at once.
#[test]
fn closing_the_handle_wakes_a_waiting_reader_with_the_end() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    session.send(&udp_packet(1, 100)).unwrap();
    let held = session.receive_waiting(WATCHDOG).unwrap();
    let unsent = session.allocate(100).unwrap();
    let (result, woke_after) = thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let result = session.receive_waiting(WATCHDOG).err();
            (result, Instant::now())
        });
        thread::sleep(Duration::from_millis(20));
        let closed_at = Instant::now();
        session.close_handle();
        let (result, woken_at) = reader.join().unwrap();
        (result, woken_at - closed_at)
    });
    assert_eq!(result, Some(Error::HandleEof));
    assert!(woke_after < WAKE_LIMIT, "{woke_after:?}");
    assert_eq!(session.rings().send.tail().load(Ordering::SeqCst), ENDED);
    assert_eq!(session.receive().err(), Some(Error::HandleEof));
    let (next, registered) = start_when_free(&emulator, Handshake::Fenced);
    println!(
        "the waiting reader woke {woke_after:?} after the close; the next registration took \
         {registered:?}"
    );
    assert!(registered < TEARDOWN_LIMIT);
    assert_reflects(&next, &udp_packet(2, 200));
    drop((held, unsent));
}

/// After the handle closes, the DLL's allocation answers ERROR_HANDLE_EOF: Wintun's receive
/// thread stores Head = 0xFFFFFFFF whenever it ends, a close included (driver/wintun.c,
/// TunProcessReceiveData's last statement), so a writer learns the session is over instead of
/// filling a ring nobody reads.
#[test]
fn closing_the_handle_ends_the_receive_ring_too() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    assert_reflects(&session, &udp_packet(1, 100));
    session.close_handle();
    let ring = &session.rings().receive;
    assert!(
        time_until(TEARDOWN_LIMIT, || ring.head().load(Ordering::SeqCst)
            == ENDED)
        .is_some(),
        "the closed session's receive ring (Head, Tail, Alertable): {:?}",
        ring.header()
    );
    assert_eq!(session.allocate(100).err(), Some(Error::HandleEof));
}

/// The emulator stopping (the adapter halted, the driver unloaded) while a reader waits: the
/// reader wakes to ERROR_HANDLE_EOF, and nothing leaked.
#[test]
fn halting_the_adapter_wakes_a_waiting_reader_with_the_end() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    assert_reflects(&session, &udp_packet(1, 100));
    thread::scope(|scope| {
        let reader = scope.spawn(|| session.receive_waiting(WATCHDOG).err());
        thread::sleep(Duration::from_millis(20));
        let (status, log) = emulator.terminate();
        assert!(
            status.success() && log.contains("nothing leaked"),
            "{status}: {log}"
        );
        assert_eq!(reader.join().unwrap(), Some(Error::HandleEof));
    });
}
