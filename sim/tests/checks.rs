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

// Kernel routines the oxtun driver does not import, declared here as a driver that uses them
// declares them (wdm.h); the simulator exports them.
unsafe extern "efiapi" {
    fn ExAcquireSpinLockShared(lock: *mut i32) -> KIRQL;
    fn ExReleaseSpinLockShared(lock: *mut i32, old: KIRQL);
    fn ExAcquireSpinLockSharedAtDpcLevel(lock: *mut i32);
    fn ExReleaseSpinLockSharedFromDpcLevel(lock: *mut i32);
    fn ExAcquireResourceSharedLite(resource: *mut ERESOURCE, wait: u8) -> u8;
    fn ExReleaseResourceLite(resource: *mut ERESOURCE);
    fn KeEnterCriticalRegion();
    fn KeLeaveCriticalRegion();
    fn KeReadStateEvent(event: PKEVENT) -> i32;
    static PsThreadType: POBJECT_TYPE;
}

#[oxtun_sim::test]
fn an_ex_spin_lock_taken_shared_again_by_the_thread_that_holds_it_is_reported() {
    let mut lock: i32 = 0;
    // SAFETY (test): the simulator's exports on a live lock word.
    unsafe {
        let old = ExAcquireSpinLockShared(&mut lock);
        // Another reader is fine; this thread again is the deadlock a waiting writer springs (a
        // send path that takes the lock shared, called from inside an indication that holds it).
        assert_one_violation(
            || ExAcquireSpinLockSharedAtDpcLevel(&mut lock),
            "already held",
        );
        ExReleaseSpinLockShared(&mut lock, old);
        assert_eq!(irql::current(), PASSIVE_LEVEL);
        assert_eq!(lock, 0);
        // Once released, taking it again is fine.
        let violations = violations_of(|| {
            let old = ExAcquireSpinLockShared(&mut lock);
            ExReleaseSpinLockShared(&mut lock, old);
        });
        assert_eq!(violations, Vec::<String>::new());
        irql::at_dispatch("test", || {
            ExAcquireSpinLockSharedAtDpcLevel(&mut lock);
            ExReleaseSpinLockSharedFromDpcLevel(&mut lock);
        });
    }
}

#[oxtun_sim::test]
fn an_executive_resource_taken_outside_a_critical_region_is_reported() {
    // SAFETY (test): the simulator's exports, on pool memory used as an ERESOURCE.
    unsafe {
        let resource = ExAllocatePool2(POOL_FLAG_NON_PAGED, 0x68, POOL_TAG).cast::<ERESOURCE>();
        assert_eq!(ExInitializeResourceLite(resource), STATUS_SUCCESS);
        // Inside a critical region, as ExAcquireResourceSharedLite requires: fine.
        let violations = violations_of(|| {
            KeEnterCriticalRegion();
            assert_eq!(ExAcquireResourceSharedLite(resource, 1), 1);
            ExReleaseResourceLite(resource);
            KeLeaveCriticalRegion();
        });
        assert_eq!(violations, Vec::<String>::new());
        // Outside one: a kernel APC may suspend the thread while it holds the resource.
        let violations = violations_of(|| {
            assert_eq!(ExAcquireResourceSharedLite(resource, 1), 1);
        });
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("outside a critical region"),
            "{violations:?}"
        );
        KeEnterCriticalRegion();
        ExReleaseResourceLite(resource);
        KeLeaveCriticalRegion();
        assert_eq!(ExDeleteResourceLite(resource), STATUS_SUCCESS);
        ExFreePoolWithTag(resource.cast(), POOL_TAG);
    }
    assert!(oxtun_sim::outstanding().is_empty());
}

#[oxtun_sim::test]
fn clearing_and_reading_a_user_event_referenced_by_handle_work_on_its_kevent() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, event) = user.create_manual_reset_event(EVENT_MODIFY_STATE | SYNCHRONIZE);
    let mut object = std::ptr::null_mut();
    process::in_context_of(&user, || {
        // SAFETY (test): the simulator's export, with the process's handle.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle as HANDLE,
                EVENT_MODIFY_STATE,
                ExEventObjectType,
                UserMode,
                &mut object,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
    });
    event.set();
    // SAFETY (test): the simulator's exports on the event object the test references.
    unsafe {
        assert_eq!(KeReadStateEvent(object.cast()), 1);
        // A manual-reset event stays set until cleared.
        assert_eq!(KeReadStateEvent(object.cast()), 1);
        KeClearEvent(object.cast());
        assert_eq!(KeReadStateEvent(object.cast()), 0);
        ObfDereferenceObject(object);
    }
    user.exit();
    assert!(oxtun_sim::outstanding().is_empty());
}

