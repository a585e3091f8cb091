//! Layer: ke, the kernel's dispatcher and IRQL, above bookkeeping. It calls nothing of the
//! simulator.
//!
//! The kernel stack: the driver runs on a stack as small as the kernel's, so a frame that would
//! overflow a kernel stack fails a test.
//!
//! A thread's kernel stack on x64 Windows is 24 KiB (`KERNEL_STACK_SIZE`, 0x6000, in wdm.h; "How
//! do I keep my driver from running out of kernel-mode stack?" in Microsoft's driver
//! documentation: "On x64-based platforms, the kernel-mode stack is 24K"; running out of it is a
//! fatal system error, "Using the Kernel Stack"). The driver shares it with the I/O manager and
//! NDIS above it and with whatever runs below it (an indication runs the protocol stack there),
//! so we give it half: each simulator thread has a kernel stack of [`DRIVER_STACK_SIZE`] with a
//! guard page (no access) below it, made once, and [`crate::ke::irql::call_at`] runs every driver
//! callback on it. A fault in the guard page aborts with "kernel stack overflow in" and the
//! callback's name.
//!
//! The simulator's own code is not the kernel's: it uses far more stack (std, formatting,
//! backtraces). So each export (`#[kernel_export]`) runs its body back on the thread's own stack
//! ([`on_host_stack`]), and a callback that body makes (NDIS returning NBLs inside an
//! indication, a close IRP when the driver drops the last reference) goes on the kernel stack
//! again below the frames the driver left there, as on Windows.
//!
//! While [`measure`] is on, the free part of the kernel stack is painted before each callback and
//! scanned after it, and each callback's deepest use is kept by name ([`high_water`]). The figure
//! includes the simulator's few frames between the stack switch and the driver's function (an
//! empty callback's use, `sim/tests/kernel_stack.rs`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// The kernel stack a driver callback gets: half of x64's 24 KiB.
pub const DRIVER_STACK_SIZE: usize = 12 * 1024;
/// What an unused word of a painted kernel stack holds.
const PAINT: u64 = 0x5354_4143_4B21_5354;
/// The alternate signal stack made for a thread that has none, for the fault handler.
const SIGNAL_STACK_SIZE: usize = 64 * 1024;

thread_local! {
    static KERNEL_STACK: KernelStack = KernelStack::new();
    /// Whether the thread runs on its kernel stack now.
    static ON_KERNEL_STACK: Cell<bool> = const { Cell::new(false) };
    /// Where the free part of the kernel stack begins (it grows down), while an export's body
    /// runs: below the driver's frames. None when no driver frame is on it.
    static KERNEL_LEFT_AT: Cell<Option<usize>> = const { Cell::new(None) };
    /// Where the thread's own stack was left for the kernel stack.
    static HOST_LEFT_AT: Cell<usize> = const { Cell::new(0) };
    /// The innermost driver callback under way, for the overflow report.
    static CALLBACK: Cell<&'static str> = const { Cell::new("") };
    /// The thread's guard page, for the fault handler.
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// While measuring: the deepest address the callbacks under way reached that a nested
    /// callback's painting has since hidden.
    static HIDDEN_REACH: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A thread's kernel stack: a mapping whose lowest page is the guard page.
struct KernelStack {
    mapping: usize,
    len: usize,
    /// The alternate signal stack made for this thread, if it had none.
    signal_stack: Option<usize>,
}

impl KernelStack {
    fn new() -> KernelStack {
        install_fault_handler();
        let page = page_size();
        let len = page + DRIVER_STACK_SIZE.next_multiple_of(page);
        let mapping = map(len);
        // SAFETY: the first page of the mapping just made.
        if unsafe { libc::mprotect(mapping as *mut libc::c_void, page, libc::PROT_NONE) } != 0 {
            panic!("mprotect: {}", std::io::Error::last_os_error());
        }
        GUARD.set((mapping, mapping + page));
        KernelStack {
            mapping,
            len,
            signal_stack: ensure_signal_stack(),
        }
    }

    /// The lowest usable address.
    fn bottom(&self) -> usize {
        self.mapping + page_size()
    }

    fn top(&self) -> usize {
        self.mapping + self.len
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        GUARD.set((0, 0));
        // SAFETY: the mapping this thread made, no longer in use: the thread is ending.
        unsafe { libc::munmap(self.mapping as *mut libc::c_void, self.len) };
        if let Some(signal_stack) = self.signal_stack {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: this thread's signal stack, taken out of use before it is unmapped.
            unsafe {
                libc::sigaltstack(&disable, std::ptr::null_mut());
                libc::munmap(signal_stack as *mut libc::c_void, SIGNAL_STACK_SIZE);
            }
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn map(len: usize) -> usize {
    // SAFETY: a new private anonymous mapping.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        panic!("mmap: {}", std::io::Error::last_os_error());
    }
    mapping as usize
}

/// Gives the thread an alternate signal stack if it has none (std gives its threads one), so
/// the fault handler has a stack to run on when the kernel stack is full. Returns the one made.
fn ensure_signal_stack() -> Option<usize> {
    // SAFETY: a stack_t to fill in.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: queries this thread's signal stack.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return None;
    }
    let stack = map(SIGNAL_STACK_SIZE);
    let new = libc::stack_t {
        ss_sp: stack as *mut libc::c_void,
        ss_flags: 0,
        ss_size: SIGNAL_STACK_SIZE,
    };
    // SAFETY: a mapping of that size, owned by this thread's KernelStack until the thread ends.
    unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) };
    Some(stack)
}

