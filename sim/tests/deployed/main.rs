//! The deployed-client conformance suite (issue 11): the driver, served by `wintun-emu`, against
//! a client that behaves as deployed wintun.dll does (session.rs) and shares no code with the
//! project's own client or ring protocol. It never writes Send.Alertable, waits on the read-wait
//! event after every empty read, releases out of order and sends from several threads.
//!
//! The client is session.rs (with device.rs, the emulator's registration message); ip.rs and
//! linux.rs make and check packets on either side. The cases: traffic.rs, lifecycle.rs,
//! hostile.rs, stress.rs.
//!
//! Every case has a time limit and prints what it measured (`--nocapture`, or nextest's output
//! of a failing test). Tests that use the Linux stack move into a network namespace of their
//! own first (each test is its own process under nextest); they need root.

#[path = "../common/mod.rs"]
mod common;
mod device;
mod hostile;
mod ip;
mod lifecycle;
mod linux;
mod session;
mod stress;
mod traffic;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Emulator, own_network_namespace};
use device::STATUS_ALREADY_INITIALIZED;
use session::{Error, Handshake, MIN_CAPACITY, Received, Session};

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

/// How long the end of a registration may take to be seen, or a new one to be accepted.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(1);

/// The longest any single wait of a test may block: a stuck driver fails, it does not hang.
const WATCHDOG: Duration = Duration::from_secs(5);

/// What `program` with `args` prints.
fn output_of(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The interface's counters, the IPv6 addresses and the stack's counters, for the message of a
/// test through the stack that lost packets.
fn network_state() -> String {
    output_of("ip", &["-s", "link", "show", "oxdep0"])
        + &output_of("ip", &["-6", "address"])
        + &output_of("nstat", &["-as"])
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
        output_of("ip", &["-6", "route", "show", "table", "local"]).contains(&local_route)
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