/// A system thread's routine: waits for the KEVENT its context points at.
unsafe extern "efiapi" fn wait_for_event(context: PVOID) {
    // SAFETY (test): the test's event, which outlives the thread (the test waits for it).
    unsafe {
        KeWaitForSingleObject(context, 0, KernelMode, 0, std::ptr::null_mut());
    }
}

#[oxtun_sim::test]
fn a_system_threads_handle_is_referenced_closed_early_and_its_object_waited_for() {
    // SAFETY (test): plain data, initialized by KeInitializeEvent before use.
    let mut event: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
    let mut attributes = OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
        RootDirectory: std::ptr::null_mut(),
        ObjectName: std::ptr::null_mut(),
        Attributes: OBJ_KERNEL_HANDLE,
        SecurityDescriptor: std::ptr::null_mut(),
        SecurityQualityOfService: std::ptr::null_mut(),
    };
    // SAFETY (test): the simulator's exports, as a driver uses them to start a thread, keep its
    // object and close its handle at once (Wintun does so).
    unsafe {
        KeInitializeEvent(&mut *event, NotificationEvent, 0);
        let mut handle = std::ptr::null_mut();
        let status = PsCreateSystemThread(
            &mut handle,
            THREAD_ALL_ACCESS,
            &mut attributes,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            wait_for_event,
            (&raw mut *event).cast(),
        );
        assert_eq!(status, STATUS_SUCCESS);
        let mut thread = std::ptr::null_mut();
        let mut information = [0u32; 2];
        let status = ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            PsThreadType,
            KernelMode,
            &mut thread,
            information.as_mut_ptr().cast(),
        );
        assert_eq!(status, STATUS_SUCCESS);
        // OBJECT_HANDLE_INFORMATION: the handle's attributes, then the access it grants.
        assert_eq!(information[1], THREAD_ALL_ACCESS);
        // A kernel handle is no user handle.
        let mut object = std::ptr::null_mut();
        let status = ObReferenceObjectByHandle(
            handle,
            SYNCHRONIZE,
            PsThreadType,
            UserMode,
            &mut object,
            std::ptr::null_mut(),
        );
        assert_eq!(status, 0xC000_0008_u32 as i32, "STATUS_INVALID_HANDLE");
        assert_eq!(ZwClose(handle), STATUS_SUCCESS);
        let mut no_time = 0i64;
        assert_eq!(
            KeWaitForSingleObject(thread, 0, KernelMode, 0, &mut no_time),
            STATUS_TIMEOUT,
            "the thread still runs"
        );
        KeSetEvent(&mut *event, 0, 0);
        assert_eq!(
            KeWaitForSingleObject(thread, 0, KernelMode, 0, std::ptr::null_mut()),
            STATUS_SUCCESS
        );
        ObfDereferenceObject(thread);
    }
    assert!(oxtun_sim::outstanding().is_empty());
}

#[oxtun_sim::test]
fn unlocking_pages_releases_their_system_mapping() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let address = user.allocate(8192);
    let violations = violations_of(|| {
        process::in_context_of(&user, || {
            // SAFETY (test): the simulator's exports on memory the process owns.
            unsafe {
                let mdl = IoAllocateMdl(address as PVOID, 8192, 0, 0, std::ptr::null_mut());
                assert_eq!(
                    OxtunProbeAndLockPages(mdl, UserMode, IoWriteAccess),
                    STATUS_SUCCESS
                );
                let mapped = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority);
                assert!(!mapped.is_null());
                // "A call to MmUnlockPages releases the mapping, if one was allocated."
                MmUnlockPages(mdl);
                IoFreeMdl(mdl);
            }
        })
    });
    assert_eq!(violations, Vec::<String>::new());
    user.exit();
    assert!(oxtun_sim::outstanding().is_empty());
}

