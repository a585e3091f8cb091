//! Figures for the data path, on the simulated kernel: packets per second through the send and
//! the receive path for 64, 512, 1400 and 9000-byte packets, NBLs per indication, allocations
//! per packet in steady state, wake-up events per packet, and the most kernel stack each driver
//! callback used (measured outside the timed windows, since measuring costs).
//!
//! The simulator is a user-space stand-in for the kernel (its locks, events and bookkeeping cost
//! more than the kernel's), so the absolute rates are a floor for what the driver's code does,
//! and say nothing of Windows' own stack; the per-packet counts carry over as they are.
//!
//! Run: `cargo bench --bench data_path`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oxtun_abi::{SleepDecision, TUN_IOCTL_REGISTER_RINGS};
use oxtun_driver::sys::*;
use oxtun_sim::{
    Adapter, Bitness, DeviceHandle, Driver, Fragmentation, PreparedSend, Process, ReturnMode,
    Token, faults, stack,
};
use support::*;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
const WARM_UP: Duration = Duration::from_millis(300);
const MEASURE: Duration = Duration::from_secs(2);
const RING_CAPACITY: u32 = 8 << 20;
const NBLS_PER_SEND: usize = 16;

struct Figures {
    packets_per_second: f64,
    gigabits_per_second: f64,
    allocations_per_packet: f64,
    events_per_packet: f64,
    nbls_per_indication: Option<f64>,
}

fn allocation_calls() -> u64 {
    faults::calls().values().sum()
}

fn register_big<'a>(adapter: &Adapter, process: &'a Process) -> (DeviceHandle<'a>, ClientRings) {
    let handle = process.open(adapter.device(), READ_WRITE);
    let rings = ClientRings::with_capacity(process, RING_CAPACITY);
    let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_SUCCESS);
    (handle, rings)
}

/// The stack sends as fast as it can; a client thread drains the send ring, sleeping through the
/// alertable handshake when it is empty.
fn send(adapter: &Adapter, size: usize) -> Figures {
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register_big(adapter, &process);
    let nbls: Vec<Vec<Vec<u8>>> = (0..NBLS_PER_SEND as u64)
        .map(|seed| vec![ipv4(seed, size)])
        .collect();
    let mut prepared = PreparedSend::new(&nbls, Fragmentation::CONTIGUOUS);
    let stop = AtomicBool::new(false);
    let figures = thread::scope(|scope| {
        let (rings, stop) = (&rings, &stop);
        scope.spawn(move || {
            let mut reader = rings.send_reader();
            while !stop.load(Ordering::Relaxed) {
                let mut any = false;
                while let Ok(Some(_packet)) = reader.next_packet() {
                    any = true;
                }
                reader.release_all();
                if !any && reader.announce_sleep() == SleepDecision::Sleep {
                    rings.send_event.wait(Duration::from_millis(50));
                    reader.end_sleep();
                }
            }
        });
        let mut measure = |duration: Duration| {
            let start = Instant::now();
            let mut packets = 0u64;
            while start.elapsed() < duration {
                let sent = adapter.send_prepared(&mut prepared, DISPATCH_LEVEL);
                if sent == 0 {
                    thread::yield_now();
                }
                packets += sent as u64;
            }
            (packets, start.elapsed())
        };
        measure(WARM_UP);
        faults::reset();
        let events_before = rings.send_event.set_count();
        let (packets, elapsed) = timed(|| measure(MEASURE));
        let allocations = allocation_calls();
        let events = rings.send_event.set_count() - events_before;
        stop.store(true, Ordering::Relaxed);
        rings.send_event.set();
        figures(packets, size, elapsed, allocations, events, None)
    });
    handle.close();
    figures
}

/// A client thread writes packets to the receive ring as fast as the driver frees it, setting
/// the receive event when the driver sleeps; the simulated stack returns each NBL at once.
fn receive(adapter: &Adapter, size: usize) -> Figures {
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register_big(adapter, &process);
    adapter.set_return_mode(ReturnMode::Immediately);
    adapter.set_recording(false);
    let stop = AtomicBool::new(false);
    let client_events = AtomicU64::new(0);
    let figures = thread::scope(|scope| {
        let (rings, stop, client_events) = (&rings, &stop, &client_events);
        scope.spawn(move || {
            let mut writer = rings.receive_writer();
            let batch: Vec<Vec<u8>> = (0..NBLS_PER_SEND as u64)
                .map(|seed| ipv4(seed, size))
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let before = rings.receive_event.set_count();
                if !client_write(&mut writer, &rings.receive_event, &batch) {
                    thread::yield_now();
                }
                client_events
                    .fetch_add(rings.receive_event.set_count() - before, Ordering::Relaxed);
            }
        });
        let window = |duration: Duration| {
            let indications = adapter.indication_count();
            let packets = adapter.packets_received();
            let events = client_events.load(Ordering::Relaxed);
            let start = Instant::now();
            thread::sleep(duration);
            (
                adapter.packets_received() - packets,
                start.elapsed(),
                adapter.indication_count() - indications,
                client_events.load(Ordering::Relaxed) - events,
            )
        };
        window(WARM_UP);
        faults::reset();
        let (packets, elapsed, indications, events) = timed(|| window(MEASURE));
        let allocations = allocation_calls();
        stop.store(true, Ordering::Relaxed);
        let per_indication = packets as f64 / indications.max(1) as f64;
        figures(
            packets,
            size,
            elapsed,
            allocations,
            events,
            Some(per_indication),
        )
    });
    handle.close();
    adapter.set_recording(true);
    figures
}

/// Runs a timed window with the kernel stack unmeasured.
fn timed<R>(window: impl FnOnce() -> R) -> R {
    stack::measure(false);
    let result = window();
    stack::measure(true);
    result
}

fn figures(
    packets: u64,
    size: usize,
    elapsed: Duration,
    allocations: u64,
    events: u64,
    nbls_per_indication: Option<f64>,
) -> Figures {
    let seconds = elapsed.as_secs_f64();
    let packets_f = packets.max(1) as f64;
    Figures {
        packets_per_second: packets as f64 / seconds,
        gigabits_per_second: packets as f64 * size as f64 * 8.0 / seconds / 1e9,
        allocations_per_packet: allocations as f64 / packets_f,
        events_per_packet: events as f64 / packets_f,
        nbls_per_indication,
    }
}

fn main() {
    stack::measure(true);
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    println!(
        "{:>6} {:>9} {:>14} {:>8} {:>12} {:>12} {:>14}",
        "path", "size", "packets/s", "Gbit/s", "allocs/pkt", "events/pkt", "NBLs/indicate"
    );
    for size in SIZES {
        for (path, figures) in [
            ("send", send(&adapter, size)),
            ("receive", receive(&adapter, size)),
        ] {
            println!(
                "{:>6} {:>9} {:>14.0} {:>8.2} {:>12.4} {:>12.4} {:>14}",
                path,
                size,
                figures.packets_per_second,
                figures.gigabits_per_second,
                figures.allocations_per_packet,
                figures.events_per_packet,
                figures
                    .nbls_per_indication
                    .map_or("-".to_string(), |n| format!("{n:.1}")),
            );
        }
    }
    adapter.halt();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
    println!("\n{}", stack::high_water());
}
