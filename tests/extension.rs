//! The registration extension on the simulated kernel (docs/offloads.md): TUN_IOCTL_REGISTER_RINGS_EX
//! registers as Wintun's IOCTL does, under the same rules, and every refusal has the status the
//! design gives it, with nothing registered.

mod support;

use oxtun_abi::{CallerWidth, Features, TUN_IOCTL_REGISTER_RINGS, TUN_IOCTL_REGISTER_RINGS_EX};
use oxtun_driver::sys::*;
use oxtun_sim::{Bitness, Process, Token};
use support::*;

/// A word of the extended buffer replaced by `value`.
fn with_word(buffer: &[u8], at: usize, value: u32) -> Vec<u8> {
    let mut buffer = buffer.to_vec();
    buffer[at..at + 4].copy_from_slice(&value.to_le_bytes());
    buffer
}

#[oxtun_sim::test]
fn an_extended_registration_asking_for_nothing_registers_like_wintuns() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    assert_eq!(
        handle.device_control(
            TUN_IOCTL_REGISTER_RINGS_EX,
            &rings.extended_bytes(Features::NONE)
        ),
        STATUS_SUCCESS
    );
    assert_eq!(setup.adapter.link_state(), Some(MediaConnectStateConnected));
    // One registration at a time, whichever IOCTL made it.
    let second = ClientRings::new(&process);
    for (code, bytes) in [
        (TUN_IOCTL_REGISTER_RINGS, second.bytes()),
        (
            TUN_IOCTL_REGISTER_RINGS_EX,
            second.extended_bytes(Features::NONE),
        ),
    ] {
        assert_eq!(
            handle.device_control(code, &bytes),
            STATUS_ALREADY_INITIALIZED
        );
    }
    // Packets go both ways as they are.
    let packet = ipv4(1, 60);
    let statuses = setup.adapter.send(
        &[vec![packet.clone()]],
        oxtun_sim::Fragmentation::CONTIGUOUS,
        PASSIVE_LEVEL,
    );
    assert_eq!(statuses, [NDIS_STATUS_SUCCESS]);
    assert_eq!(drain(&mut rings.send_reader()), vec![packet.clone()]);
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        std::slice::from_ref(&packet)
    ));
    let received = setup
        .adapter
        .wait_received(1, std::time::Duration::from_secs(20));
    assert_eq!(received[0].data, packet);
    wait_released(&rings);
    handle.close();
    assert!(rings.ended());
    setup.assert_nothing_held();
    setup.finish();
}

/// A WOW64 process sends the 40-byte layout (TUN_REGISTER_RINGS_32 after the extension's
/// fields), or the 64-bit one, as with Wintun's IOCTL.
#[oxtun_sim::test]
fn a_32_bit_caller_registers_with_either_extended_layout() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits32);
    for (width, len) in [(CallerWidth::Bits32, 40), (CallerWidth::Bits64, 64)] {
        let handle = process.open(setup.adapter.device(), READ_WRITE);
        let mut rings = ClientRings::new(&process);
        rings.width = width;
        let bytes = rings.extended_bytes(Features::NONE);
        assert_eq!(bytes.len(), len);
        assert_eq!(
            handle.device_control(TUN_IOCTL_REGISTER_RINGS_EX, &bytes),
            STATUS_SUCCESS,
            "{len} bytes"
        );
        handle.close();
        assert!(rings.ended());
    }
    setup.assert_nothing_held();
    setup.finish();
}

/// docs/offloads.md, "Growing it" and "Falling back": a version this driver does not know is
/// STATUS_REVISION_MISMATCH, a feature bit it does not know STATUS_NOT_SUPPORTED, anything else
/// malformed STATUS_INVALID_PARAMETER; none registers anything, and the plain IOCTL then
/// succeeds on the same handle.
#[oxtun_sim::test]
fn each_bad_extended_registration_has_its_status_and_registers_nothing() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    let good = rings.extended_bytes(Features::NONE);
    let cases = [
        ("empty", Vec::new(), STATUS_INVALID_PARAMETER),
        ("too short", good[..15].to_vec(), STATUS_INVALID_PARAMETER),
        (
            "Size not the buffer's",
            with_word(&good, 0, 60),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "a longer buffer",
            [good.as_slice(), &[0; 4]].concat(),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "version 2",
            with_word(&good, 4, 2),
            STATUS_REVISION_MISMATCH,
        ),
        (
            "version 0",
            with_word(&good, 4, 0),
            STATUS_REVISION_MISMATCH,
        ),
        (
            "an unknown feature",
            with_word(&good, 8, 1 << 31),
            STATUS_NOT_SUPPORTED,
        ),
        (
            "Reserved not 0",
            with_word(&good, 12, 1),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "the rings' part of no layout",
            with_word(&good[..56], 0, 56),
            STATUS_INVALID_PARAMETER,
        ),
        // The header with a bit the driver does not know.
        (
            "the per-packet header and an unknown feature",
            with_word(&rings.extended_bytes(Features::VNET_HDR), 8, 1 | 1 << 30),
            STATUS_NOT_SUPPORTED,
        ),
    ];
    for (what, bytes, status) in cases {
        assert_eq!(
            handle.device_control(TUN_IOCTL_REGISTER_RINGS_EX, &bytes),
            status,
            "{what}"
        );
        assert_eq!(
            setup.adapter.link_state(),
            Some(MediaConnectStateDisconnected),
            "{what}"
        );
    }
    // The rings' own fields are checked as the plain IOCTL checks them.
    let mut bad_ring = ClientRings::new(&process);
    bad_ring.request.send.ring_size += 4;
    assert_eq!(
        handle.device_control(
            TUN_IOCTL_REGISTER_RINGS_EX,
            &bad_ring.extended_bytes(Features::NONE)
        ),
        STATUS_INVALID_PARAMETER
    );
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    handle.close();
    assert!(rings.ended());
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn only_system_and_administrators_may_register_with_the_extension() {
    let setup = setup();
    let user = Process::new(Token::User, Bitness::Bits64);
    let handle = user.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&user);
    assert_eq!(
        handle.device_control(
            TUN_IOCTL_REGISTER_RINGS_EX,
            &rings.extended_bytes(Features::NONE)
        ),
        STATUS_ACCESS_DENIED
    );
    handle.close();
    setup.finish();
}
