//! The kernel stack: driver callbacks run on 12 KiB with a guard page below, an overflow aborts
//! naming the callback, a callback made from an export's body continues below the driver's
//! frames, and each callback's deepest use is measured.
//!
//! An overflow aborts the process, so those tests run in a child: the test binary itself, with
//! `CHILD` naming the test to run there.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use oxtun_driver::sys::PASSIVE_LEVEL;
use oxtun_sim::irql::call_at;
use oxtun_sim::stack;

const CHILD: &str = "OXTUN_SIM_KERNEL_STACK_CHILD";

/// Stands in for a driver function with a frame of N bytes; returns a byte of it.
#[inline(never)]
fn frame<const N: usize>() -> u8 {
    let mut frame = [0x11u8; N];
    black_box(&mut frame);
    frame[N / 2]
}

/// Stands in for a driver function with a frame of N bytes that calls `inner`, an export.
#[inline(never)]
fn frame_calling<const N: usize>(inner: impl FnOnce()) {
    let mut frame = [0xA5u8; N];
    black_box(&mut frame);
    stack::on_host_stack(inner);
    black_box(&mut frame);
    assert!(
        frame.iter().all(|&byte| byte == 0xA5),
        "the driver's frame was overwritten"
    );
}

/// Runs `body` in a child process when called from `test` in the parent, and returns the
/// child's output there; in the child, runs `body` and returns None.
fn in_child(test: &str, body: impl FnOnce()) -> Option<Output> {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        body();
        return None;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .unwrap();
    Some(output)
}

fn assert_overflow_in(output: Output, callback: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "the child did not abort: {stderr}"
    );
    assert!(
        stderr.contains(&format!("kernel stack overflow in {callback}:")),
        "{stderr}"
    );
}

#[oxtun_sim::test]
fn a_callback_whose_frame_overflows_the_kernel_stack_aborts_naming_it() {
    if let Some(output) = in_child(
        "a_callback_whose_frame_overflows_the_kernel_stack_aborts_naming_it",
        || {
            call_at(
                PASSIVE_LEVEL,
                "a callback with a 16 KiB frame",
                frame::<16384>,
            );
        },
    ) {
        assert_overflow_in(output, "a callback with a 16 KiB frame");
    }
}

/// The fault handler needs a stack of its own to run on; a thread without one gets one.
#[oxtun_sim::test]
fn an_overflow_on_a_thread_without_a_signal_stack_is_reported() {
    if let Some(output) = in_child(
        "an_overflow_on_a_thread_without_a_signal_stack_is_reported",
        || {
            std::thread::spawn(|| {
                let disable = libc::stack_t {
                    ss_sp: std::ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    ss_size: 0,
                };
                // SAFETY: takes this thread's signal stack out of use (std's stays mapped).
                unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
                call_at(PASSIVE_LEVEL, "a callback on a bare thread", frame::<16384>);
            })
            .join()
            .unwrap();
        },
    ) {
        assert_overflow_in(output, "a callback on a bare thread");
    }
}

#[oxtun_sim::test]
fn a_callback_within_the_kernel_stack_runs() {
    call_at(
        PASSIVE_LEVEL,
        "a callback with a 10 KiB frame",
        frame::<10240>,
    );
    call_at(
        PASSIVE_LEVEL,
        "a callback with 5 KiB calling one with 5 KiB",
        || {
            frame_calling::<5120>(|| {
                call_at(PASSIVE_LEVEL, "a nested callback", frame::<5120>);
            });
        },
    );
}

/// A callback made from an export's body (NDIS returning NBLs inside an indication) shares the
/// kernel stack with the driver's frames above it.
#[oxtun_sim::test]
fn a_nested_callback_overflows_below_the_driver_frames_above_it() {
    if let Some(output) = in_child(
        "a_nested_callback_overflows_below_the_driver_frames_above_it",
        || {
            call_at(PASSIVE_LEVEL, "an outer callback with 8 KiB", || {
                frame_calling::<8192>(|| {
                    call_at(PASSIVE_LEVEL, "a nested callback with 6 KiB", frame::<6144>);
                });
            });
        },
    ) {
        assert_overflow_in(output, "a nested callback with 6 KiB");
    }
}

#[oxtun_sim::test]
fn a_nested_callback_leaves_the_driver_frames_above_it_intact() {
    call_at(PASSIVE_LEVEL, "an outer callback", || {
        frame_calling::<4096>(|| {
            call_at(PASSIVE_LEVEL, "a nested callback", frame::<6144>);
        });
    });
}

/// The simulator's code (an export's body) has the thread's own stack, not the kernel's.
#[oxtun_sim::test]
fn an_export_body_runs_on_the_thread_stack() {
    call_at(PASSIVE_LEVEL, "a callback", || {
        stack::on_host_stack(frame::<{ 64 * 1024 }>);
    });
}

#[oxtun_sim::test]
fn each_callback_high_water_mark_is_measured() {
    stack::measure(true);
    call_at(PASSIVE_LEVEL, "an empty callback", || {});
    call_at(PASSIVE_LEVEL, "6 KiB", frame::<6144>);
    call_at(PASSIVE_LEVEL, "1 KiB", frame::<1024>);
    call_at(PASSIVE_LEVEL, "3 KiB calling a nested one", || {
        frame_calling::<3072>(|| {
            call_at(PASSIVE_LEVEL, "4 KiB, nested", frame::<4096>);
        });
    });
    call_at(PASSIVE_LEVEL, "6 KiB, then a nested one", || {
        frame::<6144>();
        stack::on_host_stack(|| call_at(PASSIVE_LEVEL, "1 KiB, nested", frame::<1024>));
    });
    call_at(PASSIVE_LEVEL, "2 KiB after a nested one", || {
        stack::on_host_stack(|| call_at(PASSIVE_LEVEL, "1 KiB, nested", frame::<1024>));
        frame::<2048>();
    });
    stack::measure(false);
    let high_water = stack::high_water();
    let bytes = |callback| high_water.bytes(callback).unwrap();
    // What the simulator's own frames between the stack switch and the callback cost.
    let overhead = bytes("an empty callback");
    assert!(overhead < 256, "{high_water}");
    let assert_about = |callback, expected: usize| {
        let measured = bytes(callback);
        assert!(
            (expected..expected + overhead + 256).contains(&measured),
            "{callback}: {measured} bytes, {expected} expected\n{high_water}"
        );
    };
    assert_about("6 KiB", 6144);
    assert_about("1 KiB", 1024);
    assert_about("4 KiB, nested", 4096);
    assert_about("1 KiB, nested", 1024);
    assert_about("2 KiB after a nested one", 2048);
    // An outer callback's mark includes a nested one below it, and what the outer one reached
    // before the nested one painted over it.
    assert_about("6 KiB, then a nested one", 6144);
    assert_about("3 KiB calling a nested one", 3072 + bytes("4 KiB, nested"));
}

/// Every function the simulator exports to the driver is a `#[kernel_export]`, so none runs the
/// simulator's code on the kernel stack.
#[oxtun_sim::test]
fn every_exported_function_runs_its_body_on_the_thread_stack() {
    let mut folders = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                assert_exports_are_kernel_exports(&path);
            }
        }
    }
}

fn assert_exports_are_kernel_exports(path: &std::path::Path) {
    let source = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    for (index, pair) in lines.windows(2).enumerate() {
        assert!(
            !(pair[0].trim() == "#[unsafe(no_mangle)]" && pair[1].contains("fn ")),
            "{}:{}: an export without #[kernel_export]",
            path.display(),
            index + 1
        );
    }
}
