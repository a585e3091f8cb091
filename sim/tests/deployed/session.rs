//! A Wintun session the way deployed wintun.dll runs one (0.14.1 and its successors, which
//! WireGuard for Windows, wireguard-go, Tailscale and the Rust `wintun` crates load), written
//! from that DLL's observable behaviour and shared with nothing else in the project.
//!
//! The facts, from WireGuard/wintun's api/session.c (the WintunXxx functions) and api/wintun.h
//! (their documented contracts):
//! - WintunStartSession takes both rings from one zeroed VirtualAlloc region and never writes
//!   either ring's header afterwards except Send.Head and Receive.Tail: `Send.Ring->Alertable`
//!   stays 0 for the session's whole life.
//! - WintunReceivePacket reads the send ring's Tail (acquire) under the session's send lock.
//!   Tail >= capacity is ERROR_HANDLE_EOF (the driver ended the session: 0xFFFFFFFF), Tail equal
//!   to the session's read position is ERROR_NO_MORE_ITEMS, and a Size over 0xFFFF or a packet
//!   running past Tail is ERROR_INVALID_DATA. It does not wait: after ERROR_NO_MORE_ITEMS the
//!   application waits on WintunGetReadWaitEvent, which is the send ring's TailMoved event, and
//!   tries again (wintun.h's comment on WintunGetReadWaitEvent).
//! - WintunReleaseReceivePacket may be called in any order: the released packet is marked, and
//!   Head (release store) advances over every released packet at the front.
//! - WintunAllocateSendPacket reserves room under the session's receive lock, reading the receive
//!   ring's Head (acquire; Head >= capacity is ERROR_HANDLE_EOF: the driver stopped reading, and
//!   no room is ERROR_BUFFER_OVERFLOW). It does not check the size against 0xFFFF. The order of
//!   allocations is the order of packets: WintunSendPacket marks its packet sent and publishes
//!   Tail over every sent packet at the front, from any thread.
//! - WintunSendPacket, when it moved Tail, stores it (release) and then loads
//!   `Receive.Ring->Alertable` (acquire); only if that is set does it set the receive ring's
//!   TailMoved event. Every release before 2026-02-24 has no full fence between that store and
//!   that load (session.c as of commit 544fdaa: WriteULongRelease, then ReadAcquire), so the load
//!   may be satisfied before the store is visible: the driver, announcing its sleep at that
//!   moment, reads the old Tail and sleeps while the client skips the event (issue 11; the
//!   session.c in the public index, up to commit 544fdaa, has no fence there).
//! - Wintun's driver sets the send ring's TailMoved event after every move of its Tail
//!   (driver/wintun.c, TunSendNetBufferLists), which is what the wait above relies on.
//!
//! Applications may spin on WintunReceivePacket for a while before they wait (wireguard-go
//! does); this client waits at once, the harder case for the driver.
//!
//! Unlike the DLL this module keeps its bookkeeping in local queues instead of flag bits in the
//! rings' Size fields: the driver sees the same stores either way.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::device::Device;

/// WINTUN_MIN_RING_CAPACITY (wintun.h): 128 KiB.
pub const MIN_CAPACITY: u32 = 0x2_0000;
/// WINTUN_MAX_IP_PACKET_SIZE (wintun.h).
pub const MAX_IP_PACKET_SIZE: u32 = 0xFFFF;
/// What the driver stores in a ring's Head or Tail when it is done with that ring.
pub const ENDED: u32 = 0xFFFF_FFFF;
/// TUN_RING's header: Head, Tail, Alertable.
const HEADER: usize = 12;
/// Room past the capacity, so that no packet wraps: TUN_MAX_PACKET_SIZE less one alignment.
const TRAILER: u32 = 0x1_0000;
const ALIGNMENT: u32 = 4;

/// A ring's whole region: RingSize in TUN_REGISTER_RINGS.
pub fn ring_size(capacity: u32) -> u32 {
    HEADER as u32 + capacity + TRAILER
}

/// The room a packet of `size` bytes takes: its Size field and data, to the next 4 bytes.
fn packet_span(size: u32) -> u32 {
    (4 + size).next_multiple_of(ALIGNMENT)
}

