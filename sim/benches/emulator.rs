//! The emulator's data path, measured: packets/s and Gbit/s from a client through the driver and
//! back to the client, for 64, 512, 1400 and 9000-byte packets.
//!
//! - reflect: client -> receive ring -> driver -> indicated, handed straight back -> driver ->
//!   send ring -> client. The driver alone.
//! - tun: the same, but the indicated packet goes up a TUN interface into the Linux stack, which
//!   forwards it back out of the interface into the driver. UDP/IPv4.
//! - plain TUN, the reference: a program that writes each packet to a TUN interface and reads it
//!   back after the same forwarding, one system call per packet each way.
//!
//! Each sender sends for a second as fast as it can; a packet counts when it comes back. Every
//! receiver polls and sleeps 20 us when nothing is waiting. Last, a reflect run of its own
//! measures the kernel stack each driver callback uses (a sent packet is indicated, and the
//! indication sends it again, below the receive thread's frames); measuring costs, so its rates
//! are not reported. Needs root (it makes a network
//! namespace of its own): `cargo bench -p oxtun-sim --bench emulator`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use common::{Emulator, own_network_namespace};
use oxtun_client::{Error, Session};
use oxtun_sim::tun;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
const SENDING: Duration = Duration::from_secs(1);
/// How long nothing comes back before a run is over.
const QUIET: Duration = Duration::from_millis(200);
const IDLE_SLEEP: Duration = Duration::from_micros(20);
const CAPACITY: u32 = 4 << 20;

struct Run {
    sent: u64,
    received: u64,
    /// From the first send to the last packet back.
    elapsed: Duration,
}

fn report(path: &str, size: usize, run: &Run) {
    let seconds = run.elapsed.as_secs_f64();
    let rate = run.received as f64 / seconds;
    println!(
        "{path:<12} {size:>5} B {:>11.0} packets/s {:>7.2} Gbit/s   ({} of {} sent came back)",
        rate,
        rate * size as f64 * 8.0 / 1e9,
        run.received,
        run.sent
    );
}

/// A UDP/IPv4 packet of `size` bytes from `source` to `destination`, its header checksum set.
fn udp_packet(size: usize, source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0u8; size];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&source);
    packet[16..20].copy_from_slice(&destination);
    let sum = packet[..20]
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum::<u32>();
    let folded = (sum & 0xFFFF) + (sum >> 16);
    let checksum = !((folded & 0xFFFF) + (folded >> 16)) as u16;
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet[20..22].copy_from_slice(&9u16.to_be_bytes());
    packet[22..24].copy_from_slice(&9u16.to_be_bytes());
    packet[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
    packet
}

/// Sends `packet` for [`SENDING`] with `send` (true when it went) while `receive` (true when a
/// packet came back, false when none was waiting) counts what returns.
fn measure(send: impl Fn() -> bool + Sync, receive: impl Fn() -> bool) -> Run {
    thread::scope(|scope| {
        let (start, send) = (Instant::now(), &send);
        let sender = scope.spawn(move || {
            let mut sent = 0;
            while start.elapsed() < SENDING {
                if send() {
                    sent += 1;
                } else {
                    thread::yield_now();
                }
            }
            sent
        });
        let (mut received, mut last) = (0, start);
        loop {
            if receive() {
                received += 1;
                last = Instant::now();
            } else if sender.is_finished() && last.elapsed() > QUIET {
                break;
            } else {
                thread::sleep(IDLE_SLEEP);
            }
        }
        Run {
            sent: sender.join().unwrap(),
            received,
            elapsed: last.max(start + Duration::from_micros(1)) - start,
        }
    })
}

fn through_driver(session: &Session, packet: &[u8]) -> Run {
    measure(
        || match session.send(packet) {
            Ok(()) => true,
            Err(Error::Full) => false,
            Err(error) => panic!("send: {error}"),
        },
        || match session.try_receive() {
            Ok(Some(received)) => {
                session.release(received);
                true
            }
            Ok(None) => false,
            Err(error) => panic!("receive: {error}"),
        },
    )
}

fn through_plain_tun(tun: &OwnedFd, packet: &[u8]) -> Run {
    let fd = tun.as_raw_fd();
    let mut buffer = vec![0u8; 65536];
    let buffer = std::cell::RefCell::new(&mut buffer);
    measure(
        // SAFETY: writing `packet` to our TUN descriptor.
        || unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) } > 0,
        || {
            let mut buffer = buffer.borrow_mut();
            // SAFETY: reading into our buffer, at most its length, from our TUN descriptor.
            unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) > 0 }
        },
    )
}

/// Stops the emulator; it must exit clean (its leak check passed).
fn stop(emulator: Emulator) {
    let (status, log) = emulator.terminate();
    assert!(status.success(), "wintun-emu: {status}\n{log}");
}

fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|error| panic!("{path}: {error}"));
}

fn main() {
    own_network_namespace();
    // The stack forwards each packet back out of the interface it came in on, quietly.
    sysctl("net.ipv4.ip_forward", "1");
    for scope in ["all", "default"] {
        sysctl(&format!("net.ipv4.conf.{scope}.send_redirects"), "0");
        sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0");
    }
    println!("client -> driver -> client; tun and plain TUN through the Linux stack's forwarding");

    let emulator = Emulator::start(&["--upper", "reflect"]);
    let session = Session::start(&emulator.adapter(), CAPACITY).unwrap();
    for size in SIZES {
        let packet = udp_packet(size, [10, 79, 0, 2], [10, 79, 0, 3]);
        report("reflect", size, &through_driver(&session, &packet));
    }
    drop(session);
    stop(emulator);

    let emulator = Emulator::start(&["--name", "oxbench0", "--address", "10.78.0.1/24"]);
    tun::ip(&["route", "add", "10.79.0.0/24", "dev", "oxbench0"]).unwrap();
    let session = Session::start(&emulator.adapter(), CAPACITY).unwrap();
    for size in SIZES {
        let packet = udp_packet(size, [10, 79, 0, 2], [10, 79, 0, 3]);
        report("tun", size, &through_driver(&session, &packet));
    }
    drop(session);
    stop(emulator);

    let plain = tun::open("plain0", true).unwrap();
    tun::ip(&["link", "set", "dev", "plain0", "mtu", "65535", "up"]).unwrap();
    tun::ip(&["address", "add", "10.80.0.1/24", "dev", "plain0"]).unwrap();
    tun::ip(&["route", "add", "10.81.0.0/24", "dev", "plain0"]).unwrap();
    for size in SIZES {
        let packet = udp_packet(size, [10, 81, 0, 2], [10, 81, 0, 3]);
        report("plain TUN", size, &through_plain_tun(&plain, &packet));
    }

    let emulator = Emulator::start(&["--upper", "reflect", "--stack-high-water"]);
    let session = Session::start(&emulator.adapter(), CAPACITY).unwrap();
    for size in SIZES {
        through_driver(&session, &udp_packet(size, [10, 79, 0, 2], [10, 79, 0, 3]));
    }
    drop(session);
    let (status, log) = emulator.terminate();
    assert!(status.success(), "wintun-emu: {status}\n{log}");
    let table = log
        .find("kernel stack high-water")
        .expect("the emulator's table");
    print!("\n{}", &log[table..]);
}
