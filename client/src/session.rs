//! A session: the two rings registered with an adapter, shared by any number of threads.
//!
//! The semantics are deployed wintun.dll's (api/session.c, 0.14), which applications rely on:
//! - receiving is thread-safe, and received packets may be released in any order; their space
//!   goes back to the driver once every packet received before them is released too;
//! - allocating and sending are thread-safe, and packets may be sent in any order; the system
//!   receives them in the order they were allocated, each once every earlier one is sent;
//! - after an empty read a client simply waits on the send ring's TailMoved event: the driver
//!   sets it after every move of Tail, and the client never writes the send ring's Alertable.
//!
//! Packets are known by the address of their data, which is what the C API hands out and gets
//! back; a pointer that is not one of this session's outstanding packets is refused. In Rust a
//! received packet gives its space back when it is dropped, as a packet allocated for sending is
//! sent when dropped.
//!
//! [`Session::shutdown`] ends receiving for good, waking every thread asleep in
//! [`Session::receive`]: what the `wintun` crate's users call to stop their reader threads.
//!
//! A session may ask for the offload header at registration ([`Session::start_with`],
//! docs/offloads.md): if the driver takes it, every ring packet starts with a `virtio_net_hdr`.
//! Received packets then expose their header, validated against the packet (one that its packet
//! does not bear out is skipped and counted, as the driver skips and counts a bad packet of
//! ours), and every packet sent carries one, validated before the driver can read it. A driver
//! that does not know the extension refuses it, and the session runs without headers.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use oxtun_abi::offload::{Checksum, Offload, OffloadError, Segments, finish_in_software, validate};
use oxtun_abi::vnet::{VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR_LEN, VirtioNetHdr};
use oxtun_abi::{
    CompletionOrder, Features, MAX_CAPACITY, MIN_CAPACITY, Packet, Reservation, ReserveError,
    RingError, RingReader, RingRegion, RingWriter, Ticket, capacity_for_ring_size, packet_space,
    ring_size,
};

use crate::platform::{self, Event, Memory};
use crate::{Error, log};

/// Times a blocking receive looks again at an empty ring before it sleeps.
const SPIN_POLLS: u32 = 1024;

/// Received packets whose release is tracked separately; beyond that many unreleased, new ones
/// share the newest entry and Head moves in coarser steps (see `CompletionOrder`).
const TRACKED_RECEIVES: usize = 1024;

/// A session: the rings registered with an adapter, until dropped.
pub struct Session {
    /// The send ring: packets the system sends through the adapter, for us to receive.
    receiving: Mutex<Receiving>,
    /// The receive ring: packets we send, for the system to receive.
    sending: Mutex<Sending>,
    /// What the registration asked for and the driver took.
    features: Features,
    /// Received packets skipped for a header that their packet does not bear out.
    bad_headers: AtomicU64,
    /// Set once either ring reported the end: the adapter went away or the handle closed.
    ended: AtomicBool,
    /// Set by [`Session::shutdown`]: receiving is over.
    shut_down: AtomicBool,
    /// Set by the driver after every move of the send ring's Tail.
    send_tail_moved: Event,
    /// Set by us when we move the receive ring's Tail while the driver sleeps.
    receive_tail_moved: Event,
    /// Keeps the registration: dropping it ends the session.
    _device: platform::Device,
    // Dropped last: the rings' memory.
    _send_memory: Memory,
    _receive_memory: Memory,
}

struct Receiving {
    reader: RingReader,
    /// Received packets in ring order, released in any.
    order: Box<CompletionOrder<TRACKED_RECEIVES>>,
    /// The received packets not yet released: data address to their ticket in `order`.
    outstanding: HashMap<usize, u32>,
}

struct Sending {
    writer: RingWriter,
    /// The allocated packets not yet sent: data address to their reservation and size.
    allocated: HashMap<usize, (Reservation, u32)>,
}

/// A received packet's header and what it asks, found consistent with the packet.
#[derive(Clone, Copy, Debug)]
struct ReceivedHeader {
    header: VirtioNetHdr,
    offload: Offload,
}

/// A packet received, still in the ring: [`data`](Received::data) reads it, and dropping it
/// (or [`release`](Received::release)) gives its space back to the driver, once every packet
/// received before it is released too. Packets may be released in any order, on any thread.
///
/// With headers in force, [`header`](Received::header) is the packet's, validated against it,
/// and [`data`](Received::data) the IP packet after it: one of its own size, or a super-packet
/// that [`finish_in_software`](Received::finish_in_software) cuts into segments.
pub struct Received<'s> {
    session: &'s Session,
    /// Where the ring packet starts: its header, if headers are in force.
    data: usize,
    /// Bytes of the ring packet.
    size: u32,
    header: Option<ReceivedHeader>,
}

/// The `len` bytes at `data` in one of a session's rings.
///
/// # Safety
/// They lie inside a ring that stays mapped while `'a` lives, in a packet that the driver does
/// not write meanwhile (received and not yet released).
unsafe fn ring_bytes<'a>(data: usize, len: usize) -> &'a [u8] {
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(data as *const u8, len) }
}

