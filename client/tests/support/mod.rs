//! What the adapter tests share: a network namespace and a run folder of the test's own, the
//! emulator binary cargo built, and the messages the library logged.

#![allow(dead_code, reason = "each test file uses part of it")]

pub mod icmp;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use oxtun_client::Version;
use oxtun_client::log::{self, Level};

/// The driver's version: the workspace root package's (Cargo.toml), major and minor.
pub fn workspace_version() -> Version {
    let manifest = include_str!("../../../Cargo.toml");
    let package = &manifest[manifest.find("[package]").unwrap()..];
    let line = package
        .lines()
        .find(|line| line.starts_with("version = "))
        .unwrap();
    let version = line.trim_start_matches("version = ").trim_matches('"');
    let mut parts = version.split('.').map(|part| part.parse::<u16>().unwrap());
    Version {
        major: parts.next().unwrap(),
        minor: parts.next().unwrap(),
    }
}

/// cargo's output folder of this test's profile (target/PROFILE; the test is in its deps/).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The `wintun-emu` cargo built.
pub fn emulator_binary() -> PathBuf {
    let binary = target_dir().join("wintun-emu");
    assert!(
        binary.is_file(),
        "{} is missing: cargo build -p oxtun-sim --bin wintun-emu (nextest --workspace builds it)",
        binary.display()
    );
    binary
}

/// Moves this process into a network namespace of its own, with loopback up, and points the
/// library at a run folder of its own and at cargo's emulator. Call it first, before any thread
/// starts.
pub fn isolate() -> PathBuf {
    // SAFETY: unshare affects only this process (and the children it starts later).
    let result = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        result,
        0,
        "adapter tests need root (CAP_SYS_ADMIN) to make a namespace: {}",
        std::io::Error::last_os_error()
    );
    run(&["ip", "link", "set", "lo", "up"]);
    let run_dir = std::env::temp_dir().join(format!("oxtun-run-{}", std::process::id()));
    // SAFETY: no other thread runs yet (the caller's promise), so nothing reads the environment
    // while it changes.
    unsafe {
        std::env::set_var("OXTUN_RUN_DIR", &run_dir);
        std::env::set_var("OXTUN_WINTUN_EMU", emulator_binary());
    }
    run_dir
}

/// Runs a command that must succeed.
pub fn run(command: &[&str]) {
    let output = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The index and MTU of the interface `name` in this namespace, as `ip` shows them (sysfs shows
/// the namespace it was mounted in).
pub fn link(name: &str) -> Option<(u64, u32)> {
    let output = Command::new("ip")
        .args(["-o", "link", "show", "dev", name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let index = text.split(':').next()?.trim().parse().ok()?;
    let mtu = text
        .split(" mtu ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((index, mtu))
}

/// Every message the library logs from now on.
pub fn capture_log() -> Arc<Mutex<Vec<(Level, String)>>> {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    log::set_logger(Some(Arc::new(move |level, _timestamp, message: &str| {
        sink.lock().unwrap().push((level, message.to_string()));
    })));
    messages
}

/// An IPv4 UDP packet from `source` to `destination` (port 9 to `port`), its header checksum
/// set and the UDP checksum left 0 (none, which IPv4 allows).
pub fn udp4(source: [u8; 4], destination: [u8; 4], port: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut packet = vec![0u8; total];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&source);
    packet[16..20].copy_from_slice(&destination);
    let sum = icmp::checksum(&packet[..20], 0);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet[20..22].copy_from_slice(&9u16.to_be_bytes());
    packet[22..24].copy_from_slice(&port.to_be_bytes());
    packet[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet[28..].copy_from_slice(payload);
    packet
}
