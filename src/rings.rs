//! The rings of one registration: validated, locked and mapped from the caller's request, and
//! torn down the same way whatever ends them.

use oxtun_abi::{
    CallerWidth, Reservation, ReserveError, RingDescriptor, RingReader, RingRegion,
    RingRegistration, RingWriter, capacity_for_ring_size, packet_space,
};

use crate::adapter::Statistics;
use crate::receive::ReceiveRing;
use crate::sys::*;

/// Who asked for a registration, from the IRP.
pub struct Caller {
    /// UserMode or KernelMode: how addresses and handles are checked.
    pub mode: KPROCESSOR_MODE,
    pub width: CallerWidth,
    /// The file object the IOCTL came through: the registration's owner.
    pub file: usize,
    /// The process it came from; its exit ends the registration.
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
        caller: &Caller,
    ) -> Result<Self, NTSTATUS> {
        capacity_for_ring_size(descriptor.ring_size).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // A null ring or event is a bad parameter, not a bad handle: as Wintun answers it.
        if descriptor.ring == 0 || descriptor.ring % 4 != 0 || descriptor.tail_moved == 0 {
            return Err(STATUS_INVALID_PARAMETER);
        }
        let tail_moved =
            EventReference::from_handle(descriptor.tail_moved, event_access, caller.mode)?;
        let memory = LockedUserBuffer::lock(descriptor.ring, descriptor.ring_size, caller.mode)?;
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
    pub owner_file: usize,
    pub owner_process: usize,
    send: MappedRing,
    receive: MappedRing,
    /// Held only to reserve and to complete: senders copy their packets outside it.
    send_writer: SpinLock<RingWriter>,
    /// Attached at registration so a corrupt ring is refused then; handed to the receive path
    /// when it starts.
    receive_reader: Option<RingReader>,
    /// The thread reading the receive ring, from start to teardown.
    pub receive_thread: Option<SystemThread>,
}

impl Registration {
    /// Validates a TUN_REGISTER_RINGS buffer from `caller` and maps both rings.
    pub fn new(input: &[u8], caller: &Caller) -> Result<Self, NTSTATUS> {
        let request =
            RingRegistration::decode(input, caller.width).map_err(|_| STATUS_INVALID_PARAMETER)?;
        // The driver sets the send event and waits on the receive event.
        let send = MappedRing::map(&request.send, EVENT_MODIFY_STATE, caller)?;
        let receive = MappedRing::map(&request.receive, SYNCHRONIZE, caller)?;
        let send_writer = RingWriter::attach(send.region).map_err(|_| STATUS_INVALID_PARAMETER)?;
        let receive_reader =
            RingReader::attach(receive.region).map_err(|_| STATUS_INVALID_PARAMETER)?;
        Ok(Registration {
            owner_file: caller.file,
            owner_process: caller.process,
            send,
            receive,
            send_writer: SpinLock::new(send_writer),
            receive_reader: Some(receive_reader),
            receive_thread: None,
        })
    }

    /// The reading side of the receive ring, for the receive path: once per registration.
    pub fn receive_ring(&mut self) -> Option<ReceiveRing> {
        let reader = self.receive_reader.take()?;
        let pages = self.receive.memory.pages();
        Some(ReceiveRing::new(
            reader,
            pages,
            self.receive.tail_moved.try_clone(),
        ))
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
    pub fn send(&self, chain: &NblChain, statistics: &Statistics) {
        let mut counts = SendCounts::default();
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
        statistics.add_sends(&counts);
    }
}

/// What one send call did, added to the adapter's counters once.
#[derive(Default)]
pub struct SendCounts {
    pub packets: u64,
    pub octets: u64,
    pub errors: u64,
    pub discards: u64,
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
