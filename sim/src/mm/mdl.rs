//! Layer: mm, memory, above ob. It calls processes (their memory), ke and bookkeeping.
//!
//! MDLs: allocated, probed and locked, mapped, partial, freed; and reading the data an MDL
//! chain describes.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::leaks::{note_freed_mdl, note_locked_mdl};
use crate::bookkeeping::verifier::{house_rule, unsupported, violation};
use crate::ke::irql;
use crate::ob::process::{self, ProcessState};

const STATUS_ACCESS_VIOLATION: NTSTATUS = 0xC000_0005_u32 as i32;

/// An MDL's state beyond what the MDL itself records.
#[derive(Default)]
struct MdlState {
    locked_by: Option<Arc<ProcessState>>,
    mapped: Option<(usize, u32)>,
    /// Pages the MDL can describe, as IoAllocateMdl sized it.
    pages: usize,
    /// For a partial MDL: the MDL whose locked pages it describes.
    partial_of: Option<usize>,
    /// Built by MmBuildMdlForNonPagedPool: non-paged memory, mapped where it lies.
    nonpaged: bool,
}

const PAGE_SIZE: usize = 4096;

fn pages_spanned(address: usize, length: usize) -> usize {
    (address % PAGE_SIZE + length).div_ceil(PAGE_SIZE)
}

static MDLS: Mutex<BTreeMap<usize, MdlState>> = Mutex::new(BTreeMap::new());

pub fn mdls_outstanding() -> usize {
    MDLS.lock().unwrap().len()
}

/// The priority flags of the last mapping, to check the driver maps no-execute.
pub static LAST_MAPPING_PRIORITY: AtomicU64 = AtomicU64::new(0);

#[kernel_export]
pub unsafe extern "efiapi" fn IoAllocateMdl(
    address: PVOID,
    length: ULONG,
    secondary: u8,
    charge_quota: u8,
    irp: PIRP,
) -> PMDL {
    // IoAllocateMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoAllocateMdl");
    if secondary != 0 || charge_quota != 0 || !irp.is_null() {
        unsupported("IoAllocateMdl for an IRP, as a secondary buffer or charging quota");
    }
    if should_fail(Site::IoAllocateMdl) {
        return null_mut();
    }
    // SAFETY: MDL is plain data.
    let mut mdl: Box<MDL> = Box::new(unsafe { std::mem::zeroed() });
    mdl.StartVa = address;
    mdl.ByteCount = length;
    let mdl = Box::into_raw(mdl);
    let state = MdlState {
        pages: pages_spanned(address as usize, length as usize),
        ..MdlState::default()
    };
    MDLS.lock().unwrap().insert(mdl as usize, state);
    mdl
}

#[kernel_export]
pub unsafe extern "efiapi" fn IoFreeMdl(mdl: PMDL) {
    // IoFreeMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoFreeMdl");
    let Some(state) = MDLS.lock().unwrap().remove(&(mdl as usize)) else {
        // IoFreeMdl releases "an MDL that was allocated by IoAllocateMdl" (IoFreeMdl).
        violation(format!("freeing unknown MDL {mdl:p}"));
        return;
    };
    // Pages locked through the MDL are unlocked first ("Using MDLs": MmUnlockPages, then
    // IoFreeMdl); else they stay locked until Bug Check 0x76 (PROCESS_HAS_LOCKED_PAGES). A mapping
    // goes with the unlock, and "if such a mapping exists, IoFreeMdl releases the
    // system-address-space mapping for a partial MDL" (IoBuildPartialMdl).
    if state.locked_by.is_some() {
        violation("freeing an MDL whose pages are still locked");
    }
    note_freed_mdl(mdl as usize);
    // SAFETY: allocated by IoAllocateMdl, removed from the table once.
    drop(unsafe { Box::from_raw(mdl) });
}