/// Runs a driver callback on the thread's kernel stack: from its top, or from below the frames
/// the driver has on it when an export's body makes the callback.
pub(crate) fn on_kernel_stack<R>(what: &'static str, callback: impl FnOnce() -> R) -> R {
    let outer_callback = CALLBACK.replace(what);
    if ON_KERNEL_STACK.get() {
        // Already there: a test standing in for the driver calls a callback itself.
        let result = callback();
        CALLBACK.set(outer_callback);
        return result;
    }
    let (bottom, top) = KERNEL_STACK.with(|stack| (stack.bottom(), stack.top()));
    let start = KERNEL_LEFT_AT.get().unwrap_or(top);
    let measurement = MEASURING
        .load(Ordering::Relaxed)
        .then(|| Measurement::begin(bottom, start));
    let outer_host = HOST_LEFT_AT.get();
    ON_KERNEL_STACK.set(true);
    let result = switch_stack(start, |host_left_at| {
        HOST_LEFT_AT.set(host_left_at);
        panic::catch_unwind(AssertUnwindSafe(callback))
    });
    ON_KERNEL_STACK.set(false);
    HOST_LEFT_AT.set(outer_host);
    if let Some(measurement) = measurement {
        measurement.end(what);
    }
    CALLBACK.set(outer_callback);
    result.unwrap_or_else(|panic| panic::resume_unwind(panic))
}

/// Runs an export's body on the thread's own stack, below where it was left for the kernel
/// stack; the body is the simulator's code, not the driver's. Each `#[kernel_export]` does this.
pub fn on_host_stack<R>(body: impl FnOnce() -> R) -> R {
    if !ON_KERNEL_STACK.get() {
        return body();
    }
    let outer_kernel = KERNEL_LEFT_AT.get();
    ON_KERNEL_STACK.set(false);
    let result = switch_stack(HOST_LEFT_AT.get(), |kernel_left_at| {
        KERNEL_LEFT_AT.set(Some(kernel_left_at));
        body()
    });
    ON_KERNEL_STACK.set(true);
    KERNEL_LEFT_AT.set(outer_kernel);
    result
}

