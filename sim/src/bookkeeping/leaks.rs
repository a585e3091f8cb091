//! Layer: bookkeeping, beneath all. It calls the verifier only.
//!
//! What the driver holds: its pool allocations, and what one ring registration allocated, for
//! the leak check when it ends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use oxtun_driver::sys::{NT_SUCCESS, NTSTATUS, ULONG};

use crate::bookkeeping::verifier::violation;

/// A pool allocation the driver has not freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub size: usize,
    pub tag: ULONG,
    /// Paged pool (POOL_FLAG_PAGED), not non-paged.
    pub paged: bool,
}

/// The driver's pool allocations not yet freed, by address.
static POOL: Mutex<BTreeMap<usize, Allocation>> = Mutex::new(BTreeMap::new());

/// Allocations not yet freed, by address.
pub fn pool_outstanding() -> BTreeMap<usize, Allocation> {
    POOL.lock().unwrap().clone()
}

/// The driver allocated pool at `address`: attributed also to the registration this thread
/// dispatches, if any.
pub(crate) fn pool_allocated(address: usize, allocation: Allocation) {
    POOL.lock().unwrap().insert(address, allocation);
    REGISTERING.with(|record| {
        if let Some(record) = record.borrow_mut().as_mut() {
            record.pool.insert(address);
        }
    });
}

/// The live allocation holding the `length` bytes at `address`, if one holds them all.
pub(crate) fn pool_block_holding(address: usize, length: usize) -> Option<Allocation> {
    let pool = POOL.lock().unwrap();
    let (&start, &allocation) = pool.range(..=address).next_back()?;
    (address + length <= start + allocation.size).then_some(allocation)
}

/// The driver freed the pool at `address`: what it had allocated there, if it had.
pub(crate) fn pool_freed(address: usize) -> Option<Allocation> {
    POOL.lock().unwrap().remove(&address)
}

/// What one ring registration made: the pool it allocated during its IOCTL and the MDLs whose
/// pages it locked. When those MDLs are all freed the registration has ended, and the pool must
/// be back too: memory a registration takes and only halt gives back is a leak per
/// registration, which the unload check cannot see.
#[derive(Default)]
struct RegistrationRecord {
    pool: BTreeSet<usize>,
    mdls: BTreeSet<usize>,
}

thread_local! {
    /// The registration whose IOCTL this thread is dispatching.
    static REGISTERING: std::cell::RefCell<Option<RegistrationRecord>> =
        const { std::cell::RefCell::new(None) };
    /// Registrations this thread ended (freed their last MDL), for the check when the driver
    /// callback it runs returns.
    static ENDED_HERE: std::cell::RefCell<Vec<RegistrationRecord>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Registrations that live.
static LIVE_REGISTRATIONS: Mutex<Vec<RegistrationRecord>> = Mutex::new(Vec::new());

pub(crate) fn begin_registration() {
    REGISTERING.with(|record| *record.borrow_mut() = Some(RegistrationRecord::default()));
}

pub(crate) fn finish_registration(status: NTSTATUS) {
    let Some(record) = REGISTERING.with(|record| record.borrow_mut().take()) else {
        return;
    };
    if NT_SUCCESS(status) {
        LIVE_REGISTRATIONS.lock().unwrap().push(record);
    } else {
        check_pool_returned(&record, "a refused registration");
    }
}

pub(crate) fn note_locked_mdl(mdl: usize) {
    REGISTERING.with(|record| {
        if let Some(record) = record.borrow_mut().as_mut() {
            record.mdls.insert(mdl);
        }
    });
}

pub(crate) fn note_freed_mdl(mdl: usize) {
    let mut live = LIVE_REGISTRATIONS.lock().unwrap();
    let Some(index) = live.iter().position(|record| record.mdls.contains(&mdl)) else {
        return;
    };
    live[index].mdls.remove(&mdl);
    if live[index].mdls.is_empty() {
        let ended = live.remove(index);
        ENDED_HERE.with(|here| here.borrow_mut().push(ended));
    }
}

/// Once the driver callback that ended registrations returns: their pool is back.
pub(crate) fn check_ended_registrations() {
    let ended = ENDED_HERE.with(|here| std::mem::take(&mut *here.borrow_mut()));
    for record in &ended {
        check_pool_returned(record, "an ended registration");
    }
}

fn check_pool_returned(record: &RegistrationRecord, what: &str) {
    let outstanding = pool_outstanding();
    let kept: Vec<_> = record
        .pool
        .iter()
        .filter_map(|address| outstanding.get(address))
        .collect();
    if !kept.is_empty() {
        // A leak per registration, which the unload check (Driver Verifier's "Pool Tracking")
        // cannot see when halt frees it in the end.
        violation(format!(
            "{what} kept {} pool allocations it made: {kept:?}",
            kept.len()
        ));
    }
}
