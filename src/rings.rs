//! The rings of one registration: validated, locked and mapped from the caller's request, the
//! send path that writes them, and the slot an adapter keeps its one registration in, from the
//! IOCTL to the teardown, whichever of its ends comes first.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use oxtun_abi::offload::{
    MAX_UDP_SEGMENTS, SEND_HEAD_LEN, Segments, SendCopy, SendOffload, Transport, header_for_client,
    ones_complement_sum, parse, validate,
};

use oxtun_abi::vnet::{VNET_HDR_LEN, VirtioNetHdr};
use oxtun_abi::{
    CallerWidth, ExtendedRegistration, ExtendedRegistrationError, Features, MAX_IP_PACKET_SIZE,
    PacketSlot, Reservation, ReserveError, RingDescriptor, RingReader, RingRegion,
    RingRegistration, RingWriter, capacity_for_ring_size, packet_space,
};

use crate::offload::SendOffloads;
use crate::receive::ReceiveRing;
use crate::statistics::{Counters, Counts};
use crate::sys::*;

/// The features this driver serves (docs/offloads.md): a registration that asks for any other
/// fails with STATUS_NOT_SUPPORTED, and the client registers again without it.
pub const SUPPORTED_FEATURES: Features = Features::VNET_HDR;

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
    /// Every packet both ways carries the per-packet header (VNET_HDR).
    pub takes_headers: bool,
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
        Ok(RegistrationRequest {
            rings,
            takes_headers: features.contains(Features::VNET_HDR),
        })
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
    /// The client asked for the per-packet header.
    takes_headers: bool,
}