/// Runs `body` with the stack pointer at `top`, the 16-byte aligned end of free stack memory
/// that grows down; `body` gets the lowest address in use on the stack it left, the end of the
/// free memory there. A panic may not leave `body`: it aborts, as at an export's boundary.
fn switch_stack<F: FnOnce(usize) -> R, R>(top: usize, body: F) -> R {
    struct Call<F, R> {
        body: Option<F>,
        result: Option<R>,
    }
    extern "C" fn enter<F: FnOnce(usize) -> R, R>(call: *mut u8, left_at: usize) {
        // SAFETY: the Call below, which lives until oxtun_sim_switch_stack returns.
        let call = unsafe { &mut *call.cast::<Call<F, R>>() };
        if let Some(body) = call.body.take() {
            call.result = Some(body(left_at));
        }
    }
    let mut call = Call {
        body: Some(body),
        result: None,
    };
    // SAFETY: `top` ends free, writable stack memory of this thread (its kernel stack, or its
    // own stack below the frames in use), aligned as the assembly below requires; `enter` has
    // the signature it calls with the Call it is given.
    unsafe { oxtun_sim_switch_stack((&raw mut call).cast(), enter::<F, R>, top & !15) };
    call.result.expect("the call ran")
}

unsafe extern "C" {
    fn oxtun_sim_switch_stack(call: *mut u8, enter: extern "C" fn(*mut u8, usize), top: usize);
}

// oxtun_sim_switch_stack(call, enter, top): calls enter(call, left_at) with the stack pointer at
// `top`, where `left_at` is the lowest address in use on the stack it leaves (the return address
// and the saved frame pointer), and comes back to that stack. The frame pointer holds the old
// stack pointer throughout, and the call frame information says so, so that unwinding and
// backtraces walk from the new stack back to the old.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("the kernel stack switch (oxtun_sim_switch_stack) is written for x86_64 only");
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.oxtun_sim_switch_stack,\"ax\",@progbits",
    ".globl oxtun_sim_switch_stack",
    ".hidden oxtun_sim_switch_stack",
    ".type oxtun_sim_switch_stack,@function",
    ".p2align 4",
    "oxtun_sim_switch_stack:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "mov rax, rsi",
    "mov rsi, rsp",
    "mov rsp, rdx",
    "call rax",
    "mov rsp, rbp",
    "pop rbp",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size oxtun_sim_switch_stack, .-oxtun_sim_switch_stack",
    ".popsection",
);

static FAULT_HANDLER: Once = Once::new();
/// The SIGSEGV disposition before ours, for faults that are not kernel stack overflows.
static PREVIOUS_HANDLER: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs, once, the SIGSEGV handler that reports a kernel stack overflow, and a panic hook
/// that reports a panic from the thread's own stack (the driver's panics start on the kernel
/// stack, and the report, with its backtrace, is std's code).
fn install_fault_handler() {
    FAULT_HANDLER.call_once(|| {
        // SAFETY: a sigaction to fill in.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: queries the current disposition.
        unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut previous) };
        PREVIOUS_HANDLER.get_or_init(|| previous);
        // SAFETY: a sigaction to fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: installs a handler that is async-signal-safe (see on_fault).
        unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
        }
        let report = panic::take_hook();
        panic::set_hook(Box::new(move |info| on_host_stack(|| report(info))));
    });
}

/// Where mapped kernel images lie, as (start, end) pairs, for the fault handler: atomics, which
/// a signal handler may read.
static IMAGES: [(AtomicUsize, AtomicUsize); 4] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 4];

/// A kernel image is mapped at `[start, end)`: a fault in its code is the image's.
pub(crate) fn note_image(start: usize, end: usize) {
    if let Some((slot_start, slot_end)) = IMAGES
        .iter()
        .find(|(slot_start, _)| slot_start.load(Ordering::SeqCst) == 0)
    {
        slot_end.store(end, Ordering::SeqCst);
        slot_start.store(start, Ordering::SeqCst);
    }
}

/// The image at `start` is unmapped.
pub(crate) fn forget_image(start: usize) {
    for (slot_start, slot_end) in &IMAGES {
        if slot_start.load(Ordering::SeqCst) == start {
            slot_start.store(0, Ordering::SeqCst);
            slot_end.store(0, Ordering::SeqCst);
        }
    }
}

/// The image `address` lies in: its start.
fn image_of(address: usize) -> Option<usize> {
    IMAGES.iter().find_map(|(start, end)| {
        let start = start.load(Ordering::SeqCst);
        (start != 0 && (start..end.load(Ordering::SeqCst)).contains(&address)).then_some(start)
    })
}

/// `si_code` of a fault the kernel raised for a general protection exception (a privileged
/// instruction, or `int n` through a gate user mode may not use).
const SI_KERNEL: libc::c_int = 0x80;

