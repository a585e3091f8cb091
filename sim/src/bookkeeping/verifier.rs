//! Layer: bookkeeping, beneath all. It calls nothing of the simulator.
//!
//! Contract violations: like Driver Verifier, the simulated kernel stops at the first one, loudly.
//!
//! A violation prints what broke and a backtrace, then aborts the process (the driver's code is
//! on the stack, and a panic may not unwind through its `extern "efiapi"` frames). The
//! simulator's own tests switch to recording instead, to check that each check fires.
//!
//! There are three kinds, and each message says which:
//! - [`violation`]: a contract Windows documents (each call site cites the page or header), which
//!   on Windows is a bug check, a Driver Verifier report, or a corruption waiting to happen;
//! - [`house_rule`]: a rule of this project, deliberately stricter than Windows;
//! - [`unsupported`]: something legitimate that the simulator does not model, so it cannot run it
//!   faithfully.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static RECORDING: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Reports a broken Windows contract.
pub fn violation(what: impl Into<String>) {
    report("contract violation", what.into());
}

/// Reports a broken house rule: a rule of this project that Windows does not have.
pub fn house_rule(what: impl Into<String>) {
    report("house rule (stricter than Windows)", what.into());
}

/// Reports something the driver may do on Windows that the simulator does not model.
pub fn unsupported(what: impl Into<String>) {
    report("not simulated", what.into());
}

fn report(kind: &str, what: String) {
    if RECORDING.load(Ordering::SeqCst) {
        let what = if kind == "contract violation" {
            what
        } else {
            format!("{kind}: {what}")
        };
        RECORDED.lock().unwrap().push(what);
        return;
    }
    eprintln!("\nsimulated kernel: {kind}: {what}");
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
