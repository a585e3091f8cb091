//! The library a VPN links to, to be the user-space end of a layer-3 TUN adapter whose rings
//! are Wintun's: start a session, receive the packets the system sends through the adapter,
//! send packets into the system, wait for more.
//!
//! The ring protocol is `oxtun-abi`'s, the one implementation the driver uses too; this crate
//! adds the platform: on Windows the adapter's device and `DeviceIoControl`, on Linux the
//! emulator's socket (`wintun-emu`), with memfd rings and eventfd events.

mod platform;

use std::fmt;
use std::ptr::NonNull;
use std::sync::Mutex;

use oxtun_abi::{
    Packet, PacketSlot, Reservation, ReserveError, RingError, RingReader, RingRegion, RingWriter,
    SleepDecision, capacity_for_ring_size, packet_space, ring_size,
};

pub use platform::Adapter;
/// Sends bytes with descriptors attached over a Unix socket (SCM_RIGHTS): the emulator
/// protocol's transport, for tools that speak it directly.
#[cfg(unix)]
pub use platform::send_with_descriptors;
use platform::{Event, Memory};

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// A system call failed.
    Io(std::io::Error),
    /// The driver refused the registration with this NTSTATUS.
    Refused(u32),
    /// The capacity is not a power of two from 128 KiB to 64 MiB.
    BadCapacity(u32),
    /// A packet over 0xFFFF bytes.
    TooLarge(usize),
    /// The receive ring has no room now; try again after the driver reads.
    Full,
    /// The driver ended the session (the adapter went away, or the handle closed).
    Ended,
    /// A ring broke its rules.
    Ring(RingError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Refused(status) => {
                write!(f, "the driver refused the rings: status {status:#010x}")
            }
            Error::BadCapacity(capacity) => write!(
                f,
                "ring capacity {capacity} is not a power of two from 128 KiB to 64 MiB"
            ),
            Error::TooLarge(size) => write!(f, "a {size}-byte packet is over 0xFFFF bytes"),
            Error::Full => write!(f, "the receive ring is full"),
            Error::Ended => write!(f, "the session ended"),
            Error::Ring(error) => write!(f, "the ring broke its rules: {error:?}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(error)
    }
}

fn ring_error(error: RingError) -> Error {
    match error {
        RingError::Ended => Error::Ended,
        other => Error::Ring(other),
    }
}

/// Times a blocking receive looks again at an empty ring before it sleeps.
const SPIN_POLLS: u32 = 1024;

/// A session: the rings registered with an adapter, until dropped.
pub struct Session {
    /// The send ring: packets the system sends through the adapter, for us to receive.
    reader: Mutex<RingReader>,
    /// The receive ring: packets we send, for the system to receive.
    writer: Mutex<RingWriter>,
    /// Set by the driver when it moves the send ring's Tail while we sleep.
    send_tail_moved: Event,
    /// Set by us when we move the receive ring's Tail while the driver sleeps.
    receive_tail_moved: Event,
    /// Keeps the registration: dropping it ends the session.
    _registration: platform::Registration,
    // Dropped last: the rings' memory.
    _send_memory: Memory,
    _receive_memory: Memory,
}

/// A packet received, still in the ring; [`Session::data`] reads it, [`Session::release`]
/// gives its space back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received(Packet);

impl Received {
    pub fn len(&self) -> usize {
        self.0.size() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0.size() == 0
    }
}

/// A packet allocated in the receive ring by [`Session::allocate`]: fill
/// [`data_mut`](SendPacket::data_mut), then [`send`](SendPacket::send) it. Dropped unsent, it
/// is zeroed and sent anyway, a packet that is not IP and that the driver skips, so the ring
/// moves on.
pub struct SendPacket<'s> {
    session: &'s Session,
    /// Taken when the packet is sent.
    reservation: Option<Reservation>,
    slot: PacketSlot,
}

impl SendPacket<'_> {
    /// The packet's bytes, in the ring.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.slot.as_mut_slice()
    }

    /// Hands the packet to the driver.
    pub fn send(mut self) -> Result<(), Error> {
        let reservation = self.reservation.take().expect("sent once");
        self.session.publish(reservation)
    }
}

