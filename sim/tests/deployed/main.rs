//! The deployed-client conformance suite (issue 11): the driver, served by `wintun-emu`, against
//! a client that behaves as deployed wintun.dll does (session.rs) and shares no code with the
//! project's own client or ring protocol. It never writes Send.Alertable, waits on the read-wait
//! event after every empty read, releases out of order and sends from several threads.
//!
//! Every case has a time limit and prints what it measured (`--nocapture`, or nextest's output
//! of a failing test). Tests that use the Linux stack move into a network namespace of their
//! own first (each test is its own process under nextest); they need root.

#[path = "../common/mod.rs"]
mod common;
mod device;
mod ip;
mod linux;
mod session;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Emulator, own_network_namespace};
use device::{
    Device, STATUS_ALREADY_INITIALIZED, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    TUN_IOCTL_REGISTER_RINGS,
};
use linux::Pinger;
use session::{ENDED, Error, Handshake, MIN_CAPACITY, Received, Rings, Session};

const REFLECT: &[&str] = &["--upper", "reflect"];
/// The interface and addresses of tests through the Linux stack: the stack is .1, the client
/// answers for .2.
const TUN: &[&str] = &[
    "--name",
    "oxdep0",
    "--address",
    "10.201.0.1/24",
    "--address",
    "fd01:201::1/64",
];
const STACK_V4: &str = "10.201.0.1";
const STACK_V6: &str = "fd01:201::1";
const CLIENT_V4: &str = "10.201.0.2";
const CLIENT_V6: &str = "fd01:201::2";

/// What the median ping round trip or wake-up must beat: they take tens of microseconds here.
const TYPICAL_LIMIT: Duration = Duration::from_millis(1);
/// The slowest single ping round trip or wake-up accepted: room for the tens of milliseconds a
/// loaded 2-core machine now and then delays a thread, none for the 1-second (or endless)
/// waits of a missed event.
const WAKE_LIMIT: Duration = Duration::from_millis(250);
/// How long a burst of 200 echo requests may take to be answered in full.
const BURST_LIMIT: Duration = Duration::from_secs(1);
/// How long the end of a registration may take to be seen, or a new one to be accepted.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(1);
/// The longest any single wait of a test may block: a stuck driver fails, it does not hang.
const WATCHDOG: Duration = Duration::from_secs(5);