#[oxtun_sim::test]
fn freeing_a_partial_mdl_releases_its_own_mapping() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let address = user.allocate(8192);
    let violations = violations_of(|| {
        process::in_context_of(&user, || {
            // SAFETY (test): the simulator's exports on memory the process owns.
            unsafe {
                let source = IoAllocateMdl(address as PVOID, 8192, 0, 0, std::ptr::null_mut());
                assert_eq!(
                    OxtunProbeAndLockPages(source, UserMode, IoWriteAccess),
                    STATUS_SUCCESS
                );
                let partial = IoAllocateMdl(address as PVOID, 4096, 0, 0, std::ptr::null_mut());
                IoBuildPartialMdl(source, partial, address as PVOID, 4096);
                // The source is not mapped, so the partial MDL gets a mapping of its own...
                assert!(!MmGetSystemAddressForMdlSafe(partial, NormalPagePriority).is_null());
                // ...which "IoFreeMdl releases ... for a partial MDL" (IoBuildPartialMdl).
                IoFreeMdl(partial);
                MmUnlockPages(source);
                IoFreeMdl(source);
            }
        })
    });
    assert_eq!(violations, Vec::<String>::new());
    user.exit();
    assert!(oxtun_sim::outstanding().is_empty());
}

unsafe extern "efiapi" {
    fn PsLookupProcessByProcessId(id: HANDLE, process: *mut PEPROCESS) -> NTSTATUS;
    fn KeStackAttachProcess(process: PEPROCESS, state: *mut KAPC_STATE);
    fn KeUnstackDetachProcess(state: *mut KAPC_STATE);
}

#[oxtun_sim::test]
fn looking_up_and_attaching_to_a_process_are_for_apc_level_at_most() {
    // ntifs.h: `_IRQL_requires_max_(APC_LEVEL)` on all three.
    let violations = violations_of(|| {
        irql::at_dispatch("test", || {
            let mut process = std::ptr::null_mut();
            // SAFETY (test): the simulator's exports; the System process is PID 4.
            unsafe {
                assert_eq!(
                    PsLookupProcessByProcessId(4 as HANDLE, &mut process),
                    STATUS_SUCCESS
                );
                let mut state: KAPC_STATE = std::mem::zeroed();
                KeStackAttachProcess(process, &mut state);
                KeUnstackDetachProcess(&mut state);
                ObfDereferenceObject(process.cast());
            }
        })
    });
    let at_dispatch = |routine: &str| {
        violations
            .iter()
            .any(|violation| violation.starts_with(routine) && violation.contains("above 1"))
    };
    assert!(
        at_dispatch("PsLookupProcessByProcessId")
            && at_dispatch("KeStackAttachProcess")
            && at_dispatch("KeUnstackDetachProcess"),
        "{violations:?}"
    );
}

#[oxtun_sim::test]
fn the_system_processs_handles_are_the_kernel_handle_table() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let system = Process::system();
    let (handle, _event) = system.create_event(SYNCHRONIZE);
    // A kernel handle: the top bit set, for KernelMode callers only.
    assert!((handle as i64) < 0, "{handle:#x}");
    let reference = |handle: u64, mode| {
        let mut object = std::ptr::null_mut();
        // SAFETY (test): the simulator's export.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle as HANDLE,
                SYNCHRONIZE,
                std::ptr::null_mut(),
                mode,
                &mut object,
                std::ptr::null_mut(),
            )
        };
        if status == STATUS_SUCCESS {
            // SAFETY (test): the reference just taken.
            unsafe { ObfDereferenceObject(object) };
        }
        status
    };
    const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
    assert_eq!(reference(handle, KernelMode), STATUS_SUCCESS);
    assert_eq!(reference(handle, UserMode), STATUS_INVALID_HANDLE);
    // From a thread in (or attached to) the System process, the value without the bit is the
    // same handle, whatever the mode: the process's table is the kernel's.
    let index = handle & 0x7FFF_FFFF;
    assert_eq!(reference(index, UserMode), STATUS_SUCCESS);
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    process::in_context_of(&user, || {
        assert_eq!(reference(index, UserMode), STATUS_INVALID_HANDLE);
        assert_eq!(reference(handle, KernelMode), STATUS_SUCCESS);
    });
    // SAFETY (test): the simulator's export, closing the kernel handle once.
    assert_eq!(unsafe { ZwClose(handle as HANDLE) }, STATUS_SUCCESS);
    // A kernel handle closed twice: bug check 0x93.
    let violations = violations_of(|| {
        // SAFETY (test): the simulator's export; the handle is closed already, the point.
        unsafe { ZwClose(handle as HANDLE) };
    });
    assert!(
        violations.len() == 1 && violations[0].contains("0x93"),
        "{violations:?}"
    );
    user.exit();
}

