//! The rings of one registration: validated, locked and mapped from the caller's request, the
//! send path that writes them, and the slot an adapter keeps its one registration in, from the
//! IOCTL to the teardown, whichever of its ends comes first.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use oxtun_abi::{
    CallerWidth, ExtendedRegistration, ExtendedRegistrationError, Features, Reservation,
    ReserveError, RingDescriptor, RingReader, RingRegion, RingRegistration, RingWriter,
    capacity_for_ring_size, packet_space,
};

use crate::receive::ReceiveRing;
use crate::statistics::{Counters, Counts};
use crate::sys::*;

/// The features this driver serves (docs/offloads.md): a registration that asks for any other
/// fails with STATUS_NOT_SUPPORTED, and the client registers again without it.
pub const SUPPORTED_FEATURES: Features = Features::NONE;

/// Which of the two registration IOCTLs a request came through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RegistrationIoctl {
    /// TUN_IOCTL_REGISTER_RINGS: Wintun's, asking for nothing.
    Plain,
    /// TUN_IOCTL_REGISTER_RINGS_EX: ours, with a version and features.
    Extended,
}

/// A registration request decoded from the IOCTL's input buffer: the rings, and the features
/// asked for, each one this driver serves.
pub struct RegistrationRequest {
    pub rings: RingRegistration,
}

impl RegistrationRequest {
    /// Decodes and checks the buffer of `ioctl` from a caller of `width`. Each refusal has the
    /// status docs/offloads.md gives it: a version this driver does not know
    /// STATUS_REVISION_MISMATCH, a feature bit it does not know or does not serve
    /// STATUS_NOT_SUPPORTED (the client may retry without it), anything else malformed
    /// STATUS_INVALID_PARAMETER, as a bad plain registration is.
    pub fn decode(
        input: &[u8],
        ioctl: RegistrationIoctl,
        width: CallerWidth,
    ) -> Result<Self, NTSTATUS> {
        let (rings, features) = match ioctl {
            RegistrationIoctl::Plain => {
                let rings =
                    RingRegistration::decode(input, width).map_err(|_| STATUS_INVALID_PARAMETER)?;
                (rings, Features::NONE)
            }
            RegistrationIoctl::Extended => {
                let request =
                    ExtendedRegistration::decode(input, width).map_err(|error| match error {
                        ExtendedRegistrationError::UnknownVersion(_) => STATUS_REVISION_MISMATCH,
                        ExtendedRegistrationError::UnknownFeatures(_) => STATUS_NOT_SUPPORTED,
                        ExtendedRegistrationError::TooShort(_)
                        | ExtendedRegistrationError::SizeMismatch { .. }
                        | ExtendedRegistrationError::ReservedNotZero(_)
                        | ExtendedRegistrationError::Rings(_) => STATUS_INVALID_PARAMETER,
                    })?;
                (request.rings, request.features)
            }
        };
        if !SUPPORTED_FEATURES.contains(features) {
            return Err(STATUS_NOT_SUPPORTED);
        }
        Ok(RegistrationRequest { rings })
    }
}

/// Who asked for a registration, from the IRP.
pub struct Caller {
    /// UserMode or KernelMode: how addresses and handles are checked.
    pub mode: KPROCESSOR_MODE,
    pub width: CallerWidth,
    /// The file object the IOCTL came through: the registration's owner.
    pub file: FileReference,
    /// The process it came from (its EPROCESS); its exit ends the registration.
    pub process: usize,
}

/// One ring, locked and mapped, with the event its TailMoved handle names.
struct MappedRing {
    region: RingRegion,
    /// Keeps the pages `region` points into locked and mapped.
    memory: LockedUserBuffer,
    tail_moved: EventReference,
}

impl MappedRing {
    /// `event_access`: what the driver does with the event (sets it, or waits on it).
    fn map(
        descriptor: &RingDescriptor,
        event_access: ACCESS_MASK,
        mode: KPROCESSOR_MODE,
    ) -> Result<Self, NTSTATUS> {
        capacity_for_ring_size(descriptor.ring_size).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // A null ring or event is a bad parameter, not a bad handle: as Wintun answers it.
        if descriptor.ring == 0 || descriptor.ring % 4 != 0 || descriptor.tail_moved == 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let tail_moved = EventReference::from_handle(descriptor.tail_moved, event_access, mode)?;
        let memory = LockedUserBuffer::lock(descriptor.ring, descriptor.ring_size, mode)?;
        let len = descriptor.ring_size as usize;
        // SAFETY: the mapping holds `len` bytes and lives as long as `memory`, which this struct
        // keeps; the client may write them at any time, which RingRegion allows.
        let region = unsafe { RingRegion::new(memory.system_address(), len) };
        let region = region.map_err(|_| STATUS_INVALID_PARAMETER)?;
        Ok(MappedRing {
            region,
            memory,
            tail_moved,
        })
    }
}

