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

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use oxtun_abi::{
    CompletionOrder, MAX_CAPACITY, MIN_CAPACITY, Reservation, ReserveError, RingError, RingReader,
    RingRegion, RingWriter, Ticket, capacity_for_ring_size, packet_space, ring_size,
};

use crate::Error;
use crate::platform::{self, Event, Memory};

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
    /// Set once either ring reported the end: the adapter went away or the handle closed.
    ended: AtomicBool,
    /// Set by [`Session::shutdown`]: receiving is over.
    shut_down: AtomicBool,
    /// Set by the driver after every move of the send ring's Tail.
    send_tail_moved: Event,
    /// Set by us when we move the receive ring's Tail while the driver sleeps.
    receive_tail_moved: Event,
    /// Keeps the registration: dropping it ends the session.
    _registration: platform::Registration,
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
    /// The allocated packets not yet sent: data address to their reservation.
    allocated: HashMap<usize, Reservation>,
}

/// A packet received, still in the ring: [`data`](Received::data) reads it, and dropping it
/// (or [`release`](Received::release)) gives its space back to the driver, once every packet
/// received before it is released too. Packets may be released in any order, on any thread.
pub struct Received<'s> {
    session: &'s Session,
    data: usize,
    size: u32,
}

impl Received<'_> {
    pub fn len(&self) -> usize {
        self.size as usize
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The packet's bytes. The driver does not touch them until the packet is released.
    pub fn data(&self) -> &[u8] {
        // SAFETY: `size` bytes inside the mapped ring, which lives as long as the session this
        // packet borrows; the driver writes only past Tail, and this packet's space is not
        // given back while it exists (its drop does that, after every borrow of it ends).
        unsafe { std::slice::from_raw_parts(self.data as *const u8, self.len()) }
    }

    /// Gives the packet's space back; the same as dropping it.
    pub fn release(self) {}

    /// Keeps the packet outstanding past this value, for a caller that tracks it by the address
    /// of its bytes (the C API): [`Session::release_data`] gives it back.
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
    data: NonNull<u8>,
    size: usize,
    sent: bool,
}

impl SendPacket<'_> {
    /// The packet's bytes, in the ring.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: `size` bytes inside the mapped ring, reserved for this packet alone until it is
        // sent (the driver reads only behind the published Tail); the borrow ends before `send`.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.size) }
    }

    /// Hands the packet to the driver.
    pub fn send(mut self) -> Result<(), Error> {
        self.sent = true;
        self.session.send_data(self.data.as_ptr())
    }
}

impl Drop for SendPacket<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.data_mut().fill(0);
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

impl Session {
    /// Starts a session on `adapter` with rings of `capacity` bytes each.
    pub fn start(adapter: &platform::Adapter, capacity: u32) -> Result<Session, Error> {
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
        let registration = adapter.register(
            (&send_memory, size, &send_tail_moved),
            (&receive_memory, size, &receive_tail_moved),
        )?;
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
            ended: AtomicBool::new(false),
            shut_down: AtomicBool::new(false),
            send_tail_moved,
            receive_tail_moved,
            _registration: registration,
            _send_memory: send_memory,
            _receive_memory: receive_memory,
        })
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

    fn next_packet(&self, receiving: &mut Receiving) -> Result<Option<Received<'_>>, Error> {
        match receiving.reader.next_packet() {
            Ok(Some(packet)) => {
                let data = receiving.reader.packet_data(&packet).as_ptr() as usize;
                let ticket = receiving.order.begin(packet.end()).into_raw();
                receiving.outstanding.insert(data, ticket);
                Ok(Some(Received {
                    session: self,
                    data,
                    size: packet.size(),
                }))
            }
            Ok(None) => Ok(None),
            Err(RingError::Ended) => {
                self.ended.store(true, Ordering::Release);
                // The driver set the event once; pass it on, so every thread waiting on it wakes
                // to the end and not only the first.
                let _ = self.send_tail_moved.set();
                Err(Error::Ended)
            }
            Err(error) => Err(Error::Ring(error)),
        }
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

    /// Releases the received packet whose data starts at `data`, in any order. Refuses, changing
    /// nothing, a pointer that is not an unreleased packet of this session.
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

    /// Allocates a packet of `size` bytes in the receive ring, to fill in place and send.
    /// Packets may be allocated ahead, from any thread, and sent in any order; the system
    /// receives them in the order they were allocated, each once every packet allocated before
    /// it is sent.
    pub fn allocate(&self, size: usize) -> Result<SendPacket<'_>, Error> {
        let data = self.allocate_data(size)?;
        Ok(SendPacket {
            session: self,
            data,
            size,
            sent: false,
        })
    }

    /// Allocates a packet as [`allocate`](Self::allocate) does, and returns where its `size`
    /// bytes are; [`send_data`](Self::send_data) takes it back.
    pub fn allocate_data(&self, size: usize) -> Result<NonNull<u8>, Error> {
        let too_large = || Error::TooLarge(size);
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
            .insert(data.as_ptr() as usize, reservation);
        Ok(data)
    }

    /// Sends the allocated packet whose data starts at `data`. Refuses, changing nothing, a
    /// pointer that is not an unsent packet of this session.
    pub fn send_data(&self, data: *const u8) -> Result<(), Error> {
        let mut sending = self.sending();
        let reservation = sending
            .allocated
            .remove(&(data as usize))
            .ok_or(Error::NotOutstanding)?;
        let published = sending.writer.complete(reservation);
        drop(sending);
        if published.wake_consumer {
            self.receive_tail_moved.set()?;
        }
        Ok(())
    }

    /// Sends one packet into the system, copying it into the receive ring.
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        let mut packet = self.allocate(data.len())?;
        packet.data_mut().copy_from_slice(data);
        packet.send()
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