/// The interface's counters and the routes, for the message of a test through the stack that
/// lost packets.
fn network_state() -> String {
    let run = |args: &[&str]| {
        let output = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let counters = std::process::Command::new("nstat")
        .args(["-as"])
        .output()
        .unwrap();
    run(&["-s", "link", "show", "oxdep0"])
        + &run(&["-6", "address"])
        + &String::from_utf8_lossy(&counters.stdout)
}

/// Starts the emulator with its TUN interface in this test's namespace, and waits until the
/// stack takes IPv6 packets for its address. wintun-emu says it is ready once the address is
/// assigned, but Linux adds a `nodad` address's local route only when address configuration
/// runs after the link comes up, from a work queue; until then it drops what arrives for the
/// address (Ip6InAddrErrors), which on a loaded machine lasts long enough to lose pings.
fn start_tun_emulator() -> Emulator {
    own_network_namespace();
    let emulator = Emulator::start(TUN);
    let local_route = format!("local {STACK_V6} ");
    let routable = time_until(WATCHDOG, || {
        let output = std::process::Command::new("ip")
            .args(["-6", "route", "show", "table", "local"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).contains(&local_route)
    });
    println!("the stack took IPv6 for {STACK_V6} after {routable:?}");
    assert!(routable.is_some(), "no local route for {STACK_V6}");
    emulator
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Registers until no other registration is active; the session and how long that took.
fn start_when_free(emulator: &Emulator, handshake: Handshake) -> (Session, Duration) {
    let start = Instant::now();
    loop {
        match Session::start(&emulator.socket, MIN_CAPACITY, handshake) {
            Ok(session) => return (session, start.elapsed()),
            Err(session::StartError::Refused(STATUS_ALREADY_INITIALIZED))
                if start.elapsed() < WATCHDOG =>
            {
                thread::sleep(Duration::from_millis(1));
            }
            Err(session::StartError::Refused(status)) => {
                panic!("registration refused: {status:#x}")
            }
            Err(session::StartError::Io(error)) => panic!("registration failed: {error}"),
        }
    }
}

/// Every packet waiting now (at least one, waiting for it as an application does), released
/// in the reverse order of receipt once `handle` has seen them all.
fn receive_batch(session: &Session, mut handle: impl FnMut(&[u8])) -> Result<usize, Error> {
    let mut batch: Vec<Received<'_>> = vec![session.receive_waiting(WATCHDOG)?];
    while batch.len() < 32 {
        match session.receive() {
            Ok(packet) => batch.push(packet),
            Err(Error::NoMoreItems) => break,
            Err(other) => return Err(other),
        }
    }
    let count = batch.len();
    for packet in &batch {
        handle(packet.data());
    }
    for packet in batch.into_iter().rev() {
        packet.release();
    }
    Ok(count)
}

/// Answers every echo request until the session ends; how many it answered.
fn answer_echo_requests(session: &Session) -> u64 {
    let mut answered = 0;
    let mut replies = Vec::new();
    loop {
        match receive_batch(session, |packet| replies.extend(ip::echo_reply(packet))) {
            Ok(_) => {}
            Err(Error::HandleEof) => return answered,
            Err(other) => panic!("the responder's receive failed: {other:?}"),
        }
        for reply in replies.drain(..) {
            session.send_retrying(&reply).unwrap();
            answered += 1;
        }
    }
}

/// Runs `body` with a thread answering echo requests on a session of `emulator`, then ends
/// the session; the echo requests answered.
fn with_responder(emulator: &Emulator, body: impl FnOnce()) -> u64 {
    let (session, _) = start_when_free(emulator, Handshake::Fenced);
    thread::scope(|scope| {
        let responder = scope.spawn(|| answer_echo_requests(&session));
        body();
        session.close_handle();
        responder.join().unwrap()
    })
}

/// The median and the largest of `times`.
fn median_and_worst(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

/// A packet comes back through the reflecting emulator byte for byte.
fn assert_reflects(session: &Session, packet: &[u8]) {
    session.send_retrying(packet).unwrap();
    let received = session.receive_waiting(WATCHDOG).unwrap();
    assert_eq!(received.data(), packet);
    received.release();
}

fn udp_packet(seed: u32, len: usize) -> Vec<u8> {
    let source: SocketAddr = "10.9.0.2:1000".parse().unwrap();
    ip::udp(
        source,
        "10.9.0.1:2000".parse().unwrap(),
        &ip::payload(0, seed, len),
    )
}

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

/// The send ring's TailMoved event after every move of its Tail, with Send.Alertable left 0:
/// a reader that found the ring empty and waits is woken by each packet.
#[test]
fn the_read_wait_event_is_set_after_every_move_of_the_send_tail() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Unfenced);
    let mut waits = Vec::new();
    for seed in 0..200 {
        assert_eq!(session.receive().err(), Some(Error::NoMoreItems));
        let packet = udp_packet(seed, 64 + seed as usize);
        let start = Instant::now();
        session.send(&packet).unwrap();
        let received = session.receive_waiting(WAKE_LIMIT);
        let waited = start.elapsed();
        let received =
            received.unwrap_or_else(|error| panic!("packet {seed}: {error:?} after {waited:?}"));
        assert_eq!(received.data(), packet);
        received.release();
        waits.push(waited);
    }
    let (median, worst) = median_and_worst(&mut waits);
    println!("200 wake-ups by the read-wait event: median {median:?}, worst {worst:?}");
    assert!(median < TYPICAL_LIMIT, "median wake-up {median:?}");
    assert_eq!(session.rings().send.alertable().load(Ordering::SeqCst), 0);
}

#[test]
fn pings_both_families_answer_in_well_under_a_millisecond() {
    let emulator = start_tun_emulator();
    let mut report = Vec::new();
    let answered = with_responder(&emulator, || {
        for target in [CLIENT_V4, CLIENT_V6] {
            let pinger = Pinger::new(address(target)).unwrap();
            let mut round_trips = Vec::new();
            for sequence in 0..100 {
                let sent = Instant::now();
                pinger
                    .send(sequence, &ip::payload(7, sequence.into(), 56))
                    .unwrap();
                let reply = pinger.receive(WATCHDOG).unwrap_or_else(|| {
                    panic!(
                        "no reply to ping {sequence} of {target}; {}",
                        network_state()
                    )
                });
                assert_eq!(reply.sequence, sequence);
                round_trips.push(reply.at - sent);
            }
            let (median, worst) = median_and_worst(&mut round_trips);
            report.push(format!("{target}: median {median:?}, worst {worst:?}"));
            assert!(
                worst < WAKE_LIMIT && median < TYPICAL_LIMIT,
                "ping {target}: median {median:?}, worst {worst:?}"
            );
        }
    });
    println!("100 pings each: {}", report.join("; "));
    assert!(answered >= 200, "{answered} echo requests answered");
}

#[test]
fn ten_bursts_of_two_hundred_echo_requests_are_all_answered() {
    let emulator = start_tun_emulator();
    let mut report = Vec::new();
    with_responder(&emulator, || {
        for burst in 0..10u16 {
            let target = if burst % 2 == 0 { CLIENT_V4 } else { CLIENT_V6 };
            let pinger = Pinger::new(address(target)).unwrap();
            let start = Instant::now();
            for index in 0..200 {
                let sequence = burst * 200 + index;
                pinger
                    .send(sequence, &ip::payload(8, sequence.into(), 56))
                    .unwrap();
            }
            let mut answered = [false; 200];
            let mut count = 0;
            while count < 200 {
                let left = BURST_LIMIT.saturating_sub(start.elapsed());
                let Some(reply) = pinger.receive(left) else {
                    panic!(
                        "burst {burst} to {target}: {count} of 200 answered in {BURST_LIMIT:?}; {}",
                        network_state()
                    );
                };
                let index = usize::from(reply.sequence.wrapping_sub(burst * 200));
                assert!(index < 200 && !answered[index], "reply {}", reply.sequence);
                answered[index] = true;
                count += 1;
            }
            report.push(format!("{:.2?}", start.elapsed()));
        }
    });
    println!(
        "10 bursts of 200, every request answered in: {}",
        report.join(", ")
    );
}

/// Datagram `sequence`'s payload length: small, typical and large packets by turns.
fn payload_len(sequence: u32) -> usize {
    [8, 64, 200, 512, 1200, 1400, 1472, 9000][sequence as usize % 8]
}

/// 100,000 UDP datagrams from the Linux stack through the driver's send path to the client,
/// in order, and 100,000 from four client threads through its receive path to the stack, all
/// byte-exact, both families by turns, both directions at once. A bounded number in flight:
/// a full ring or queue drops packets, as a congested link does.
#[test]
fn a_hundred_thousand_packets_each_way_arrive_byte_exact() {
    const COUNT: u32 = 100_000;
    const SENDERS: u32 = 4;
    const IN_FLIGHT: u64 = 64;
    let emulator = start_tun_emulator();
    let session = Session::start(&emulator.socket, 1 << 22, Handshake::Unfenced).unwrap();
    let to_client = [
        SocketAddr::new(address(CLIENT_V4), 9),
        SocketAddr::new(address(CLIENT_V6), 9),
    ];
    let stack_sockets = [
        UdpSocket::bind((address(STACK_V4), 0)).unwrap(),
        UdpSocket::bind((address(STACK_V6), 0)).unwrap(),
    ];
    let stack_receiver = UdpSocket::bind("[::]:0").unwrap();
    stack_receiver.set_read_timeout(Some(WATCHDOG)).unwrap();
    linux::make_room(&stack_receiver);
    let receiver_port = stack_receiver.local_addr().unwrap().port();
    let received_by_client = AtomicU64::new(0);
    let received_by_stack: Vec<AtomicU64> = (0..SENDERS).map(|_| AtomicU64::new(0)).collect();
    let start = Instant::now();
    thread::scope(|scope| {
        let (session, received_by_client, received_by_stack) =
            (&session, &received_by_client, &received_by_stack);
        scope.spawn(move || {
            for sequence in 0..COUNT {
                while u64::from(sequence) >= received_by_client.load(Ordering::SeqCst) + IN_FLIGHT {
                    thread::yield_now();
                    assert!(
                        start.elapsed() < WATCHDOG * 6,
                        "the client stopped receiving"
                    );
                }
                let family = (sequence % 2) as usize;
                let payload = ip::payload(0, sequence, payload_len(sequence));
                stack_sockets[family]
                    .send_to(&payload, to_client[family])
                    .unwrap();
            }
        });
        scope.spawn(move || {
            let mut next = 0;
            while next < COUNT {
                receive_batch(session, |packet| {
                    let Some(datagram) =
                        ip::parse_udp(packet).filter(|d| d.destination.port() == 9)
                    else {
                        return; // The stack's own IPv6 chatter.
                    };
                    assert_eq!(datagram.source.is_ipv4(), next % 2 == 0, "packet {next}");
                    assert!(
                        datagram.payload == ip::payload(0, next, payload_len(next)),
                        "packet {next} from the stack: {:?}",
                        ip::payload_label(datagram.payload)
                    );
                    next += 1;
                    received_by_client.store(next.into(), Ordering::SeqCst);
                })
                .unwrap();
            }
        });
        for stream in 1..=SENDERS {
            scope.spawn(move || {
                let received = &received_by_stack[stream as usize - 1];
                for sequence in 0..COUNT / SENDERS {
                    while u64::from(sequence) >= received.load(Ordering::SeqCst) + IN_FLIGHT / 4 {
                        thread::yield_now();
                        assert!(
                            start.elapsed() < WATCHDOG * 6,
                            "the stack stopped receiving"
                        );
                    }
                    let (from, to) = if sequence % 2 == 0 {
                        (CLIENT_V4, STACK_V4)
                    } else {
                        (CLIENT_V6, STACK_V6)
                    };
                    let packet = ip::udp(
                        SocketAddr::new(address(from), 1000 + stream as u16),
                        SocketAddr::new(address(to), receiver_port),
                        &ip::payload(stream, sequence, payload_len(sequence)),
                    );
                    session.send_retrying(&packet).unwrap();
                }
            });
        }
        let mut seen: Vec<Vec<bool>> =
            vec![vec![false; (COUNT / SENDERS) as usize]; SENDERS as usize];
        let mut buffer = vec![0u8; 0x1_0000];
        for count in 0..COUNT {
            let (len, _) = stack_receiver.recv_from(&mut buffer).unwrap_or_else(|error| {
                let counts: Vec<u64> = received_by_stack
                    .iter()
                    .map(|count| count.load(Ordering::SeqCst))
                    .collect();
                panic!(
                    "the stack got {count} datagrams (by client thread: {counts:?}), then {error}; \
                     receive ring (Head, Tail, Alertable): {:?}; {}",
                    session.rings().receive.header(),
                    network_state()
                )
            });
            let payload = &buffer[..len];
            let (stream, sequence) = ip::payload_label(payload).unwrap();
            assert!((1..=SENDERS).contains(&stream) && sequence < COUNT / SENDERS);
            assert!(
                payload == ip::payload(stream, sequence, payload_len(sequence)),
                "datagram {sequence} of client thread {stream}"
            );
            let seen = &mut seen[stream as usize - 1][sequence as usize];
            assert!(
                !*seen,
                "datagram {sequence} of client thread {stream} twice"
            );
            *seen = true;
            received_by_stack[stream as usize - 1].fetch_add(1, Ordering::SeqCst);
        }
    });
    let elapsed = start.elapsed();
    println!(
        "{COUNT} packets each way, byte-exact, in {elapsed:.2?} ({:.0} packets/s each way)",
        f64::from(COUNT) / elapsed.as_secs_f64()
    );
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
        let outcome = std::panic::catch_unwind(|| run_until_killed(&emulator, rings, busy[1]));
        // SAFETY: leaving the child at once, whatever happened.
        unsafe { libc::_exit(if outcome.is_ok() { 0 } else { 3 }) };
    }
    let mut byte = [0u8];
    // SAFETY: reading one byte from our pipe: the child says it is in full flow.
    let read = unsafe { libc::read(busy[0], byte.as_mut_ptr().cast(), 1) };
    assert_eq!(read, 1, "the child client failed before it was busy");
    // SAFETY: killing and reaping our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
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

/// How long `condition` took to hold, or None if it did not within `limit`.
fn time_until(limit: Duration, condition: impl Fn() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > limit {
            return None;
        }
        thread::yield_now();
    }
    Some(start.elapsed())
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

/// Packets the driver must skip (a Size of 0, a version nibble that is neither 4 nor 6, an
/// IPv4 packet under 20 bytes, an IPv6 one under 40), among good ones: the good ones come
/// back byte-exact and in order, the bad ones do not, and every byte of the ring is given back
/// (the ring wraps many times).
#[test]
fn garbage_packets_are_skipped_and_the_ring_keeps_moving() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x45],
        vec![0x45; 19],
        vec![0x60; 39],
        vec![0x00; 100],
        vec![0x50; 600],
        vec![0xF0; 1500],
    ];
    let minimal_v6 = {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet
    };
    let mut sent = 0u64;
    for round in 0..400u32 {
        let good = [
            udp_packet(round, 1000 + round as usize % 500),
            minimal_v6.clone(),
            udp_packet(round + 1_000_000, 8),
        ];
        for (index, packet) in good.iter().enumerate() {
            session
                .send_retrying(&garbage[(round as usize + index) % garbage.len()])
                .unwrap();
            session.send_retrying(packet).unwrap();
            sent += packet.len() as u64;
        }
        for packet in &good {
            let received = session
                .receive_waiting(WATCHDOG)
                .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
            assert!(
                received.data() == packet.as_slice(),
                "round {round}: {:?}",
                ip::payload_label(received.data())
            );
            received.release();
        }
    }
    let (head, tail, _) = session.rings().receive.header();
    assert!(
        time_until(WAKE_LIMIT, || session
            .rings()
            .receive
            .head()
            .load(Ordering::SeqCst)
            == tail)
        .is_some(),
        "the driver left the receive ring at Head {head}, Tail {tail}"
    );
    assert_eq!(
        session.receive().err(),
        Some(Error::NoMoreItems),
        "a skipped packet came back"
    );
    println!(
        "{sent} bytes of good packets came back among 1200 bad ones; the ring wrapped {} times",
        sent / u64::from(MIN_CAPACITY)
    );
}