/// A live registration: both rings, and who owns them.
pub struct Registration {
    /// The owner's file object, referenced so that its address names no other while the
    /// registration lives.
    owner_file: FileReference,
    owner_process: usize,
    /// The IOCTL's RequestorMode: a KernelMode owner is a kernel component, whose handles are
    /// kernel handles.
    owner_mode: KPROCESSOR_MODE,
    send: MappedRing,
    receive: MappedRing,
    /// Held only to reserve and to complete: senders copy their packets outside it.
    send_writer: SpinLock<RingWriter>,
    /// Attached at registration so a corrupt ring is refused then; handed to the receive path
    /// when it starts.
    receive_reader: Option<RingReader>,
}

impl Registration {
    /// Maps both rings of a decoded request from `caller`, validating their sizes, addresses
    /// and events.
    pub fn new(request: RegistrationRequest, caller: Caller) -> Result<Self, NTSTATUS> {
        let RegistrationRequest { rings: request } = request;
        // The driver sets the send event; it waits on the receive event and resets it once
        // awake, so that a manual-reset event the client leaves set does not end every later
        // wait at once (Wintun asks for the same rights, for the same reason).
        let send = MappedRing::map(&request.send, EVENT_MODIFY_STATE, caller.mode)?;
        let receive = MappedRing::map(
            &request.receive,
            SYNCHRONIZE | EVENT_MODIFY_STATE,
            caller.mode,
        )?;
        let send_writer = RingWriter::attach(send.region).map_err(|_| STATUS_INVALID_PARAMETER)?;
        let receive_reader =
            RingReader::attach(receive.region).map_err(|_| STATUS_INVALID_PARAMETER)?;
        Ok(Registration {
            owner_file: caller.file,
            owner_process: caller.process,
            owner_mode: caller.mode,
            send,
            receive,
            send_writer: SpinLock::new(send_writer),
            receive_reader: Some(receive_reader),
        })
    }

    /// The reading side of the receive ring, for the receive path: once per registration. (Made
    /// from the registration in pool, not with it on the stack: together they would make a frame
    /// over a page, which calls a stack probe the kernel image does not link.)
    pub fn receive_ring(&mut self) -> Option<ReceiveRing> {
        let reader = self.receive_reader.take()?;
        Some(ReceiveRing::new(
            reader,
            self.receive.memory.pages(),
            self.receive.tail_moved.try_clone(),
        ))
    }

    /// The owner's file object.
    pub fn owner_file(&self) -> &FileReference {
        &self.owner_file
    }

    /// Whether the owner is a user-mode process (the IOCTL's RequestorMode was UserMode).
    pub fn owned_from_user_mode(&self) -> bool {
        self.owner_mode == UserMode
    }

    /// The end of the registration: the send ring's Tail becomes 0xFFFFFFFF and its event is
    /// set, so a client blocked on it wakes and sees the end. Dropping the registration then
    /// unmaps, unlocks and dereferences everything.
    pub fn close(&mut self) {
        self.send_writer.lock().close();
        self.send.tail_moved.set();
    }

    /// Writes every NET_BUFFER of the chain's NBLs to the send ring as one packet each, in one
    /// reservation, and sets each NBL's status. An NBL with a packet over 0xFFFF bytes fails
    /// alone; if the ring lacks room for all the rest, they all fail and nothing is written.
    pub fn send(&self, chain: &NblChain, counters: &Counters) {
        let mut counts = Counts::default();
        let mut bytes: u64 = 0;
        for nbl in chain.iter() {
            let space: Option<u64> = nbl
                .net_buffers()
                .map(|nb| packet_space(nb.data_length()).map(u64::from))
                .sum();
            match space {
                Some(space) => {
                    bytes += space;
                    nbl.set_status(NDIS_STATUS_SUCCESS);
                }
                None => {
                    nbl.set_status(NDIS_STATUS_INVALID_LENGTH);
                    counts.errors += 1;
                }
            }
        }
        let sending = || {
            chain
                .iter()
                .filter(|nbl| nbl.status() == NDIS_STATUS_SUCCESS)
        };
        // A sum past u32 is more than any ring holds: it fails as full.
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX - 3);
        let reserved = if bytes == 0 {
            Err(None)
        } else {
            self.send_writer.lock().reserve(bytes).map_err(Some)
        };
        match reserved {
            Ok(mut reservation) => {
                for nbl in sending() {
                    for nb in nbl.net_buffers() {
                        if !copy_packet(&nb, &mut reservation) {
                            nbl.set_status(NDIS_STATUS_FAILURE);
                            counts.errors += 1;
                            continue;
                        }
                        counts.packets += 1;
                        counts.octets += u64::from(nb.data_length());
                    }
                }
                // Whenever Tail moves, whatever the client's Alertable says: deployed wintun.dll
                // clients never set it, and wait on this event after every empty read.
                if self.send_writer.lock().complete(reservation).tail_moved {
                    self.send.tail_moved.set();
                }
            }
            Err(None) => {}
            Err(Some(error)) => {
                let status = match error {
                    ReserveError::Full { .. } => NDIS_STATUS_BUFFER_OVERFLOW,
                    ReserveError::BadSize(_) | ReserveError::Ring(_) => {
                        NDIS_STATUS_ADAPTER_NOT_READY
                    }
                };
                for nbl in sending() {
                    nbl.set_status(status);
                    counts.discards += nbl.net_buffers().count() as u64;
                }
            }
        }
        counters.add(&counts);
    }
}

