//! The consumer's half of the ring protocol.
//!
//! The consumer owns `Head`: it keeps the authoritative value in `self` and only ever stores it to
//! the ring, so whatever the producer scribbles there cannot steer it. `Tail` and each packet's
//! `Size` belong to the producer; each is loaded once, atomically, into a local that is validated
//! before anything depends on it.

use core::ptr::NonNull;

use crate::layout::{MAX_IP_PACKET_SIZE, RING_ENDED, packet_space};
use crate::region::RingRegion;
use crate::sync::Ordering;

/// Why a reader or writer stopped using its ring. Once stopped it stays stopped: a consumer has
/// set `Head` to 0xFFFFFFFF, so the producer sees the end too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The producer set `Tail` to 0xFFFFFFFF: it has finished with the ring.
    Ended,
    /// The consumer set `Head` to 0xFFFFFFFF: it has stopped reading the ring.
    ConsumerStopped,
    /// `Head` is not below the capacity.
    HeadOutOfRange(u32),
    /// `Head` is not a multiple of 4.
    HeadMisaligned(u32),
    /// `Head` moved backwards, or past the packets the producer published.
    HeadOutsidePublished(u32),
    /// `Tail` is not below the capacity.
    TailOutOfRange(u32),
    /// `Tail` is not a multiple of 4.
    TailMisaligned(u32),
    /// `Tail` moved backwards, behind packets already read.
    TailBehindRead(u32),
    /// A packet's `Size` is over 0xFFFF.
    SizeTooLarge(u32),
    /// A packet's `Size` makes it end past `Tail`.
    SizePastTail(u32),
}

/// A packet the reader found, by position; its bytes stay in the ring until released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    offset: u32,
    size: u32,
    end: u32,
}

impl Packet {
    /// Offset of the packet's header in the ring.
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Bytes of IP packet data.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Offset just after the packet: where the next one starts, and the `Head` that releases it.
    pub fn end(&self) -> u32 {
        self.end
    }
}

impl RingRegion {
    /// Copies the bytes of `packet` (one a reader of this ring found) from `start` on into `out`,
    /// as many as fit; returns how many (none if `start` is past its end). Whoever holds the
    /// packet unreleased may copy it without the reader: its bytes stay where they are until
    /// then, though the producer may write them meanwhile.
    pub fn copy_packet_from(&self, packet: &Packet, start: usize, out: &mut [u8]) -> usize {
        let size = packet.size as usize;
        let start = start.min(size);
        let len = out.len().min(size - start);
        let data = self.packet_data(packet.offset, packet.size);
        // SAFETY: `data` holds packet.size >= start + len bytes inside the region (packet_data
        // checked it); `out` is a distinct, exclusive buffer.
        unsafe { core::ptr::copy_nonoverlapping(data.add(start), out.as_mut_ptr(), len) };
        len
    }
}

/// What the consumer should do after announcing that it is about to sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepDecision {
    /// Nothing arrived: wait for the TailMoved event, then call [`RingReader::end_sleep`].
    Sleep,
    /// `Tail` moved meanwhile: read again without sleeping (`Alertable` is already cleared).
    ReadAgain,
}

/// Reads packets from a ring and releases their space, in ring order.
#[derive(Debug)]
pub struct RingReader {
    region: RingRegion,
    /// Released up to here: the value of `Head` this side published.
    head: u32,
    /// Read up to here: the next packet starts at this offset.
    read: u32,
    stopped: Option<RingError>,
}

impl RingReader {
    /// Starts reading a ring at its current `Head`, loaded once and validated.
    pub fn attach(region: RingRegion) -> Result<Self, RingError> {
        let head = region.head().load(Ordering::Acquire);
        let mut reader = RingReader {
            region,
            head: 0,
            read: 0,
            stopped: None,
        };
        if head == RING_ENDED {
            return Err(RingError::ConsumerStopped);
        }
        if head >= region.capacity() {
            return Err(reader.stop(RingError::HeadOutOfRange(head)));
        }
        if !region.is_packet_offset(head) {
            return Err(reader.stop(RingError::HeadMisaligned(head)));
        }
        reader.head = head;
        reader.read = head;
        Ok(reader)
    }

    /// The ring this reader reads.
    pub fn region(&self) -> &RingRegion {
        &self.region
    }

    /// Why the reader stopped, if it has.
    pub fn stopped(&self) -> Option<RingError> {
        self.stopped
    }

    /// True if every read packet has been released.
    pub fn all_released(&self) -> bool {
        self.head == self.read
    }

