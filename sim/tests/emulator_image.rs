//! The emulator on the kernel image: `--driver image[=PATH]` runs the image it is given and
//! says which by its SHA-256, carries packets through it, and refuses to start when the image
//! does not load or its DriverEntry fails, as Windows would not start the adapter.
//!
//! The x64 release image is built first when the sources are newer (`tests/artifacts`).
#![cfg(target_arch = "x86_64")]

#[allow(
    dead_code,
    reason = "the namespace helper is for the tests that need root"
)]
mod common;
#[path = "../../tests/support/image_copies.rs"]
mod image_copies;

use std::path::Path;
use std::process::Command;

use common::Emulator;
use image_copies::*;
use oxtun_client::Session;
use sha2::{Digest, Sha256};

fn sha256(path: &Path) -> String {
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn the_emulator_runs_the_image_it_is_given_and_names_it_by_its_digest() {
    let path = image_path();
    let driver = format!("image={}", path.display());
    let emulator = Emulator::start(&["--upper", "reflect", "--driver", &driver]);
    let session = Session::start(&emulator.adapter(), 1 << 20).unwrap();
    let packet: Vec<u8> = [0x45].into_iter().chain((1..60).map(|i| i as u8)).collect();
    let mut allocated = session.allocate(packet.len()).unwrap();
    allocated.data_mut().copy_from_slice(&packet);
    allocated.send().unwrap();
    let reflected = session.receive().unwrap();
    assert_eq!(reflected.data(), &packet[..]);
    drop(reflected);
    drop(session);
    let (status, log) = emulator.terminate();
    let named = format!(
        "driver: the kernel image {} (SHA-256 {})",
        path.display(),
        sha256(&path)
    );
    assert!(log.contains(&named), "{log}");
    assert!(status.success(), "{log}");
    assert!(log.contains("nothing leaked"), "{log}");
}

/// Runs the emulator on `image`; it must exit at once, failing, without saying ready. Its log.
fn refused_start(image: &[u8], name: &str) -> String {
    let path = write_copy(image, name);
    let socket = std::env::temp_dir().join(format!("oxtun-emu-{name}-{}.sock", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_wintun-emu"))
        .arg("--socket")
        .arg(&socket)
        .args(["--upper", "reflect", "--driver"])
        .arg(format!("image={}", path.display()))
        .output()
        .unwrap();
    std::fs::remove_file(path).unwrap();
    let _ = std::fs::remove_file(socket);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{log}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("ready"));
    log
}

#[test]
fn the_emulator_refuses_to_start_when_driver_entry_fails() {
    // mov eax, STATUS_UNSUCCESSFUL; ret
    let log = refused_start(
        &with_driver_entry(&[0xB8, 0x01, 0x00, 0x00, 0xC0, 0xC3]),
        "failing-entry",
    );
    assert!(log.contains("the driver did not load: 0xc0000001"), "{log}");
}

#[test]
fn the_emulator_refuses_to_start_an_image_whose_import_is_missing() {
    let log = refused_start(
        &with_import_renamed("KeSetEvent", "KeSetEvenX"),
        "unknown-import",
    );
    assert!(log.contains("ntoskrnl.exe!KeSetEvenX"), "{log}");
    assert!(log.contains("the driver did not load: 0xc0000263"), "{log}");
}