impl Registration {
    /// Maps both rings of a decoded request from `caller`, validating their sizes, addresses
    /// and events.
    pub fn new(request: RegistrationRequest, caller: Caller) -> Result<Self, NTSTATUS> {
        let RegistrationRequest {
            rings: request,
            takes_headers,
        } = request;
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
            takes_headers,
        })
    }

    /// Whether the client asked for the per-packet header.
    pub fn takes_headers(&self) -> bool {
        self.takes_headers
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
            self.takes_headers,
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

    /// Writes the chain's NBLs to the send ring in order, in one reservation, and sets each
    /// NBL's status. Each NET_BUFFER is one packet, prefixed with the per-packet header for a
    /// client that asked for it; an offloaded send (docs/offloads.md, "The driver") goes to such
    /// a client whole with the header saying what is left to do, and to any other client done in
    /// software: its checksums filled in, a large send cut into segments. An NBL that cannot be
    /// sent fails alone; if the ring lacks room for all the rest, they all fail and nothing is
    /// written. `allowed` says which large sends NDIS allows (the others are dropped).
    pub fn send(&self, chain: &NblChain, counters: &Counters, allowed: SendOffloads) {
        let header = if self.takes_headers { VNET_HDR_LEN } else { 0 };
        let mut counts = Counts::default();
        let mut bytes: u64 = 0;
        for nbl in chain.iter() {
            nbl.set_stash(0);
            match self.plan(&nbl, header, allowed) {
                Ok(space) => {
                    bytes += space;
                    nbl.set_status(NDIS_STATUS_SUCCESS);
                }
                Err(status) => {
                    nbl.set_status(status);
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
                    if !write_nbl(&nbl, header, &mut reservation, &mut counts) {
                        nbl.set_status(NDIS_STATUS_FAILURE);
                        counts.errors += 1;
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
                    drop(take_staged(&nbl));
                    nbl.set_status(status);
                    counts.discards += nbl.net_buffers().count() as u64;
                }
            }
        }
        counters.add(&counts);
    }

    /// How much ring space an NBL takes, staging a copy of it to cut into segments if it must be
    /// (kept in its stash until written); or the status it fails with.
    fn plan(
        &self,
        nbl: &Nbl<'_>,
        header: usize,
        allowed: SendOffloads,
    ) -> Result<u64, NDIS_STATUS> {
        let offload = send_offload(nbl, allowed)?;
        let whole = |nb: NetBuffer<'_>| {
            packet_space(nb.data_length().saturating_add(header as u32)).map(u64::from)
        };
        // A packet of its own size too large for a ring packet once the header goes before it
        // (over 65,525 bytes, which an MTU of 0xFFFF allows): a TCP one is cut in two (its peer
        // cannot tell: TCP may be resegmented anywhere), anything else fails below.
        let oversize = header != 0
            && matches!(offload, SendOffload::None | SendOffload::Checksum { .. })
            && nbl.net_buffers().count() == 1
            && nbl.net_buffers().any(|nb| whole(nb).is_none());
        let segmented = match offload {
            _ if oversize => true,
            SendOffload::None | SendOffload::Checksum { .. } => false,
            SendOffload::Lso { .. } => !self.takes_headers,
            SendOffload::Uso {
                mss,
                udp_header_offset,
            } => {
                let nb = nbl
                    .net_buffers()
                    .next()
                    .ok_or(NDIS_STATUS_INVALID_PARAMETER)?;
                let payload = nb.data_length().saturating_sub(udp_header_offset + 8);
                // Linux's UDP_MAX_SEGMENTS: a client ported from Linux may count on it.
                !self.takes_headers || payload.div_ceil(mss.max(1)) as usize > MAX_UDP_SEGMENTS
            }
        };
        if !segmented {
            let space: Option<u64> = nbl.net_buffers().map(whole).sum();
            return space.ok_or(NDIS_STATUS_INVALID_LENGTH);
        }
        let nb = nbl
            .net_buffers()
            .next()
            .ok_or(NDIS_STATUS_INVALID_PARAMETER)?;
        let len = nb.data_length() as usize;
        let mut staged = PoolBuffer::new(staged_len(len)).ok_or(NDIS_STATUS_RESOURCES)?;
        let mut at = VNET_HDR_LEN;
        let copied = nb.copy_data(|chunk| {
            staged[at..at + chunk.len()].copy_from_slice(chunk);
            at += chunk.len();
        });
        if !copied {
            return Err(NDIS_STATUS_FAILURE);
        }
        let (vnet, packet) = staged.split_at_mut(VNET_HDR_LEN);
        let packet = &mut packet[..len];
        let offload = if oversize {
            tcp_in_two(packet).ok_or(NDIS_STATUS_INVALID_LENGTH)?
        } else {
            offload
        };
        let made = header_for_client(packet, offload).map_err(|_| NDIS_STATUS_INVALID_PARAMETER)?;
        vnet.copy_from_slice(&made.encode());
        let offload = validate(&made, packet).map_err(|_| NDIS_STATUS_INVALID_PARAMETER)?;
        let gso = offload.gso.ok_or(NDIS_STATUS_INVALID_PARAMETER)?;
        let segments = Segments::new(packet, &gso).map_err(|_| NDIS_STATUS_INVALID_PARAMETER)?;
        let space: Option<u64> = segments
            .iter()
            .map(|segment| packet_space((segment.size() + header) as u32).map(u64::from))
            .sum();
        let space = space.ok_or(NDIS_STATUS_INVALID_LENGTH)?;
        nbl.set_stash(staged.into_raw().as_ptr() as usize);
        Ok(space)
    }
}