#[oxtun_sim::test]
fn an_exited_process_still_referenced_is_found_without_its_handles() {
    use oxtun_sim::{Bitness, Process, Token};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, _event) = user.create_event(SYNCHRONIZE);
    let id = user.id() as HANDLE;
    let mut eprocess = std::ptr::null_mut();
    // SAFETY (test): the simulator's exports, as a driver looks a process up.
    unsafe {
        assert_eq!(
            PsLookupProcessByProcessId(id, &mut eprocess),
            STATUS_SUCCESS
        );
    }
    user.exit();
    // Referenced, the exited process is still found, and a thread may attach to it; its handle
    // table is gone.
    // SAFETY (test): the simulator's exports on the process the test references.
    unsafe {
        let mut again = std::ptr::null_mut();
        assert_eq!(PsLookupProcessByProcessId(id, &mut again), STATUS_SUCCESS);
        ObfDereferenceObject(again.cast());
        let mut state: KAPC_STATE = std::mem::zeroed();
        KeStackAttachProcess(eprocess, &mut state);
        let mut object = std::ptr::null_mut();
        assert_eq!(
            ObReferenceObjectByHandle(
                handle as HANDLE,
                SYNCHRONIZE,
                std::ptr::null_mut(),
                UserMode,
                &mut object,
                std::ptr::null_mut(),
            ),
            0xC000_0008_u32 as i32,
            "STATUS_INVALID_HANDLE"
        );
        KeUnstackDetachProcess(&mut state);
        ObfDereferenceObject(eprocess.cast());
        // Once the last reference goes, so does its id.
        let mut gone = std::ptr::null_mut();
        assert_eq!(
            PsLookupProcessByProcessId(id, &mut gone),
            0xC000_000B_u32 as i32,
            "STATUS_INVALID_CID"
        );
    }
}

#[oxtun_sim::test]
fn a_relative_timeout_expires_on_the_clock_tick() {
    use oxtun_sim::ke::clock;
    // SAFETY (test): plain data, initialized by KeInitializeEvent before use.
    let mut event: Box<KEVENT> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY (test): the simulator's exports on the test's event.
    unsafe { KeInitializeEvent(&mut *event, NotificationEvent, 0) };
    let mut waits = |count: u32| {
        let started = std::time::Instant::now();
        for _ in 0..count {
            let mut two_milliseconds = -20_000i64;
            // SAFETY (test): the simulator's export, waiting on the test's event.
            let status = unsafe {
                KeWaitForSingleObject(
                    (&raw mut *event).cast(),
                    0,
                    KernelMode,
                    0,
                    &mut two_milliseconds,
                )
            };
            assert_eq!(status, STATUS_TIMEOUT);
        }
        started.elapsed()
    };
    // At the default resolution each 2 ms wait but the first lasts a whole tick, 15.625 ms.
    assert_eq!(clock::tick(), clock::DEFAULT_TICK);
    let default = waits(10);
    assert!(default >= 9 * clock::DEFAULT_TICK, "{default:?}");
    // At 1 ms, each ends on the second or third tick after it began.
    clock::set_tick(clock::FINE_TICK);
    let fine = waits(10);
    assert!(
        fine >= 10 * clock::FINE_TICK && fine < 9 * clock::DEFAULT_TICK,
        "{fine:?}"
    );
    println!("ten 2 ms waits: {default:?} at 15.625 ms ticks, {fine:?} at 1 ms");
}

