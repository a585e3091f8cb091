//! The simulated kernel's contract checks fire: each misuse below is recorded as a violation
//! (in recording mode, instead of aborting the process).

use oxtun_driver::sys::*;
use oxtun_sim::{irql, verifier};

fn violations_of(misuse: impl FnOnce()) -> Vec<String> {
    verifier::record_violations();
    verifier::take_recorded();
    misuse();
    verifier::take_recorded()
}

fn assert_one_violation(misuse: impl FnOnce(), mentioning: &str) {
    let violations = violations_of(misuse);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains(mentioning), "{violations:?}");
}

#[oxtun_sim::test]
fn pool_double_free_and_wrong_tag_are_caught() {
    // SAFETY (test): the simulator's exports, called as the driver would.
    unsafe {
        let memory = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, POOL_TAG);
        assert!(!memory.is_null());
        assert_one_violation(|| ExFreePoolWithTag(memory, 0x1234), "tag");
        assert_one_violation(|| ExFreePoolWithTag(memory, POOL_TAG), "not allocated");
    }
    assert!(oxtun_sim::outstanding().is_empty());
}

#[oxtun_sim::test]
fn paged_pool_above_apc_level_is_caught() {
    const POOL_FLAG_PAGED: POOL_FLAGS = 0x100;
    let violations = violations_of(|| {
        irql::at_dispatch("test", || {
            // SAFETY (test): the simulator's export.
            let memory = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 16, POOL_TAG) };
            // SAFETY (test): freeing what was just allocated.
            unsafe { ExFreePoolWithTag(memory, POOL_TAG) };
        })
    });
    assert!(
        violations.iter().any(|v| v.contains("paged")),
        "{violations:?}"
    );
}

#[oxtun_sim::test]
fn spin_lock_misuse_is_caught() {
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY (test): the simulator's exports on a live lock word.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&mut lock);
        assert_eq!(irql::current(), DISPATCH_LEVEL);
        assert_one_violation(
            || {
                KeAcquireSpinLockRaiseToDpc(&mut lock);
            },
            "twice",
        );
        KeReleaseSpinLock(&mut lock, old);
        assert_eq!(irql::current(), PASSIVE_LEVEL);
        let mut other: KSPIN_LOCK = 0;
        irql::raise(DISPATCH_LEVEL);
        assert_one_violation(|| KeReleaseSpinLock(&mut other, PASSIVE_LEVEL), "not hold");
        let old = KeAcquireSpinLockRaiseToDpc(&mut lock);
        irql::lower(PASSIVE_LEVEL);
        assert_one_violation(|| KeReleaseSpinLock(&mut lock, old), "below DISPATCH");
    }
}

#[oxtun_sim::test]
fn freeing_memory_that_holds_an_acquired_lock_is_caught() {
    // SAFETY (test): the simulator's exports, on pool memory used as a lock word.
    unsafe {
        let memory = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, POOL_TAG);
        let lock = memory.cast::<KSPIN_LOCK>();
        let old = KeAcquireSpinLockRaiseToDpc(lock);
        assert_one_violation(|| ExFreePoolWithTag(memory, POOL_TAG), "spin lock");
        // The memory is gone with the lock word in it: only the IRQL can be put back.
        irql::lower(old);
    }
}

#[oxtun_sim::test]
fn a_callback_returning_at_another_irql_is_caught() {
    assert_one_violation(
        || {
            irql::call_at(PASSIVE_LEVEL, "a callback", || {
                irql::raise(DISPATCH_LEVEL);
            });
        },
        "returned at IRQL 2",
    );
}

#[oxtun_sim::test]
fn an_mdl_freed_while_locked_and_an_unknown_dereference_are_caught() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let address = user.allocate(8192);
    process::in_context_of(&user, || {
        // SAFETY (test): the simulator's exports on memory the process owns.
        unsafe {
            let mdl = IoAllocateMdl(address as PVOID, 8192, 0, 0, std::ptr::null_mut());
            assert_eq!(
                OxtunProbeAndLockPages(mdl, UserMode, IoWriteAccess),
                STATUS_SUCCESS
            );
            assert_one_violation(|| IoFreeMdl(mdl), "still locked");
        }
    });
    assert_one_violation(
        || {
            // SAFETY (test): the simulator's export; the bad pointer is the point.
            unsafe { ObfDereferenceObject(0x1234 as PVOID) };
        },
        "no reference",
    );
}

#[oxtun_sim::test]
fn an_eresource_freed_without_delete_is_caught() {
    // SAFETY (test): the simulator's exports, on pool memory used as an ERESOURCE.
    unsafe {
        let memory = ExAllocatePool2(POOL_FLAG_NON_PAGED, 0x68, POOL_TAG);
        assert_eq!(ExInitializeResourceLite(memory.cast()), STATUS_SUCCESS);
        assert_one_violation(|| ExFreePoolWithTag(memory, POOL_TAG), "never deleted");
    }
}

#[oxtun_sim::test]
fn a_probe_outside_the_process_memory_fails_like_the_kernel() {
    // SAFETY (test): the simulator's exports; the address is not the process's.
    unsafe {
        let mdl = IoAllocateMdl(0x10_0000 as PVOID, 4096, 0, 0, std::ptr::null_mut());
        assert_eq!(
            OxtunProbeAndLockPages(mdl, UserMode, IoWriteAccess),
            0xC000_0005_u32 as i32,
            "STATUS_ACCESS_VIOLATION"
        );
        IoFreeMdl(mdl);
    }
}