/// Copies one NET_BUFFER into the next packet of the reservation; false if its data could not
/// be read, in which case the packet keeps its place as zeroes rather than stale bytes.
fn copy_packet(nb: &NetBuffer<'_>, reservation: &mut Reservation) -> bool {
    let Some(mut slot) = reservation.push_packet(nb.data_length()) else {
        return false;
    };
    let mut at = 0;
    let copied = nb.copy_data(|chunk| {
        slot.write(at, chunk);
        at += chunk.len();
    });
    if !copied {
        slot.fill(0);
    }
    copied
}

/// Which registration a trigger of its end names.
#[derive(Clone, Copy)]
pub enum Owner {
    /// Whichever there is (halt, removal).
    Any,
    /// The one registered through this file object (its handle closed).
    File(usize),
    /// The one registered from this process (it exits).
    Process(usize),
}

// The phases of a registration slot, in the low bits of its state; the other bits count
// registrations, so that a phase seen twice is known to be the same registration's.
const EMPTY: u32 = 0;
const REGISTERING: u32 = 1;
const LIVE: u32 = 2;
const ENDING: u32 = 3;
const PHASE: u32 = 3;
const NEXT_GENERATION: u32 = 4;

/// Where an adapter keeps its registration. The IOCTL claims the empty slot before it maps
/// anything (a second one is refused at once), and publishes the registration when it is
/// complete; any of its ends (the owner's handle closing, the owner exiting, removal, halt)
/// takes it out once, and the others then find nothing. No lock is held across the waits
/// either side makes (probing and locking the rings; the receive thread, senders and NDIS's
/// NBLs at the end), so a process exit never blocks behind one.
pub struct RegistrationSlot {
    state: AtomicU32,
    /// The owner's file object: set when the slot is claimed, read to match a trigger.
    owner_file: AtomicUsize,
    /// The live registration's owner process: set before it is published.
    owner_process: AtomicUsize,
    /// Whether the owner's handle closed while its registration was being made (true only in
    /// the REGISTERING phase): claiming, publishing and noting a close take this lock, so a
    /// close is either noted before the registration is published, or finds it live.
    owner_closed: SpinLock<bool>,
    rings: RundownSlot<Registration>,
    /// Set when an end completes (and cleared when one begins), for whoever must wait for one
    /// that another thread runs.
    ended: KernelEvent,
}

impl RegistrationSlot {
    pub const fn new() -> Self {
        RegistrationSlot {
            state: AtomicU32::new(EMPTY),
            owner_file: AtomicUsize::new(0),
            owner_process: AtomicUsize::new(0),
            owner_closed: SpinLock::new(false),
            rings: RundownSlot::new(),
            ended: KernelEvent::new(),
        }
    }

    /// Once the slot is at its final address.
    pub fn initialize(&self) {
        self.rings.start_empty();
        self.ended.initialize(false);
    }

    /// The empty slot, for a registration to be made through the file object `owner_file`;
    /// `None` while one lives, is being made or is ending.
    pub fn claim(&self, owner_file: usize) -> Option<Claim<'_>> {
        let mut owner_closed = self.owner_closed.lock();
        let state = self.state.load(Ordering::Acquire);
        let claimed = state & PHASE == EMPTY
            && self
                .state
                .compare_exchange(
                    state,
                    state | REGISTERING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        if claimed {
            self.owner_file.store(owner_file, Ordering::Release);
            *owner_closed = false;
        }
        // Lazily: a Claim dropped gives the slot back.
        claimed.then(|| Claim {
            slot: self,
            state: state | REGISTERING,
        })
    }

