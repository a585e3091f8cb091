//! The ring IOCTL on the simulated kernel: who may register, every field validated, one
//! registration at a time, and one teardown for every way a registration ends.

mod support;

use std::sync::atomic::Ordering;

use oxtun_abi::{CallerWidth, MIN_CAPACITY, RingRegistration, TUN_IOCTL_REGISTER_RINGS, ring_size};
use oxtun_driver::sys::*;
use oxtun_sim::faults::{self, Site};
use oxtun_sim::{Bitness, Driver, IntegrityLevel, Process, Token};
use support::*;

#[oxtun_sim::test]
fn an_administrator_registers_and_closing_the_handle_ends_it() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    assert_eq!(
        setup.adapter.link_state(),
        Some(MediaConnectStateDisconnected)
    );
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    assert_eq!(setup.adapter.link_state(), Some(MediaConnectStateConnected));
    let priority = oxtun_sim::mm::mdl::LAST_MAPPING_PRIORITY.load(Ordering::SeqCst) as u32;
    assert_ne!(
        priority & MdlMappingNoExecute,
        0,
        "rings are mapped no-execute"
    );
    assert!(!rings.ended());
    handle.close();
    assert!(rings.ended());
    assert_eq!(
        setup.adapter.link_state(),
        Some(MediaConnectStateDisconnected)
    );
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn only_system_and_administrators_may_register() {
    let setup = setup();
    let user = Process::new(Token::User, Bitness::Bits64);
    let handle = user.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&user);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_ACCESS_DENIED
    );
    assert_eq!(
        setup.adapter.link_state(),
        Some(MediaConnectStateDisconnected)
    );
    handle.close();

    let read_only = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = read_only.open(setup.adapter.device(), FILE_READ_DATA);
    let rings = ClientRings::new(&read_only);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_ACCESS_DENIED,
        "the IOCTL needs a handle opened for reading and writing"
    );
    handle.close();

    // The device's mandatory label (S:(ML;;NWNRNX;;;HI)) refuses an administrator's process
    // below high integrity, though its token holds Administrators enabled.
    let medium = Process::with_integrity(
        Token::Administrator,
        IntegrityLevel::Medium,
        Bitness::Bits64,
    );
    let handle = medium.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&medium);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_ACCESS_DENIED,
        "a medium-integrity administrator"
    );
    handle.close();

    let service = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &service);
    handle.close();
    assert!(rings.ended());
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn a_second_registration_is_refused() {
    let setup = setup();
    let first = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &first);
    let again = ClientRings::new(&first);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &again.bytes()),
        STATUS_ALREADY_INITIALIZED
    );
    let second = Process::new(Token::Administrator, Bitness::Bits64);
    let other = second.open(setup.adapter.device(), READ_WRITE);
    let theirs = ClientRings::new(&second);
    assert_eq!(
        other.device_control(TUN_IOCTL_REGISTER_RINGS, &theirs.bytes()),
        STATUS_ALREADY_INITIALIZED
    );
    assert!(!rings.ended() && !again.ended() && !theirs.ended());
    other.close();
    assert!(!rings.ended(), "a non-owner's close changes nothing");
    handle.close();
    assert!(rings.ended());
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn a_non_owner_handle_of_the_same_process_closing_changes_nothing() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let owner = process.open(setup.adapter.device(), READ_WRITE);
    let bystander = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    assert_eq!(
        owner.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    bystander.close();
    assert!(!rings.ended());
    assert_eq!(setup.adapter.link_state(), Some(MediaConnectStateConnected));
    owner.close();
    assert!(rings.ended());
    setup.finish();
}

/// How a test breaks a registration: one field of it, or its encoded bytes.
enum Bad {
    Field(Box<dyn Fn(&mut RingRegistration)>),
    Bytes(fn(&mut Vec<u8>)),
}

