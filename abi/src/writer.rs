//! The producer's half of the ring protocol.
//!
//! The producer owns `Tail`: it keeps the authoritative value in `self` and only stores it.
//! `Head` belongs to the consumer and is loaded once per reservation, then validated: it must lie
//! between the last `Head` seen and the published `Tail`, so a consumer that scribbles on it can
//! cost itself packets but never make two reservations overlap.
//!
//! Reserving and completing take `&mut self`: callers that share a writer between threads hold
//! their lock for those two short calls only, and fill the reserved packets outside it.

use crate::layout::{ALIGNMENT, PACKET_HEADER_SIZE, RING_ENDED, packet_space};
use crate::order::{CompletionOrder, Ticket};
use crate::reader::RingError;
use crate::region::RingRegion;
use crate::sync::Ordering;

/// How many reservations are tracked separately before new ones share an entry.
const TRACKED_RESERVATIONS: usize = 64;

/// Why a reservation was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// The ring has fewer free bytes than asked for; nothing was reserved.
    Full { free: u32 },
    /// The size asked for is zero or not a multiple of 4.
    BadSize(u32),
    /// The ring is unusable.
    Ring(RingError),
}

/// Space reserved for one or more packets. Fill it with [`Reservation::push_packet`], then hand
/// it to [`RingWriter::complete`].
#[derive(Debug)]
#[must_use = "a reservation that is never completed stops the ring"]
pub struct Reservation {
    region: RingRegion,
    ticket: Ticket,
    /// Offset of the next packet to push.
    next: u32,
    /// Bytes not yet pushed.
    remaining: u32,
}

/// One packet's data in a reservation, `size` bytes.
#[derive(Debug)]
pub struct PacketSlot {
    data: *mut u8,
    size: u32,
}

/// The result of [`RingWriter::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// `Tail` moved: the consumer can read more packets. On the send ring the driver sets the
    /// client's TailMoved event every time this is true (see the crate's documentation).
    pub tail_moved: bool,
    /// `Tail` moved and the consumer announced it sleeps (`Alertable` set): what obliges a
    /// client writing the receive ring to set the driver's TailMoved event.
    pub wake_consumer: bool,
}

impl Reservation {
    /// Bytes of the reservation not yet used by a packet.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Starts the next packet of `size` data bytes: writes its header and returns its data, or
    /// `None` if the size is over 0xFFFF or the packet does not fit in the reservation.
    pub fn push_packet(&mut self, size: u32) -> Option<PacketSlot> {
        let space = packet_space(size)?;
        if space > self.remaining {
            return None;
        }
        let offset = self.next;
        self.region
            .packet_size(offset)
            .store(size, Ordering::Relaxed);
        self.next = self.region.wrap(offset + space);
        self.remaining -= space;
        Some(PacketSlot {
            data: self.region.packet_data(offset, size),
            size,
        })
    }
}

impl PacketSlot {
    /// Bytes of packet data.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Copies `bytes` into the packet at byte `at`; false, writing nothing, if they would run past
    /// its end.
    pub fn write(&mut self, at: usize, bytes: &[u8]) -> bool {
        let fits = at
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.size as usize);
        if fits {
            // SAFETY: `data` holds `size` bytes inside the region, reserved for this slot alone
            // (the region checked the bounds when the slot was made); at + len <= size.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(at), bytes.len())
            };
        }
        fits
    }
}

impl PacketSlot {
    /// The packet's bytes, to fill in place.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `data` holds `size` bytes inside the region, reserved for this slot alone; the
        // consumer reads them only once the reservation is completed, and the borrow ends first.
        unsafe { core::slice::from_raw_parts_mut(self.data, self.size as usize) }
    }

    /// Sets every byte of the packet to `byte`.
    pub fn fill(&mut self, byte: u8) {
        // SAFETY: `data` holds `size` bytes inside the region, reserved for this slot alone.
        unsafe { core::ptr::write_bytes(self.data, byte, self.size as usize) };
    }
}

/// Writes packets to a ring and publishes them by moving `Tail`.
#[derive(Debug)]
pub struct RingWriter {
    region: RingRegion,
    /// End of the reserved space: the next reservation starts here.
    reserved: u32,
    /// `Tail` as published: everything before it is complete.
    published: u32,
    /// The last valid `Head` seen; the consumer only moves it forward, up to `published`.
    head: u32,
    order: CompletionOrder<TRACKED_RESERVATIONS>,
    stopped: Option<RingError>,
}

