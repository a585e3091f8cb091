//! Contract violations: like Driver Verifier, the simulated kernel stops at the first one, loudly.
//!
//! A violation prints what broke and a backtrace, then aborts the process (the driver's code is
//! on the stack, and a panic may not unwind through its `extern "efiapi"` frames). The
//! simulator's own tests switch to recording instead, to check that each check fires.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static RECORDING: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Reports a broken contract.
pub fn violation(what: impl Into<String>) {
    let what = what.into();
    if RECORDING.load(Ordering::SeqCst) {
        RECORDED.lock().unwrap().push(what);
        return;
    }
    eprintln!("\nsimulated kernel: contract violation: {what}");
    eprintln!("{}", std::backtrace::Backtrace::force_capture());
    std::process::abort();
}

/// Records violations instead of aborting, until [`take_recorded`]; for testing the checks.
pub fn record_violations() {
    RECORDING.store(true, Ordering::SeqCst);
}

/// The violations recorded so far, clearing them.
pub fn take_recorded() -> Vec<String> {
    std::mem::take(&mut *RECORDED.lock().unwrap())
}