/// Each registration with one field wrong gets its own status, holds nothing afterwards, and
/// leaves the adapter accepting a good registration.
#[oxtun_sim::test]
fn bad_registrations_are_refused_one_field_at_a_time() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let small = process.allocate(4096);
    let (write_only_event, _) = process.create_event(EVENT_MODIFY_STATE);
    let (wait_only_event, _) = process.create_event(SYNCHRONIZE);
    let device_handle = handle.handle();
    let field = |change: Box<dyn Fn(&mut RingRegistration)>| Bad::Field(change);
    let cases: Vec<(&str, Bad, NTSTATUS)> = vec![
        (
            "empty buffer",
            Bad::Bytes(|b| b.clear()),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "short buffer",
            Bad::Bytes(|b| b.truncate(47)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "long buffer",
            Bad::Bytes(|b| b.push(0)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "send size not a power of two",
            field(Box::new(|r| r.send.ring_size += 4)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "receive capacity too small",
            field(Box::new(|r| {
                r.receive.ring_size = ring_size(MIN_CAPACITY / 2)
            })),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "send capacity too large",
            field(Box::new(|r| r.send.ring_size = ring_size(128 << 20))),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "null send ring",
            field(Box::new(|r| r.send.ring = 0)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "null receive ring",
            field(Box::new(|r| r.receive.ring = 0)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "misaligned ring",
            field(Box::new(|r| r.send.ring += 2)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "ring larger than its memory",
            field(Box::new(move |r| r.receive.ring = small)),
            STATUS_INVALID_USER_BUFFER,
        ),
        (
            "ring at an unmapped address",
            field(Box::new(|r| r.send.ring = 0x1000)),
            STATUS_INVALID_USER_BUFFER,
        ),
        (
            "kernel address",
            field(Box::new(|r| r.receive.ring = 0xFFFF_F800_0000_0000)),
            STATUS_INVALID_USER_BUFFER,
        ),
        (
            "null event",
            field(Box::new(|r| r.send.tail_moved = 0)),
            STATUS_INVALID_PARAMETER,
        ),
        (
            "unknown handle",
            field(Box::new(|r| r.receive.tail_moved = 0x7777)),
            STATUS_INVALID_HANDLE,
        ),
        (
            "send event without modify access",
            field(Box::new(move |r| r.send.tail_moved = wait_only_event)),
            STATUS_ACCESS_DENIED,
        ),
        (
            "receive event without synchronize access",
            field(Box::new(move |r| r.receive.tail_moved = write_only_event)),
            STATUS_ACCESS_DENIED,
        ),
        (
            "receive event without modify access (the driver resets it)",
            field(Box::new(move |r| r.receive.tail_moved = wait_only_event)),
            STATUS_ACCESS_DENIED,
        ),
        (
            "event handle naming the device",
            field(Box::new(move |r| r.send.tail_moved = device_handle)),
            STATUS_OBJECT_TYPE_MISMATCH,
        ),
    ];
    for (name, bad, expected) in cases {
        let mut rings = ClientRings::new(&process);
        let input = match bad {
            Bad::Field(change) => {
                change(&mut rings.request);
                rings.bytes()
            }
            Bad::Bytes(change) => {
                let mut bytes = rings.bytes();
                change(&mut bytes);
                bytes
            }
        };
        let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &input);
        assert_eq!(status, expected, "{name}");
        assert_eq!(
            setup.adapter.link_state(),
            Some(MediaConnectStateDisconnected),
            "{name}"
        );
        setup.assert_nothing_held();
    }
    // A corrupt ring header is refused too: Head beyond the capacity.
    let rings = ClientRings::new(&process);
    // SAFETY (test): the send ring's memory; Head is its first word.
    unsafe { (rings.send_ring as *mut u32).write(MIN_CAPACITY) };
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_INVALID_PARAMETER
    );
    setup.assert_nothing_held();

    let good = ClientRings::new(&process);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &good.bytes()),
        STATUS_SUCCESS
    );
    handle.close();
    assert!(good.ended());
    setup.finish();
}

/// A 32-bit (WOW64) process may pass the 24-byte TUN_REGISTER_RINGS_32 or the 48-byte 64-bit
/// layout: Wintun's driver takes the 64-bit one whenever the buffer has its size.
#[oxtun_sim::test]
fn a_32_bit_caller_registers_with_either_layout() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits32);
    for width in [CallerWidth::Bits32, CallerWidth::Bits64] {
        let handle = process.open(setup.adapter.device(), READ_WRITE);
        let rings = ClientRings::new(&process);
        let mut buffer = [0u8; 48];
        let len = rings.request.encode(width, &mut buffer).unwrap();
        assert_eq!(
            handle.device_control(TUN_IOCTL_REGISTER_RINGS, &buffer[..len]),
            STATUS_SUCCESS,
            "{len} bytes"
        );
        handle.close();
        assert!(rings.ended());
    }
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn the_owner_process_exiting_ends_it_even_with_its_handle_duplicated() {
    let setup = setup();
    let owner = Process::new(Token::Administrator, Bitness::Bits64);
    let other = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &owner);
    let duplicate = owner.duplicate_handle(handle.handle(), &other);
    drop(handle);
    assert!(!rings.ended());
    // The other process still holds the file open, so only the exit notification can end the
    // registration before the owner's locked pages would outlive the owner (the simulator's
    // exit checks that none are left). The owner's memory is gone then: what the client would
    // see is the event, set at the end.
    owner.exit();
    assert_eq!(rings.send_event.set_count(), 1);
    assert_eq!(
        setup.adapter.link_state(),
        Some(MediaConnectStateDisconnected)
    );
    other.close_handle(duplicate);
    setup.assert_nothing_held();
    setup.finish();
}