/// What the stack asked of the miniport for an NBL (its NetBufferListInfo), or the status it
/// fails with: LSOv1 and anything the driver never offered, an LSO and a USO at once, a large
/// send of more than one NET_BUFFER ("Any NET_BUFFER_LIST structure that contains the LSOv1 or
/// LSOv2 OOB data also contains a single NET_BUFFER structure"; USO's page likewise), and a
/// large send NDIS turned off (see [`SendOffloads`]): "Drivers must fail any send request they
/// can't perform" (udp-segmentation-offload-uso-).
fn send_offload(nbl: &Nbl<'_>, allowed: SendOffloads) -> Result<SendOffload, NDIS_STATUS> {
    type Checksum = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    type Lso = NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO;
    type Uso = NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO;
    let lso =
        NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(nbl.info(TcpLargeSendNetBufferListInfo));
    let uso =
        NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO(nbl.info(UdpSegmentationOffloadInfo));
    let large = |bit_v4: u32, bit_v6: u32, ipv6: bool| {
        if nbl.net_buffers().count() != 1 {
            return Err(NDIS_STATUS_INVALID_PARAMETER);
        }
        if !allowed.has(if ipv6 { bit_v6 } else { bit_v4 }) {
            return Err(NDIS_STATUS_FAILURE);
        }
        Ok(())
    };
    match (lso.0 != 0, uso.0 != 0) {
        (true, true) => return Err(NDIS_STATUS_INVALID_PARAMETER),
        (true, false) => {
            if !lso.is_v2() {
                return Err(NDIS_STATUS_INVALID_PARAMETER);
            }
            large(
                SendOffloads::LSO_V4,
                SendOffloads::LSO_V6,
                lso.0 & Lso::IPV6 != 0,
            )?;
            return Ok(SendOffload::Lso {
                mss: lso.mss(),
                tcp_header_offset: lso.header_offset(),
            });
        }
        (false, true) => {
            large(
                SendOffloads::USO_V4,
                SendOffloads::USO_V6,
                uso.0 & Uso::IPV6 != 0,
            )?;
            return Ok(SendOffload::Uso {
                mss: uso.mss(),
                udp_header_offset: uso.header_offset(),
            });
        }
        (false, false) => {}
    }
    let checksum = nbl.info(TcpIpChecksumNetBufferListInfo);
    // "If both the IsIPv4 and IsIPv6 flags are not set, the NIC should not perform any checksum
    // operations on the packet" ("Offloading Checksum Tasks").
    let ipv4 = checksum & Checksum::TX_IS_IPV4 != 0;
    if !ipv4 && checksum & Checksum::TX_IS_IPV6 == 0 {
        return Ok(SendOffload::None);
    }
    let ipv4_header = ipv4 && checksum & Checksum::TX_IP_HEADER_CHECKSUM != 0;
    let tcp = checksum & Checksum::TX_TCP_CHECKSUM != 0;
    let udp = checksum & Checksum::TX_UDP_CHECKSUM != 0;
    Ok(if ipv4_header || tcp || udp {
        SendOffload::Checksum {
            ipv4_header,
            tcp,
            udp,
        }
    } else {
        SendOffload::None
    })
}

/// How a TCP packet too large for a ring packet after the header is cut: as a large send whose
/// segments are as large as a ring packet allows; `None` if the packet is not TCP (over IPv4 or
/// IPv6, its lengths right, not a fragment).
fn tcp_in_two(packet: &[u8]) -> Option<SendOffload> {
    let layout = parse(packet).ok()?;
    let transport = layout.transport().ok()?;
    if transport != Transport::Tcp {
        return None;
    }
    let headers = layout.ip_header_len + layout.transport_header_len(packet, transport).ok()?;
    let mss = MAX_IP_PACKET_SIZE as usize - VNET_HDR_LEN - headers;
    Some(SendOffload::Lso {
        mss: mss as u32,
        tcp_header_offset: layout.ip_header_len as u32,
    })
}

/// Bytes of the copy [`Registration::plan`] stages of a packet of `len` bytes to cut it: the
/// header it made, and the packet.
fn staged_len(len: usize) -> usize {
    VNET_HDR_LEN + len
}

/// The staged copy [`Registration::plan`] kept in an NBL's stash, taken back.
fn take_staged(nbl: &Nbl<'_>) -> Option<PoolBuffer> {
    let raw = core::ptr::NonNull::new(nbl.stash() as *mut u8)?;
    nbl.set_stash(0);
    let len = staged_len(nbl.net_buffers().next()?.data_length() as usize);
    // SAFETY: the buffer plan stored (staged_len of its one packet), taken back once (the stash
    // is cleared).
    Some(unsafe { PoolBuffer::from_raw(raw, len) })
}

/// After an LSOv2 send, successful or not: "the miniport driver must set the
/// LsoV2TransmitComplete.Reserved member ... to zero and the LsoV2TransmitComplete.Type member
/// to NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE" (offloading-the-segmentation-of-large-tcp-packets).
pub fn complete_large_send(nbl: &Nbl<'_>) {
    let lso =
        NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(nbl.info(TcpLargeSendNetBufferListInfo));
    if lso.0 != 0 && lso.is_v2() {
        nbl.set_info(TcpLargeSendNetBufferListInfo, lso.v2_completed().0);
    }
}

