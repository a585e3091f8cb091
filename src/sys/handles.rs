//! Closing the handles processes hold to a file object: what lets removal of an adapter go
//! ahead when a client keeps its handle open (PnP refuses to remove a device with open handles),
//! as Wintun's driver does it: a snapshot of the system's handles, then, for each handle to the
//! file object, its process attached and the handle closed there.
//!
//! Only user processes' handles: never the System process's, whose handle table is the kernel
//! handle table (a kernel component's handle, listed by its place in that table, is closed in
//! user mode from a thread attached to the System process as any of its own). And a handle is
//! checked to be still there with a second snapshot, not by referencing it: the value may have
//! been closed since the first, and Driver Verifier objects to ObReferenceObjectByHandle on a
//! handle that may not be valid (Wintun's commit 12e9f53 for the reason; docs/compatibility.md
//! for what remains).

use core::mem::{offset_of, size_of};
use core::ptr::null_mut;

use super::irp::FileReference;
use super::nt::*;
use super::pool::PagedBuffer;

/// Room for this many handles at first; the snapshot says how much it needs if that is short.
const FIRST_GUESS: usize = 4096;

/// Closes every user-mode process's handle to `file`; returns how many it closed. At
/// PASSIVE_LEVEL.
pub fn close_user_handles(file: &FileReference) -> usize {
    let Some(snapshot) = handle_snapshot() else {
        return 0;
    };
    let mut closed = 0;
    for entry in entries(&snapshot) {
        // Only a comparison: the entry's object may be gone by now; ours is referenced.
        if entry.Object == file.as_raw().cast() && close_in_process(&entry, file) {
            closed += 1;
        }
    }
    closed
}

/// The snapshot's entries, as many as it says it has and its buffer holds.
fn entries(snapshot: &PagedBuffer) -> impl Iterator<Item = SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX> {
    let entry_size = size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>();
    let first = offset_of!(SYSTEM_HANDLE_INFORMATION_EX, Handles);
    let said = read_word(snapshot, 0);
    // The count is the kernel's, but bounded by the buffer all the same.
    let count = said.min((snapshot.len() - first) / entry_size);
    (0..count).map(move |index| {
        // SAFETY: the entry lies within the snapshot (count is bounded above); the buffer is
        // pool memory of the kernel's making, read unaligned to be safe.
        unsafe {
            snapshot
                .as_ptr()
                .add(first + index * entry_size)
                .cast::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>()
                .read_unaligned()
        }
    })
}

fn read_word(buffer: &[u8], at: usize) -> usize {
    let mut word = [0u8; size_of::<usize>()];
    word.copy_from_slice(&buffer[at..at + size_of::<usize>()]);
    usize::from_ne_bytes(word)
}

/// Every handle in the system, or `None` if the kernel would not say (or pool ran out).
fn handle_snapshot() -> Option<PagedBuffer> {
    let mut len = offset_of!(SYSTEM_HANDLE_INFORMATION_EX, Handles)
        + FIRST_GUESS * size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>();
    loop {
        let mut buffer = PagedBuffer::new(len)?;
        let mut needed: ULONG = 0;
        // SAFETY: a buffer of `len` bytes and a local for the length the kernel needs.
        let status = unsafe {
            ZwQuerySystemInformation(
                SystemExtendedHandleInformation,
                buffer.as_mut_ptr().cast(),
                ULONG::try_from(len).ok()?,
                &mut needed,
            )
        };
        if status == STATUS_INFO_LENGTH_MISMATCH {
            // Handles come and go between the calls: some room to spare.
            len = (needed as usize).max(len) + len / 2;
            continue;
        }
        return NT_SUCCESS(status).then_some(buffer);
    }
}

/// Whether a fresh snapshot still lists the handle `entry` describes, in the same process, to
/// `file`.
fn still_listed(entry: &SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, file: &FileReference) -> bool {
    handle_snapshot().is_some_and(|snapshot| {
        entries(&snapshot).any(|now| {
            now.UniqueProcessId == entry.UniqueProcessId
                && now.HandleValue == entry.HandleValue
                && now.Object == file.as_raw().cast()
        })
    })
}

/// Closes the handle `entry` describes in its process, if that is a user process and the
/// handle still names `file`.
fn close_in_process(entry: &SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, file: &FileReference) -> bool {
    let mut process = null_mut();
    // SAFETY: a process id from the snapshot (the kernel checks it); a local out parameter.
    let status =
        unsafe { PsLookupProcessByProcessId(entry.UniqueProcessId as HANDLE, &mut process) };
    if !NT_SUCCESS(status) {
        return false;
    }
    // SAFETY: the kernel's variable, set at boot and never changed.
    let system = unsafe { PsInitialSystemProcess };
    let mut closed = false;
    if process != system {
        // SAFETY: plain bytes until KeStackAttachProcess fills them.
        let mut apc_state: KAPC_STATE = unsafe { core::mem::zeroed() };
        // SAFETY: the process is referenced (PsLookupProcessByProcessId) until the dereference
        // below; attach and detach pair up on a local state, at PASSIVE_LEVEL. The handle is
        // closed in user mode, in the process it belongs to, and only while a snapshot taken
        // after the attach lists it for our file object, which the caller keeps referenced.
        unsafe {
            KeStackAttachProcess(process, &mut apc_state);
            if still_listed(entry, file) {
                closed = NT_SUCCESS(ObCloseHandle(entry.HandleValue as HANDLE, UserMode));
            }
            KeUnstackDetachProcess(&mut apc_state);
        }
    }
    // SAFETY: drops the reference PsLookupProcessByProcessId took, once.
    unsafe { ObfDereferenceObject(process) };
    closed
}