#[oxtun_sim::test]
fn halt_ends_a_registration_and_later_closes_find_no_adapter() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&adapter, &process);
    adapter.halt();
    assert!(rings.ended());
    let again = ClientRings::new(&process);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &again.bytes()),
        NDIS_STATUS_ADAPTER_NOT_READY,
        "as Wintun answers for a halted adapter"
    );
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
    drop(handle);
}

/// Disabling or uninstalling the adapter (query-remove), or its surprise removal, ends the
/// registration, and closes the owner's handles to the device, as Wintun does: PnP removes no
/// device that has open handles, and the client may never close its own. Its handle stops
/// working.
#[oxtun_sim::test]
fn removal_ends_a_registration_and_closes_the_owners_handle() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    let duplicate = process.duplicate_handle(handle.handle(), &process);
    let passed_on = oxtun_sim::ndis_dispatched(IRP_MJ_PNP);
    let Setup {
        driver, adapter, ..
    } = setup;
    assert!(adapter.disable().is_ok(), "removal was vetoed");
    assert!(
        oxtun_sim::ndis_dispatched(IRP_MJ_PNP) > passed_on,
        "NDIS still sees PnP"
    );
    assert!(rings.ended());
    assert!(!handle.is_open() && !process.has_handle(duplicate));
    let again = ClientRings::new(&process);
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &again.bytes()),
        STATUS_INVALID_HANDLE
    );
    std::mem::forget(handle);
    assert!(driver.unload().is_empty());

    let Setup {
        driver, adapter, ..
    } = support::setup();
    let (handle, rings) = register(&adapter, &process);
    assert_eq!(adapter.surprise_remove(), 0, "removal waits for no handle");
    assert!(rings.ended() && !handle.is_open());
    std::mem::forget(handle);
    assert!(driver.unload().is_empty());
}

/// A handle some other process opened, and never registered through, is not the driver's to
/// close: PnP vetoes the removal until that process closes it.
#[oxtun_sim::test]
fn a_bystanders_open_handle_holds_removal_until_it_closes() {
    let setup = setup();
    let owner = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &owner);
    let bystander = Process::new(Token::Administrator, Bitness::Bits64);
    let open = bystander.open(setup.adapter.device(), READ_WRITE);
    let Setup {
        driver, adapter, ..
    } = setup;
    let vetoed = adapter
        .disable()
        .expect_err("an open handle vetoes removal");
    assert_eq!(vetoed.open_handles, 1);
    assert!(
        rings.ended() && !handle.is_open(),
        "the owner's end came first"
    );
    std::mem::forget(handle);
    open.close();
    assert!(vetoed.adapter.disable().is_ok());
    assert!(driver.unload().is_empty());
}

/// A kernel component (a driver that opened the device with ZwCreateFile, in the System
/// process) registers in kernel mode. Removal ends its registration, but its handle is a kernel
/// handle, its own to close: removal waits for that, and its ZwClose then finds the handle
/// there (were it closed under it, that ZwClose would be bug check 0x93).
#[oxtun_sim::test]
fn a_kernel_clients_registration_ends_on_removal_but_its_handle_is_its_own_to_close() {
    let setup = setup();
    let system = Process::system();
    let (handle, rings) = register(&setup.adapter, &system);
    assert!((handle.handle() as i64) < 0, "a kernel handle");
    let Setup {
        driver, adapter, ..
    } = setup;
    let vetoed = adapter
        .disable()
        .expect_err("the kernel client's handle holds removal until it closes it");
    assert_eq!(vetoed.open_handles, 1);
    assert!(rings.ended(), "its registration ended all the same");
    assert!(handle.is_open());
    handle.close();
    assert!(vetoed.adapter.disable().is_ok());
    assert!(driver.unload().is_empty());
}

