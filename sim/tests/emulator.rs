//! The emulator (`wintun-emu`) as a separate process, driven through the client library and the
//! raw protocol: real packets through the real driver code on Linux. Tests that touch the
//! network first move into a network namespace of their own (each test is its own process).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oxtun_abi::emulator::EmulatorRegistration;
use oxtun_abi::{Features, MIN_CAPACITY, RING_ENDED, ring_size};
use oxtun_client::{Error, Session, send_with_descriptors};

mod common;
#[path = "../../client/tests/support/icmp.rs"]
mod icmp;
use common::{Emulator, own_network_namespace};
use icmp::answer_pings;

const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
const STATUS_INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
const STATUS_ALREADY_INITIALIZED: u32 = 0xC000_0510;
const STATUS_NOT_SUPPORTED: u32 = 0xC000_00BB;

/// An IPv4-looking packet of `len` bytes (version 4), the rest a pattern with `seed`.
fn packet(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (seed as u8).wrapping_add((i as u8).wrapping_mul(7)))
        .collect();
    bytes[0] = 0x45;
    bytes[4..12].copy_from_slice(&seed.to_le_bytes());
    bytes
}

fn receive_data(session: &Session) -> Vec<u8> {
    let received = session.receive().unwrap();
    let data = received.data().to_vec();
    drop(received);
    data
}

fn send_retrying(session: &Session, data: &[u8]) {
    loop {
        match session.send(data) {
            Ok(()) => return,
            Err(Error::Full) => thread::yield_now(),
            Err(other) => panic!("send failed: {other}"),
        }
    }
}

/// Client -> driver (receive path) -> reflected -> driver (send path) -> client. The sender
/// keeps at most 8 packets in flight: the send ring drops what does not fit (a full ring is a
/// congested link), and this test wants every packet back.
#[test]
fn reflect_mode_returns_ten_thousand_packets_byte_exact() {
    const COUNT: u64 = 10_000;
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let session = Session::start(&emulator.adapter(), 1 << 20).unwrap();
    let sizes = |seed: u64| [20usize, 40, 1500, 0xFFFF, 577, 63][seed as usize % 6];
    let received = std::sync::atomic::AtomicU64::new(0);
    thread::scope(|scope| {
        let (session, received) = (&session, &received);
        scope.spawn(move || {
            for seed in 0..COUNT {
                while seed >= received.load(Ordering::SeqCst) + 8 {
                    thread::yield_now();
                }
                send_retrying(session, &packet(seed, sizes(seed)));
            }
        });
        for seed in 0..COUNT {
            let data = receive_data(session);
            let expected = packet(seed, sizes(seed));
            assert!(
                data == expected,
                "packet {seed}: {} bytes, head {:02x?}",
                data.len(),
                &data[..12.min(data.len())]
            );
            received.store(seed + 1, Ordering::SeqCst);
        }
    });
}

#[test]
fn bad_flags_and_a_socket_in_use_are_refused_with_a_message() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_wintun-emu"))
            .args(args)
            .output()
            .unwrap()
    };
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let socket = emulator.socket.to_str().unwrap();
    let not_a_socket =
        std::env::temp_dir().join(format!("oxtun-not-a-socket-{}", std::process::id()));
    std::fs::write(&not_a_socket, "keep me").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--upper", "reflect"], "--socket PATH is required"),
        (
            &["--socket", "/tmp/x", "--upper", "bridge"],
            "--upper is tun or reflect",
        ),
        (
            &["--socket", "/tmp/x", "--frobnicate"],
            "unknown argument --frobnicate",
        ),
        (
            &["--socket", socket, "--upper", "reflect"],
            "another emulator listens there",
        ),
        (
            &[
                "--socket",
                not_a_socket.to_str().unwrap(),
                "--upper",
                "reflect",
            ],
            "exists and is not a socket",
        ),
    ];
    for (args, message) in cases {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} said it was ready");
    }
    assert_eq!(std::fs::read(&not_a_socket).unwrap(), b"keep me");
    std::fs::remove_file(&not_a_socket).unwrap();
    // The running emulator still serves.
    Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
}