/// What a fault in a kernel image's code would be on Windows, reported (only async-signal-safe
/// calls): `int 29h` is `__fastfail`, bug check 0x139 KERNEL_SECURITY_CHECK_FAILURE with the code
/// from RCX as its first parameter ("Bug Check 0x139", Microsoft's debugger documentation; the
/// `__fastfail` intrinsic's page); any other protection fault is an instruction that runs only in
/// kernel mode, which the loader's code check did not see coming.
#[cfg(target_arch = "x86_64")]
fn report_image_fault(info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo and ucontext for this thread's SIGSEGV.
    let (code, rip, rcx) = unsafe {
        let registers = &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        (
            (*info).si_code,
            registers[libc::REG_RIP as usize] as usize,
            registers[libc::REG_RCX as usize] as u64,
        )
    };
    let Some(image) = image_of(rip) else {
        return;
    };
    if code != SI_KERNEL {
        return;
    }
    // SAFETY: RIP lies in the image's code, mapped readable and executable.
    let instruction = unsafe { [*(rip as *const u8), *((rip + 1) as *const u8)] };
    let mut rva = [0u8; 18];
    let mut parameter = [0u8; 18];
    let rva = hex(&mut rva, (rip - image) as u64);
    let parameter = hex(&mut parameter, rcx);
    let parts: [&[u8]; 5] = if instruction == [0xCD, 0x29] {
        [
            b"\nsimulated kernel: bug check 0x139 (KERNEL_SECURITY_CHECK_FAILURE): __fastfail(",
            parameter,
            b") at RVA ",
            rva,
            b" of the kernel image\n",
        ]
    } else {
        [
            b"\nsimulated kernel: the kernel image ran an instruction that needs kernel mode at \
              RVA ",
            rva,
            b" (not simulated; rcx ",
            parameter,
            b")\n",
        ]
    };
    for part in parts {
        // SAFETY: writes a live buffer to standard error.
        unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
    }
    // SAFETY: abort may be called from a signal handler.
    unsafe { libc::abort() };
}

#[cfg(not(target_arch = "x86_64"))]
fn report_image_fault(_info: *mut libc::siginfo_t, _context: *mut libc::c_void) {}

/// `value` as `0x` and hexadecimal digits, written into `buffer`, without allocating.
fn hex(buffer: &mut [u8; 18], value: u64) -> &[u8] {
    buffer[..2].copy_from_slice(b"0x");
    let digits = (64 - value.leading_zeros()).div_ceil(4).max(1) as usize;
    for index in 0..digits {
        let nibble = (value >> (4 * (digits - 1 - index))) & 0xF;
        buffer[2 + index] = b"0123456789abcdef"[nibble as usize];
    }
    &buffer[..2 + digits]
}

/// A fault in this thread's guard page is a kernel stack overflow: report it and abort; a fault
/// in a kernel image's code is reported as Windows would see it. Any other fault goes to the
/// handler that was there before. Only async-signal-safe calls here.
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    report_image_fault(info, context);
    // SAFETY: the kernel's siginfo for a SIGSEGV.
    let address = unsafe { (*info).si_addr() } as usize;
    let (guard, guard_end) = GUARD.get();
    if (guard..guard_end).contains(&address) {
        let callback = CALLBACK.get();
        for part in [
            "\nsimulated kernel: kernel stack overflow in ",
            callback,
            ": the driver went past its 12 KiB of the 24 KiB kernel stack\n",
        ] {
            // SAFETY: writes a live string to standard error.
            unsafe { libc::write(2, part.as_ptr().cast(), part.len()) };
        }
        // SAFETY: abort may be called from a signal handler.
        unsafe { libc::abort() };
    }
    let Some(previous) = PREVIOUS_HANDLER.get() else {
        return;
    };
    match previous.sa_sigaction {
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: puts the old disposition back; the fault happens again and takes it.
            unsafe { libc::sigaction(signal, previous, std::ptr::null_mut()) };
        }
        handler if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: a handler installed with SA_SIGINFO takes these three arguments.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            handler(signal, info, context);
        }
        handler => {
            // SAFETY: a handler installed without SA_SIGINFO takes the signal number.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            handler(signal);
        }
    }
}