/// Under Driver Verifier's handle checks, removal closes only handles a snapshot taken just
/// before shows still there: here the owner closes its handle right after the first snapshot
/// listed it, and the driver neither references nor closes the stale value.
#[oxtun_sim::test]
fn under_driver_verifier_removal_leaves_a_handle_closed_since_its_snapshot_alone() {
    oxtun_sim::verifier::enable_handle_checks();
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    oxtun_sim::process::after_next_handle_snapshot(process.handle_closer(handle.handle()));
    let Setup {
        driver, adapter, ..
    } = setup;
    assert!(adapter.disable().is_ok(), "removal was vetoed");
    assert!(rings.ended() && !handle.is_open());
    std::mem::forget(handle);
    assert!(driver.unload().is_empty());
}

/// A client that opened the device for overlapped I/O may close its handle while its
/// registration IOCTL is still being served: the handle's cleanup then comes before the
/// registration is published, and the registration must end as soon as it is, not live on
/// until the process exits.
#[oxtun_sim::test]
fn a_handle_closed_while_its_registration_is_made_ends_the_registration() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    // The driver references the rings' events first thing: the close comes then.
    oxtun_sim::process::after_next_handle_reference(process.handle_closer(handle.handle()));
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    assert!(!handle.is_open());
    std::mem::forget(handle);
    assert!(rings.ended(), "the registration outlived its handle");
    assert_eq!(
        setup.adapter.link_state(),
        Some(MediaConnectStateDisconnected)
    );
    // The slot is free again: a new handle registers.
    let (again, _) = register(&setup.adapter, &process);
    again.close();
    setup.finish();
}

#[oxtun_sim::test]
fn other_ioctls_go_to_ndis() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let before = oxtun_sim::ndis_dispatched(IRP_MJ_DEVICE_CONTROL);
    let other = oxtun_abi::ctl_code(0x12, 0x800, 0, 0);
    assert_eq!(
        handle.device_control(other, &[0; 8]),
        STATUS_INVALID_DEVICE_REQUEST
    );
    assert_eq!(
        oxtun_sim::ndis_dispatched(IRP_MJ_DEVICE_CONTROL),
        before + 1
    );
    handle.close();
    setup.finish();
}

#[oxtun_sim::test]
fn pause_and_restart_keep_a_registration() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register(&setup.adapter, &process);
    assert_eq!(setup.adapter.pause(), NDIS_STATUS_SUCCESS);
    assert_eq!(setup.adapter.restart(), NDIS_STATUS_SUCCESS);
    assert!(!rings.ended());
    handle.close();
    assert!(rings.ended());
    setup.finish();
}

/// Registration failing at each allocation-like call it makes: a clean error, nothing held,
/// and the next registration works.
#[oxtun_sim::test]
fn registration_failing_at_each_allocation_site_holds_nothing() {
    let setup = setup();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(setup.adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    faults::reset();
    assert_eq!(
        handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
        STATUS_SUCCESS
    );
    let calls = faults::calls();
    handle.close();
    for site in [
        Site::ExAllocatePool2,
        Site::IoAllocateMdl,
        Site::ProbeAndLockPages,
        Site::MmMapLockedPagesSpecifyCache,
        Site::ObReferenceObjectByHandle,
    ] {
        assert!(
            calls.contains_key(&site),
            "registration never calls {site:?}: {calls:?}"
        );
    }
    for (&site, &count) in &calls {
        for nth in 1..=count {
            let handle = process.open(setup.adapter.device(), READ_WRITE);
            let rings = ClientRings::new(&process);
            faults::fail_call(site, nth);
            let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
            faults::reset();
            // The statuses Wintun answers for each.
            let expected = match site {
                Site::ProbeAndLockPages => STATUS_INVALID_USER_BUFFER,
                Site::PsCreateSystemThread => NDIS_STATUS_FAILURE,
                _ => STATUS_INSUFFICIENT_RESOURCES,
            };
            assert_eq!(status, expected, "{site:?} call {nth} failed");
            setup.assert_nothing_held();
            assert_eq!(
                handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes()),
                STATUS_SUCCESS
            );
            handle.close();
            assert!(rings.ended());
        }
    }
    setup.finish();
}
