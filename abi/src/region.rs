//! A ring's memory, shared with another party that may change any byte at any moment.
//!
//! Every access goes through this type: the header fields and packet sizes as atomics, packet
//! bytes as bounded copies. Callers hand in offsets they have validated; the bounds are checked
//! again here, so a mistake cannot reach outside the region.

use core::ptr::NonNull;

#[cfg(not(loom))]
use crate::layout::TunRingHeader;
use crate::layout::{
    ALIGNMENT, MAX_PACKET_SPACE, PACKET_HEADER_SIZE, RING_HEADER_SIZE, RingSizeError,
    capacity_for_ring_size,
};
use crate::sync::{AtomicI32, AtomicU32, Ordering, fence};

/// A mapped ring: `12 + capacity + 0x10000` bytes, 4-byte aligned.
#[derive(Clone, Copy, Debug)]
pub struct RingRegion {
    base: NonNull<u8>,
    capacity: u32,
    /// Under loom, where the header and `Size` words are (see [`crate::sync`]).
    #[cfg(loom)]
    model: Option<NonNull<crate::sync::ModelWords>>,
}

// SAFETY: the region is plain memory; every access through it is atomic or a bounded byte copy,
// so it may be used from any thread (the creator promised the memory outlives every use).
unsafe impl Send for RingRegion {}
// SAFETY: as for Send; no method hands out a reference to non-atomic shared bytes.
unsafe impl Sync for RingRegion {}

/// Why memory cannot be used as a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// The length does not give a valid capacity.
    Size(RingSizeError),
    /// The length does not fit the ABI's 32-bit ring size.
    TooLong,
    /// The start is not 4-byte aligned, so the header cannot be accessed atomically.
    Misaligned,
}

impl RingRegion {
    /// Wraps `len` bytes at `base` as a ring.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes for as long as this value or any
    /// copy of it is used. Other threads or processes may read and write those bytes at any time;
    /// nothing else may hold a Rust reference to them.
    pub unsafe fn new(base: NonNull<u8>, len: usize) -> Result<Self, RegionError> {
        let ring_size = u32::try_from(len).map_err(|_| RegionError::TooLong)?;
        let capacity = capacity_for_ring_size(ring_size).map_err(RegionError::Size)?;
        if base.as_ptr() as usize % ALIGNMENT as usize != 0 {
            return Err(RegionError::Misaligned);
        }
        Ok(RingRegion {
            base,
            capacity,
            #[cfg(loom)]
            model: None,
        })
    }

    /// Under loom: the region with its header and `Size` words in `words`.
    ///
    /// # Safety
    /// `words` must outlive every use of the region and of its copies.
    #[cfg(loom)]
    pub unsafe fn modelled_by(self, words: &crate::sync::ModelWords) -> Self {
        RingRegion {
            model: Some(NonNull::from(words)),
            ..self
        }
    }

    #[cfg(loom)]
    fn model(&self) -> &crate::sync::ModelWords {
        let words = self
            .model
            .expect("a loom model gives its region ModelWords");
        // SAFETY: modelled_by's caller promised the words outlive the region.
        unsafe { words.as_ref() }
    }

    /// Bytes the ring holds (a power of two); offsets are below it.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// `offset` reduced to the ring.
    pub(crate) fn wrap(&self, offset: u32) -> u32 {
        offset & (self.capacity - 1)
    }

    /// Ring bytes from `from` forward to `to`.
    pub(crate) fn distance(&self, from: u32, to: u32) -> u32 {
        self.wrap(to.wrapping_sub(from))
    }

    /// True if `offset` may start a packet: inside the capacity and aligned.
    pub(crate) fn is_packet_offset(&self, offset: u32) -> bool {
        offset < self.capacity && offset % ALIGNMENT == 0
    }

    #[cfg(not(loom))]
    fn header_field(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset < RING_HEADER_SIZE as usize && offset % 4 == 0);
        // SAFETY: the header is inside the region, 4-aligned (base is, and so is the offset) and
        // accessed only atomically by this side, so an AtomicU32 view of it is sound.
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    #[cfg(not(loom))]
    pub(crate) fn head(&self) -> &AtomicU32 {
        self.header_field(core::mem::offset_of!(TunRingHeader, head))
    }

    #[cfg(not(loom))]
    pub(crate) fn tail(&self) -> &AtomicU32 {
        self.header_field(core::mem::offset_of!(TunRingHeader, tail))
    }

    #[cfg(not(loom))]
    pub(crate) fn alertable(&self) -> &AtomicI32 {
        let field = self.header_field(core::mem::offset_of!(TunRingHeader, alertable));
        // SAFETY: AtomicI32 and AtomicU32 have the same size and alignment; the field is
        // TUN_RING.Alertable, a LONG.
        unsafe { &*(field as *const AtomicU32).cast::<AtomicI32>() }
    }

    /// The `Size` field of the packet at `offset`, which must be a packet offset.
    #[cfg(not(loom))]
    pub(crate) fn packet_size(&self, offset: u32) -> &AtomicU32 {
        assert!(self.is_packet_offset(offset));
        // SAFETY: offset < capacity and aligned, so the 4 bytes at Data + offset lie inside the
        // region and are 4-aligned (Data starts 12 bytes into an aligned region).
        unsafe { &*self.data_ptr(offset).cast::<AtomicU32>() }
    }

    #[cfg(loom)]
    pub(crate) fn head(&self) -> &AtomicU32 {
        self.model().head()
    }

    #[cfg(loom)]
    pub(crate) fn tail(&self) -> &AtomicU32 {
        self.model().tail()
    }

    #[cfg(loom)]
    pub(crate) fn alertable(&self) -> &AtomicI32 {
        self.model().alertable()
    }

    #[cfg(loom)]
    pub(crate) fn packet_size(&self, offset: u32) -> &AtomicU32 {
        assert!(self.is_packet_offset(offset));
        self.model().size(offset)
    }

    /// The producer's full fence in the alertable handshake, between storing `Tail` and loading
    /// `Alertable`; see [`RingReader::announce_sleep`](crate::RingReader::announce_sleep).
    #[inline(always)]
    pub(crate) fn producer_handshake_fence(&self) {
        #[cfg(loom)]
        if !self.model().producer_fence() {
            return;
        }
        fence(Ordering::SeqCst);
    }

    /// The consumer's full fence in the alertable handshake, between storing `Alertable` and
    /// loading `Tail`.
    #[inline(always)]
    pub(crate) fn consumer_handshake_fence(&self) {
        #[cfg(loom)]
        if !self.model().consumer_fence() {
            return;
        }
        fence(Ordering::SeqCst);
    }

    fn data_ptr(&self, offset: u32) -> *mut u8 {
        assert!(offset <= self.capacity);
        // SAFETY: Data + capacity is inside the region (the trailing bytes follow it).
        unsafe {
            self.base
                .as_ptr()
                .add(RING_HEADER_SIZE as usize + offset as usize)
        }
    }

    /// Where the data of a packet whose header is at `packet_offset` begins, checked to hold
    /// `len` bytes inside the region. A packet of at most 0xFFFF bytes at a packet offset always
    /// does: that is what the trailing bytes are for.
    pub(crate) fn packet_data(&self, packet_offset: u32, len: u32) -> *mut u8 {
        assert!(self.is_packet_offset(packet_offset));
        assert!(PACKET_HEADER_SIZE + len <= MAX_PACKET_SPACE);
        self.data_ptr(packet_offset + PACKET_HEADER_SIZE)
    }
}
