//! Owned values in non-paged pool: the driver's only heap.

use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use super::nt::{ExAllocatePool2, ExFreePoolWithTag, POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, ULONG};

/// Every allocation of the driver carries this tag ('OxTn' as the pool tools show it).
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"OxTn");

/// A `T` in non-paged pool, freed on drop; `None` from [`PoolBox::new`] when the pool is
/// exhausted.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
}

// SAFETY: PoolBox owns its T exactly like Box does.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: shared access only gives &T.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    pub fn new(value: T) -> Option<Self> {
        const {
            assert!(
                core::mem::align_of::<T>() <= 16,
                "pool memory is 16-byte aligned"
            )
        };
        // SAFETY: a plain allocation; the result is checked for null below.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size_of::<T>(), POOL_TAG) };
        let ptr = NonNull::new(raw.cast::<T>())?;
        // SAFETY: fresh, suitably aligned memory of size_of::<T>() bytes.
        unsafe { ptr.as_ptr().write(value) };
        Some(PoolBox { ptr })
    }

    /// Gives up ownership, for storing the value where only a pointer fits (an NDIS context).
    pub fn into_raw(self) -> NonNull<T> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }

    /// Takes back ownership of a value from [`PoolBox::into_raw`].
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and is not used after this except through the new box.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        PoolBox { ptr }
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the box owns a live, initialized T.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns a live T, and &mut self makes this the only access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    fn drop(&mut self) {
        // SAFETY: the box owns the value and its allocation; both end here.
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG);
        }
    }
}

/// Bytes in paged pool, for what only PASSIVE_LEVEL code reads (a snapshot of the system's
/// handles); zeroed, freed on drop.
pub struct PagedBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

impl PagedBuffer {
    pub fn new(len: usize) -> Option<Self> {
        // SAFETY: a plain allocation (ExAllocatePool2 zeroes it); checked for null below.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, len.max(1), POOL_TAG) };
        NonNull::new(raw.cast()).map(|ptr| PagedBuffer { ptr, len })
    }

    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Deref for PagedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialized (zeroed) bytes owned by this buffer.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PagedBuffer {
    fn drop(&mut self) {
        // SAFETY: the allocation `new` made, freed once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG) };
    }
}

/// Bytes in non-paged pool (zeroed, as ExAllocatePool2 leaves them), freed on drop: a packet the
/// driver copies to work on it.
pub struct PoolBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: PoolBuffer owns its bytes exactly like Box<[u8]> does.
unsafe impl Send for PoolBuffer {}

impl PoolBuffer {
    /// `len` bytes (at least 1 allocated); `None` when the pool is exhausted. At up to
    /// DISPATCH_LEVEL.
    pub fn new(len: usize) -> Option<Self> {
        // SAFETY: a plain allocation; checked for null below.
        let raw = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, len.max(1), POOL_TAG) };
        NonNull::new(raw.cast()).map(|ptr| PoolBuffer { ptr, len })
    }

    /// Gives up ownership, for keeping the buffer where only a pointer fits (an NBL's
    /// MiniportReserved); 16-byte aligned, so its low bits are free.
    pub fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        core::mem::forget(self);
        ptr
    }

    /// Takes back a buffer from [`PoolBuffer::into_raw`] of `len` bytes.
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a buffer of `len` bytes, and is not used after this except
    /// through the new buffer.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Self {
        PoolBuffer { ptr, len }
    }
}

impl Deref for PoolBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes owned by this buffer (ExAllocatePool2 zeroes them, so they are
        // initialized).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PoolBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref; &mut self makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PoolBuffer {
    fn drop(&mut self) {
        // SAFETY: the allocation `new` made, freed once.
        unsafe { ExFreePoolWithTag(self.ptr.as_ptr().cast(), POOL_TAG) };
    }
}
