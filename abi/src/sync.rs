//! The atomics of the ring protocol: core's in every real build; loom's under `--cfg loom`, so
//! the model checker (`tests/loom.rs`) sees each load, store and fence the protocol makes and
//! explores their interleavings and reorderings.
//!
//! Loom's atomics are objects of its own, not views of shared bytes, so under loom a ring's
//! header and packet `Size` words live in [`ModelWords`] beside its memory; packet data stays in
//! the memory. Nothing here exists in a real build, and nothing costs anything there.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicI32, AtomicU32, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI32, AtomicU32, Ordering, fence};

/// Bytes at the start of `Data` whose `Size` words a model may use.
#[cfg(loom)]
pub const MODEL_DATA_BYTES: u32 = 128;

/// A ring's shared words under loom: `Head`, `Tail`, `Alertable`, and the `Size` words of packets
/// in the first [`MODEL_DATA_BYTES`] of `Data`; with a switch per side of the alertable handshake
/// that removes its fence, to show the checker finds the lost wakeup that follows.
#[cfg(loom)]
#[derive(Debug)]
pub struct ModelWords {
    head: AtomicU32,
    tail: AtomicU32,
    alertable: AtomicI32,
    sizes: [AtomicU32; MODEL_DATA_BYTES as usize / 4],
    producer_fence: bool,
    consumer_fence: bool,
}

#[cfg(loom)]
impl Default for ModelWords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(loom)]
impl ModelWords {
    /// Every word 0, both fences in place.
    pub fn new() -> Self {
        ModelWords {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            alertable: AtomicI32::new(0),
            sizes: core::array::from_fn(|_| AtomicU32::new(0)),
            producer_fence: true,
            consumer_fence: true,
        }
    }

    /// The producer's handshake fence (between storing `Tail` and loading `Alertable`) removed.
    pub fn without_producer_fence(mut self) -> Self {
        self.producer_fence = false;
        self
    }

    /// The consumer's handshake fence (between storing `Alertable` and loading `Tail`) removed.
    pub fn without_consumer_fence(mut self) -> Self {
        self.consumer_fence = false;
        self
    }

    pub fn head(&self) -> &AtomicU32 {
        &self.head
    }

    pub fn tail(&self) -> &AtomicU32 {
        &self.tail
    }

    pub fn alertable(&self) -> &AtomicI32 {
        &self.alertable
    }

    /// The `Size` word of a packet at `offset` in `Data`.
    pub fn size(&self, offset: u32) -> &AtomicU32 {
        assert!(
            offset < MODEL_DATA_BYTES && offset % 4 == 0,
            "a loom model uses packets only in the first {MODEL_DATA_BYTES} bytes"
        );
        &self.sizes[offset as usize / 4]
    }

    pub(crate) fn producer_fence(&self) -> bool {
        self.producer_fence
    }

    pub(crate) fn consumer_fence(&self) -> bool {
        self.consumer_fence
    }
}
