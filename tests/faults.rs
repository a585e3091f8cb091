//! Fault-injection sweep over an adapter's whole life: initialization, registration, traffic
//! both ways, pause and restart, teardown and halt. A life without faults counts the
//! allocation-like calls of each site it reaches; then each of those calls is failed in turn, in
//! a life of its own, which must end cleanly: a clear error where one is due, at most the one
//! packet the failed call was for lost (and counted), nothing leaked, and the adapter carrying
//! traffic afterwards. The sites come from the simulator's counts, so a new call site is swept
//! without anyone listing it.

mod support;

use std::collections::BTreeMap;

use oxtun_abi::TUN_IOCTL_REGISTER_RINGS;
use oxtun_driver::sys::*;
use oxtun_sim::faults::{self, Site};
use oxtun_sim::{
    Adapter, Bitness, DeviceHandle, Driver, Fragmentation, Leaks, Process, Token, outstanding,
};
use support::*;

const PACKETS_PER_ROUND: u64 = 16;

/// How many packets the failed call may have cost so far: one once it has been made, else none.
fn fault_cost(fault: Option<(Site, u64)>) -> u64 {
    match fault {
        Some((site, nth)) if faults::calls().get(&site).copied().unwrap_or(0) >= nth => 1,
        _ => 0,
    }
}

/// One round of traffic: packets sent down the stack into the send ring, and packets the client
/// writes to the receive ring up the stack. Every packet arrives byte-exact and in order, but
/// for those the failed call (if it fell in this round) lost, each counted as a discard or error.
fn traffic_round(adapter: &Adapter, rings: &ClientRings, round: u64, fault: Option<(Site, u64)>) {
    let before = statistics(adapter);
    let cost_before = fault_cost(fault);

    let sent: Vec<Vec<u8>> = (0..PACKETS_PER_ROUND)
        .map(|i| ipv4(round * 100 + i, 60 + i as usize * 97))
        .collect();
    let nbls: Vec<Vec<Vec<u8>>> = sent.iter().map(|packet| vec![packet.clone()]).collect();
    let statuses = adapter.send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
    let delivered: Vec<Vec<u8>> = sent
        .iter()
        .zip(&statuses)
        .filter(|(_, status)| **status == NDIS_STATUS_SUCCESS)
        .map(|(packet, _)| packet.clone())
        .collect();
    assert_eq!(drain(&mut rings.send_reader()), delivered);

    let written: Vec<Vec<u8>> = (0..PACKETS_PER_ROUND)
        .map(|i| ipv6(round * 100 + 50 + i, 40 + i as usize * 131))
        .collect();
    assert!(client_write(
        &mut rings.receive_writer(),
        &rings.receive_event,
        &written
    ));
    wait_released(rings);
    let received: Vec<Vec<u8>> = adapter
        .take_received()
        .into_iter()
        .map(|packet| packet.data)
        .collect();

    let after = statistics(adapter);
    let send_lost = sent.len() - delivered.len();
    let receive_lost = written.len() - received.len();
    assert_eq!(
        (after.ifOutDiscards + after.ifOutErrors) - (before.ifOutDiscards + before.ifOutErrors),
        send_lost as u64,
        "every send lost is counted"
    );
    assert_eq!(
        (after.ifInDiscards + after.ifInErrors) - (before.ifInDiscards + before.ifInErrors),
        receive_lost as u64,
        "every receive lost is counted once Head has passed it"
    );
    assert!(
        (send_lost + receive_lost) as u64 <= fault_cost(fault) - cost_before,
        "{fault:?}: lost {send_lost} sends and {receive_lost} receives"
    );
    let mut remaining = written.iter();
    for packet in &received {
        assert!(
            remaining.any(|expected| expected == packet),
            "received a packet out of order or changed"
        );
    }
}

/// Registers rings until it works: the first try may meet the failed call, which must give a
/// clear error and leave the driver holding what it held before.
fn register_rings<'a>(adapter: &Adapter, process: &'a Process) -> (DeviceHandle<'a>, ClientRings) {
    let before = outstanding();
    let handle = process.open(adapter.device(), READ_WRITE);
    let rings = ClientRings::new(process);
    let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    if NT_SUCCESS(status) {
        return (handle, rings);
    }
    handle.close();
    assert_eq!(
        outstanding(),
        before,
        "a failed registration left this held"
    );
    register(adapter, process)
}

/// An adapter's life with the `fault` call failing (set up by the caller), checked throughout.
fn life(driver: &Driver, loaded: &Leaks, fault: Option<(Site, u64)>) {
    let adapter = match driver.add_adapter() {
        Ok(adapter) => adapter,
        Err(status) => {
            assert!(fault.is_some(), "initialization failed without a fault");
            assert_ne!(status, NDIS_STATUS_SUCCESS);
            assert_eq!(outstanding(), *loaded, "a failed initialization left this");
            return;
        }
    };
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, rings) = register_rings(&adapter, &process);
    traffic_round(&adapter, &rings, 1, fault);
    assert_eq!(adapter.pause(), NDIS_STATUS_SUCCESS);
    assert_eq!(adapter.restart(), NDIS_STATUS_SUCCESS);
    traffic_round(&adapter, &rings, 2, fault);
    handle.close();
    assert!(rings.ended());

    let (handle, rings) = register_rings(&adapter, &process);
    traffic_round(&adapter, &rings, 3, fault);
    handle.close();
    adapter.halt();
    assert_eq!(outstanding(), *loaded, "the adapter's life left this");
}

#[oxtun_sim::test]
fn every_allocation_in_an_adapters_life_can_fail_cleanly() {
    let driver = Driver::load().unwrap();
    let loaded = outstanding();
    faults::reset();
    life(&driver, &loaded, None);
    let reached: BTreeMap<Site, u64> = faults::calls();
    for site in [
        Site::ExAllocatePool2,
        Site::NdisAllocateNetBufferListPool,
        Site::NdisMSetMiniportAttributes,
        Site::NdisAllocateNetBufferAndNetBufferList,
        Site::IoAllocateMdl,
        Site::ProbeAndLockPages,
        Site::MmMapLockedPagesSpecifyCache,
        Site::PsCreateSystemThread,
        Site::ObReferenceObjectByHandle,
    ] {
        assert!(reached.contains_key(&site), "a life never reaches {site:?}");
    }
    let mut swept = 0;
    for (&site, &count) in &reached {
        for nth in 1..=count {
            faults::fail_call(site, nth);
            life(&driver, &loaded, Some((site, nth)));
            assert!(
                faults::calls().get(&site).copied().unwrap_or(0) >= nth,
                "{site:?} call {nth} was never made: the life is not deterministic"
            );
            faults::reset();
            swept += 1;
        }
    }
    println!("{swept} calls failed, one per life: {reached:?}");
    // A last life without faults: the driver is as good as new.
    life(&driver, &loaded, None);
    assert!(driver.unload().is_empty());
}