#[oxtun_sim::test]
fn driver_verifiers_handle_checks_report_an_invalid_handle_referenced_while_attached() {
    use oxtun_sim::{Bitness, Process, Token, process};
    let user = Process::new(Token::Administrator, Bitness::Bits64);
    let (handle, _event) = user.create_event(SYNCHRONIZE);
    user.close_handle(handle);
    let reference = || {
        process::in_context_of(&user, || {
            let mut object = std::ptr::null_mut();
            // SAFETY (test): the simulator's export; the handle is closed, the point.
            unsafe {
                ObReferenceObjectByHandle(
                    handle as HANDLE,
                    SYNCHRONIZE,
                    std::ptr::null_mut(),
                    UserMode,
                    &mut object,
                    std::ptr::null_mut(),
                )
            }
        })
    };
    // Referenced from a system thread attached to the process, as a force-close does.
    let attached_reference = || {
        let mut process = std::ptr::null_mut();
        // SAFETY (test): the simulator's exports on the test's own process.
        unsafe {
            assert_eq!(
                PsLookupProcessByProcessId(user.id() as HANDLE, &mut process),
                STATUS_SUCCESS
            );
            let mut state: KAPC_STATE = std::mem::zeroed();
            KeStackAttachProcess(process, &mut state);
            let mut object = std::ptr::null_mut();
            let status = ObReferenceObjectByHandle(
                handle as HANDLE,
                SYNCHRONIZE,
                std::ptr::null_mut(),
                UserMode,
                &mut object,
                std::ptr::null_mut(),
            );
            KeUnstackDetachProcess(&mut state);
            ObfDereferenceObject(process.cast());
            status
        }
    };
    // Without Verifier: the status, nothing more.
    let violations = violations_of(|| {
        assert_eq!(reference(), 0xC000_0008_u32 as i32);
        assert_eq!(attached_reference(), 0xC000_0008_u32 as i32);
    });
    assert_eq!(violations, Vec::<String>::new());
    verifier::enable_handle_checks();
    // A caller's own handle, validated in its context: what an IOCTL does with its arguments.
    let violations = violations_of(|| assert_eq!(reference(), 0xC000_0008_u32 as i32));
    assert_eq!(violations, Vec::<String>::new());
    let violations = violations_of(|| {
        attached_reference();
    });
    assert!(
        violations.len() == 1 && violations[0].contains("Driver Verifier"),
        "{violations:?}"
    );
    user.exit();
}

#[oxtun_sim::test]
fn an_mdl_for_non_paged_pool_describes_non_paged_pool_and_is_neither_locked_nor_mapped_again() {
    // SAFETY (test): the simulator's exports, on pool this test allocates and frees.
    unsafe {
        let buffer = ExAllocatePool2(POOL_FLAG_NON_PAGED, 6000, 0x7473_6554);
        let mdl = IoAllocateMdl(buffer, 6000, 0, 0, std::ptr::null_mut());
        let violations = violations_of(|| {
            MmBuildMdlForNonPagedPool(mdl);
            // Its system address is where the buffer lies; a part of it, through a partial MDL,
            // too (IoBuildPartialMdl from an MDL MmBuildMdlForNonPagedPool built).
            assert_eq!(
                MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority),
                buffer
            );
            let partial = IoAllocateMdl(std::ptr::null_mut(), 12288, 0, 0, std::ptr::null_mut());
            IoBuildPartialMdl(mdl, partial, buffer.cast::<u8>().add(100).cast(), 5000);
            assert_eq!(
                MmGetSystemAddressForMdlSafe(partial, NormalPagePriority),
                buffer.cast::<u8>().add(100).cast()
            );
            MmPrepareMdlForReuse(partial);
            IoFreeMdl(partial);
        });
        assert_eq!(violations, Vec::<String>::new());
        // "drivers must not try to lock them ..., or to create additional system-address-space
        // mappings ... drivers must not try to unlock the pages" (MmBuildMdlForNonPagedPool).
        let violations = violations_of(|| {
            MmMapLockedPagesSpecifyCache(
                mdl,
                KernelMode,
                MmCached,
                std::ptr::null_mut(),
                0,
                NormalPagePriority,
            );
            MmUnlockPages(mdl);
        });
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations[0].contains("into system space again"),
            "{violations:?}"
        );
        assert!(violations[1].contains("unlocking an MDL"), "{violations:?}");
        IoFreeMdl(mdl);
        // Paged pool, or a range past the block: "the specified MDL must describe a buffer in
        // nonpaged system memory".
        let paged = ExAllocatePool2(POOL_FLAG_PAGED, 64, 0x7473_6554);
        let violations = violations_of(|| {
            let on_paged = IoAllocateMdl(paged, 64, 0, 0, std::ptr::null_mut());
            MmBuildMdlForNonPagedPool(on_paged);
            IoFreeMdl(on_paged);
            let past = IoAllocateMdl(buffer, 6001, 0, 0, std::ptr::null_mut());
            MmBuildMdlForNonPagedPool(past);
            IoFreeMdl(past);
        });
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations
                .iter()
                .all(|violation| violation.contains("not one block of non-paged pool")),
            "{violations:?}"
        );
        ExFreePoolWithTag(paged, 0x7473_6554);
        ExFreePoolWithTag(buffer, 0x7473_6554);
    }
    assert!(oxtun_sim::outstanding().is_empty());
}