/// Each way to corrupt the receive ring, on a registration of its own: the driver stops
/// reading it and says so (Head = 0xFFFFFFFF, so the DLL's allocation answers
/// ERROR_HANDLE_EOF), while the send ring still delivers; the next registration works.
#[test]
fn a_corrupt_receive_ring_stops_that_ring_and_nothing_else() {
    let emulator = start_tun_emulator();
    let stack = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    type Corruption = fn(&Session);
    let cases: [(&str, Corruption); 4] = [
        ("Tail past the capacity", |session| {
            let ring = &session.rings().receive;
            ring.tail().store(MIN_CAPACITY + 4, Ordering::SeqCst);
            ring.set_event();
        }),
        ("Tail not a multiple of 4", |session| {
            let ring = &session.rings().receive;
            ring.tail().store(2, Ordering::SeqCst);
            ring.set_event();
        }),
        ("Size over 0xFFFF, which the DLL lets through", |session| {
            session.allocate(0x1_0000).unwrap().send();
            session.rings().receive.set_event();
        }),
        ("a packet running past Tail", |session| {
            let ring = &session.rings().receive;
            ring.write_size(0, 1000);
            ring.tail().store(8, Ordering::SeqCst);
            ring.set_event();
        }),
    ];
    for (round, (name, corrupt)) in cases.into_iter().enumerate() {
        let (session, _) = start_when_free(&emulator, Handshake::Fenced);
        corrupt(&session);
        let ring = &session.rings().receive;
        let stopped = time_until(TEARDOWN_LIMIT, || {
            ring.head().load(Ordering::SeqCst) == ENDED
        });
        assert!(
            stopped.is_some(),
            "{name}: the driver went on reading: {:?}",
            ring.header()
        );
        assert_eq!(
            session.allocate(100).err(),
            Some(Error::HandleEof),
            "{name}"
        );
        let payload = ip::payload(5, round as u32, 700);
        stack.send_to(&payload, client).unwrap();
        assert_eq!(receive_datagram(&session), payload, "{name}");
        session.close_handle();
        println!("{name}: receive ring stopped in {:?}", stopped.unwrap());
    }
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let payload = ip::payload(6, 0, 400);
    assert_stack_receives(&session, &stack_receiver(), &payload);
}

