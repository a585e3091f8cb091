//! Pool memory, tracked by address and tag: a double free, a wrong tag or a leak is caught.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::sync::Mutex;

use oxtun_driver::sys::{DISPATCH_LEVEL, POOL_FLAG_NON_PAGED, POOL_FLAGS, PVOID, ULONG};
use oxtun_sim_macros::kernel_export;

use crate::faults::{Site, should_fail};
use crate::irql;
use crate::verifier::violation;

const POOL_ALIGNMENT: usize = 16;
const POOL_FLAG_PAGED: POOL_FLAGS = 0x100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub size: usize,
    pub tag: ULONG,
}

static ALLOCATIONS: Mutex<BTreeMap<usize, Allocation>> = Mutex::new(BTreeMap::new());

/// Allocations not yet freed, by address.
pub fn outstanding() -> BTreeMap<usize, Allocation> {
    ALLOCATIONS.lock().unwrap().clone()
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), POOL_ALIGNMENT).unwrap()
}

#[kernel_export]
pub extern "efiapi" fn ExAllocatePool2(flags: POOL_FLAGS, size: usize, tag: ULONG) -> PVOID {
    if flags & POOL_FLAG_PAGED != 0 {
        irql::require_at_most(oxtun_driver::sys::APC_LEVEL, "ExAllocatePool2(paged)");
    } else if flags & POOL_FLAG_NON_PAGED != 0 {
        irql::require_at_most(DISPATCH_LEVEL, "ExAllocatePool2(non-paged)");
    } else {
        violation(format!(
            "ExAllocatePool2 without a pool type: flags {flags:#x}"
        ));
    }
    if tag == 0 {
        violation("ExAllocatePool2 with a zero tag");
    }
    if should_fail(Site::ExAllocatePool2) {
        return std::ptr::null_mut();
    }
    // SAFETY: a non-zero-sized layout.
    let memory = unsafe { alloc_zeroed(layout(size)) };
    assert!(!memory.is_null(), "host out of memory");
    ALLOCATIONS
        .lock()
        .unwrap()
        .insert(memory as usize, Allocation { size, tag });
    crate::io::note_pool_allocation(memory as usize);
    memory.cast()
}

#[kernel_export]
pub extern "efiapi" fn ExFreePoolWithTag(memory: PVOID, tag: ULONG) {
    irql::require_at_most(DISPATCH_LEVEL, "ExFreePoolWithTag");
    let Some(allocation) = ALLOCATIONS.lock().unwrap().remove(&(memory as usize)) else {
        violation(format!("freeing {memory:p}, which is not allocated pool"));
        return;
    };
    if allocation.tag != tag {
        violation(format!(
            "freeing pool tagged {:#x} with tag {tag:#x}",
            allocation.tag
        ));
    }
    crate::sync::forget_objects_in(memory as usize, allocation.size);
    crate::dispatcher::forget_events_in(memory as usize, allocation.size);
    // SAFETY: allocated above with the same layout, and removed from the table exactly once.
    unsafe { dealloc(memory.cast(), layout(allocation.size)) };
}