/// The SEH shim's counterpart: MmProbeAndLockPages with its exception returned as a status.
#[kernel_export]
pub unsafe extern "efiapi" fn OxtunProbeAndLockPages(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    operation: LOCK_OPERATION,
) -> NTSTATUS {
    // MmProbeAndLockPages (wdm.h): "IRQL <= APC_LEVEL".
    irql::require_at_most(APC_LEVEL, "MmProbeAndLockPages");
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmProbeAndLockPages fills an MDL the caller allocated (IoAllocateMdl).
        violation(format!("probing unknown MDL {mdl:p}"));
        return STATUS_INVALID_PARAMETER;
    };
    if state.locked_by.is_some() {
        // An MDL describes one locked range: probing it again overwrites the page array of pages
        // still locked, which are then never unlocked ("Using MDLs").
        violation("probing an MDL that is already locked");
    }
    if state.nonpaged {
        // "Because the pages described by the MDL are already nonpageable ... drivers must not
        // try to lock them by using the MmProbeAndLockPages routine" (MmBuildMdlForNonPagedPool).
        violation("probing and locking an MDL MmBuildMdlForNonPagedPool built");
    }
    // Windows probes for whatever access is asked (MmProbeAndLockPages); the driver writes both
    // rings' headers, and pages probed only for reading would let a read-only mapping through.
    if operation != IoWriteAccess {
        house_rule("the driver writes the rings: it must probe them for IoWriteAccess");
    }
    if should_fail(Site::ProbeAndLockPages) {
        return STATUS_ACCESS_VIOLATION;
    }
    // SAFETY: a live MDL from IoAllocateMdl.
    let (address, length) = unsafe { ((*mdl).StartVa as usize, (*mdl).ByteCount as usize) };
    let process = process::current();
    if mode == UserMode && !process::lock_user_range(&process, address, length, 1) {
        return STATUS_ACCESS_VIOLATION;
    }
    state.locked_by = Some(process);
    note_locked_mdl(mdl as usize);
    STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmUnlockPages(mdl: PMDL) {
    // MmUnlockPages (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmUnlockPages");
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmUnlockPages takes the MDL MmProbeAndLockPages filled (MmUnlockPages).
        violation(format!("unlocking unknown MDL {mdl:p}"));
        return;
    };
    if state.nonpaged {
        // Drivers "must not try to unlock the pages by using the MmUnlockPages routine"
        // (MmBuildMdlForNonPagedPool).
        violation("unlocking an MDL MmBuildMdlForNonPagedPool built");
        return;
    }
    let Some(process) = state.locked_by.take() else {
        // MmUnlockPages unlocks the pages a preceding MmProbeAndLockPages locked through this MDL
        // (MmUnlockPages).
        violation("unlocking an MDL that is not locked");
        return;
    };
    // "If the MDL was built by a call to MmProbeAndLockPages, you do not need to explicitly release
    // the system-address-space mapping. A call to MmUnlockPages releases the mapping, if one was
    // allocated." (MmGetSystemAddressForMdlSafe, Microsoft's wdm.h documentation.)
    if state.mapped.take().is_some() {
        // SAFETY: a live MDL, whose mapping goes with the lock.
        unsafe {
            (*mdl).MdlFlags &= !MDL_MAPPED_TO_SYSTEM_VA;
            (*mdl).MappedSystemVa = null_mut();
        }
    }
    let source = mdl as usize;
    let in_use = mdls
        .values()
        .any(|other| other.partial_of == Some(source) && other.mapped.is_some());
    if in_use {
        // A partial MDL with a mapping of its own maps the source's pages; unlocking them under it
        // leaves a system mapping of pages the memory manager may reuse (IoBuildPartialMdl: the
        // mapping lasts until MmPrepareMdlForReuse or IoFreeMdl releases it).
        violation("unlocking pages a mapped partial MDL still describes");
    }
    // SAFETY: a live MDL.
    let (address, length) = unsafe { ((*mdl).StartVa as usize, (*mdl).ByteCount as usize) };
    process::lock_user_range(&process, address, length, -1);
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmMapLockedPagesSpecifyCache(
    mdl: PMDL,
    mode: KPROCESSOR_MODE,
    _cache: u32,
    requested: PVOID,
    bug_check_on_failure: ULONG,
    priority: u32,
) -> PVOID {
    // MmMapLockedPagesSpecifyCache (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmMapLockedPagesSpecifyCache");
    if mode != KernelMode || !requested.is_null() {
        unsupported("MmMapLockedPagesSpecifyCache into user space or at a requested address");
    }
    // Windows allows BugCheckOnFailure for KernelMode mappings (MmMapLockedPagesSpecifyCache);
    // a driver that can fail the request instead must not stop the system over it.
    if bug_check_on_failure != 0 {
        house_rule("MmMapLockedPagesSpecifyCache with BugCheckOnFailure: fail the request instead");
    }
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // MmMapLockedPagesSpecifyCache maps an MDL the caller allocated (IoAllocateMdl).
        violation(format!("mapping unknown MDL {mdl:p}"));
        return null_mut();
    };
    if state.nonpaged {
        // The pages are "already mapped to the system address space": drivers must not "create
        // additional system-address-space mappings by using the MmMapLockedPagesSpecifyCache
        // routine" (MmBuildMdlForNonPagedPool).
        violation("mapping an MDL MmBuildMdlForNonPagedPool built into system space again");
        return null_mut();
    }
    if (state.locked_by.is_none() && state.partial_of.is_none()) || state.mapped.is_some() {
        // MmMapLockedPagesSpecifyCache maps locked pages (its MemoryDescriptorList "describes the
        // physical pages to be mapped", locked by MmProbeAndLockPages or built on non-paged memory);
        // a second mapping of a mapped MDL leaks the first (MmGetSystemAddressForMdlSafe maps only
        // an MDL without MDL_MAPPED_TO_SYSTEM_VA).
        violation("mapping an MDL that is not locked, or already mapped");
    }
    if should_fail(Site::MmMapLockedPagesSpecifyCache) {
        return null_mut();
    }
    // The simulated system address is the user address: one address space.
    // SAFETY: a live MDL.
    let address = unsafe { (*mdl).StartVa as usize + (*mdl).ByteOffset as usize };
    state.mapped = Some((address, priority));
    // SAFETY: a live MDL, which the kernel marks as mapped (and a partial one as mapped by a
    // mapping of its own).
    unsafe {
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        (*mdl).MappedSystemVa = address as PVOID;
        if state.partial_of.is_some() {
            (*mdl).MdlFlags |= MDL_PARTIAL_HAS_BEEN_MAPPED;
        }
    }
    if state.partial_of.is_none() {
        LAST_MAPPING_PRIORITY.store(u64::from(priority), Ordering::SeqCst);
    }
    address as PVOID
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmUnmapLockedPages(address: PVOID, mdl: PMDL) {
    // MmUnmapLockedPages (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmUnmapLockedPages");
    let mut mdls = MDLS.lock().unwrap();
    match mdls.get_mut(&(mdl as usize)) {
        Some(state) if state.mapped.is_some_and(|(at, _)| at == address as usize) => {
            state.mapped = None;
            // SAFETY: a live MDL.
            unsafe {
                (*mdl).MdlFlags &= !(MDL_PARTIAL_HAS_BEEN_MAPPED | MDL_MAPPED_TO_SYSTEM_VA);
                (*mdl).MappedSystemVa = null_mut();
            }
        }
        // MmUnmapLockedPages "releases a mapping that was set up by a preceding call to the
        // MmMapLockedPages or MmMapLockedPagesSpecifyCache routine" (MmUnmapLockedPages).
        _ => violation(format!(
            "unmapping {address:p}, which this MDL does not map"
        )),
    }
}