/// A UDP socket of the stack's, for datagrams from the client.
fn stack_receiver() -> UdpSocket {
    let receiver = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    receiver.set_read_timeout(Some(WATCHDOG)).unwrap();
    receiver
}

/// Sends `payload` from the client to `receiver` and checks that it arrives whole.
fn assert_stack_receives(session: &Session, receiver: &UdpSocket, payload: &[u8]) {
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    let packet = ip::udp(client, receiver.local_addr().unwrap(), payload);
    session.send(&packet).unwrap();
    let mut buffer = [0u8; 2000];
    let (len, _) = receiver
        .recv_from(&mut buffer)
        .expect("the client's datagram reached the stack");
    assert_eq!(&buffer[..len], payload);
}

/// The payload of the next UDP datagram the stack sent the client's port 9, past the
/// stack's own IPv6 chatter (router solicitations, MLD reports).
fn receive_datagram(session: &Session) -> Vec<u8> {
    loop {
        let packet = session.receive_waiting(WATCHDOG).unwrap();
        let payload = ip::parse_udp(packet.data())
            .filter(|datagram| datagram.destination.port() == 9)
            .map(|datagram| datagram.payload.to_vec());
        packet.release();
        if let Some(payload) = payload {
            return payload;
        }
    }
}

/// A send ring whose Head the client corrupted: the driver writes nothing more to it (the
/// packets for it are dropped) and the receive ring still carries traffic; the next
/// registration works.
#[test]
fn a_corrupt_send_ring_loses_its_packets_and_nothing_else() {
    let emulator = start_tun_emulator();
    let stack = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    let receiver = stack_receiver();
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    for bad_head in [MIN_CAPACITY, ENDED, 6] {
        let (session, _) = start_when_free(&emulator, Handshake::Fenced);
        let ring = &session.rings().send;
        ring.head().store(bad_head, Ordering::SeqCst);
        for sequence in 0..20 {
            stack
                .send_to(&ip::payload(7, sequence, 300), client)
                .unwrap();
        }
        // The client's datagrams to the stack still arrive, and so after the ones above.
        assert_stack_receives(&session, &receiver, &ip::payload(8, bad_head, 500));
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            ring.tail().load(Ordering::SeqCst),
            0,
            "Head {bad_head:#x}: the driver wrote on"
        );
        session.close_handle();
    }
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let payload = ip::payload(9, 0, 600);
    stack.send_to(&payload, client).unwrap();
    assert_eq!(receive_datagram(&session), payload);
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