impl Received<'_> {
    /// Bytes before the IP packet.
    fn header_len(&self) -> usize {
        self.session.header_len()
    }

    /// The IP packet's length.
    pub fn len(&self) -> usize {
        self.size as usize - self.header_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The IP packet's bytes (after the header, if headers are in force). The driver does not
    /// touch them until the packet is released.
    pub fn data(&self) -> &[u8] {
        // SAFETY: the packet's bytes inside the mapped ring, which lives as long as the session
        // this packet borrows; the driver writes only past Tail, and this packet's space is not
        // given back while it exists (its drop does that, after every borrow of it ends).
        let ring = unsafe { ring_bytes(self.data, self.size as usize) };
        &ring[self.header_len()..]
    }

    /// The IP packet's bytes, to change in place (as wintun.dll's callers may).
    pub fn data_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        // SAFETY: as in `data`; this value is borrowed exclusively, and no other value refers to
        // this packet's bytes.
        let ring =
            unsafe { std::slice::from_raw_parts_mut(self.data as *mut u8, self.size as usize) };
        &mut ring[header_len..]
    }

    /// The packet's header, as read and validated once, with headers in force.
    pub fn header(&self) -> Option<VirtioNetHdr> {
        self.header.map(|header| header.header)
    }

    /// What the header asks of the packet: its checksums, and whether it is a super-packet and
    /// of what. `None` without headers, where every packet is complete and of its own size.
    pub fn offload(&self) -> Option<&Offload> {
        self.header.as_ref().map(|header| &header.offload)
    }

    /// Does in software what the header asks, for a receiver that takes only complete packets
    /// of their own size (the VPN's peer, a socket): a partial checksum is completed in place,
    /// and [`header`](Self::header) then asks for nothing more; a super-packet is left whole
    /// and its segments returned, each to be written where the caller likes
    /// ([`Segment::write`](oxtun_abi::offload::Segment::write)). `None` when there is nothing to
    /// cut, headers or not.
    pub fn finish_in_software(&mut self) -> Result<Option<Segments<'_>>, Error> {
        let Some(ReceivedHeader { header, offload }) = self.header else {
            return Ok(None);
        };
        if offload.gso.is_some() {
            return Ok(finish_in_software(self.data_mut(), &offload)?);
        }
        // A packet of its own size: at most its partial checksum to complete, in place.
        finish_in_software(self.data_mut(), &offload)?;
        if let Checksum::Partial { .. } = offload.checksum {
            self.header = Some(ReceivedHeader {
                header: VirtioNetHdr {
                    flags: header.flags & !VIRTIO_NET_HDR_F_NEEDS_CSUM,
                    csum_start: 0,
                    csum_offset: 0,
                    ..header
                },
                offload: Offload {
                    checksum: Checksum::Complete,
                    gso: None,
                },
            });
        }
        Ok(None)
    }

    /// Bytes of the packet in the ring: the header, if headers are in force, and the IP packet.
    pub fn ring_len(&self) -> usize {
        self.size as usize
    }

    /// Gives the packet's space back; the same as dropping it.
    pub fn release(self) {}

    /// Keeps the packet outstanding past this value, for a caller that tracks it by the address
    /// of its bytes (the C API): returns where the ring packet starts ([`ring_len`] bytes, the
    /// header first if headers are in force), which [`Session::release_data`] gives back.
    ///
    /// [`ring_len`]: Self::ring_len
    pub fn into_raw(self) -> *mut u8 {
        let data = self.data as *mut u8;
        std::mem::forget(self);
        data
    }
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("data", &(self.data as *const u8))
            .field("size", &self.size)
            .field("header", &self.header())
            .finish()
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        // Refused only if it was released already, which this value's ownership rules out.
        let _ = self.session.release_data(self.data as *const u8);
    }
}

/// A packet allocated in the receive ring by [`Session::allocate`]: fill
/// [`data_mut`](SendPacket::data_mut), then [`send`](SendPacket::send) it. Dropped unsent, it
/// is zeroed and sent anyway, a packet that is not IP and that the driver skips, so the ring
/// moves on.
pub struct SendPacket<'s> {
    session: &'s Session,
    /// Where the ring packet starts: its header, if headers are in force.
    data: NonNull<u8>,
    /// Bytes of the ring packet.
    size: usize,
    sent: bool,
}

impl SendPacket<'_> {
    /// The ring packet's bytes: the header, if headers are in force, and the IP packet.
    fn ring_mut(&mut self) -> &mut [u8] {
        // SAFETY: `size` bytes inside the mapped ring, reserved for this packet alone until it is
        // sent (the driver reads only behind the published Tail); the borrow ends before `send`.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.size) }
    }

    /// The IP packet's bytes, in the ring (after the header, if headers are in force).
    pub fn data_mut(&mut self) -> &mut [u8] {
        let header_len = self.session.header_len();
        &mut self.ring_mut()[header_len..]
    }

    /// Hands the packet to the driver. With headers in force its header is validated first,
    /// against the bytes as they now lie in the ring: one that the packet does not bear out is
    /// refused with [`Error::Offload`], and the packet is zeroed and sent anyway (a packet that
    /// is not IP, which the driver skips), so the ring moves on.
    pub fn send(mut self) -> Result<(), Error> {
        self.sent = true;
        self.session.send_data(self.data.as_ptr())
    }
}

impl Drop for SendPacket<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.ring_mut().fill(0);
            let _ = self.session.send_data(self.data.as_ptr());
        }
    }
}

fn region(memory: &Memory, size: u32) -> RingRegion {
    let base = NonNull::new(memory.as_ptr()).expect("a mapped ring");
    // SAFETY: the memory holds `size` bytes and lives as long as the session, which keeps it and
    // drops it after the reader and writer; the driver shares it, which RingRegion allows.
    unsafe { RingRegion::new(base, size as usize) }.expect("a ring of a valid size")
}

