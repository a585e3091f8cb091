//! Layer: image, above every kernel layer. It calls the mapped images, the unwind tables, mm's
//! probe, ke's kernel stack and bookkeeping.
//!
//! Structured exception handling for the kernel image, as much of it as the image uses.
//!
//! The image's SEH shim (`src/sys/seh.c`) calls MmProbeAndLockPages inside `__try`/`__except`,
//! because the kernel's MmProbeAndLockPages raises an exception, rather than returning a status,
//! when the pages cannot be probed and locked ("Calls to MmProbeAndLockPages must be enclosed in
//! a try/except block. If the pages do not support the specified operation, the routine raises
//! the STATUS_ACCESS_VIOLATION or other exceptions": learn.microsoft.com, wdm.h,
//! MmProbeAndLockPages).
//!
//! The image's MmProbeAndLockPages here raises the way the kernel's dispatcher and
//! `__C_specific_handler` handle it in the caller's frame: it looks the return address up in the
//! image's exception directory (.pdata), reads the scope table of that function's unwind
//! information, and takes the first scope that covers the call and whose filter (the constant
//! EXCEPTION_EXECUTE_HANDLER, or a filter function, called with the exception's record and the
//! frame's establisher frame) says to handle it. It then resumes at the scope's `__except` block
//! with the exception code in EAX and the caller's stack pointer and non-volatile registers as
//! they were at the call, as RtlUnwindEx leaves them for the target. An exception no scope of
//! the caller handles stops the simulator: on Windows it is bug check 0x1E,
//! KMODE_EXCEPTION_NOT_HANDLED, or it needs more SEH than is simulated (a `__finally` to run, a
//! handler further up the stack).
//!
//! The host build has no SEH: its `OxtunProbeAndLockPages` is the simulator's own ([`io`]), and
//! the image's path below calls that same function, so both builds probe alike.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents.
#![allow(clippy::missing_safety_doc)]

use oxtun_driver::sys::{KPROCESSOR_MODE, LOCK_OPERATION, NT_SUCCESS, NTSTATUS, PMDL};

use crate::bookkeeping::verifier::violation;
use crate::image::images;
use crate::image::unwind::Handler;
use crate::mm::mdl;

/// `C_SCOPE_TABLE.HandlerAddress` of a scope whose filter is the constant
/// EXCEPTION_EXECUTE_HANDLER, as MSVC and clang emit for `__except(1)`; and what a filter
/// function returns to handle the exception (0 searches on, -1 continues execution).
const EXCEPTION_EXECUTE_HANDLER: u32 = 1;
/// `EXCEPTION_NONCONTINUABLE`: ExRaiseStatus, which MmProbeAndLockPages raises with, sets it.
const EXCEPTION_NONCONTINUABLE: u32 = 1;
/// The x64 register number of RBP, the frame register clang and MSVC use.
const RBP: u8 = 5;

/// `EXCEPTION_RECORD` (winnt.h), without the parameters MmProbeAndLockPages does not raise with.
#[repr(C)]
struct ExceptionRecord {
    code: NTSTATUS,
    flags: u32,
    chained: *mut ExceptionRecord,
    address: usize,
    parameters: u32,
    information: [usize; 15],
}

/// `CONTEXT` (winnt.h), for its size and alignment only: a filter is handed one, all zeroes
/// (no register state of the raise is kept). The shim's filter reads only the record.
#[repr(C, align(16))]
struct Context([u8; 0x4D0]);

/// `EXCEPTION_POINTERS`, what a filter function gets first.
#[repr(C)]
struct ExceptionPointers {
    record: *mut ExceptionRecord,
    context: *mut Context,
}

const _: () = assert!(std::mem::size_of::<ExceptionRecord>() == 0x98);

/// A filter function: `LONG Filter(EXCEPTION_POINTERS *, ULONG64 EstablisherFrame)`, in the
/// image's convention.
type Filter = unsafe extern "efiapi" fn(*mut ExceptionPointers, usize) -> i32;

/// Where an exception with `code`, raised by a call whose return address is at `caller_frame`
/// (the caller's RBP being `caller_rbp`), resumes: the `__except` block that handles it, or why
/// none does.
fn except_block(
    code: NTSTATUS,
    caller_frame: *const usize,
    caller_rbp: usize,
) -> Result<usize, String> {
    // SAFETY: the slot of the return address the image's call pushed, on this thread's stack.
    let return_address = unsafe { caller_frame.read() };
    let (base, function) = images::guarded_function_at(return_address).ok_or_else(|| {
        format!("the caller (return address {return_address:#x}) has no exception handler")
    })?;
    let rva = (return_address - base) as u32;
    let scopes = match function.handler {
        Handler::CSpecific(scopes) => scopes,
        Handler::Other(handler) => {
            return Err(format!(
                "the caller's language handler (RVA {handler:#x}) is not __C_specific_handler"
            ));
        }
    };
    // The establisher frame, as RtlVirtualUnwind computes it for the dispatcher: the frame
    // register less its offset, or without one the stack pointer after the prolog, which in
    // the body is the stack pointer at the call (RSP once the return address is popped).
    let establisher = match function.frame {
        None => caller_frame as usize + 8,
        Some((RBP, offset)) => caller_rbp - 16 * usize::from(offset),
        Some((register, _)) => {
            return Err(format!(
                "the caller's frame register is r{register} (not simulated)"
            ));
        }
    };
    // __C_specific_handler walks the scopes in order, innermost first.
    for scope in scopes
        .iter()
        .filter(|scope| (scope.begin..scope.end).contains(&rva))
    {
        if scope.target == 0 {
            return Err(format!(
                "a __finally covers the call at RVA {rva:#x} (not simulated)"
            ));
        }
        let handles = if scope.filter == EXCEPTION_EXECUTE_HANDLER {
            true
        } else {
            let mut record = ExceptionRecord {
                code,
                flags: EXCEPTION_NONCONTINUABLE,
                chained: std::ptr::null_mut(),
                address: MmProbeAndLockPages as *const () as usize,
                parameters: 0,
                information: [0; 15],
            };
            let mut context = Context([0; 0x4D0]);
            let mut pointers = ExceptionPointers {
                record: &mut record,
                context: &mut context,
            };
            let address = base + scope.filter as usize;
            // SAFETY: the filter is code of the image at the RVA its scope table gives, in the
            // Windows convention; it gets live exception pointers and the establisher frame of
            // its function, whose frame is live above us on this stack.
            let filter = unsafe { std::mem::transmute::<usize, Filter>(address) };
            // SAFETY: the filter is the image's, called with live exception pointers and the
            // establisher frame of its own function, which is live above us on this stack.
            match unsafe { filter(&mut pointers, establisher) } {
                0 => false,
                result if result > 0 => true,
                _ => {
                    return Err(format!(
                        "the filter at RVA {:#x} continues a noncontinuable exception",
                        scope.filter
                    ));
                }
            }
        };
        if handles {
            return Ok(base + scope.target as usize);
        }
    }
    Err(format!(
        "no __except of the caller handles it (call at RVA {rva:#x})"
    ))
}