/// The longest a lost wakeup may hold a packet back: well above the driver's timed re-check
/// of a few milliseconds (and the scheduling delays of a loaded 2-core machine, which reach
/// tens of milliseconds), far below the 4-5 s stalls Wintun's users saw.
const STALL_LIMIT: Duration = Duration::from_millis(100);
/// What a lost wakeup may cost typically: the re-check's period and a little.
const TYPICAL_STALL_LIMIT: Duration = Duration::from_millis(10);

/// What a lost-wakeup stress measured.
struct Stress {
    name: &'static str,
    /// Each burst's last packet's round trip.
    round_trips: Vec<Duration>,
    /// The round trips of the bursts whose last packet's wakeup was lost: the driver was seen
    /// asleep with it unread, and the client had not set the event for it.
    lost: Vec<Duration>,
    /// How many times the client set the receive event (the driver had said it sleeps).
    events_set: u64,
}

/// The median and the largest, of times sorted.
fn median_and_worst_of(times: &mut [Duration]) -> (Duration, Duration) {
    if times.is_empty() {
        return Default::default();
    }
    median_and_worst(times)
}

impl Stress {
    fn print(&mut self) {
        let (median, worst) = median_and_worst(&mut self.round_trips);
        let ninety_ninth = self.round_trips[self.round_trips.len() * 99 / 100];
        let (lost_median, lost_worst) = median_and_worst_of(&mut self.lost);
        println!(
            "{}: {} idle/busy transitions, the driver asleep at {} of the client's Tail moves; \
             round trip median {median:?}, 99th percentile {ninety_ninth:?}, worst {worst:?}; \
             {} wakeups lost, their stalls median {lost_median:?}, worst {lost_worst:?}",
            self.name,
            self.round_trips.len(),
            self.events_set,
            self.lost.len(),
        );
    }