/// Registers asking for `wanted`, as docs/offloads.md's "Falling back" says: the extended
/// registration first (unless nothing is wanted), and after any failure of it, once more the
/// plain one, whose failure is then the one reported. A driver that knows no extension (an
/// older oxtun, Wintun, the emulator before it learns it) fails the unknown request with a
/// status no page documents, so which failure it was does not matter. Returns the features in
/// force.
fn register_falling_back(
    wanted: Features,
    mut register: impl FnMut(Features) -> Result<(), Error>,
) -> Result<Features, Error> {
    if wanted != Features::NONE {
        match register(wanted) {
            Ok(()) => return Ok(wanted),
            Err(error) => log::info(&format!(
                "The driver did not take the extended registration ({error}): the session runs \
                 without offload headers"
            )),
        }
    }
    register(Features::NONE)?;
    Ok(Features::NONE)
}

impl Session {
    /// Starts a session on `adapter` with rings of `capacity` bytes each: Wintun's ABI, every
    /// packet an IP packet of its own.
    pub fn start(adapter: &platform::Adapter, capacity: u32) -> Result<Session, Error> {
        Self::start_with(adapter, capacity, Features::NONE)
    }

    /// Starts a session on `adapter` with rings of `capacity` bytes each, asking for
    /// `features`. A driver that does not take them registers the rings without any (see
    /// `register_falling_back`): [`features`](Self::features) says what is in force.
    pub fn start_with(
        adapter: &platform::Adapter,
        capacity: u32,
        features: Features,
    ) -> Result<Session, Error> {
        // Checked before `ring_size`, which a capacity near 4 GiB would overflow.
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::BadCapacity(capacity));
        }
        let size = ring_size(capacity);
        if capacity_for_ring_size(size) != Ok(capacity) {
            return Err(Error::BadCapacity(capacity));
        }
        let send_memory = Memory::allocate(size as usize)?;
        let receive_memory = Memory::allocate(size as usize)?;
        let send_tail_moved = Event::new()?;
        let receive_tail_moved = Event::new()?;
        let mut device = adapter.open_device()?;
        let features = register_falling_back(features, |features| {
            device.register(
                (&send_memory, size, &send_tail_moved),
                (&receive_memory, size, &receive_tail_moved),
                features,
            )
        })?;
        Self::over(
            device,
            features,
            (send_memory, send_tail_moved),
            (receive_memory, receive_tail_moved),
            size,
        )
    }

    /// The session over rings of `size` bytes each, registered on `device` with `features`.
    fn over(
        device: platform::Device,
        features: Features,
        (send_memory, send_tail_moved): (Memory, Event),
        (receive_memory, receive_tail_moved): (Memory, Event),
        size: u32,
    ) -> Result<Session, Error> {
        let reader = RingReader::attach(region(&send_memory, size)).map_err(reader_error)?;
        let writer = RingWriter::attach(region(&receive_memory, size)).map_err(writer_error)?;
        Ok(Session {
            receiving: Mutex::new(Receiving {
                reader,
                order: Box::default(),
                outstanding: HashMap::new(),
            }),
            sending: Mutex::new(Sending {
                writer,
                allocated: HashMap::new(),
            }),
            features,
            bad_headers: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            send_tail_moved,
            receive_tail_moved,
            _device: device,
            _send_memory: send_memory,
            _receive_memory: receive_memory,
        })
    }

    /// The features in force: those asked for if the driver took them, otherwise none.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Whether every ring packet carries the offload header.
    pub fn has_headers(&self) -> bool {
        self.features.contains(Features::VNET_HDR)
    }

    /// Bytes before the IP packet in each ring packet.
    fn header_len(&self) -> usize {
        if self.has_headers() { VNET_HDR_LEN } else { 0 }
    }

    /// Received packets skipped so far because their header was one that the packet does not
    /// bear out (or the packet was shorter than a header): a driver's fault, counted as the
    /// driver counts the bad packets of a client.
    pub fn bad_headers(&self) -> u64 {
        self.bad_headers.load(Ordering::Relaxed)
    }

    fn receiving(&self) -> MutexGuard<'_, Receiving> {
        // A panic under the lock cannot leave the ring state half-changed in a way that matters
        // more than refusing every later call would.
        self.receiving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sending(&self) -> MutexGuard<'_, Sending> {
        self.sending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next packet the system sent, if one is waiting. Any thread may call it.
    pub fn try_receive(&self) -> Result<Option<Received<'_>>, Error> {
        self.check_shut_down()?;
        let mut receiving = self.receiving();
        if let Some(packet) = self.next_packet(&mut receiving)? {
            return Ok(Some(packet));
        }
        // Empty. Take the event's pending signal, then look once more: a waiter that sleeps on
        // the event after this answer is woken by the next move of Tail, and one made before the
        // second look is seen by it. (A Windows event resets itself when a wait returns.)
        self.send_tail_moved.consume();
        // The signal taken may have been a shutdown's, meant for a sleeping thread.
        self.check_shut_down()?;
        self.next_packet(&mut receiving)
    }

    /// Ends receiving: every thread asleep in [`receive`](Self::receive) wakes, and from now on
    /// `receive` and `try_receive` answer [`Error::ShutDown`]. Packets already received stay
    /// valid, and sending goes on. The read-wait event stays signalled, so an event loop wakes
    /// to the answer too.
    pub fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        let _ = self.send_tail_moved.set();
    }

    /// [`Error::ShutDown`] once [`shutdown`](Self::shutdown) was called; the event it set is set
    /// again, since the caller may have taken the signal that another sleeping thread needs.
    fn check_shut_down(&self) -> Result<(), Error> {
        if !self.shut_down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _ = self.send_tail_moved.set();
        Err(Error::ShutDown)
    }

    /// The next packet in the send ring, skipping (and counting) those whose header their packet
    /// does not bear out.
    fn next_packet(&self, receiving: &mut Receiving) -> Result<Option<Received<'_>>, Error> {
        loop {
            let packet = match receiving.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(None),
                Err(RingError::Ended) => {
                    self.ended.store(true, Ordering::Release);
                    // The driver set the event once; pass it on, so every thread waiting on it
                    // wakes to the end and not only the first.
                    let _ = self.send_tail_moved.set();
                    return Err(Error::Ended);
                }
                Err(error) => return Err(Error::Ring(error)),
            };
            let data = receiving.reader.packet_data(&packet).as_ptr() as usize;
            let ticket = receiving.order.begin(packet.end());
            match self.read_header(&receiving.reader, &packet, data) {
                Ok(header) => {
                    receiving.outstanding.insert(data, ticket.into_raw());
                    return Ok(Some(Received {
                        session: self,
                        data,
                        size: packet.size(),
                        header,
                    }));
                }
                Err(error) => {
                    if let Some(end) = receiving.order.finish(ticket) {
                        receiving.reader.release_to(end);
                    }
                    if self.bad_headers.fetch_add(1, Ordering::Relaxed) == 0 {
                        log::warn(&format!(
                            "Skipped a received packet whose offload header it does not bear out \
                             ({error:?}); further ones are counted (Session::bad_headers)"
                        ));
                    }
                }
            }
        }
    }

    /// The header of `packet` (at `data`), read once into a local and validated against the IP
    /// packet after it; `None` without headers.
    fn read_header(
        &self,
        reader: &RingReader,
        packet: &Packet,
        data: usize,
    ) -> Result<Option<ReceivedHeader>, OffloadError> {
        if !self.has_headers() {
            return Ok(None);
        }
        let mut bytes = [0u8; VNET_HDR_LEN];
        if reader.copy_packet(packet, &mut bytes) < VNET_HDR_LEN {
            return Err(OffloadError::Truncated);
        }
        let header = VirtioNetHdr::decode(&bytes);
        // SAFETY: the packet's bytes in the send ring, which the session keeps mapped; read but
        // not released, so the driver does not write them.
        let ring = unsafe { ring_bytes(data, packet.size() as usize) };
        let offload = validate(&header, &ring[VNET_HDR_LEN..])?;
        Ok(Some(ReceivedHeader { header, offload }))
    }

    /// The next packet, waiting for one: spins briefly, then sleeps on the driver's event.
    /// [`Error::ShutDown`] once [`shutdown`](Self::shutdown) is called, [`Error::Ended`] once the
    /// adapter goes away.
    pub fn receive(&self) -> Result<Received<'_>, Error> {
        loop {
            if let Some(packet) = self.try_receive()? {
                return Ok(packet);
            }
            if (0..SPIN_POLLS).any(|_| {
                std::hint::spin_loop();
                self.receiving().reader.has_unread() || self.shut_down.load(Ordering::Relaxed)
            }) {
                continue;
            }
            self.send_tail_moved.wait()?;
        }
    }

    /// Releases the received packet whose ring packet starts at `data` (what
    /// [`Received::into_raw`] returned), in any order. Refuses, changing nothing, a pointer that
    /// is not an unreleased packet of this session.
    pub fn release_data(&self, data: *const u8) -> Result<(), Error> {
        let mut receiving = self.receiving();
        let ticket = receiving
            .outstanding
            .remove(&(data as usize))
            .ok_or(Error::NotOutstanding)?;
        if let Some(end) = receiving.order.finish(Ticket::from_raw(ticket)) {
            receiving.reader.release_to(end);
        }
        Ok(())
    }

    /// Allocates an IP packet of `size` bytes in the receive ring, to fill in place and send.
    /// Packets may be allocated ahead, from any thread, and sent in any order; the system
    /// receives them in the order they were allocated, each once every packet allocated before
    /// it is sent. With headers in force, its header asks for nothing
    /// ([`VirtioNetHdr::NONE`]): a complete packet of its own size.
    pub fn allocate(&self, size: usize) -> Result<SendPacket<'_>, Error> {
        self.allocate_packet(&VirtioNetHdr::NONE, size)
    }

    /// Allocates an IP packet of `size` bytes as [`allocate`](Self::allocate) does, with
    /// `header` before it: with headers in force only ([`Error::NoHeaders`] otherwise; see
    /// [`send_with_header`](Self::send_with_header) for a session of either kind). The header
    /// is validated against the packet when it is sent.
    pub fn allocate_with_header(
        &self,
        header: &VirtioNetHdr,
        size: usize,
    ) -> Result<SendPacket<'_>, Error> {
        if !self.has_headers() {
            return Err(Error::NoHeaders);
        }
        self.allocate_packet(header, size)
    }

    fn allocate_packet(&self, header: &VirtioNetHdr, size: usize) -> Result<SendPacket<'_>, Error> {
        let ring_size = size
            .checked_add(self.header_len())
            .ok_or(Error::TooLarge(size))?;
        let data = self.allocate_data(ring_size).map_err(|error| match error {
            Error::TooLarge(_) => Error::TooLarge(size),
            other => other,
        })?;
        let mut packet = SendPacket {
            session: self,
            data,
            size: ring_size,
            sent: false,
        };
        if self.has_headers() {
            packet.ring_mut()[..VNET_HDR_LEN].copy_from_slice(&header.encode());
        }
        Ok(packet)
    }

    /// Allocates a ring packet of `size` bytes as [`allocate`](Self::allocate) does, and
    /// returns where they are; [`send_data`](Self::send_data) takes it back. This is the C API's
    /// view: with headers in force the caller writes the header first, and `size` counts it
    /// ([`Error::TooSmall`] if it cannot hold one).
    pub fn allocate_data(&self, size: usize) -> Result<NonNull<u8>, Error> {
        let too_large = || Error::TooLarge(size);
        if size < self.header_len() {
            return Err(Error::TooSmall(size));
        }
        let size = u32::try_from(size).map_err(|_| too_large())?;
        let space = packet_space(size).ok_or_else(too_large)?;
        if self.ended.load(Ordering::Acquire) {
            return Err(Error::Ended);
        }
        let mut sending = self.sending();
        let mut reservation = match sending.writer.reserve(space) {
            Ok(reservation) => reservation,
            Err(ReserveError::Full { .. }) => return Err(Error::Full),
            Err(ReserveError::Ring(error)) => return Err(writer_error(error)),
            Err(ReserveError::BadSize(_)) => return Err(too_large()),
        };
        let mut slot = reservation
            .push_packet(size)
            .expect("a reservation of exactly the packet's space");
        let data = NonNull::new(slot.as_mut_slice().as_mut_ptr()).expect("a pointer into the ring");
        sending
            .allocated
            .insert(data.as_ptr() as usize, (reservation, size));
        Ok(data)
    }

    /// Sends the allocated packet whose data starts at `data`. Refuses, changing nothing, a
    /// pointer that is not an unsent packet of this session. With headers in force, the header
    /// is validated against the packet as it lies in the ring: if the packet does not bear it
    /// out, the packet is zeroed and sent anyway (a packet that is not IP, which the driver
    /// skips, so the ring moves on), and the answer is [`Error::Offload`].
    pub fn send_data(&self, data: *const u8) -> Result<(), Error> {
        let mut sending = self.sending();
        let (reservation, size) = sending
            .allocated
            .remove(&(data as usize))
            .ok_or(Error::NotOutstanding)?;
        let refused = if self.has_headers() {
            // SAFETY: the `size` bytes of an allocated packet of ours, just taken out of
            // `allocated`, so no other value refers to them; the driver reads them only once
            // they are published below.
            let ring = unsafe { std::slice::from_raw_parts_mut(data.cast_mut(), size as usize) };
            let (header, packet) = VirtioNetHdr::split(ring).expect("allocate_data's minimum");
            let refused = validate(&header, packet).err();
            if refused.is_some() {
                ring.fill(0);
            }
            refused
        } else {
            None
        };
        let published = sending.writer.complete(reservation);
        drop(sending);
        if published.wake_consumer {
            self.receive_tail_moved.set()?;
        }
        match refused {
            Some(error) => Err(Error::Offload(error)),
            None => Ok(()),
        }
    }

    /// Sends one IP packet into the system, copying it into the receive ring (after a header
    /// that asks for nothing, with headers in force).
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        let mut packet = self.allocate(data.len())?;
        packet.data_mut().copy_from_slice(data);
        packet.send()
    }

    /// Sends an IP packet with what `header` says of it (a super-packet, a partial or a
    /// verified checksum), however this session runs. `header` is validated against `packet`
    /// first, nothing written if it is refused. With headers in force, the two go into the ring
    /// as they are, a super-packet whole. Without, the packet is finished in software: its
    /// partial checksum completed in the ring, or a super-packet cut into its segments, each a
    /// packet of its own. Returns how many ring packets it wrote; on an error in the middle of
    /// a super-packet (the ring full), the segments before it are sent.
    pub fn send_with_header(&self, header: &VirtioNetHdr, packet: &[u8]) -> Result<usize, Error> {
        let offload = validate(header, packet)?;
        if self.has_headers() {
            let mut out = self.allocate_packet(header, packet.len())?;
            out.data_mut().copy_from_slice(packet);
            out.send()?;
            return Ok(1);
        }
        if let Some(gso) = &offload.gso {
            let segments = Segments::new(packet, gso)?;
            for segment in segments.iter() {
                let mut out = self.allocate(segment.size())?;
                segment.write(out.data_mut())?;
                out.send()?;
            }
            return Ok(segments.count());
        }
        let mut out = self.allocate(packet.len())?;
        let bytes = out.data_mut();
        bytes.copy_from_slice(packet);
        finish_in_software(bytes, &offload)?;
        out.send()?;
        Ok(1)
    }

    /// What an event loop waits on for packets to receive: readable (Linux, an eventfd) or
    /// signalled (Windows, an auto-reset event) after the driver moved the send ring's Tail.
    /// Wait on it only after [`try_receive`](Self::try_receive) answered `None`; on Linux it
    /// stays readable until the next such answer.
    pub fn wait_handle(&self) -> platform::RawHandle {
        self.send_tail_moved.raw()
    }
}