impl RingWriter {
    /// Starts writing a ring at its current `Tail`, with `Head` and `Tail` loaded once and
    /// validated.
    pub fn attach(region: RingRegion) -> Result<Self, RingError> {
        let tail = region.tail().load(Ordering::Acquire);
        let head = region.head().load(Ordering::Acquire);
        let mut writer = RingWriter {
            region,
            reserved: 0,
            published: 0,
            head: 0,
            order: CompletionOrder::new(),
            stopped: None,
        };
        if let Err(error) = writer.check_tail(tail) {
            return Err(writer.stop(error));
        }
        if head == RING_ENDED {
            return Err(writer.stop(RingError::ConsumerStopped));
        }
        if head >= region.capacity() {
            return Err(writer.stop(RingError::HeadOutOfRange(head)));
        }
        if !region.is_packet_offset(head) {
            return Err(writer.stop(RingError::HeadMisaligned(head)));
        }
        writer.reserved = tail;
        writer.published = tail;
        writer.head = head;
        Ok(writer)
    }

    fn check_tail(&self, tail: u32) -> Result<(), RingError> {
        if tail == RING_ENDED {
            Err(RingError::Ended)
        } else if tail >= self.region.capacity() {
            Err(RingError::TailOutOfRange(tail))
        } else if !self.region.is_packet_offset(tail) {
            Err(RingError::TailMisaligned(tail))
        } else {
            Ok(())
        }
    }

    /// The ring this writer writes.
    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    /// Why the writer stopped, if it has.
    pub fn stopped(&self) -> Option<RingError> {
        self.stopped
    }

    /// True when no reservation is outstanding.
    pub fn is_idle(&self) -> bool {
        self.order.is_idle()
    }

    /// Free bytes after loading and validating `Head`.
    fn free_space(&mut self) -> Result<u32, RingError> {
        if let Some(error) = self.stopped {
            return Err(error);
        }
        let head = self.region.head().load(Ordering::Acquire);
        if head == RING_ENDED {
            return Err(self.stop(RingError::ConsumerStopped));
        }
        if head >= self.region.capacity() {
            return Err(self.stop(RingError::HeadOutOfRange(head)));
        }
        if !self.region.is_packet_offset(head) {
            return Err(self.stop(RingError::HeadMisaligned(head)));
        }
        let released = self.region.distance(self.head, head);
        if released > self.region.distance(self.head, self.published) {
            return Err(self.stop(RingError::HeadOutsidePublished(head)));
        }
        self.head = head;
        // One alignment unit stays free, so a full ring never looks empty (Head == Tail).
        Ok(self
            .region
            .distance(self.reserved, head.wrapping_sub(ALIGNMENT)))
    }

    /// Reserves `bytes` of ring space (a sum of [`packet_space`] results) for packets to be
    /// filled without holding the caller's lock. Reservations may complete in any order.
    pub fn reserve(&mut self, bytes: u32) -> Result<Reservation, ReserveError> {
        if bytes == 0 || bytes % ALIGNMENT != 0 {
            return Err(ReserveError::BadSize(bytes));
        }
        let free = self.free_space().map_err(ReserveError::Ring)?;
        if bytes > free {
            return Err(ReserveError::Full { free });
        }
        let start = self.reserved;
        self.reserved = self.region.wrap(start + bytes);
        Ok(Reservation {
            region: self.region,
            ticket: self.order.begin(self.reserved),
            next: start,
            remaining: bytes,
        })
    }

    /// Completes a filled reservation. `Tail` moves over every completed reservation that no
    /// incomplete one precedes, with release ordering, so the consumer sees the packets' bytes
    /// before the new `Tail`. Space a reservation left unfilled becomes empty packets.
    ///
    /// Then the producer's half of the alertable handshake: a sequentially consistent fence
    /// between storing `Tail` and loading `Alertable`; see
    /// [`RingReader::announce_sleep`](crate::RingReader::announce_sleep) for why.
    pub fn complete(&mut self, mut reservation: Reservation) -> Published {
        while reservation.remaining > 0 {
            let _empty_packet = reservation.push_packet(0);
        }
        let Some(tail) = self.order.finish(reservation.ticket) else {
            return Published {
                tail_moved: false,
                wake_consumer: false,
            };
        };
        if self.stopped.is_some() {
            return Published {
                tail_moved: false,
                wake_consumer: false,
            };
        }
        self.published = tail;
        self.region.tail().store(tail, Ordering::Release);
        self.region.producer_handshake_fence();
        let wake_consumer = self.region.alertable().load(Ordering::Relaxed) != 0;
        Published {
            tail_moved: true,
            wake_consumer,
        }
    }

    /// Ends the ring for the consumer: `Tail` becomes 0xFFFFFFFF. The caller then sets the
    /// TailMoved event unconditionally, so a sleeping consumer wakes and sees the end.
    pub fn close(&mut self) {
        self.stopped.get_or_insert(RingError::Ended);
        self.region.tail().store(RING_ENDED, Ordering::Release);
    }

    fn stop(&mut self, error: RingError) -> RingError {
        self.stopped = Some(error);
        error
    }
}

// `complete` pads an unfilled reservation with empty packets, one alignment unit each.
const _: () = assert!(PACKET_HEADER_SIZE == ALIGNMENT);