    fn assert_lost_wakeups_bounded(&mut self) {
        let (median, worst) = median_and_worst_of(&mut self.lost);
        assert!(
            worst < STALL_LIMIT && median < TYPICAL_STALL_LIMIT,
            "{}: lost wakeups stalled for {:?}",
            self.name,
            self.lost
        );
    }
}

/// `transitions` times: idle for 0 to 200 us (the driver falls asleep, or is about to), then a
/// burst of 1 to 4 packets through the reflecting emulator, timed from its last packet's send
/// to its return. Both wake-ups are on the way: the client's receive event (when the driver
/// said it sleeps) and the driver's send event (the client waits on it, in 1 ms slices so
/// that it can watch the receive ring meanwhile; it reads only after the event).
///
/// It goes on past `transitions` until `wanted_lost` wakeups were lost, or 10 times as long.
fn lost_wakeup_stress(
    name: &'static str,
    handshake: Handshake,
    transitions: u32,
    wanted_lost: usize,
) -> Stress {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, handshake);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut stress = Stress {
        name,
        round_trips: Vec::new(),
        lost: Vec::new(),
        events_set: 0,
    };
    for transition in 0..transitions * 10 {
        if transition >= transitions && stress.lost.len() >= wanted_lost {
            break;
        }
        thread::sleep(Duration::from_micros(random(200)));
        let burst = 1 + random(4) as u32;
        let mut signalled = false;
        for index in 0..burst {
            if index > 0 {
                // Aimed at the driver's moment of danger: it woke for the packet before (it
                // cleared Alertable), and will soon find the ring empty and announce its sleep.
                let alertable = &session.rings().receive.alertable();
                time_until(Duration::from_millis(1), || {
                    alertable.load(Ordering::SeqCst) == 0
                });
                session::spin_for(Duration::from_micros(random(30)));
            }
            let events_set = session.events_set();
            session
                .send(&udp_packet(transition * 4 + index, 100))
                .unwrap();
            signalled = session.events_set() > events_set;
        }
        let sent = Instant::now();
        let lost = await_reflections(&session, burst, signalled, sent)
            .unwrap_or_else(|why| panic!("{name}, transition {transition}: {why}"));
        stress.round_trips.push(sent.elapsed());
        if lost {
            stress.lost.push(sent.elapsed());
        }
    }
    stress.events_set = session.events_set();
    stress.print();
    stress
}