/// The send ring's reader stopped: the end, or the driver broke the ring's rules.
fn reader_error(error: RingError) -> Error {
    match error {
        RingError::Ended => Error::Ended,
        other => Error::Ring(other),
    }
}

/// The receive ring's writer stopped. The driver stops reading a ring it finds corrupt and says
/// so with Head = 0xFFFFFFFF, which ends the session as wintun.dll reports it (ERROR_HANDLE_EOF).
fn writer_error(error: RingError) -> Error {
    match error {
        RingError::Ended | RingError::ConsumerStopped => Error::Ended,
        other => Error::Ring(other),
    }
}

/// The session's own ring handling, with the test playing the driver on the other side of each
/// ring (abi's reader and writer, as the driver uses them): no adapter, no driver.
#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use oxtun_abi::offload::{Checksums, SendOffload, fill_checksums, header_for_client};
    use oxtun_abi::vnet::VIRTIO_NET_HDR_F_DATA_VALID;

    use super::*;

    const CAPACITY: u32 = MIN_CAPACITY;

    /// The driver's ends of a session's rings.
    struct Driver {
        /// Writes the send ring (packets for the session to receive).
        send: RingWriter,
        /// Reads the receive ring (packets the session sent).
        receive: RingReader,
        /// The send ring's memory, to look at its Head and Tail.
        send_ring: *mut u8,
    }

    impl Driver {
        fn push(&mut self, bytes: &[u8]) {
            let size = bytes.len() as u32;
            let mut reservation = self.send.reserve(packet_space(size).unwrap()).unwrap();
            let mut slot = reservation.push_packet(size).unwrap();
            slot.as_mut_slice().copy_from_slice(bytes);
            self.send.complete(reservation);
        }

        /// The next packet the session sent, released at once.
        fn pop(&mut self) -> Option<Vec<u8>> {
            let packet = self.receive.next_packet().unwrap()?;
            let mut bytes = vec![0; packet.size() as usize];
            self.receive.copy_packet(&packet, &mut bytes);
            self.receive.release_all();
            Some(bytes)
        }

        /// Whether the session has given back all the send ring's space: Head == Tail.
        fn send_ring_released(&self) -> bool {
            // SAFETY: Head and Tail, the ring's first two aligned u32s, in memory the session
            // keeps mapped; read atomically, as both sides access them.
            let word = |at: usize| unsafe {
                AtomicU32::from_ptr(self.send_ring.add(at).cast()).load(Ordering::Acquire)
            };
            word(0) == word(4)
        }
    }

    /// A session over fresh rings, registered (as far as it knows) with `features`.
    fn session(features: Features) -> (Session, Driver) {
        let size = ring_size(CAPACITY);
        let send_memory = Memory::allocate(size as usize).unwrap();
        let receive_memory = Memory::allocate(size as usize).unwrap();
        let driver = Driver {
            send: RingWriter::attach(region(&send_memory, size)).unwrap(),
            receive: RingReader::attach(region(&receive_memory, size)).unwrap(),
            send_ring: send_memory.as_ptr(),
        };
        let session = Session::over(
            platform::Device::detached(),
            features,
            (send_memory, Event::new().unwrap()),
            (receive_memory, Event::new().unwrap()),
            size,
        )
        .unwrap();
        (session, driver)
    }

    /// A TCP/IPv4 packet of `payload` bytes (ACK and PSH), its checksums not computed.
    fn tcp4(payload: usize) -> Vec<u8> {
        let total = 40 + payload;
        let mut packet = vec![0u8; total];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        packet[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        packet[8] = 64;
        packet[9] = 6;
        packet[12..16].copy_from_slice(&[10, 0, 0, 1]);
        packet[16..20].copy_from_slice(&[10, 0, 0, 2]);
        packet[20..22].copy_from_slice(&1000u16.to_be_bytes());
        packet[22..24].copy_from_slice(&2000u16.to_be_bytes());
        packet[24..28].copy_from_slice(&1u32.to_be_bytes());
        packet[28..32].copy_from_slice(&1u32.to_be_bytes());
        packet[32] = 5 << 4;
        packet[33] = 0x18;
        packet[34..36].copy_from_slice(&0xFFFFu16.to_be_bytes());
        for (index, byte) in packet[40..].iter_mut().enumerate() {
            *byte = (index * 7 + index / 251) as u8;
        }
        packet
    }

    /// A 3,000-byte TCP super-packet to be cut at MSS 1,000, as the driver hands it over: its
    /// header from abi's `header_for_client`, which the driver calls on an LSOv2 send.
    fn super_packet() -> (VirtioNetHdr, Vec<u8>) {
        let mut packet = tcp4(3000);
        let header = header_for_client(
            &mut packet,
            SendOffload::Lso {
                mss: 1000,
                tcp_header_offset: 20,
            },
        )
        .unwrap();
        (header, packet)
    }

    /// A TCP packet whose checksum is left partial, as the driver hands over a checksum send.
    fn partial_checksum_packet() -> (VirtioNetHdr, Vec<u8>) {
        let mut packet = tcp4(300);
        let header = header_for_client(
            &mut packet,
            SendOffload::Checksum {
                ipv4_header: true,
                tcp: true,
                udp: false,
            },
        )
        .unwrap();
        assert_eq!(header.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        (header, packet)
    }

    /// The packet with both its checksums computed from scratch.
    fn with_checksums(packet: &[u8]) -> Vec<u8> {
        let mut complete = packet.to_vec();
        let both = Checksums {
            ipv4_header: true,
            transport: true,
        };
        fill_checksums(&mut complete, both).unwrap();
        complete
    }

    /// What abi's segmentation makes of a super-packet.
    fn segments_of(header: &VirtioNetHdr, packet: &[u8]) -> Vec<Vec<u8>> {
        let gso = validate(header, packet).unwrap().gso.unwrap();
        let segments = Segments::new(packet, &gso).unwrap();
        segments
            .iter()
            .map(|segment| {
                let mut bytes = vec![0; segment.size()];
                segment.write(&mut bytes).unwrap();
                bytes
            })
            .collect()
    }

    fn ring_packet(header: &VirtioNetHdr, packet: &[u8]) -> Vec<u8> {
        [&header.encode()[..], packet].concat()
    }

    #[test]
    fn received_packets_expose_their_validated_header_and_lying_ones_are_skipped_and_counted() {
        let (session, mut driver) = session(Features::VNET_HDR);
        assert!(session.has_headers());
        let (header, packet) = super_packet();
        driver.push(&ring_packet(&header, &packet));
        // A partial checksum whose field lies past the packet.
        let lying = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 0x4000,
            ..VirtioNetHdr::NONE
        };
        driver.push(&ring_packet(&lying, &tcp4(10)));
        // Shorter than a header.
        driver.push(&[0x45, 0, 0, 6]);
        // A super-packet that says TCPV6 of an IPv4 packet.
        let wrong_version = VirtioNetHdr {
            gso_type: oxtun_abi::vnet::VIRTIO_NET_HDR_GSO_TCPV6,
            ..header
        };
        driver.push(&ring_packet(&wrong_version, &packet));
        let valid = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..VirtioNetHdr::NONE
        };
        let small = with_checksums(&tcp4(10));
        driver.push(&ring_packet(&valid, &small));

        let first = session.try_receive().unwrap().unwrap();
        assert_eq!(first.header(), Some(header));
        assert_eq!(first.data(), packet);
        assert_eq!(first.len(), packet.len());
        assert_eq!(first.ring_len(), packet.len() + VNET_HDR_LEN);
        let gso = first.offload().unwrap().gso.expect("a super-packet");
        assert_eq!((gso.mss(), gso.segment_count()), (1000, 3));

        let next = session.try_receive().unwrap().unwrap();
        assert_eq!(next.header(), Some(valid));
        assert_eq!(next.offload().unwrap().checksum, Checksum::Valid);
        assert_eq!(next.data(), small);
        assert_eq!(
            session.bad_headers(),
            3,
            "the three lying packets were skipped"
        );
        assert!(session.try_receive().unwrap().is_none());

        // The skipped packets' space went back with the first's, in ring order.
        drop(next);
        assert!(
            !driver.send_ring_released(),
            "the first still holds the ring"
        );
        drop(first);
        assert!(driver.send_ring_released());
    }

    /// Without headers the same bytes are a plain packet: nothing is read into them.
    #[test]
    fn a_session_without_headers_reads_no_header() {
        let (session, mut driver) = session(Features::NONE);
        let (header, packet) = super_packet();
        let bytes = ring_packet(&header, &packet);
        driver.push(&bytes);
        let received = session.try_receive().unwrap().unwrap();
        assert_eq!(received.header(), None);
        assert!(received.offload().is_none());
        assert_eq!(received.data(), bytes);
        assert_eq!(received.ring_len(), bytes.len());
    }

    #[test]
    fn a_received_packet_is_finished_in_software_on_request() {
        let (session, mut driver) = session(Features::VNET_HDR);
        let (header, packet) = super_packet();
        driver.push(&ring_packet(&header, &packet));
        let (partial_header, partial) = partial_checksum_packet();
        driver.push(&ring_packet(&partial_header, &partial));

        let mut received = session.try_receive().unwrap().unwrap();
        let segments = received.finish_in_software().unwrap().expect("segments");
        let written: Vec<Vec<u8>> = segments
            .iter()
            .map(|segment| {
                let mut bytes = vec![0; segment.size()];
                segment.write(&mut bytes).unwrap();
                bytes
            })
            .collect();
        assert_eq!(written, segments_of(&header, &packet));
        assert!(
            written
                .iter()
                .all(|segment| *segment == with_checksums(segment))
        );
        assert_eq!(received.data(), packet, "the super-packet is left whole");

        let mut received = session.try_receive().unwrap().unwrap();
        assert!(received.finish_in_software().unwrap().is_none());
        assert_eq!(received.data(), with_checksums(&partial));
        assert_eq!(
            received.header(),
            Some(VirtioNetHdr::NONE),
            "a completed checksum is asked for no more"
        );
        assert_eq!(received.offload().unwrap().checksum, Checksum::Complete);
        assert!(received.finish_in_software().unwrap().is_none());
        assert_eq!(
            received.data(),
            with_checksums(&partial),
            "nothing done twice"
        );
    }

    #[test]
    fn packets_sent_with_headers_carry_them_and_refused_headers_never_reach_the_driver() {
        let (session, mut driver) = session(Features::VNET_HDR);
        let (header, packet) = super_packet();
        assert_eq!(session.send_with_header(&header, &packet).unwrap(), 1);
        assert_eq!(driver.pop().unwrap(), ring_packet(&header, &packet));

        let small = with_checksums(&tcp4(10));
        session.send(&small).unwrap();
        assert_eq!(
            driver.pop().unwrap(),
            ring_packet(&VirtioNetHdr::NONE, &small)
        );

        let mut allocated = session.allocate_with_header(&header, packet.len()).unwrap();
        allocated.data_mut().copy_from_slice(&packet);
        allocated.send().unwrap();
        assert_eq!(driver.pop().unwrap(), ring_packet(&header, &packet));

        // Refused before anything is written.
        let lying = VirtioNetHdr {
            gso_size: 0,
            ..header
        };
        assert!(matches!(
            session.send_with_header(&lying, &packet),
            Err(Error::Offload(OffloadError::ZeroGsoSize))
        ));
        assert_eq!(driver.pop(), None);

        // Written in place and refused as it is sent: zeroed, so the driver skips it.
        let mut allocated = session.allocate_with_header(&lying, packet.len()).unwrap();
        allocated.data_mut().copy_from_slice(&packet);
        assert!(matches!(
            allocated.send(),
            Err(Error::Offload(OffloadError::ZeroGsoSize))
        ));
        assert_eq!(driver.pop().unwrap(), vec![0; VNET_HDR_LEN + packet.len()]);
        // So through the C API's view, where the caller writes the header.
        let data = session.allocate_data(VNET_HDR_LEN + packet.len()).unwrap();
        // SAFETY: the allocated ring packet's bytes, ours until sent.
        let ring =
            unsafe { std::slice::from_raw_parts_mut(data.as_ptr(), VNET_HDR_LEN + packet.len()) };
        ring.copy_from_slice(&ring_packet(&lying, &packet));
        assert!(matches!(
            session.send_data(data.as_ptr()),
            Err(Error::Offload(OffloadError::ZeroGsoSize))
        ));
        assert_eq!(driver.pop().unwrap(), vec![0; VNET_HDR_LEN + packet.len()]);
        assert!(matches!(
            session.send_data(data.as_ptr()),
            Err(Error::NotOutstanding)
        ));

        // Sizes count the header.
        assert!(matches!(session.allocate_data(9), Err(Error::TooSmall(9))));
        let largest = 0xFFFF - VNET_HDR_LEN;
        assert!(matches!(
            session.allocate(largest + 1),
            Err(Error::TooLarge(size)) if size == largest + 1
        ));
        drop(session.allocate(largest).unwrap());
        assert_eq!(
            driver.pop().unwrap(),
            vec![0; 0xFFFF],
            "dropped unsent: zeroed"
        );
    }

    #[test]
    fn a_session_without_headers_finishes_what_a_header_asks_in_software() {
        let (session, mut driver) = session(Features::NONE);
        assert!(!session.has_headers());
        let (header, packet) = super_packet();
        assert_eq!(session.send_with_header(&header, &packet).unwrap(), 3);
        let segments: Vec<Vec<u8>> = std::iter::from_fn(|| driver.pop()).collect();
        assert_eq!(segments, segments_of(&header, &packet));
        assert!(segments.iter().all(|segment| segment.len() <= 1040));

        let (partial_header, partial) = partial_checksum_packet();
        assert_eq!(
            session.send_with_header(&partial_header, &partial).unwrap(),
            1
        );
        assert_eq!(driver.pop().unwrap(), with_checksums(&partial));

        let small = with_checksums(&tcp4(10));
        session.send(&small).unwrap();
        assert_eq!(driver.pop().unwrap(), small, "no header");
        assert!(matches!(
            session.allocate_with_header(&header, packet.len()),
            Err(Error::NoHeaders)
        ));
        let lying = VirtioNetHdr {
            gso_size: 0,
            ..header
        };
        assert!(matches!(
            session.send_with_header(&lying, &packet),
            Err(Error::Offload(OffloadError::ZeroGsoSize))
        ));
        assert_eq!(driver.pop(), None);
    }

    /// docs/offloads.md, "Falling back": after any failure of the extended registration, the
    /// plain one once more; its failure is the one reported; nothing extended when nothing is
    /// asked for.
    #[test]
    fn the_extended_registration_falls_back_to_the_plain_one_after_any_failure() {
        const STATUS_INVALID_DEVICE_REQUEST: u32 = 0xC000_0010;
        const STATUS_ALREADY_INITIALIZED: u32 = 0xC000_0510;
        let attempts = |wanted: Features, answer: &dyn Fn(Features) -> Result<(), Error>| {
            let mut asked = Vec::new();
            let result = register_falling_back(wanted, |features| {
                asked.push(features);
                answer(features)
            });
            (result, asked)
        };
        let (result, asked) = attempts(Features::VNET_HDR, &|_| Ok(()));
        assert_eq!(result.unwrap(), Features::VNET_HDR);
        assert_eq!(asked, [Features::VNET_HDR]);

        for refusal in [
            || Error::Refused(STATUS_INVALID_DEVICE_REQUEST),
            || Error::Io(std::io::Error::from_raw_os_error(1)),
        ] {
            let (result, asked) = attempts(Features::VNET_HDR, &|features| {
                if features == Features::NONE {
                    Ok(())
                } else {
                    Err(refusal())
                }
            });
            assert_eq!(result.unwrap(), Features::NONE);
            assert_eq!(asked, [Features::VNET_HDR, Features::NONE]);
        }

        let (result, asked) = attempts(Features::VNET_HDR, &|features| {
            Err(if features == Features::NONE {
                Error::Refused(STATUS_ALREADY_INITIALIZED)
            } else {
                Error::Refused(STATUS_INVALID_DEVICE_REQUEST)
            })
        });
        assert!(matches!(
            result,
            Err(Error::Refused(STATUS_ALREADY_INITIALIZED))
        ));
        assert_eq!(asked, [Features::VNET_HDR, Features::NONE]);

        let (result, asked) = attempts(Features::NONE, &|_| Ok(()));
        assert_eq!(result.unwrap(), Features::NONE);
        assert_eq!(asked, [Features::NONE]);
    }
}
