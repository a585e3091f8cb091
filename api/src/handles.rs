//! The handles the C API hands out. A caller may pass anything as a handle: a handle of the
//! wrong kind, one already closed, a pointer of its own. So a handle is not a pointer to our
//! object but a number that a table maps to it; a number not in the table is refused. Numbers
//! are never reused, so a closed handle stays invalid.
//!
//! Each call clones the object's `Arc` out of the table and works on it outside the lock, so a
//! thread that closes a handle while another uses it only drops the table's reference: the
//! object lives until the call in flight returns.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use oxtun_client::{Adapter, Session};

pub enum Object {
    Adapter(Arc<Adapter>),
    Session(Arc<Session>),
}

struct Table {
    objects: BTreeMap<usize, Object>,
    /// The last number handed out.
    last: usize,
}

static TABLE: RwLock<Table> = RwLock::new(Table {
    objects: BTreeMap::new(),
    last: 0,
});

/// Handles are multiples of this, so they look like the pointers callers expect.
const STEP: usize = 16;

fn table() -> std::sync::RwLockWriteGuard<'static, Table> {
    TABLE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enters `object` in the table; returns its handle, never 0.
pub fn insert(object: Object) -> usize {
    let mut table = table();
    let mut handle = table.last;
    loop {
        // Wrapping matters only after 2^28 handles of a 32-bit process; skip 0 and the live.
        handle = handle.wrapping_add(STEP);
        if handle != 0 && !table.objects.contains_key(&handle) {
            break;
        }
    }
    table.last = handle;
    table.objects.insert(handle, object);
    handle
}

fn read() -> std::sync::RwLockReadGuard<'static, Table> {
    TABLE
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn adapter(handle: usize) -> Option<Arc<Adapter>> {
    match read().objects.get(&handle)? {
        Object::Adapter(adapter) => Some(adapter.clone()),
        Object::Session(_) => None,
    }
}

pub fn session(handle: usize) -> Option<Arc<Session>> {
    match read().objects.get(&handle)? {
        Object::Session(session) => Some(session.clone()),
        Object::Adapter(_) => None,
    }
}

/// Takes the adapter out of the table, if `handle` is one.
pub fn remove_adapter(handle: usize) -> Option<Arc<Adapter>> {
    let mut table = table();
    if !matches!(table.objects.get(&handle), Some(Object::Adapter(_))) {
        return None;
    }
    match table.objects.remove(&handle) {
        Some(Object::Adapter(adapter)) => Some(adapter),
        _ => None,
    }
}

/// Takes the session out of the table, if `handle` is one.
pub fn remove_session(handle: usize) -> Option<Arc<Session>> {
    let mut table = table();
    if !matches!(table.objects.get(&handle), Some(Object::Session(_))) {
        return None;
    }
    match table.objects.remove(&handle) {
        Some(Object::Session(session)) => Some(session),
        _ => None,
    }
}
