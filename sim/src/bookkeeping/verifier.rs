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
static HANDLE_CHECKS: AtomicBool = AtomicBool::new(false);
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

/// Turns on the checks Driver Verifier makes of the handles a driver references: a user handle
/// referenced as KernelMode (its Miscellaneous Checks: "Driver Verifier also checks calls to
/// ObReferenceObjectByHandle. You cannot pass a user-mode handle with kernel-mode access", bug
/// check 0xC4 with 0xF6), and a handle that is not valid referenced by a thread attached to
/// another process (no documented sub-code; what made Wintun stop validating its force-close's
/// snapshot handles with that call under Verifier, its commit 12e9f53). Off by
/// default, as Verifier is; on in every process whose environment has
/// `OXTUN_SIM_VERIFIER=handles`.
pub fn enable_handle_checks() {
    HANDLE_CHECKS.store(true, Ordering::SeqCst);
}

/// Whether Driver Verifier's handle checks are on.
pub fn handle_checks() -> bool {
    HANDLE_CHECKS.load(Ordering::SeqCst)
        || std::env::var("OXTUN_SIM_VERIFIER").is_ok_and(|value| value.contains("handles"))
}