/// Packets filled in place are received in the order they were allocated, whatever order they
/// are sent in; one dropped unsent becomes a packet the driver skips.
#[test]
fn allocated_packets_arrive_in_allocation_order() {
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let session = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
    let mut packets: Vec<_> = (0..4)
        .map(|seed| {
            let mut allocated = session.allocate(100 + seed as usize).unwrap();
            allocated
                .data_mut()
                .copy_from_slice(&packet(seed, 100 + seed as usize));
            allocated
        })
        .collect();
    let unsent = packets.remove(2);
    drop(unsent);
    for allocated in packets.into_iter().rev() {
        allocated.send().unwrap();
    }
    session.send(&packet(4, 104)).unwrap();
    for seed in [0, 1, 3, 4] {
        assert_eq!(receive_data(&session), packet(seed, 100 + seed as usize));
    }
    assert!(matches!(
        session.allocate(0x1_0000),
        Err(Error::TooLarge(0x1_0000))
    ));
}

#[test]
fn a_second_registration_is_refused_while_one_is_active() {
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let first = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
    match Session::start(&emulator.adapter(), MIN_CAPACITY) {
        Err(Error::Refused(STATUS_ALREADY_INITIALIZED)) => {}
        other => panic!("expected STATUS_ALREADY_INITIALIZED, got {:?}", other.err()),
    }
    drop(first);
    // The first connection's close ends its registration; then a new one is accepted.
    retry_until_registered(&emulator);
}

fn retry_until_registered(emulator: &Emulator) -> Session {
    let start = Instant::now();
    loop {
        match Session::start(&emulator.adapter(), MIN_CAPACITY) {
            Ok(session) => return session,
            Err(Error::Refused(STATUS_ALREADY_INITIALIZED))
                if start.elapsed() < Duration::from_secs(10) =>
            {
                thread::sleep(Duration::from_millis(20));
            }
            Err(other) => panic!("registration failed: {other}"),
        }
    }
}

#[test]
fn a_client_killed_mid_traffic_leaves_the_emulator_serving() {
    let mut emulator = Emulator::start(&["--upper", "reflect"]);
    // SAFETY: fork; the child only runs the client library, then is killed.
    let child = unsafe { libc::fork() };
    if child == 0 {
        let session = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
        for seed in 0.. {
            let _ = session.send(&packet(seed, 200));
            while let Ok(Some(received)) = session.try_receive() {
                drop(received);
            }
        }
        unreachable!();
    }
    thread::sleep(Duration::from_millis(300));
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    assert!(emulator.alive());
    let session = retry_until_registered(&emulator);
    send_retrying(&session, &packet(7, 100));
    assert_eq!(receive_data(&session), packet(7, 100));
}

/// Memory for a ring, shared through a memfd.
fn memfd(len: usize) -> OwnedFd {
    // SAFETY: a new memfd, sized, owned by the result.
    unsafe {
        let fd = libc::memfd_create(c"test-ring".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        OwnedFd::from_raw_fd(fd)
    }
}

fn eventfd() -> OwnedFd {
    // SAFETY: a new eventfd, owned by the result.
    unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) }
}

/// A registration's four descriptors, in message order: the send ring's memfd of `size` bytes
/// and its eventfd, then the receive ring's.
fn ring_descriptors(size: u32) -> (OwnedFd, OwnedFd, OwnedFd, OwnedFd) {
    (
        memfd(size as usize),
        eventfd(),
        memfd(size as usize),
        eventfd(),
    )
}

fn ask(stream: &mut UnixStream, message: &[u8], descriptors: &[&OwnedFd]) -> u32 {
    let raw: Vec<i32> = descriptors.iter().map(|fd| fd.as_raw_fd()).collect();
    send_with_descriptors(stream, message, &raw).unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    u32::from_le_bytes(reply)
}

