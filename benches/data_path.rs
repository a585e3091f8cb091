//! Figures for the data path, on the simulated kernel: packets per second through the send and
//! the receive path for 64, 512, 1400 and 9000-byte packets, NBLs per indication, allocations
//! per packet in steady state, wake-up events per packet, and the most kernel stack each driver
//! callback used (measured outside the timed windows, since measuring costs); for the host build
//! and the shipped kernel image side by side. The builds take turns, three rounds each; each rate
//! is the best of its build's rounds, printed with the spread of its rounds (best to worst, as a
//! share of the best), the noise a difference between the builds must exceed to mean anything.
//!
//! The simulator is a user-space stand-in for the kernel (its locks, events and bookkeeping cost
//! more than the kernel's), so the absolute rates are a floor for what the driver's code does,
//! and say nothing of Windows' own stack; the per-packet counts carry over as they are.
//!
//! Run: `cargo bench --bench data_path`, with the x64 release image built
//! (`cargo build -p oxtun --release --target x86_64-pc-windows-msvc`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oxtun_abi::{SleepDecision, TUN_IOCTL_REGISTER_RINGS};
use oxtun_driver::sys::*;
use oxtun_sim::{
    Adapter, Bitness, DeviceHandle, Driver, DriverBuild, Fragmentation, PreparedSend, Process,
    ReturnMode, Token, faults, stack,
};
use support::*;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
const WARM_UP: Duration = Duration::from_millis(300);
const MEASURE: Duration = Duration::from_secs(1);
const RING_CAPACITY: u32 = 8 << 20;
const NBLS_PER_SEND: usize = 16;
/// Turns each build takes.
const ROUNDS: usize = 3;

#[derive(Clone, Copy)]
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

/// Every path and size on `build`: (path, size, figures).
fn measure(build: &DriverBuild) -> Vec<(&'static str, usize, Figures)> {
    let driver = Driver::load_build(build)
        .unwrap_or_else(|status| panic!("{build} did not load: {status:#x}"));
    let adapter = driver.add_adapter().unwrap();
    let mut rows = Vec::new();
    for size in SIZES {
        rows.push(("send", size, send(&adapter, size)));
        rows.push(("receive", size, receive(&adapter, size)));
    }
    adapter.halt();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "{build} leaked {leaks}");
    rows
}

/// One build's figures for one path and size over the rounds: the best round's, and the
/// spread of the rates.
struct Measured {
    best: Figures,
    worst_rate: f64,
}

impl Measured {
    fn spread(&self) -> f64 {
        1.0 - self.worst_rate / self.best.packets_per_second
    }
}

fn main() {
    let builds = [
        DriverBuild::Host,
        DriverBuild::Image(DriverBuild::release_image()),
    ];
    let mut measured: Vec<Vec<(&str, usize, Measured)>> = vec![Vec::new(), Vec::new()];
    // Each build's kernel stack use, from its first round.
    let mut stack_use: Vec<Option<stack::HighWater>> = vec![None, None];
    stack::measure(true);
    for _ in 0..ROUNDS {
        for ((build, measured), stack_use) in builds.iter().zip(&mut measured).zip(&mut stack_use) {
            let rows = measure(build);
            let high_water = stack::take_high_water();
            stack_use.get_or_insert(high_water);
            if measured.is_empty() {
                measured.extend(rows.into_iter().map(|(path, size, figures)| {
                    let worst_rate = figures.packets_per_second;
                    (
                        path,
                        size,
                        Measured {
                            best: figures,
                            worst_rate,
                        },
                    )
                }));
                continue;
            }
            for (kept, (_, _, figures)) in measured.iter_mut().zip(rows) {
                let kept = &mut kept.2;
                kept.worst_rate = kept.worst_rate.min(figures.packets_per_second);
                if figures.packets_per_second > kept.best.packets_per_second {
                    kept.best = figures;
                }
            }
        }
    }
    println!("host: {}; image: {}", builds[0], builds[1]);
    println!("rates: the best of {ROUNDS} rounds, ± the spread of the rounds");
    println!(
        "{:>7} {:>5} {:>16} {:>16} {:>6} {:>13} {:>15} {:>15} {:>11}",
        "path",
        "size",
        "host pkt/s",
        "image pkt/s",
        "image/",
        "Gbit/s",
        "allocs/pkt",
        "events/pkt",
        "NBLs/indic."
    );
    println!(
        "{:>7} {:>5} {:>16} {:>16} {:>6} {:>13} {:>15} {:>15} {:>11}",
        "", "", "", "", "host", "host  image", "host   image", "host   image", "host image"
    );
    let per_indication = |figures: &Figures| {
        figures
            .nbls_per_indication
            .map_or("-".to_string(), |n| format!("{n:.1}"))
    };
    for ((path, size, host), (_, _, image)) in measured[0].iter().zip(&measured[1]) {
        let rate = |measured: &Measured| {
            format!(
                "{:.0} ±{:>2.0}%",
                measured.best.packets_per_second,
                measured.spread() * 100.0
            )
        };
        let (host_best, image_best) = (&host.best, &image.best);
        println!(
            "{:>7} {:>5} {:>16} {:>16} {:>6.2} {:>6.2} {:>6.2} {:>7.4} {:>7.4} {:>7.4} {:>7.4} \
             {:>5} {:>5}",
            path,
            size,
            rate(host),
            rate(image),
            image_best.packets_per_second / host_best.packets_per_second,
            host_best.gigabits_per_second,
            image_best.gigabits_per_second,
            host_best.allocations_per_packet,
            image_best.allocations_per_packet,
            host_best.events_per_packet,
            image_best.events_per_packet,
            per_indication(host_best),
            per_indication(image_best),
        );
    }
    for (build, stack_use) in builds.iter().zip(stack_use) {
        println!("\n{build}: {}", stack_use.expect("measured"));
    }
}