    /// The next unread packet, `None` if the ring is empty, or why the ring is unusable. The
    /// packet's space is not released: call [`release_to`](Self::release_to) for that.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, RingError> {
        if let Some(error) = self.stopped {
            return Err(error);
        }
        let tail = self.region.tail().load(Ordering::Acquire);
        if tail == RING_ENDED {
            return Err(self.stop(RingError::Ended));
        }
        if tail >= self.region.capacity() {
            return Err(self.stop(RingError::TailOutOfRange(tail)));
        }
        if !self.region.is_packet_offset(tail) {
            return Err(self.stop(RingError::TailMisaligned(tail)));
        }
        // Published but unreleased bytes run from head to tail; tail may not fall inside the part
        // already read.
        if self.region.distance(self.head, tail) < self.region.distance(self.head, self.read) {
            return Err(self.stop(RingError::TailBehindRead(tail)));
        }
        let unread = self.region.distance(self.read, tail);
        if unread == 0 {
            return Ok(None);
        }
        // Acquire on Tail makes the producer's Size and data writes before it visible.
        let size = self.region.packet_size(self.read).load(Ordering::Relaxed);
        let Some(space) = packet_space(size) else {
            return Err(self.stop(RingError::SizeTooLarge(size)));
        };
        debug_assert!(size <= MAX_IP_PACKET_SIZE);
        if space > unread {
            return Err(self.stop(RingError::SizePastTail(size)));
        }
        let packet = Packet {
            offset: self.read,
            size,
            end: self.region.wrap(self.read + space),
        };
        self.read = packet.end;
        Ok(Some(packet))
    }

    /// Releases every read packet up to `end` (a packet's [`Packet::end`]) for the producer to
    /// reuse, by publishing `Head`. Returns false, changing nothing, if `end` is not within the
    /// read packets or the reader has stopped.
    pub fn release_to(&mut self, end: u32) -> bool {
        let releasable = self.region.distance(self.head, self.read);
        let releasing = self.region.distance(self.head, end);
        if self.stopped.is_some() || !self.region.is_packet_offset(end) || releasing > releasable {
            return false;
        }
        self.head = end;
        self.region.head().store(end, Ordering::Release);
        true
    }

    /// Releases every packet read so far.
    pub fn release_all(&mut self) -> bool {
        self.release_to(self.read)
    }

    /// Where the data of `packet` begins in memory; `packet.size()` bytes follow, all inside the
    /// region. The producer may still change them: treat them as hostile.
    pub fn packet_data(&self, packet: &Packet) -> NonNull<u8> {
        let data = self.region.packet_data(packet.offset, packet.size);
        // SAFETY: a pointer into the region, whose base is non-null.
        unsafe { NonNull::new_unchecked(data) }
    }

    /// Copies the first bytes of `packet` into `out`, as many as fit; returns how many.
    pub fn copy_packet(&self, packet: &Packet, out: &mut [u8]) -> usize {
        self.region.copy_packet_from(packet, 0, out)
    }

    /// Whether `Tail` differs from where reading stopped: a cheap look, for spinning before
    /// sleeping; [`next_packet`](Self::next_packet) validates what is there.
    pub fn has_unread(&self) -> bool {
        self.stopped.is_none() && self.region.tail().load(Ordering::Relaxed) != self.read
    }

    /// The consumer's half of the alertable handshake, once [`next_packet`](Self::next_packet)
    /// found the ring empty.
    ///
    /// It stores `Alertable = 1`, then loads `Tail`. The producer stores `Tail`, then loads
    /// `Alertable` ([`RingWriter::complete`](crate::RingWriter::complete)). Each side has a
    /// sequentially consistent fence between its store and its load, so at least one of them sees
    /// the other's store: either this load sees the new `Tail` and the consumer reads again, or
    /// the producer sees `Alertable` and sets the event. Without the fences both loads could run
    /// ahead of the stores (x86 reorders a store with a later load too), both would miss, and the
    /// consumer would sleep on a packet that had arrived.
    pub fn announce_sleep(&mut self) -> SleepDecision {
        self.region.alertable().store(1, Ordering::Relaxed);
        self.region.consumer_handshake_fence();
        let tail = self.region.tail().load(Ordering::Relaxed);
        if tail == self.read {
            SleepDecision::Sleep
        } else {
            self.end_sleep();
            SleepDecision::ReadAgain
        }
    }

    /// Clears `Alertable` after waking from the TailMoved event.
    pub fn end_sleep(&mut self) {
        self.region.alertable().store(0, Ordering::Relaxed);
    }

    /// Ends the ring for the producer: `Head` becomes 0xFFFFFFFF, which a producer reads as the
    /// end (deployed wintun.dll clients answer ERROR_HANDLE_EOF to an allocation then). Nothing
    /// is read after this.
    pub fn close(&mut self) {
        self.stop(RingError::ConsumerStopped);
    }

    fn stop(&mut self, error: RingError) -> RingError {
        self.stopped = Some(error);
        self.region.head().store(RING_ENDED, Ordering::Release);
        error
    }
}