fn check(result: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if result < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(result)
}

/// One ring: a memfd (the emulator's stand-in for VirtualAlloc'd memory it probes and locks),
/// zeroed as VirtualAlloc gives it, mapped shared, and its TailMoved event (an eventfd).
pub struct Ring {
    pub memory: OwnedFd,
    pub event: OwnedFd,
    base: *mut u8,
    capacity: u32,
}

// SAFETY: the mapping is shared memory touched only through atomics and raw pointer copies;
// it stays mapped until the Ring is dropped.
unsafe impl Send for Ring {}
// SAFETY: as for Send.
unsafe impl Sync for Ring {}

impl Ring {
    pub fn new(capacity: u32) -> io::Result<Ring> {
        let len = ring_size(capacity) as usize;
        // SAFETY: a new memfd; the name is a NUL-terminated literal.
        let fd = check(
            unsafe { libc::memfd_create(c"deployed-ring".as_ptr(), libc::MFD_CLOEXEC) },
            "memfd_create",
        )?;
        // SAFETY: a descriptor we just created and own.
        let memory = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sizing our own memfd; the new bytes read as zero.
        check(
            unsafe { libc::ftruncate(memory.as_raw_fd(), len as libc::off_t) },
            "ftruncate",
        )?;
        // Non-blocking, so that of several threads woken by one set only one consumes it and
        // the others find it unset instead of blocking in read.
        // SAFETY: a new eventfd.
        let event = check(
            unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
            "eventfd",
        )?;
        // SAFETY: a descriptor we just created and own.
        let event = unsafe { OwnedFd::from_raw_fd(event) };
        // SAFETY: a new shared mapping of the whole memfd, owned by the Ring.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memory.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            memory,
            event,
            base: base.cast(),
            capacity,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    fn word(&self, index: usize) -> &AtomicU32 {
        // SAFETY: the header's three 4-byte words lie at the start of the page-aligned mapping,
        // which lives as long as self.
        unsafe { AtomicU32::from_ptr(self.base.cast::<u32>().add(index)) }
    }

    pub fn head(&self) -> &AtomicU32 {
        self.word(0)
    }

    pub fn tail(&self) -> &AtomicU32 {
        self.word(1)
    }

    pub fn alertable(&self) -> &AtomicI32 {
        // SAFETY: as in `word`; Alertable is the third word, a LONG.
        unsafe { AtomicI32::from_ptr(self.base.cast::<i32>().add(2)) }
    }

    /// Head, Tail and Alertable as they are now, for messages.
    pub fn header(&self) -> (u32, u32, i32) {
        (
            self.head().load(Ordering::SeqCst),
            self.tail().load(Ordering::SeqCst),
            self.alertable().load(Ordering::SeqCst),
        )
    }

    /// The ring's data, from offset 0 to the end of the trailing room.
    fn data(&self) -> *mut u8 {
        // SAFETY: the data follows the header inside the mapping.
        unsafe { self.base.add(HEADER) }
    }

    /// The Size field of the packet at `offset` (< capacity, 4-aligned), read once.
    fn read_size(&self, offset: u32) -> u32 {
        // SAFETY: offset + 4 <= capacity lies inside the data; 4-aligned since the data
        // starts 12 bytes into a page-aligned mapping.
        unsafe {
            self.data()
                .add(offset as usize)
                .cast::<u32>()
                .read_volatile()
        }
    }

    /// Writes the Size field of the packet at `offset` (< capacity, 4-aligned), as the writer
    /// does; the tests that corrupt rings write any value.
    pub fn write_size(&self, offset: u32, size: u32) {
        assert!(offset < self.capacity && offset % ALIGNMENT == 0);
        // SAFETY: as in `read_size`; only the client writes the receive ring's data.
        unsafe {
            self.data()
                .add(offset as usize)
                .cast::<u32>()
                .write_volatile(size)
        }
    }

    /// Sets the event (SetEvent): the u64 1 written to the eventfd.
    pub fn set_event(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8 bytes from a local to our eventfd.
        unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// WaitForSingleObject on the auto-reset event: true once it was set (and now is reset),
    /// false when `timeout` passed first.
    pub fn wait_event(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while readable_before(&self.event, deadline) {
            let mut value = [0u8; 8];
            // SAFETY: 8 bytes into a local from our non-blocking eventfd; fails with EAGAIN when
            // another waiter took this set first.
            let read = unsafe {
                libc::read(
                    self.event.as_raw_fd(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if read == 8 {
                return true;
            }
        }
        false
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; nothing borrows it past the Ring's life.
        unsafe { libc::munmap(self.base.cast(), ring_size(self.capacity) as usize) };
    }
}

/// Waits until `fd` is readable (true) or `deadline` passes (false).
pub fn readable_before(fd: &impl AsRawFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd of ours.
        if unsafe { libc::poll(&mut poll, 1, millis) } > 0 {
            return true;
        }
        if left.is_zero() {
            return false;
        }
    }
}

/// Busy-waits for `duration` (a sleep would take at least the timer's slack, 50 us).
pub fn spin_for(duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The two rings of a session: the driver writes Send, the client writes Receive.
pub struct Rings {
    pub send: Ring,
    pub receive: Ring,
}

impl Rings {
    pub fn new(capacity: u32) -> io::Result<Rings> {
        Ok(Rings {
            send: Ring::new(capacity)?,
            receive: Ring::new(capacity)?,
        })
    }
}

/// How WintunSendPacket orders its store of Receive.Tail and its load of Receive.Alertable.
#[derive(Clone, Copy, Debug)]
pub enum Handshake {
    /// Store, full fence, load: the releases from 2026-02-24 on.
    Fenced,
    /// Release store, acquire load, no fence between them: every release before 2026-02-24.
    Unfenced,
    /// What `Unfenced` permits, made to happen: Alertable loaded first, Tail stored `gap` later,
    /// so a driver that announces its sleep in between reads the old Tail and gets no event.
    Reordered { gap: Duration },
}

/// The Win32 errors WintunReceivePacket and WintunAllocateSendPacket return.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// ERROR_NO_MORE_ITEMS: the send ring is empty.
    NoMoreItems,
    /// ERROR_HANDLE_EOF: the driver ended the ring (0xFFFFFFFF).
    HandleEof,
    /// ERROR_INVALID_DATA: the send ring holds a packet that breaks the rules.
    InvalidData,
    /// ERROR_BUFFER_OVERFLOW: no room in the receive ring.
    BufferOverflow,
    /// The test's own limit on a wait (a deployed client waits INFINITE) passed, the ring
    /// still empty.
    TimedOut,
    /// The same, but the driver had moved Tail meanwhile: it did not set the event.
    TailMovedWithoutEvent,
}

/// A packet's place in a ring and whether the client is done with it.
struct Slot {
    offset: u32,
    span: u32,
    done: bool,
}

/// Packets taken in order, finished in any order: the ring position moves over the finished
/// ones at the front.
struct InOrder {
    /// Where the next packet is taken.
    next: u32,
    /// The ring position published to the driver (send ring: Head; receive ring: Tail).
    published: u32,
    slots: VecDeque<Slot>,
}

impl InOrder {
    fn new() -> InOrder {
        InOrder {
            next: 0,
            published: 0,
            slots: VecDeque::new(),
        }
    }

    fn take(&mut self, span: u32, capacity: u32) -> u32 {
        let offset = self.next;
        self.slots.push_back(Slot {
            offset,
            span,
            done: false,
        });
        self.next = (offset + span) & (capacity - 1);
        offset
    }

    /// Marks the packet at `offset` done; the new position to publish, if it moved.
    fn finish(&mut self, offset: u32, capacity: u32) -> Option<u32> {
        let slot = self
            .slots
            .iter_mut()
            .find(|slot| slot.offset == offset && !slot.done)
            .expect("a packet of this session, finished once");
        slot.done = true;
        let before = self.published;
        while let Some(slot) = self.slots.front().filter(|slot| slot.done) {
            self.published = (slot.offset + slot.span) & (capacity - 1);
            self.slots.pop_front();
        }
        (self.published != before).then_some(self.published)
    }
}

/// A session: an open device handle with registered rings.
pub struct Session {
    device: Mutex<Option<Device>>,
    rings: Rings,
    handshake: Handshake,
    /// The send ring, read by WintunReceivePacket (the DLL's Send.Lock).
    reading: Mutex<InOrder>,
    /// The receive ring, written by WintunAllocateSendPacket (the DLL's Receive.Lock).
    writing: Mutex<InOrder>,
    /// Receive events set: each time the driver had said it sleeps.
    events_set: AtomicU64,
}

/// Why a session did not start.
#[derive(Debug)]
pub enum StartError {
    Io(io::Error),
    /// The NTSTATUS the driver answered.
    Refused(u32),
}

impl From<io::Error> for StartError {
    fn from(error: io::Error) -> StartError {
        StartError::Io(error)
    }
}

impl Session {
    /// WintunStartSession: zeroed rings of `capacity`, a new device handle, the registration.
    pub fn start(
        socket: &Path,
        capacity: u32,
        handshake: Handshake,
    ) -> Result<Session, StartError> {
        let rings = Rings::new(capacity)?;
        let device = Device::open(socket)?;
        match device.register(&rings)? {
            0 => Ok(Session::registered(device, rings, handshake)),
            status => Err(StartError::Refused(status)),
        }
    }

    /// A session over rings `device` registered (status 0), untouched since.
    pub fn registered(device: Device, rings: Rings, handshake: Handshake) -> Session {
        Session {
            device: Mutex::new(Some(device)),
            rings,
            handshake,
            reading: Mutex::new(InOrder::new()),
            writing: Mutex::new(InOrder::new()),
            events_set: AtomicU64::new(0),
        }
    }

    pub fn rings(&self) -> &Rings {
        &self.rings
    }

    /// Closes the device handle (the end of WintunEndSession); the rings stay mapped.
    pub fn close_handle(&self) {
        self.device.lock().unwrap().take();
    }

    fn capacity(&self) -> u32 {
        self.rings.send.capacity
    }

    /// WintunReceivePacket: the next packet the driver wrote, without waiting.
    pub fn receive(&self) -> Result<Received<'_>, Error> {
        let ring = &self.rings.send;
        let mut reading = self.reading.lock().unwrap();
        let tail = ring.tail().load(Ordering::Acquire);
        if tail >= self.capacity() {
            return Err(Error::HandleEof);
        }
        let head = reading.next;
        if head == tail {
            return Err(Error::NoMoreItems);
        }
        let content = tail.wrapping_sub(head) & (self.capacity() - 1);
        if content < 4 {
            return Err(Error::InvalidData);
        }
        let size = ring.read_size(head);
        if size > MAX_IP_PACKET_SIZE || packet_span(size) > content {
            return Err(Error::InvalidData);
        }
        reading.take(packet_span(size), self.capacity());
        Ok(Received {
            session: self,
            offset: head,
            size,
        })
    }

    /// What an application's read loop does (wireguard-go's, for one): WintunReceivePacket,
    /// and on ERROR_NO_MORE_ITEMS a wait on the read-wait event, then again. `timeout` bounds
    /// the whole call, for the test's sake.
    pub fn receive_waiting(&self, timeout: Duration) -> Result<Received<'_>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.receive() {
                Err(Error::NoMoreItems) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.rings.send.wait_event(left) {
                        return Err(self.diagnose_timeout());
                    }
                }
                other => return other,
            }
        }
    }

    /// Why a wait for the next packet timed out: an empty ring, or a driver that moved Tail
    /// without setting the event.
    fn diagnose_timeout(&self) -> Error {
        let next = self.reading.lock().unwrap().next;
        if self.rings.send.tail().load(Ordering::Acquire) == next {
            Error::TimedOut
        } else {
            Error::TailMovedWithoutEvent
        }
    }

    /// WintunAllocateSendPacket: room for `size` bytes in the receive ring, in allocation order.
    /// Like the DLL, it does not refuse a `size` over MAX_IP_PACKET_SIZE; up to the trailing
    /// room's 0x10000 bytes, so the packet cannot run past the mapping.
    pub fn allocate(&self, size: u32) -> Result<Allocated<'_>, Error> {
        assert!(size <= TRAILER, "{size} bytes would run past the region");
        let ring = &self.rings.receive;
        let mut writing = self.writing.lock().unwrap();
        let head = ring.head().load(Ordering::Acquire);
        if head >= self.capacity() {
            return Err(Error::HandleEof);
        }
        let span = packet_span(size);
        let free = head.wrapping_sub(writing.next).wrapping_sub(ALIGNMENT) & (self.capacity() - 1);
        if span > free {
            return Err(Error::BufferOverflow);
        }
        let offset = writing.take(span, self.capacity());
        ring.write_size(offset, size);
        Ok(Allocated {
            session: self,
            offset,
            size,
        })
    }

    /// Allocates, copies `packet` in and sends it.
    pub fn send(&self, packet: &[u8]) -> Result<(), Error> {
        let mut allocated = self.allocate(packet.len() as u32)?;
        allocated.data_mut().copy_from_slice(packet);
        allocated.send();
        Ok(())
    }

    /// Sends `packet`, yielding while the ring is full.
    pub fn send_retrying(&self, packet: &[u8]) -> Result<(), Error> {
        loop {
            match self.send(packet) {
                Err(Error::BufferOverflow) => std::thread::yield_now(),
                other => return other,
            }
        }
    }

    /// How many times this client set the receive ring's event.
    pub fn events_set(&self) -> u64 {
        self.events_set.load(Ordering::Relaxed)
    }

    /// Publishes the receive ring's Tail and wakes the driver if it said it sleeps, with the
    /// session's handshake. Called under the writing lock, as the DLL does.
    fn publish_tail(&self, tail: u32, _writing: &MutexGuard<'_, InOrder>) {
        let ring = &self.rings.receive;
        let alertable = match self.handshake {
            Handshake::Fenced => {
                ring.tail().store(tail, Ordering::Release);
                fence(Ordering::SeqCst);
                ring.alertable().load(Ordering::Acquire)
            }
            Handshake::Unfenced => {
                ring.tail().store(tail, Ordering::Release);
                ring.alertable().load(Ordering::Acquire)
            }
            Handshake::Reordered { gap } => {
                let alertable = ring.alertable().load(Ordering::Acquire);
                spin_for(gap);
                ring.tail().store(tail, Ordering::Release);
                alertable
            }
        };
        if alertable != 0 {
            ring.set_event();
            self.events_set.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A packet from the send ring, valid until released (WintunReleaseReceivePacket).
#[must_use = "an unreleased packet holds the send ring's Head back"]
pub struct Received<'a> {
    session: &'a Session,
    offset: u32,
    size: u32,
}

impl Received<'_> {
    pub fn data(&self) -> &[u8] {
        // SAFETY: the packet's bytes follow its Size inside the region (offset < capacity,
        // size <= 0xFFFF, and the region has 0x10000 bytes past the capacity); the driver writes
        // only between Tail and Head, and Head stays before this packet until it is released.
        unsafe {
            std::slice::from_raw_parts(
                self.session.rings.send.data().add(self.offset as usize + 4),
                self.size as usize,
            )
        }
    }

    /// WintunReleaseReceivePacket: in any order; Head moves over the released front.
    pub fn release(self) {
        let session = self.session;
        let mut reading = session.reading.lock().unwrap();
        if let Some(head) = reading.finish(self.offset, session.capacity()) {
            session.rings.send.head().store(head, Ordering::Release);
        }
    }
}

/// Room in the receive ring for one packet, sent with WintunSendPacket.
#[must_use = "an unsent packet holds the receive ring's Tail back"]
pub struct Allocated<'a> {
    session: &'a Session,
    offset: u32,
    size: u32,
}

impl Allocated<'_> {
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: the room was reserved for this packet alone (span bytes from offset, inside
        // the region: offset < capacity, and the region has 0x10000 bytes past the capacity);
        // the driver reads it only after Tail is published past it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.session
                    .rings
                    .receive
                    .data()
                    .add(self.offset as usize + 4),
                self.size as usize,
            )
        }
    }

    /// WintunSendPacket: from any thread; Tail moves over the sent front, in allocation order.
    pub fn send(self) {
        let session = self.session;
        let mut writing = session.writing.lock().unwrap();
        if let Some(tail) = writing.finish(self.offset, session.capacity()) {
            session.publish_tail(tail, &writing);
        }
    }
}
