//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls bookkeeping, the
//! kernel stack and the thread's KPCR.
//!
//! The IRQL of each thread, raised and lowered as the real kernel would.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::cell::Cell;

use oxtun_driver::sys::{DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::verifier::violation;

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
}

pub fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Raises to `irql`, which may not be lower than the current one; returns the old IRQL.
pub fn raise(irql: KIRQL) -> KIRQL {
    let old = current();
    if irql < old {
        // Raising to a level below the current one is a bug check (KeRaiseIrql; Bug Check 0x9,
        // IRQL_NOT_GREATER_OR_EQUAL).
        violation(format!("raising IRQL from {old} to lower {irql}"));
    }
    IRQL.with(|cell| cell.set(irql));
    old
}

/// Lowers to `irql`, which may not be higher than the current one.
pub fn lower(irql: KIRQL) {
    let old = current();
    if irql > old {
        // Lowering to a level above the current one is a fatal error (KeLowerIrql: NewIrql is at
        // most the current IRQL).
        violation(format!("lowering IRQL from {old} to higher {irql}"));
    }
    IRQL.with(|cell| cell.set(irql));
}

/// Checks that `what` is called at or below `max`.
pub fn require_at_most(max: KIRQL, what: &str) {
    let irql = current();
    if irql > max {
        // Each caller cites its routine's IRQL requirement (the "IRQL" row of its reference page, as the
        // WDK's _IRQL_requires_max_ annotation says it).
        violation(format!("{what} called at IRQL {irql}, above {max}"));
    }
}

thread_local! {
    /// Driver callbacks under way on this thread.
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs a driver callback entered at `irql` (raising to it first) on the kernel stack
/// ([`crate::ke::stack`]), and checks the callback returned at the IRQL it was entered at. Once the
/// outermost callback returns, checks what a registration it ended left behind.
pub fn call_at<R>(irql: KIRQL, what: &'static str, callback: impl FnOnce() -> R) -> R {
    crate::ke::thread::enter_kernel_mode();
    let old = raise(irql);
    CALLBACK_DEPTH.set(CALLBACK_DEPTH.get() + 1);
    let result = crate::ke::stack::on_kernel_stack(what, callback);
    CALLBACK_DEPTH.set(CALLBACK_DEPTH.get() - 1);
    let after = current();
    if after != irql {
        // A driver callback returns at the IRQL it was called at ("Managing Hardware Priorities": a
        // routine that raises the IRQL restores it before it returns; Driver Verifier's IRQL
        // checking reports the rest).
        violation(format!(
            "{what} returned at IRQL {after}, entered at {irql}"
        ));
    }
    lower(old);
    if CALLBACK_DEPTH.get() == 0 {
        crate::bookkeeping::leaks::check_ended_registrations();
    }
    result
}

pub fn at_dispatch<R>(what: &'static str, callback: impl FnOnce() -> R) -> R {
    call_at(DISPATCH_LEVEL, what, callback)
}

#[kernel_export]
pub extern "efiapi" fn KeGetCurrentIrql() -> KIRQL {
    current()
}