/// Writes one NBL that [`Registration::plan`] accepted into the reservation, `header` bytes of
/// per-packet header before each packet; false if it could not be (a packet whose data could
/// not be read, or that is not what its offload information says), its packets then zeroes.
///
/// Ring slots are only written, never read back: the client may write them at any moment, so
/// anything the driver computes (headers, checksums, segments) it computes in memory of its own
/// ([`SendCopy`] for a packet, the staged copy for one cut into segments), from the stack's bytes.
fn write_nbl(
    nbl: &Nbl<'_>,
    header: usize,
    reservation: &mut Reservation,
    counts: &mut Counts,
) -> bool {
    if let Some(mut staged) = take_staged(nbl) {
        let (vnet, packet) = staged.split_at_mut(VNET_HDR_LEN);
        let mut bytes = [0u8; VNET_HDR_LEN];
        bytes.copy_from_slice(vnet);
        let made = VirtioNetHdr::decode(&bytes);
        let Some(gso) = validate(&made, packet).ok().and_then(|offload| offload.gso) else {
            return false;
        };
        let Ok(segments) = Segments::new(packet, &gso) else {
            return false;
        };
        let mut written = true;
        // Each segment's headers are made here, its checksum from its payload's sum in the
        // staged copy: the slot is only written.
        let mut headers = [0u8; SEND_HEAD_LEN];
        for segment in segments.iter() {
            let size = segment.size();
            let Some(mut slot) = reservation.push_packet((header + size) as u32) else {
                return false;
            };
            let payload = &packet[segment.payload()];
            let Ok(header_len) = segment.write_headers(&mut headers, ones_complement_sum(payload))
            else {
                slot.fill(0);
                written = false;
                continue;
            };
            slot.write(0, &VirtioNetHdr::NONE.encode()[..header]);
            slot.write(header, &headers[..header_len]);
            slot.write(header + header_len, payload);
            counts.packets += 1;
            counts.octets += size as u64;
        }
        return written;
    }
    let offload = match send_offload(nbl, SendOffloads::from_bits(u32::MAX)) {
        Ok(offload) => offload,
        Err(_) => return false,
    };
    let mut written = true;
    for nb in nbl.net_buffers() {
        let len = nb.data_length() as usize;
        let Some(mut slot) = reservation.push_packet((header + len) as u32) else {
            return false;
        };
        if !write_packet(&nb, &mut slot, header, offload, counts) {
            slot.fill(0);
            written = false;
        }
    }
    written
}

/// Copies one NET_BUFFER into its packet slot after `header` bytes, and does what `offload` asks
/// on the way ([`SendCopy`]): for a client that takes the header, writes the header that says
/// what is left; for any other, fills the checksums in (a large send never comes here for one:
/// it is cut into segments). Counts the packet, a large one as the segments it makes ("Increment
/// transmit statistics based on the segmented packets", udp-segmentation-offload-uso-). False if
/// its data could not be read or it is not what the offload says, or its headers are longer than
/// the head the driver finishes them in (256 bytes, more than the headers of any send the driver
/// takes an offload for: no IPv6 extension headers are offered).
fn write_packet(
    nb: &NetBuffer<'_>,
    slot: &mut PacketSlot,
    header: usize,
    offload: SendOffload,
    counts: &mut Counts,
) -> bool {
    let len = nb.data_length() as usize;
    let mut copy = SendCopy::new(len, offload, header != 0);
    let copied = nb.copy_data(|chunk| {
        copy.push(chunk, |at, bytes| {
            slot.write(header + at, bytes);
        })
    });
    if !copied {
        return false;
    }
    let Ok(made) = copy.finish() else {
        return false;
    };
    slot.write(0, &made.encode()[..header]);
    slot.write(header, copy.head());
    let len = len as u64;
    let (segments, headers) = if made.gso_size == 0 {
        (1, 0)
    } else {
        let payload = len.saturating_sub(u64::from(made.hdr_len));
        (
            payload.div_ceil(u64::from(made.gso_size)).max(1),
            u64::from(made.hdr_len),
        )
    };
    counts.packets += segments;
    counts.octets += len + (segments - 1) * headers;
    true
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