impl Drop for SendPacket<'_> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.slot.fill(0);
            let _ = self.session.publish(reservation);
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
    pub fn start(adapter: &Adapter, capacity: u32) -> Result<Session, Error> {
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
        let reader = RingReader::attach(region(&send_memory, size)).map_err(ring_error)?;
        let writer = RingWriter::attach(region(&receive_memory, size)).map_err(ring_error)?;
        Ok(Session {
            reader: Mutex::new(reader),
            writer: Mutex::new(writer),
            send_tail_moved,
            receive_tail_moved,
            _registration: registration,
            _send_memory: send_memory,
            _receive_memory: receive_memory,
        })
    }

    /// The next packet the system sent, if one is waiting.
    pub fn try_receive(&self) -> Result<Option<Received>, Error> {
        let mut reader = self.reader.lock().unwrap();
        reader
            .next_packet()
            .map(|p| p.map(Received))
            .map_err(ring_error)
    }

    /// The next packet, waiting for one: spins briefly, then sleeps on the driver's event.
    pub fn receive(&self) -> Result<Received, Error> {
        loop {
            if let Some(packet) = self.try_receive()? {
                return Ok(packet);
            }
            if (0..SPIN_POLLS).any(|_| {
                std::hint::spin_loop();
                self.reader.lock().unwrap().has_unread()
            }) {
                continue;
            }
            let decision = self.reader.lock().unwrap().announce_sleep();
            if decision == SleepDecision::Sleep {
                self.send_tail_moved.wait()?;
                self.reader.lock().unwrap().end_sleep();
            }
        }
    }

    /// The bytes of a received packet. The driver does not touch them until the packet is
    /// released.
    pub fn data(&self, packet: &Received) -> &[u8] {
        let reader = self.reader.lock().unwrap();
        let data = reader.packet_data(&packet.0);
        // SAFETY: `size` bytes inside the mapped ring, which lives as long as `self`; the driver
        // writes only past Tail, and this packet's space is not released while it is borrowed
        // from `self` (release takes the packet by value, after the borrow ends).
        unsafe { std::slice::from_raw_parts(data.as_ptr(), packet.len()) }
    }

    /// Gives the space of `packet`, and of every packet received before it, back to the driver.
    pub fn release(&self, packet: Received) {
        self.reader.lock().unwrap().release_to(packet.0.end());
    }

    /// Allocates a packet of `size` bytes in the receive ring, to fill in place and send.
    /// Packets may be allocated ahead and sent in any order; the system receives them in the
    /// order they were allocated, each once every packet allocated before it is sent.
    pub fn allocate(&self, size: usize) -> Result<SendPacket<'_>, Error> {
        let too_large = || Error::TooLarge(size);
        let size = u32::try_from(size).map_err(|_| too_large())?;
        let space = packet_space(size).ok_or_else(too_large)?;
        let mut reservation = match self.writer.lock().unwrap().reserve(space) {
            Ok(reservation) => reservation,
            Err(ReserveError::Full { .. }) => return Err(Error::Full),
            Err(ReserveError::Ring(error)) => return Err(ring_error(error)),
            Err(ReserveError::BadSize(_)) => return Err(too_large()),
        };
        let slot = reservation
            .push_packet(size)
            .expect("a reservation of exactly the packet's space");
        Ok(SendPacket {
            session: self,
            reservation: Some(reservation),
            slot,
        })
    }

    /// Sends one packet into the system, copying it into the receive ring.
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        let mut packet = self.allocate(data.len())?;
        packet.data_mut().copy_from_slice(data);
        packet.send()
    }

    fn publish(&self, reservation: Reservation) -> Result<(), Error> {
        let published = self.writer.lock().unwrap().complete(reservation);
        if published.wake_consumer {
            self.receive_tail_moved.set()?;
        }
        Ok(())
    }

    /// What an event loop waits on for packets to receive: readable (Linux, an eventfd) or
    /// signalled (Windows, an event) when the driver moved the send ring's Tail while this
    /// session had announced it would sleep ([`Session::receive`] does that itself).
    pub fn wait_handle(&self) -> platform::RawHandle {
        self.send_tail_moved.raw()
    }
}
