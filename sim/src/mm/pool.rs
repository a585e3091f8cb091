//! Layer: mm, memory, above ob. It calls ke and bookkeeping.
//!
//! Pool memory, tracked by address and tag: a double free, a wrong tag or a leak is caught.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::alloc::{Layout, alloc_zeroed, dealloc};

use oxtun_driver::sys::{DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAGS, PVOID, ULONG};
use oxtun_sim_macros::kernel_export;

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::leaks;
use crate::bookkeeping::verifier::violation;
use crate::ke::irql;

const POOL_ALIGNMENT: usize = 16;
const POOL_FLAG_PAGED: POOL_FLAGS = 0x100;

pub use crate::bookkeeping::leaks::{Allocation, pool_outstanding as outstanding};

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), POOL_ALIGNMENT).unwrap()
}

#[kernel_export]
pub extern "efiapi" fn ExAllocatePool2(flags: POOL_FLAGS, size: usize, tag: ULONG) -> PVOID {
    if flags & POOL_FLAG_PAGED != 0 {
        // ExAllocatePool2 (wdm.h): "IRQL <= APC_LEVEL" for paged pool.
        irql::require_at_most(oxtun_driver::sys::APC_LEVEL, "ExAllocatePool2(paged)");
    } else if flags & POOL_FLAG_NON_PAGED != 0 {
        // ExAllocatePool2 (wdm.h): "IRQL <= DISPATCH_LEVEL" for non-paged pool.
        irql::require_at_most(DISPATCH_LEVEL, "ExAllocatePool2(non-paged)");
    } else {
        // ExAllocatePool2: Flags must name one pool type, POOL_FLAG_NON_PAGED or POOL_FLAG_PAGED among
        // them (POOL_FLAGS, ExAllocatePool2).
        violation(format!(
            "ExAllocatePool2 without a pool type: flags {flags:#x}"
        ));
    }
    if tag == 0 {
        // ExAllocatePool2: the tag is a non-zero pool tag (its Tag parameter); Driver Verifier refuses
        // tag 0.
        violation("ExAllocatePool2 with a zero tag");
    }
    if should_fail(Site::ExAllocatePool2) {
        return std::ptr::null_mut();
    }
    // SAFETY: a non-zero-sized layout.
    let memory = unsafe { alloc_zeroed(layout(size)) };
    assert!(!memory.is_null(), "host out of memory");
    leaks::pool_allocated(
        memory as usize,
        Allocation {
            size,
            tag,
            paged: flags & POOL_FLAG_PAGED != 0,
        },
    );
    memory.cast()
}

#[kernel_export]
pub extern "efiapi" fn ExFreePoolWithTag(memory: PVOID, tag: ULONG) {
    // ExFreePoolWithTag (wdm.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "ExFreePoolWithTag");
    let Some(allocation) = leaks::pool_freed(memory as usize) else {
        // ExFreePoolWithTag frees a block ExAllocatePool2 allocated; anything else is Bug Check 0xC2
        // (BAD_POOL_CALLER).
        violation(format!("freeing {memory:p}, which is not allocated pool"));
        return;
    };
    if allocation.tag != tag {
        // ExFreePoolWithTag: the tag is the one the block was allocated with (its Tag parameter); a
        // mismatch is Bug Check 0xC2 (BAD_POOL_CALLER).
        violation(format!(
            "freeing pool tagged {:#x} with tag {tag:#x}",
            allocation.tag
        ));
    }
    crate::ke::sync::forget_objects_in(memory as usize, allocation.size);
    crate::ke::dispatcher::forget_events_in(memory as usize, allocation.size);
    // SAFETY: allocated above with the same layout, and removed from the table exactly once.
    unsafe { dealloc(memory.cast(), layout(allocation.size)) };
}
