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

use object::LittleEndian as LE;
use object::read::pe::PeFile64;

use oxtun_driver::sys::{KPROCESSOR_MODE, LOCK_OPERATION, NT_SUCCESS, NTSTATUS, PMDL};

use crate::bookkeeping::verifier::violation;
use crate::image::loader;
use crate::io;

const UNW_FLAG_EHANDLER: u8 = 0x1;
const UNW_FLAG_UHANDLER: u8 = 0x2;
/// `C_SCOPE_TABLE.HandlerAddress` of a scope whose filter is the constant
/// EXCEPTION_EXECUTE_HANDLER, as MSVC and clang emit for `__except(1)`; and what a filter
/// function returns to handle the exception (0 searches on, -1 continues execution).
const EXCEPTION_EXECUTE_HANDLER: u32 = 1;
/// `EXCEPTION_NONCONTINUABLE`: ExRaiseStatus, which MmProbeAndLockPages raises with, sets it.
const EXCEPTION_NONCONTINUABLE: u32 = 1;
/// The x64 register number of RBP, the frame register clang and MSVC use.
const RBP: u8 = 5;

/// A function of the image whose unwind information names an exception handler.
#[derive(Clone, Debug)]
pub struct GuardedFunction {
    pub begin: u32,
    pub end: u32,
    /// The frame register and its offset from the stack pointer after the prolog, in 16-byte
    /// units (`UNWIND_INFO.FrameRegister` and `FrameOffset`), if the function has one.
    pub frame: Option<(u8, u8)>,
    pub handler: Handler,
}

#[derive(Clone, Debug)]
pub enum Handler {
    /// `__C_specific_handler`, with the function's scope table.
    CSpecific(Vec<Scope>),
    /// Another language handler, at this RVA: not simulated.
    Other(u32),
}

/// A `C_SCOPE_TABLE` entry: `[begin, end)` guarded, the filter (or the constant
/// EXCEPTION_EXECUTE_HANDLER), and the `__except` block (0 for a `__finally`).
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub begin: u32,
    pub end: u32,
    pub filter: u32,
    pub target: u32,
}

/// The functions of `file` that have an exception handler, read from its exception directory;
/// `c_specific_handler_slot` is the RVA of the import address table's slot for
/// `ntoskrnl.exe!__C_specific_handler`, if the image imports it.
pub fn guarded_functions(
    file: &PeFile64,
    data: &[u8],
    c_specific_handler_slot: Option<u32>,
) -> Result<Vec<GuardedFunction>, String> {
    let sections = file.section_table();
    let at = |rva: u32, len: usize| {
        sections
            .pe_data_at(data, rva)
            .and_then(|bytes| bytes.get(..len))
            .ok_or(format!(
                "unwind information at RVA {rva:#x} is outside the image"
            ))
    };
    let mut functions = Vec::new();
    for entry in loader::runtime_functions(file, data)? {
        let unwind = entry.unwind_info_address_or_data.get(LE);
        let header = at(unwind, 4)?;
        let flags = header[0] >> 3;
        if flags & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER) == 0 {
            continue;
        }
        // The unwind codes (two bytes each, padded to an even count), then the handler's RVA
        // and its data.
        let codes = usize::from(header[2]).next_multiple_of(2);
        let handler_at = unwind + 4 + 2 * codes as u32;
        let handler = u32_at(at(handler_at, 4)?, 0);
        let thunk_slot = at(handler, 6)
            .ok()
            .filter(|thunk| thunk[..2] == [0xFF, 0x25])
            .map(|thunk| (handler + 6).wrapping_add(u32_at(thunk, 2)));
        let handler = if thunk_slot.is_some() && thunk_slot == c_specific_handler_slot {
            let count = u32_at(at(handler_at + 4, 4)?, 0) as usize;
            let table = at(handler_at + 8, count * 16)?;
            Handler::CSpecific(
                table
                    .chunks(16)
                    .map(|scope| Scope {
                        begin: u32_at(scope, 0),
                        end: u32_at(scope, 4),
                        filter: u32_at(scope, 8),
                        target: u32_at(scope, 12),
                    })
                    .collect(),
            )
        } else {
            Handler::Other(handler)
        };
        let frame = (header[3] & 0xF != 0).then_some((header[3] & 0xF, header[3] >> 4));
        functions.push(GuardedFunction {
            begin: entry.begin_address.get(LE),
            end: entry.end_address.get(LE),
            frame,
            handler,
        });
    }
    Ok(functions)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

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
    let (base, function) = loader::guarded_function_at(return_address).ok_or_else(|| {
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
            // SAFETY: the filter is code of the image at the RVA its scope table gives, in the
            // Windows convention; it gets live exception pointers and the establisher frame of
            // its function, whose frame is live above us on this stack.
            let filter =
                unsafe { std::mem::transmute::<usize, Filter>(base + scope.filter as usize) };
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
        let status = unsafe { io::OxtunProbeAndLockPages(mdl, mode, operation) };
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