/// What the image's MmProbeAndLockPages does, called by its entry below with the address of the
/// return address into the image and the caller's RBP: the simulator's probe and lock; when it
/// fails, the `__except` block to resume at goes to `resume` and the exception code is returned.
unsafe extern "efiapi" fn probe_and_lock_or_raise(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    operation: LOCK_OPERATION,
    caller_frame: *const usize,
    caller_rbp: usize,
    resume: *mut usize,
) -> NTSTATUS {
    // Like every export's, this is the simulator's work: on the thread's own stack.
    crate::ke::stack::on_host_stack(|| {
        // SAFETY: the image's own arguments, checked by the simulator's probe.
        let status = unsafe { mdl::OxtunProbeAndLockPages(mdl, mode, operation) };
        if NT_SUCCESS(status) {
            return 0;
        }
        match except_block(status, caller_frame, caller_rbp) {
            Ok(target) => {
                // SAFETY: the entry's slot on its own stack frame.
                unsafe { resume.write(target) };
                status
            }
            Err(why) => {
                // An exception no handler takes in kernel mode is Bug Check 0x1E
                // (KMODE_EXCEPTION_NOT_HANDLED), or needs SEH the simulator does not run.
                violation(format!(
                    "MmProbeAndLockPages raised {status:#010x} and {why}; on Windows: bug check \
                     0x1E (KMODE_EXCEPTION_NOT_HANDLED)"
                ));
                std::process::abort()
            }
        }
    })
}

#[cfg(target_arch = "x86_64")]
unsafe extern "efiapi" {
    /// `MmProbeAndLockPages(Mdl, AccessMode, Operation)` for the kernel image: probes and
    /// locks, or raises the failure as an SEH exception into the caller's `__except` block.
    #[link_name = "oxtun_sim_image_MmProbeAndLockPages"]
    pub fn MmProbeAndLockPages(mdl: PMDL, mode: KPROCESSOR_MODE, operation: LOCK_OPERATION);
}

/// Elsewhere the loader refuses the x64 image, so nothing calls this.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe extern "efiapi" fn MmProbeAndLockPages(_: PMDL, _: KPROCESSOR_MODE, _: LOCK_OPERATION) {
    unreachable!("the x64 image runs only on an x86_64 host")
}

// The entry, in the Windows x64 convention (Mdl in RCX, AccessMode in DL, Operation in R8D, the
// return address at [RSP]). It passes the return address's slot, RBP and a slot for the resume
// address to probe_and_lock_or_raise. On success it returns. On failure it drops its frame and
// the return address, so RSP is the caller's as it was before the call, puts the code in EAX and
// jumps to the __except block. The non-volatile registers need no restoring:
// probe_and_lock_or_raise preserved them, so they hold the caller's values at the call, which is
// what the block expects.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".globl oxtun_sim_image_MmProbeAndLockPages",
    ".p2align 4",
    "oxtun_sim_image_MmProbeAndLockPages:",
    ".cfi_startproc",
    // 32 bytes of home space, the fifth and sixth arguments, and the resume slot; with the
    // return address, 64: RSP is 16-byte aligned at the call.
    "sub rsp, 56",
    ".cfi_adjust_cfa_offset 56",
    "lea r9, [rsp + 56]",
    "mov [rsp + 32], rbp",
    "lea rax, [rsp + 48]",
    "mov [rsp + 40], rax",
    "call {probe}",
    "test eax, eax",
    "jnz .Loxtun_sim_image_raise",
    "add rsp, 56",
    ".cfi_adjust_cfa_offset -56",
    "ret",
    ".Loxtun_sim_image_raise:",
    ".cfi_adjust_cfa_offset 56",
    "mov rcx, [rsp + 48]",
    "add rsp, 64",
    "jmp rcx",
    ".cfi_endproc",
    probe = sym probe_and_lock_or_raise,
);

/// `__C_specific_handler`, which the shim's unwind information names as its language handler.
/// The raise above reads the scope table itself, as this handler would, so nothing calls it.
#[allow(non_snake_case)]
pub extern "efiapi" fn __C_specific_handler() {
    crate::ke::stack::on_host_stack(|| {
        // A check on the simulator: its raise reads the scope table itself.
        violation("__C_specific_handler called: the simulator dispatches exceptions itself")
    });
    std::process::abort()
}