static MEASURING: AtomicBool = AtomicBool::new(false);
static HIGH_WATER: Mutex<BTreeMap<&'static str, Deepest>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy, Debug, Default)]
struct Deepest {
    bytes: usize,
    calls: u64,
}

/// Measures the kernel stack each callback uses, from now on or no more (it costs a paint and a
/// scan of the free stack per callback).
pub fn measure(on: bool) {
    MEASURING.store(on, Ordering::SeqCst);
}

/// The deepest use of the kernel stack measured so far, by callback.
pub fn high_water() -> HighWater {
    HighWater(
        HIGH_WATER
            .lock()
            .unwrap()
            .iter()
            .map(|(&callback, deepest)| (callback, deepest.bytes, deepest.calls))
            .collect(),
    )
}

/// The deepest use measured so far, by callback, forgetting it: what follows is measured afresh
/// (the data-path benchmark measures each build of the driver on its own).
pub fn take_high_water() -> HighWater {
    let taken = high_water();
    HIGH_WATER.lock().unwrap().clear();
    taken
}

/// Each callback measured, the most bytes of kernel stack it used, and how often it was measured.
#[derive(Clone, Debug)]
pub struct HighWater(pub Vec<(&'static str, usize, u64)>);

impl HighWater {
    /// The most a callback named `callback` used, if it was measured.
    pub fn bytes(&self, callback: &str) -> Option<usize> {
        self.0
            .iter()
            .find(|(name, _, _)| *name == callback)
            .map(|&(_, bytes, _)| bytes)
    }
}

impl fmt::Display for HighWater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel stack high-water mark per callback (of {DRIVER_STACK_SIZE} bytes):"
        )?;
        writeln!(
            f,
            "{:<34} {:>8} {:>6} {:>12}",
            "callback", "bytes", "%", "calls"
        )?;
        for &(callback, bytes, calls) in &self.0 {
            writeln!(
                f,
                "{callback:<34} {bytes:>8} {:>6.1} {calls:>12}",
                bytes as f64 * 100.0 / DRIVER_STACK_SIZE as f64
            )?;
        }
        Ok(())
    }
}

/// One callback's measurement: the free stack below where it starts is painted before it runs
/// and scanned after.
struct Measurement {
    bottom: usize,
    start: usize,
    /// What the enclosing callbacks had reached, to give back to them after.
    outer_reach: usize,
}

impl Measurement {
    fn begin(bottom: usize, start: usize) -> Measurement {
        // The enclosing callbacks' deepest frames may lie below `start`: painting hides them.
        let outer_reach = HIDDEN_REACH.get().min(lowest_used(bottom, start));
        paint(bottom, start);
        HIDDEN_REACH.set(usize::MAX);
        Measurement {
            bottom,
            start,
            outer_reach,
        }
    }

    fn end(self, what: &'static str) {
        let reach = lowest_used(self.bottom, self.start).min(HIDDEN_REACH.get());
        HIDDEN_REACH.set(self.outer_reach.min(reach));
        let mut high_water = HIGH_WATER.lock().unwrap();
        let deepest = high_water.entry(what).or_default();
        deepest.bytes = deepest.bytes.max(self.start - reach);
        deepest.calls += 1;
    }
}

fn paint(bottom: usize, start: usize) {
    let words = (start - bottom) / 8;
    // SAFETY: [bottom, start) is free kernel stack of this thread, 8-byte aligned.
    unsafe { std::slice::from_raw_parts_mut(bottom as *mut u64, words) }.fill(PAINT);
}

/// The lowest address in [bottom, start) not holding the paint, or `start`.
fn lowest_used(bottom: usize, start: usize) -> usize {
    let words = (start - bottom) / 8;
    // SAFETY: [bottom, start) is this thread's kernel stack, not in use while the thread runs on
    // its own stack.
    let stack = unsafe { std::slice::from_raw_parts(bottom as *const u64, words) };
    stack
        .iter()
        .position(|&word| word != PAINT)
        .map_or(start, |index| bottom + index * 8)
}
