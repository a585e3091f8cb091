//! The rings of one registration: validated, locked and mapped from the caller's request, and
//! torn down the same way whatever ends them.

use oxtun_abi::{
    CallerWidth, RingDescriptor, RingReader, RingRegion, RingRegistration, RingWriter,
    capacity_for_ring_size,
};

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
    _memory: LockedUserBuffer,
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
        if descriptor.ring % 4 != 0 {
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
            _memory: memory,
            tail_moved,
        })
    }
}

/// A live registration: both rings, and who owns them.
pub struct Registration {
    pub owner_file: usize,
    pub owner_process: usize,
    send: MappedRing,
    _receive: MappedRing,
    send_writer: RingWriter,
    /// Read by the receive path (the data-plane issue); attached now so a corrupt ring is
    /// refused at registration.
    _receive_reader: RingReader,
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
            _receive: receive,
            send_writer,
            _receive_reader: receive_reader,
        })
    }

    /// The end of the registration: the send ring's Tail becomes 0xFFFFFFFF and its event is
    /// set, so a client blocked on it wakes and sees the end. Dropping the registration then
    /// unmaps, unlocks and dereferences everything.
    pub fn close(&mut self) {
        self.send_writer.close();
        self.send.tail_moved.set();
    }
}