/// The most spin locks a thread held while it built a partial MDL, since the last
/// [`most_spin_locks_held_building_partial_mdls`]: an observation for tests (a driver that
/// describes packets while it holds a lock makes whoever waits for the lock spin meanwhile).
static MOST_SPIN_LOCKS_AT_PARTIAL_MDL: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The most spin locks any thread held while it called IoBuildPartialMdl since the last call of
/// this function, which starts the count again.
pub fn most_spin_locks_held_building_partial_mdls() -> usize {
    MOST_SPIN_LOCKS_AT_PARTIAL_MDL.swap(0, std::sync::atomic::Ordering::Relaxed)
}

#[kernel_export]
pub unsafe extern "efiapi" fn IoBuildPartialMdl(
    source: PMDL,
    target: PMDL,
    address: PVOID,
    length: ULONG,
) {
    // IoBuildPartialMdl (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "IoBuildPartialMdl");
    MOST_SPIN_LOCKS_AT_PARTIAL_MDL.fetch_max(
        crate::ke::sync::spin_locks_held_here(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut mdls = MDLS.lock().unwrap();
    let Some(source_state) = mdls.get(&(source as usize)) else {
        // SourceMdl is "an MDL that describes the original buffer" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl from an unknown MDL");
        return;
    };
    if source_state.locked_by.is_none() && !source_state.nonpaged {
        // "The physical pages that the source MDL describes must be locked before the driver
        // calls IoBuildPartialMdl ... However, the driver can build the source MDL from nonpaged
        // memory by calling the MmBuildMdlForNonPagedPool" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl from an MDL that is not locked");
        return;
    }
    let source_nonpaged = source_state.nonpaged;
    let source_mapping = source_state.mapped.map(|(at, _)| at).or_else(|| {
        source_nonpaged.then(|| {
            // SAFETY: a live MDL; one MmBuildMdlForNonPagedPool built is mapped where it lies.
            unsafe { (*source).MappedSystemVa as usize }
        })
    });
    // SAFETY: a live MDL.
    let (start, count) = unsafe {
        (
            (*source).StartVa as usize + (*source).ByteOffset as usize,
            (*source).ByteCount as usize,
        )
    };
    let (address, length) = (address as usize, length as usize);
    if address < start || address + length > start + count {
        // Length and VirtualAddress "must specify a buffer that is a proper subrange of the buffer
        // that is described by SourceMdl" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl outside the source MDL's buffer");
        return;
    }
    let Some(state) = mdls.get_mut(&(target as usize)) else {
        // TargetMdl is "a pointer to a caller-allocated MDL" (IoBuildPartialMdl).
        violation(format!("IoBuildPartialMdl into unknown MDL {target:p}"));
        return;
    };
    if state.mapped.is_some() {
        // "To prevent this new mapping from leaking, the driver must call MmPrepareMdlForReuse before
        // it reuses the partial MDL" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl into an MDL that is still mapped: MmPrepareMdlForReuse first");
    }
    if pages_spanned(address, length) > state.pages {
        // TargetMdl "must be large enough to describe the pages in the subrange that are specified
        // by VirtualAddress and Length" (IoBuildPartialMdl).
        violation("IoBuildPartialMdl into an MDL too small for the range");
        return;
    }
    state.partial_of = Some(source as usize);
    // SAFETY: a live MDL of the driver's, described anew. A mapped source's mapping covers the
    // part too, so the partial MDL inherits it (and is not to be unmapped on its own).
    unsafe {
        (*target).StartVa = (address & !(PAGE_SIZE - 1)) as PVOID;
        (*target).ByteOffset = (address % PAGE_SIZE) as u32;
        (*target).ByteCount = length as u32;
        (*target).MdlFlags = MDL_PARTIAL;
        if source_nonpaged {
            (*target).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        }
        (*target).MappedSystemVa = null_mut();
        if let Some(mapped) = source_mapping {
            (*target).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
            (*target).MappedSystemVa = (mapped + (address - start)) as PVOID;
        }
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn MmBuildMdlForNonPagedPool(mdl: PMDL) {
    // MmBuildMdlForNonPagedPool (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "MmBuildMdlForNonPagedPool");
    let mut mdls = MDLS.lock().unwrap();
    let Some(state) = mdls.get_mut(&(mdl as usize)) else {
        // "The caller used the IoAllocateMdl routine to create the MDL for this buffer"
        // (MmBuildMdlForNonPagedPool).
        violation(format!("MmBuildMdlForNonPagedPool on unknown MDL {mdl:p}"));
        return;
    };
    // SAFETY: a live MDL.
    let (address, length) = unsafe {
        (
            (*mdl).StartVa as usize + (*mdl).ByteOffset as usize,
            (*mdl).ByteCount as usize,
        )
    };
    let nonpaged = crate::bookkeeping::leaks::pool_block_holding(address, length)
        .is_some_and(|allocation| !allocation.paged);
    if !nonpaged || state.locked_by.is_some() || state.partial_of.is_some() {
        // "At entry, the specified MDL must describe a buffer in nonpaged system memory"
        // (MmBuildMdlForNonPagedPool).
        violation(format!(
            "MmBuildMdlForNonPagedPool on an MDL of {length} bytes at {address:#x}, which is not \
             one block of non-paged pool"
        ));
        return;
    }
    state.nonpaged = true;
    // SAFETY: a live MDL, which now describes mapped non-paged memory ("MmGetSystemAddressForMdlSafe
    // call simply returns the starting virtual address of the buffer").
    unsafe {
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        (*mdl).MappedSystemVa = address as PVOID;
    }
}

/// The data an MDL chain describes from `offset`, `length` bytes, one slice per MDL, mapping MDLs
/// as a consumer of the driver's NBLs would (MmGetSystemAddressForMdlSafe).
///
/// # Safety
/// The chain's MDLs live, and their memory stays mapped and unchanged by the simulator, for `'a`
/// (an indicated NBL's, until it is returned).
pub(crate) unsafe fn mdl_chain_pieces<'a>(
    mut mdl: PMDL,
    mut offset: usize,
    mut length: usize,
) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    while length > 0 {
        if mdl.is_null() {
            // A NET_BUFFER's MDL chain maps its data (NET_BUFFER: MdlChain, the list of MDLs that
            // map the data buffer), so it holds at least DataLength bytes past the offset.
            violation("an NBL's MDL chain is shorter than its data");
            break;
        }
        // The stack's mapping, not one of the driver's calls to fail.
        let base = crate::bookkeeping::faults::as_system(|| {
            // SAFETY: a live MDL of the driver's chain; the simulator's own export maps it as a
            // consumer would.
            unsafe { MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority) }
        });
        // SAFETY: a live MDL.
        let count = unsafe { (*mdl).ByteCount as usize };
        let take = count.saturating_sub(offset).min(length);
        if take > 0 {
            // SAFETY: the mapped buffer holds `count` bytes, alive for 'a (the caller's word).
            pieces.push(unsafe { std::slice::from_raw_parts(base.cast::<u8>().add(offset), take) });
        }
        length -= take;
        offset = offset.saturating_sub(count);
        // SAFETY: a live MDL.
        mdl = unsafe { (*mdl).Next };
    }
    pieces
}

/// [`mdl_chain_pieces`], copied into one buffer; and the address of its first byte.
pub(crate) fn read_mdl_chain(mdl: PMDL, offset: usize, length: usize) -> (Vec<u8>, usize) {
    // SAFETY: the pieces are copied at once, while the caller's MDLs live.
    let pieces = unsafe { mdl_chain_pieces(mdl, offset, length) };
    let first = pieces.first().map_or(0, |piece| piece.as_ptr() as usize);
    (pieces.concat(), first)
}