#[test]
fn malformed_registrations_are_answered_and_harm_nothing() {
    let mut emulator = Emulator::start(&["--upper", "reflect"]);
    let size = ring_size(MIN_CAPACITY);
    let good = EmulatorRegistration {
        send_ring_size: size,
        receive_ring_size: size,
    };
    let (send, send_event, receive, receive_event) = ring_descriptors(size);
    let small = memfd(4096);
    let all = [&send, &send_event, &receive, &receive_event];
    let mut wrong_ioctl = good.encode();
    wrong_ioctl[0] ^= 0x04;
    let bad_size = EmulatorRegistration {
        send_ring_size: size + 4,
        receive_ring_size: size,
    }
    .encode();
    let bad_size_extended = EmulatorRegistration {
        send_ring_size: size + 4,
        receive_ring_size: size,
    }
    .encode_extended(Features::NONE);
    let cases: Vec<(&str, Vec<u8>, Vec<&OwnedFd>, u32)> = vec![
        (
            "short message",
            good.encode()[..8].to_vec(),
            all.to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "long message",
            [&good.encode()[..], &[0; 4]].concat(),
            all.to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "wrong IOCTL code",
            wrong_ioctl.to_vec(),
            all.to_vec(),
            STATUS_INVALID_DEVICE_REQUEST,
        ),
        (
            "three descriptors",
            good.encode().to_vec(),
            all[..3].to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "no descriptors",
            good.encode().to_vec(),
            Vec::new(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "five descriptors",
            good.encode().to_vec(),
            [&all[..], &[&small]].concat(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "memfd smaller than its ring",
            good.encode().to_vec(),
            vec![&small, &send_event, &receive, &receive_event],
            STATUS_INVALID_PARAMETER,
        ),
        (
            "an eventfd for a ring",
            good.encode().to_vec(),
            vec![&send_event, &send_event, &receive, &receive_event],
            STATUS_INVALID_PARAMETER,
        ),
        (
            "a memfd for an event",
            good.encode().to_vec(),
            vec![&send, &send_event, &receive, &small],
            STATUS_INVALID_PARAMETER,
        ),
        (
            "flags not zero",
            [&good.encode()[..12], &[1, 0, 0, 0]].concat(),
            all.to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "ring size not a power of two",
            bad_size.to_vec(),
            all.to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
        // The extended message goes to the driver as TUN_IOCTL_REGISTER_RINGS_EX, its flags as
        // the Features word, which the driver judges as it judges the IOCTL's.
        (
            "a feature no one knows",
            [
                &good.encode_extended(Features::NONE)[..12],
                &[0, 0, 0, 0x80],
            ]
            .concat(),
            all.to_vec(),
            STATUS_NOT_SUPPORTED,
        ),
        (
            "the extended message with a bad ring size",
            bad_size_extended.to_vec(),
            all.to_vec(),
            STATUS_INVALID_PARAMETER,
        ),
    ];
    let mut stream = UnixStream::connect(&emulator.socket).unwrap();
    for (name, message, descriptors, expected) in cases {
        assert_eq!(ask(&mut stream, &message, &descriptors), expected, "{name}");
    }
    assert!(emulator.alive());
    // The same connection, then another, still register good rings: with the extended message
    // asking for nothing, which registers as the plain one does, then with the plain one.
    assert_eq!(
        ask(&mut stream, &good.encode_extended(Features::NONE), &all),
        0
    );
    drop(stream);
    let session = retry_until_registered(&emulator);
    send_retrying(&session, &packet(1, 60));
    assert_eq!(receive_data(&session), packet(1, 60));
}

/// The emulator's mappings of clients' ring memfds.
fn ring_mappings(emulator: &Emulator) -> usize {
    std::fs::read_to_string(format!("/proc/{}/maps", emulator.pid()))
        .unwrap()
        .lines()
        .filter(|line| line.contains("/memfd:"))
        .count()
}

/// Registrations the driver refuses after the emulator mapped their rings (a second one while
/// one is active) leave nothing mapped behind, however often a connection tries.
#[test]
fn refused_registrations_leave_no_mappings_behind() {
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let active = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
    let mapped = ring_mappings(&emulator);
    assert_eq!(mapped, 2, "the active registration's two rings");
    let size = ring_size(MIN_CAPACITY);
    let message = EmulatorRegistration {
        send_ring_size: size,
        receive_ring_size: size,
    }
    .encode();
    let (send, send_event, receive, receive_event) = ring_descriptors(size);
    let mut stream = UnixStream::connect(&emulator.socket).unwrap();
    for _ in 0..50 {
        let descriptors = [&send, &send_event, &receive, &receive_event];
        assert_eq!(
            ask(&mut stream, &message, &descriptors),
            STATUS_ALREADY_INITIALIZED
        );
    }
    assert_eq!(ring_mappings(&emulator), mapped);
    drop(active);
}

#[test]
fn a_corrupt_ring_stops_that_ring_and_nothing_else() {
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let size = ring_size(MIN_CAPACITY);
    let (send, send_event, receive, receive_event) = ring_descriptors(size);
    let mut stream = UnixStream::connect(&emulator.socket).unwrap();
    let message = EmulatorRegistration {
        send_ring_size: size,
        receive_ring_size: size,
    }
    .encode();
    assert_eq!(
        ask(
            &mut stream,
            &message,
            &[&send, &send_event, &receive, &receive_event]
        ),
        0
    );
    // SAFETY: a shared mapping of our receive ring's memfd.
    let ring = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            receive.as_raw_fd(),
            0,
        )
    };
    assert_ne!(ring, libc::MAP_FAILED);
    // SAFETY: Head and Tail are the ring's first two words.
    let (head, tail) = unsafe {
        (
            AtomicU32::from_ptr(ring.cast()),
            AtomicU32::from_ptr(ring.cast::<u32>().add(1)),
        )
    };
    tail.store(MIN_CAPACITY + 4, Ordering::SeqCst);
    let one = 1u64.to_ne_bytes();
    // SAFETY: signalling our receive eventfd.
    unsafe { libc::write(receive_event.as_raw_fd(), one.as_ptr().cast(), 8) };
    let start = Instant::now();
    while head.load(Ordering::SeqCst) != RING_ENDED {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the driver never gave up the ring"
        );
        thread::yield_now();
    }
    drop(stream);
    let session = retry_until_registered(&emulator);
    send_retrying(&session, &packet(2, 80));
    assert_eq!(receive_data(&session), packet(2, 80));
}

