//! Figures for an idle registered session, on the simulated kernel: what the driver costs while
//! a client is connected and no packet moves. For each clock tick (15.625 ms, Windows' default,
//! and 1 ms, while some application has raised the timer resolution): the receive thread's
//! wake-ups per second as the simulated kernel counts them (waits that ended by their timeout
//! and waits an event ended), and the context switches and CPU time per second of the whole
//! process (every simulated kernel thread), as Linux counts them.
//!
//! Run: `cargo bench --bench idle`; `OXTUN_SIM_DRIVER=image` for the kernel image (build it
//! first: `cargo build -p oxtun --release --target x86_64-pc-windows-msvc`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::thread;
use std::time::{Duration, Instant};

use oxtun_sim::ke::clock;
use oxtun_sim::{Bitness, Driver, Process, Token, dispatcher};
use support::*;

const SETTLE: Duration = Duration::from_millis(300);
const MEASURE: Duration = Duration::from_secs(5);

/// The process's context switches and CPU time so far, summed over its threads (from
/// /proc/self/task/*/status and /proc/self/stat).
fn process_costs() -> (u64, Duration) {
    let mut switches = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        switches += status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux this runs on.
    (switches, Duration::from_millis(ticks * 10))
}

fn wake_ups() -> u64 {
    dispatcher::timed_out_waits() + dispatcher::satisfied_waits()
}

fn main() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    let process = Process::new(Token::System, Bitness::Bits64);
    let (handle, rings) = register(&adapter, &process);
    let mut writer = rings.receive_writer();
    // One packet, so the receive thread has been awake and gone to sleep once.
    assert!(client_write(
        &mut writer,
        &rings.receive_event,
        &[ipv4(1, 60)]
    ));
    assert_eq!(adapter.wait_received(1, Duration::from_secs(20)).len(), 1);
    println!(
        "an idle registered session, {:?} each ({}):",
        MEASURE,
        oxtun_sim::DriverBuild::from_setting()
    );
    for tick in [clock::DEFAULT_TICK, clock::FINE_TICK] {
        clock::set_tick(tick);
        thread::sleep(SETTLE);
        let (switches, cpu) = process_costs();
        let woken = wake_ups();
        let start = Instant::now();
        thread::sleep(MEASURE);
        let seconds = start.elapsed().as_secs_f64();
        let (switches_after, cpu_after) = process_costs();
        println!(
            "  clock tick {tick:?}: {:.1} receive-thread wake-ups/s, {:.1} context switches/s, \
             {:.2}% of a core",
            (wake_ups() - woken) as f64 / seconds,
            (switches_after - switches) as f64 / seconds,
            (cpu_after - cpu).as_secs_f64() / seconds * 100.0,
        );
    }
    handle.close();
    adapter.halt();
    assert!(driver.unload().is_empty());
}