/// Receives `count` reflected packets; whether a wakeup was lost meanwhile: the driver was
/// seen asleep with packets unread although the last Tail move came without an event
/// (`signalled` false: the driver was awake then, and had to find the packet itself).
fn await_reflections(
    session: &Session,
    count: u32,
    signalled: bool,
    sent: Instant,
) -> Result<bool, String> {
    let mut lost = false;
    let mut received = 0;
    while received < count {
        match session.receive() {
            Ok(packet) => {
                packet.release();
                received += 1;
                continue;
            }
            Err(Error::NoMoreItems) => {}
            Err(other) => return Err(format!("{other:?}")),
        }
        while !session.rings().send.wait_event(Duration::from_millis(1)) {
            let (head, tail, alertable) = session.rings().receive.header();
            lost |= !signalled && alertable != 0 && head != tail;
            if sent.elapsed() > TEARDOWN_LIMIT {
                let why = if lost {
                    "a lost wakeup, and nothing re-checked the ring"
                } else {
                    "no wakeup was lost"
                };
                return Err(format!(
                    "no packet back after {:?}: {why}; receive ring (Head, Tail, Alertable) {:?}",
                    sent.elapsed(),
                    (head, tail, alertable)
                ));
            }
        }
    }
    Ok(lost)
}

/// The driver went to sleep at many of the client's Tail moves, so the handshake was tried.
fn assert_driver_slept(stress: &Stress) {
    assert!(
        stress.events_set > stress.round_trips.len() as u64 / 10,
        "{}: the driver hardly ever slept ({} events)",
        stress.name,
        stress.events_set
    );
}