#[test]
fn sigterm_tears_down_and_exits_cleanly() {
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let session = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
    send_retrying(&session, &packet(3, 90));
    assert_eq!(receive_data(&session), packet(3, 90));
    let (status, log) = emulator.terminate();
    assert!(status.success(), "{status}, log:\n{log}");
    assert!(
        log.contains("adapter halted, driver unloaded, nothing leaked"),
        "{log}"
    );
    // The driver ended the session: the client sees the end.
    assert!(matches!(session.receive(), Err(Error::Ended)));
}

#[test]
fn ping_both_families_through_the_driver() {
    own_network_namespace();
    let emulator = Emulator::start(&[
        "--name",
        "oxtun-t0",
        "--address",
        "10.99.0.1/24",
        "--address",
        "fd99::1/64",
    ]);
    let link = Command::new("ip")
        .args(["-o", "link", "show", "oxtun-t0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains("mtu 65535 ") && link.contains(",UP,"),
        "{link}"
    );
    let session = Session::start(&emulator.adapter(), MIN_CAPACITY).unwrap();
    thread::scope(|scope| {
        let session = &session;
        let responder = scope.spawn(move || answer_pings(session));
        for (family, address) in [("-4", "10.99.0.2"), ("-6", "fd99::2")] {
            let output = Command::new("ping")
                .args([family, "-c", "3", "-i", "0.2", "-W", "2", address])
                .output()
                .expect("ping (iputils-ping)");
            assert!(
                output.status.success(),
                "ping {address}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        drop(emulator);
        assert!(
            responder.join().unwrap() >= 6,
            "every echo went through the driver"
        );
    });
}

/// The emulator's resident memory, in KiB.
fn resident_kib(emulator: &Emulator) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", emulator.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A long life stays flat: 10,000 registrations on one emulator, each carrying ten packets each
/// way one at a time, leave its resident memory within 256 KiB of where it was after the first
/// hundred (an earlier simulator kept a record of every indication: 400 KB more here).
#[test]
fn ten_thousand_registrations_with_traffic_leave_memory_flat() {
    const REGISTRATIONS: u64 = 10_000;
    const SETTLED_AFTER: u64 = 100;
    let emulator = Emulator::start(&["--upper", "reflect"]);
    let start = Instant::now();
    let mut settled = 0;
    for registration in 0..REGISTRATIONS {
        let session = loop {
            // The previous connection's close ends its registration a moment later.
            match Session::start(&emulator.adapter(), MIN_CAPACITY) {
                Ok(session) => break session,
                Err(Error::Refused(STATUS_ALREADY_INITIALIZED)) => {
                    thread::sleep(Duration::from_micros(200));
                }
                Err(other) => panic!("registration {registration} failed: {other}"),
            }
        };
        for round in 0..10 {
            let data = packet(
                registration * 10 + round,
                64 + (registration % 1000) as usize,
            );
            send_retrying(&session, &data);
            assert_eq!(receive_data(&session), data, "registration {registration}");
        }
        drop(session);
        if registration + 1 == SETTLED_AFTER {
            settled = resident_kib(&emulator);
        }
    }
    let end = resident_kib(&emulator);
    println!(
        "{REGISTRATIONS} registrations in {:.1} s: resident {settled} KiB after {SETTLED_AFTER}, \
         {end} KiB at the end",
        start.elapsed().as_secs_f64()
    );
    assert!(
        end <= settled + 256,
        "resident memory grew from {settled} KiB to {end} KiB"
    );
    let (status, log) = emulator.terminate();
    assert!(status.success(), "{log}");
}