    /// The live registration, for a sender. At up to DISPATCH_LEVEL.
    pub fn acquire(&self) -> Option<RundownGuard<'_, Registration>> {
        self.rings.acquire()
    }

    fn owned_by(&self, owner: Owner) -> bool {
        match owner {
            Owner::Any => true,
            Owner::File(file) => self.owner_file.load(Ordering::Acquire) == file,
            Owner::Process(process) => self.owner_process.load(Ordering::Acquire) == process,
        }
    }

    /// Whether a registration of `owner` lives or is ending.
    pub fn is_held_by(&self, owner: Owner) -> bool {
        let phase = self.state.load(Ordering::Acquire) & PHASE;
        (phase == LIVE || phase == ENDING) && self.owned_by(owner)
    }

    /// Takes out the live registration if `owner` names it: its end is the caller's to carry out
    /// (senders are waited for here), and every other trigger finds nothing. The owner's handle
    /// closing while its registration is being made is noted instead, and the registration ends
    /// as soon as it is published ([`Claim::publish`]). At PASSIVE_LEVEL.
    pub fn take(&self, owner: Owner) -> Option<Ending<'_>> {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state & PHASE == REGISTERING
                && let Owner::File(_) = owner
            {
                let mut owner_closed = self.owner_closed.lock();
                if self.state.load(Ordering::Acquire) & PHASE == REGISTERING {
                    *owner_closed |= self.owned_by(owner);
                    return None;
                }
                // Published meanwhile: take it as any live one.
                continue;
            }
            if state & PHASE != LIVE || !self.owned_by(owner) {
                return None;
            }
            let ending = state & !PHASE | ENDING;
            if self
                .state
                .compare_exchange(state, ending, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.ended.clear();
                // SAFETY: only the ENDING phase's holder takes, and only the REGISTERING one
                // puts; the phases exclude each other.
                let registration = unsafe { self.rings.take() };
                return Some(Ending {
                    slot: self,
                    state: ending,
                    registration,
                });
            }
        }
    }

    /// Waits until no registration of `owner` is ending, if one is (another thread carries it
    /// out). At PASSIVE_LEVEL.
    pub fn wait_ended(&self, owner: Owner) {
        loop {
            let state = self.state.load(Ordering::Acquire);
            if state & PHASE != ENDING || !self.owned_by(owner) {
                return;
            }
            // A short timeout: an end that completes and a next one that begins between the
            // load and the wait would leave the event cleared.
            wait_any_for(&[&self.ended], 10);
        }
    }
}

impl Default for RegistrationSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// The slot claimed for a registration being made: published, or given back when dropped.
#[must_use = "a claim is given back as soon as it is dropped"]
pub struct Claim<'a> {
    slot: &'a RegistrationSlot,
    state: u32,
}

impl Claim<'_> {
    /// The registration lives: senders find it, its ends can take it. Returns whether its
    /// owner's handle closed while it was being made (a client that opened the device for
    /// overlapped I/O may close it while its IOCTL runs): then the registration's end is the
    /// caller's to make, as the handle's cleanup would have made it.
    #[must_use = "a registration whose owner closed its handle must end"]
    pub fn publish(self, registration: PoolBox<Registration>) -> bool {
        let slot = self.slot;
        slot.owner_process
            .store(registration.owner_process, Ordering::Release);
        // SAFETY: the REGISTERING phase is ours: no one else puts or takes.
        unsafe { slot.rings.put(registration) };
        let owner_closed = slot.owner_closed.lock();
        slot.state
            .store(self.state & !PHASE | LIVE, Ordering::Release);
        let closed = *owner_closed;
        drop(owner_closed);
        core::mem::forget(self);
        closed
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.slot
            .state
            .store(self.state & !PHASE | EMPTY, Ordering::Release);
    }
}

/// A registration taken out of its slot by one of its ends; the slot is empty again, with the
/// next generation, when this is dropped.
pub struct Ending<'a> {
    slot: &'a RegistrationSlot,
    state: u32,
    registration: Option<PoolBox<Registration>>,
}

impl Ending<'_> {
    pub fn registration(&mut self) -> &mut Registration {
        self.registration.as_mut().expect("a live registration")
    }
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        drop(self.registration.take());
        let next = (self.state & !PHASE).wrapping_add(NEXT_GENERATION);
        self.slot.state.store(next | EMPTY, Ordering::Release);
        self.slot.ended.set();
    }
}
