//! Closing the handles processes hold to a file object: what lets removal of an adapter go
//! ahead when a client keeps its handle open (PnP refuses to remove a device with open handles),
//! as Wintun's driver does it: a snapshot of the system's handles, then, for each handle to the
//! file object, its process attached and the handle closed there.

use core::mem::{offset_of, size_of};
use core::ptr::null_mut;

use super::irp::FileReference;
use super::nt::*;
use super::pool::PagedBuffer;

/// Room for this many handles at first; the snapshot says how much it needs if that is short.
const FIRST_GUESS: usize = 4096;

/// Closes every user-mode handle to `file`; returns how many it closed. At PASSIVE_LEVEL.
pub fn close_user_handles(file: &FileReference) -> usize {
    let Some(snapshot) = handle_snapshot() else {
        return 0;
    };
    let entry_size = size_of::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>();
    let first = offset_of!(SYSTEM_HANDLE_INFORMATION_EX, Handles);
    let said = read_word(&snapshot, 0);
    // The count is the kernel's, but bounded by the buffer all the same.
    let count = said.min((snapshot.len() - first) / entry_size);
    let mut closed = 0;
    for index in 0..count {
        // SAFETY: the entry lies within the snapshot (count is bounded above); the buffer is
        // pool memory of the kernel's making, read unaligned to be safe.
        let entry = unsafe {
            snapshot
                .as_ptr()
                .add(first + index * entry_size)
                .cast::<SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX>()
                .read_unaligned()
        };
        // Only a comparison: the entry's object may be gone by now; ours is referenced.
        if entry.Object == file.as_raw().cast() && close_in_process(&entry, file) {
            closed += 1;
        }
    }
    closed
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

/// Closes the handle `entry` describes in its process, if it still names `file`.
fn close_in_process(entry: &SYSTEM_HANDLE_TABLE_ENTRY_INFO_EX, file: &FileReference) -> bool {
    let mut process = null_mut();
    // SAFETY: a process id from the snapshot (the kernel checks it); a local out parameter.
    let status =
        unsafe { PsLookupProcessByProcessId(entry.UniqueProcessId as HANDLE, &mut process) };
    if !NT_SUCCESS(status) {
        return false;
    }
    // SAFETY: plain bytes until KeStackAttachProcess fills them.
    let mut apc_state: KAPC_STATE = unsafe { core::mem::zeroed() };
    let handle = entry.HandleValue as HANDLE;
    let mut closed = false;
    // The handle value is looked up again in the process's context: since the snapshot it may
    // have been closed, or reused for another object.
    // SAFETY: the process is referenced (PsLookupProcessByProcessId) until the dereference at
    // the end; attach and detach pair up on a local state, at PASSIVE_LEVEL; the handle is
    // closed only if it still names our file object, which the caller keeps referenced; each
    // reference taken is dropped once.
    unsafe {
        KeStackAttachProcess(process, &mut apc_state);
        let mut object = null_mut();
        let status =
            ObReferenceObjectByHandle(handle, 0, null_mut(), UserMode, &mut object, null_mut());
        if NT_SUCCESS(status) {
            if object == file.as_raw().cast() {
                closed = NT_SUCCESS(ObCloseHandle(handle, UserMode));
            }
            ObfDereferenceObject(object);
        }
        KeUnstackDetachProcess(&mut apc_state);
        ObfDereferenceObject(process);
    }
    closed
}
