//! Offloads end to end on Linux: two emulators, each in a network namespace of its own with an
//! interface MTU of 1500 (as a VPN sets its adapter's), joined by the router example. Linux's TCP
//! hands the emulator super-packets (TSO through IFF_VNET_HDR), which reach the driver as LSO
//! sends, cross the router whole with their headers, come up the other driver as coalesced
//! units (RSC) and go into the other Linux as super-packets; every byte is checked both ways.
//! A router that asks for no header (a deployed client) gets the same bytes with nothing
//! offloaded.

mod common;
#[path = "../../client/examples/router.rs"]
#[allow(
    dead_code,
    reason = "the router's main is the example's; the test uses its forwarding"
)]
mod router;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::{Emulator, OFFLOAD_KEYWORDS};
use oxtun_abi::Features;
use oxtun_client::Session;

/// Bytes each way.
const TRANSFER: usize = 8 << 20;

/// Byte `at` of the stream sent by `side`.
fn pattern(side: u8, at: usize) -> u8 {
    (at as u8).wrapping_mul(13).wrapping_add(side) ^ (at >> 12) as u8
}

/// Writes `TRANSFER` bytes of `side`'s pattern while reading as many of `peer`'s, checking each.
fn exchange(stream: TcpStream, side: u8, peer: u8) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    thread::scope(|scope| {
        scope.spawn(move || {
            let chunk: Vec<u8> = (0..TRANSFER).map(|at| pattern(side, at)).collect();
            writer.write_all(&chunk).unwrap();
        });
        let mut reader = stream;
        let mut buffer = vec![0u8; 1 << 16];
        let mut at = 0;
        while at < TRANSFER {
            let read = reader.read(&mut buffer).expect("the peer's bytes");
            assert!(read > 0, "the stream ended after {at} bytes");
            for (offset, &byte) in buffer[..read].iter().enumerate() {
                assert_eq!(byte, pattern(peer, at + offset), "byte {}", at + offset);
            }
            at += read;
        }
    });
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}");
}

/// An emulator in a new network namespace of the calling thread (which it keeps): the children
/// the thread starts inherit it.
fn emulator_in_own_namespace(name: &str, address: &str, keywords: &[&str]) -> Emulator {
    // SAFETY: unshare moves only this thread into a new network namespace.
    let result = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "needs root: {}", std::io::Error::last_os_error());
    run("ip", &["link", "set", "lo", "up"]);
    let mut args = vec!["--name", name, "--address", address, "--mtu", "1500"];
    for keyword in keywords {
        args.extend(["--keyword", keyword]);
    }
    Emulator::start(&args)
}

/// A figure of an emulator's closing line: the number after `label`.
fn figure(log: &str, label: &str) -> u64 {
    let line = log
        .lines()
        .find(|line| line.contains("upper edge:"))
        .unwrap_or_else(|| panic!("no figures in {log}"));
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// What `ip -d link show` says of the interface `name`, in the calling thread's namespace.
fn link_details(name: &str) -> String {
    let output = Command::new("ip")
        .args(["-d", "link", "show", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// TCP both ways through the router with `features`; returns both emulators' logs, each followed
/// by its interface's details as the transfer ended.
fn tcp_both_ways(features: Features, keywords: &[&str]) -> [String; 2] {
    let ready = Barrier::new(3);
    let routed = Barrier::new(3);
    let done = Barrier::new(3);
    let (sockets, logs) = thread::scope(|scope| {
        let (ready, routed, done) = (&ready, &routed, &done);
        let (socket_a, socket_b) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
        let server = scope.spawn(move || {
            let emulator = emulator_in_own_namespace("oxtun-b", "10.78.0.2/24", keywords);
            socket_b.0.send(emulator.socket.clone()).unwrap();
            let listener = TcpListener::bind("10.78.0.2:7000").unwrap();
            ready.wait();
            routed.wait();
            let (stream, _) = listener.accept().unwrap();
            exchange(stream, 2, 1);
            done.wait();
            (emulator, link_details("oxtun-b"))
        });
        let client = scope.spawn(move || {
            let emulator = emulator_in_own_namespace("oxtun-a", "10.78.0.1/24", keywords);
            socket_a.0.send(emulator.socket.clone()).unwrap();
            ready.wait();
            routed.wait();
            let stream = TcpStream::connect("10.78.0.2:7000").unwrap();
            exchange(stream, 1, 2);
            done.wait();
            (emulator, link_details("oxtun-a"))
        });
        let sockets = [socket_a.1.recv().unwrap(), socket_b.1.recv().unwrap()];
        ready.wait();
        let start = |socket| {
            Session::start_with(&oxtun_client::Adapter::emulator(socket), 4 << 20, features)
                .unwrap()
        };
        let (a, b) = (start(&sockets[0]), start(&sockets[1]));
        assert_eq!(a.has_headers(), features == Features::VNET_HDR);
        let logs = thread::scope(|routing| {
            let a_to_b = routing.spawn(|| router::forward(&a, &b));
            let b_to_a = routing.spawn(|| router::forward(&b, &a));
            routed.wait();
            done.wait();
            let logs = [client, server].map(|side| {
                let (emulator, link) = side.join().unwrap();
                format!("{}{link}", emulator.terminate().1)
            });
            for forwarding in [a_to_b, b_to_a] {
                forwarding.join().unwrap().unwrap();
            }
            logs
        });
        (sockets, logs)
    });
    drop(sockets);
    logs
}

#[test]
fn tcp_crosses_two_adapters_as_super_packets_both_ways() {
    let logs = tcp_both_ways(Features::VNET_HDR, &OFFLOAD_KEYWORDS);
    for log in &logs {
        // Most of the bytes went as large sends and came up as coalesced units: far fewer
        // packets than 1500-byte segments (2 x 8 MiB is over 11,000 of them).
        let large = figure(log, "large sends");
        let coalesced = figure(log, "coalesced units");
        assert!(large > 20 && coalesced > 20, "{log}");
        assert!(figure(log, "down") < 6000, "{log}");
        assert_eq!(figure(log, "bad headers"), 0, "{log}");
        assert!(log.contains("nothing leaked"), "{log}");
        // Linux makes super-packets no larger than the driver's MaxOffLoadSize.
        assert!(log.contains(" gso_max_size 65397 "), "{log}");
    }
}

#[test]
fn a_client_without_headers_carries_the_same_bytes_with_nothing_offloaded() {
    let logs = tcp_both_ways(Features::NONE, &OFFLOAD_KEYWORDS);
    for log in &logs {
        assert_eq!(figure(log, "large sends"), 0, "{log}");
        assert_eq!(figure(log, "coalesced units"), 0, "{log}");
        assert_eq!(figure(log, "finished in software"), 0, "{log}");
        assert!(figure(log, "down") > 2000, "{log}");
        assert!(log.contains(" gso_max_size 65536 "), "{log}");
        assert!(log.contains("nothing leaked"), "{log}");
    }
}