/// A client with the full fence (wintun.dll from 2026-02-24) never loses a wakeup: the driver's
/// side of the handshake has its fence too.
#[test]
fn lost_wakeup_stress_with_the_fence() {
    let stress = lost_wakeup_stress("fenced", Handshake::Fenced, 3000, 0);
    assert_driver_slept(&stress);
    assert_eq!(stress.lost, [], "wakeups lost with both fences in place");
}

/// A client without the fence (every wintun.dll before 2026-02-24), as it runs on this machine:
/// whatever wakeups it loses cost at most the driver's re-check.
#[test]
fn lost_wakeup_stress_without_the_fence() {
    let mut stress = lost_wakeup_stress("unfenced", Handshake::Unfenced, 3000, 0);
    assert_driver_slept(&stress);
    stress.assert_lost_wakeups_bounded();
}

/// A client without the fence, with the reordering the missing fence allows made to happen
/// often (Alertable loaded 50 us before Tail is stored): wakeups are lost, and each costs at
/// most the driver's timed re-check of the ring.
#[test]
fn lost_wakeup_stress_with_the_reordering_the_missing_fence_allows() {
    let gap = Duration::from_micros(50);
    let mut stress = lost_wakeup_stress("reordered", Handshake::Reordered { gap }, 3000, 20);
    assert_driver_slept(&stress);
    assert!(
        stress.lost.len() >= 20,
        "{} wakeups lost: the stress missed its aim",
        stress.lost.len()
    );
    stress.assert_lost_wakeups_bounded();
}
