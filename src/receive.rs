//! The receive path: a system thread per registration reads the receive ring and indicates its
//! IP packets up the stack in place, several NBLs per indication. NDIS returns the NBLs in any
//! order; Head moves over returned packets in ring order.
//!
//! MiniportPause stops indications: none begins once pausing has started, and pause waits for
//! the ones under way to return before it answers, so NdisMPauseComplete (when NBLs are still
//! out) only ever runs from their return, never inside an indication.

use core::hint::spin_loop;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use oxtun_abi::offload::{
    Checksum, Checksums, IpVersion, Offload, Receive, RunningSum, Segments,
    complete_partial_checksum, fill_checksums, fill_checksums_head, parse, receive_as,
    receive_as_head, validate, validate_head,
};
use oxtun_abi::vnet::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_GSO_NONE, VNET_HDR_LEN, VirtioNetHdr,
};
use oxtun_abi::{
    CompletionOrder, PACKET_HEADER_SIZE, Packet, RING_HEADER_SIZE, RingError, RingReader,
    RingRegion, SleepDecision, Ticket,
};

use crate::offload::{
    MAX_RECEIVE_SEGMENTS, ReceiveOffloads, coalesced_checksum_info, receive_checksum_info,
};
use crate::statistics::{Counters, Counts};
use crate::sys::*;

/// Most NBLs one indication carries.
const BATCH: usize = 64;
/// Times the thread looks at an empty ring again before it sleeps.
const SPIN_POLLS: u32 = 256;
/// Packets tracked separately while NDIS holds them (see CompletionOrder).
const TRACKED_PACKETS: usize = 256;
/// Most NBLs kept for reuse once NDIS returns them.
const CACHED_NBLS: u32 = 1024;
/// How long the thread sleeps, after it said it sleeps, before it looks at the ring once more
/// without being woken (see [`Receiver::run`]). A relative timeout "can occur up to a period
/// earlier than or a period later than the specified time" ("Timer Accuracy", Microsoft's kernel
/// documentation), a period being the clock tick, 15.625 ms at most; one a little longer than
/// that ends after the sleep began whatever the tick, so the look comes after any Tail the client
/// stored just before it saw Alertable. (A timeout below the tick "might expire immediately".)
pub const RECHECK_MILLISECONDS: u32 = 16;

/// Bytes of a ring packet copied to decide what it is: the per-packet header, and an IP header
/// with its options (IPv4's longest).
const HEAD: usize = VNET_HDR_LEN + 60;

/// The reading side of the receive ring, under the receiver's ring lock.
pub struct ReceiveRing {
    reader: RingReader,
    order: CompletionOrder<TRACKED_PACKETS>,
    pages: LockedPages,
    tail_moved: EventReference,
    /// The client asked for the per-packet header: every ring packet starts with one.
    takes_headers: bool,
}

impl ReceiveRing {
    pub fn new(
        reader: RingReader,
        pages: LockedPages,
        tail_moved: EventReference,
        takes_headers: bool,
    ) -> Self {
        ReceiveRing {
            reader,
            order: CompletionOrder::new(),
            pages,
            tail_moved,
            takes_headers,
        }
    }

    fn view(&self) -> RingView {
        RingView {
            region: *self.reader.region(),
            pages: self.pages,
            takes_headers: self.takes_headers,
        }
    }

    /// Releases the ring space of finished packets, in ring order.
    fn finish(&mut self, ticket: Ticket) {
        if let Some(end) = self.order.finish(ticket) {
            self.reader.release_to(end);
        }
    }
}

/// What reading a packet the receive thread took from the ring needs, without the ring's lock:
/// the ring's memory and pages stay as they are while the thread runs (stop joins it before it
/// lets the ring go), and a packet's bytes stay where they are until its ticket is finished.
#[derive(Clone, Copy)]
struct RingView {
    region: RingRegion,
    pages: LockedPages,
    /// The client asked for the per-packet header: every ring packet starts with one.
    takes_headers: bool,
}

/// What the receive thread does with one packet.
enum Verdict {
    Ipv4,
    Ipv6,
    Skip,
}

/// IPv4 needs at least 20 bytes and version 4, IPv6 at least 40 and version 6. The version
/// nibble is read once; the client may change the bytes later, which the stack must survive
/// anyway (as it must any packet from the network).
fn verdict(size: u32, first_byte: u8) -> Verdict {
    match first_byte >> 4 {
        4 if size >= 20 => Verdict::Ipv4,
        6 if size >= 40 => Verdict::Ipv6,
        _ => Verdict::Skip,
    }
}

/// Whether the ring can still be read.
enum RingState {
    Readable,
    Stopped,
}

/// Whether indications may begin, how many are under way, and how many NBLs NDIS holds.
struct Gate {
    /// Between MiniportRestartEx and MiniportPause.
    running: bool,
    indicating: u32,
    outstanding: u32,
    /// MiniportPause returned NDIS_STATUS_PENDING: the last NBL back completes it.
    pause_pending: bool,
    /// The receive thread reads and indicates a batch (see [`Receiver::set_offloads`]).
    in_batch: bool,
}

/// The receive path of one adapter.
pub struct Receiver {
    miniport: NDIS_HANDLE,
    gate: SpinLock<Gate>,
    /// Set exactly while no indication is under way (changed under the gate's lock).
    no_indications: KernelEvent,
    /// Set exactly while NDIS holds no NBL (changed under the gate's lock).
    all_returned: KernelEvent,
    /// What the receive path may tell the stack of a packet's offloads ([`ReceiveOffloads`]),
    /// read once per batch.
    offloads: AtomicU32,
    /// Set exactly while no batch is being read and indicated (changed under the gate's lock).
    batch_done: KernelEvent,
    /// The receive ring's reading side while a registration lives.
    ring: SpinLock<Option<ReceiveRing>>,
    nbl_pool: NblPool,
    /// NBLs back from NDIS, for the next indications.
    nbl_cache: SpinLock<NblList>,
    thread: SpinLock<Option<SystemThread>>,
    /// Tells the receive thread to return.
    stopping: AtomicBool,
    stop: KernelEvent,
    pub counters: Counters,
}

// SAFETY: the NDIS handle is usable from any thread; the rest is locks, atomics and events.
unsafe impl Send for Receiver {}
// SAFETY: as for Send.
unsafe impl Sync for Receiver {}

impl Receiver {
    /// The receive path of the adapter `miniport`, paused, with nothing to read.
    ///
    /// # Safety
    /// `miniport` is NDIS's handle for the adapter, in MiniportInitializeEx.
    pub unsafe fn new(miniport: NDIS_HANDLE) -> Result<Self, NDIS_STATUS> {
        // SAFETY: the caller's adapter handle, in MiniportInitializeEx.
        let nbl_pool = unsafe { NblPool::allocate(miniport) }.ok_or(NDIS_STATUS_RESOURCES)?;
        Ok(Receiver {
            miniport,
            gate: SpinLock::new(Gate {
                running: false,
                indicating: 0,
                outstanding: 0,
                pause_pending: false,
                in_batch: false,
            }),
            offloads: AtomicU32::new(0),
            batch_done: KernelEvent::new(),
            no_indications: KernelEvent::new(),
            all_returned: KernelEvent::new(),
            ring: SpinLock::new(None),
            nbl_pool,
            nbl_cache: SpinLock::new(NblList::new()),
            thread: SpinLock::new(None),
            stopping: AtomicBool::new(false),
            stop: KernelEvent::new(),
            counters: Counters::default(),
        })
    }

    /// Once the receiver is at its final address.
    pub fn initialize(&self) {
        self.no_indications.initialize(false);
        self.no_indications.set();
        self.all_returned.initialize(false);
        self.all_returned.set();
        self.batch_done.initialize(false);
        self.batch_done.set();
        self.stop.initialize(false);
    }

    /// What the receive path tells the stack of packets' offloads now.
    pub fn offloads(&self) -> ReceiveOffloads {
        ReceiveOffloads::from_bits(self.offloads.load(Ordering::Acquire))
    }

    /// Changes what the receive path tells the stack of packets' offloads. What `withdraw`ing
    /// takes away is taken away first, and every batch that may have read it indicated, before
    /// this returns: the caller then reports the change to NDIS, after which no packet says more
    /// than the report allows. What the caller adds ([`Receiver::set_offloads`] again, after
    /// its report) is used from the next batch on. At PASSIVE_LEVEL.
    pub fn set_offloads(&self, offloads: ReceiveOffloads) {
        let old = ReceiveOffloads::from_bits(self.offloads.load(Ordering::Acquire));
        let kept = old.and(offloads);
        self.offloads.store(kept.bits(), Ordering::Release);
        if kept != old {
            // A batch that began before the store may carry what was taken away: wait for it
            // (the one receive thread reads one batch at a time, so this is at most one).
            while self.gate.lock().in_batch {
                wait_any_for(&[&self.batch_done], 10);
            }
        }
        self.offloads.store(offloads.bits(), Ordering::Release);
    }

    /// Starts reading `ring` in a new receive thread.
    pub fn start(&self, ring: ReceiveRing) -> Result<(), NTSTATUS> {
        *self.ring.lock() = Some(ring);
        self.stopping.store(false, Ordering::Release);
        self.stop.clear();
        // SAFETY: the thread uses the receiver, which outlives it: stop() joins it, and the
        // adapter that holds the receiver ends every registration, stopping it, before it goes.
        let thread = unsafe {
            SystemThread::spawn(receive_thread, (self as *const Receiver).cast_mut().cast())
        };
        match thread {
            Ok(thread) => {
                *self.thread.lock() = Some(thread);
                Ok(())
            }
            Err(status) => {
                *self.ring.lock() = None;
                Err(status)
            }
        }
    }

    /// Stops the receive thread, waits until NDIS has returned every NBL pointing into the
    /// receive ring, and lets the ring go, its Head set to 0xFFFFFFFF (as Wintun leaves it).
    /// At PASSIVE_LEVEL.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.set();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            thread.join();
        }
        while self.gate.lock().outstanding != 0 {
            wait(&self.all_returned);
        }
        // The client sees the end of the receive ring too: deployed clients stop sending on it.
        // (Ended and dropped in place: moved out, the ring's tracking table would take a frame
        // over a page, which calls a stack probe the kernel image does not link.)
        let mut ring = self.ring.lock();
        if let Some(ring) = ring.as_mut() {
            ring.reader.close();
        }
        *ring = None;
    }

    /// MiniportPause: no indication begins from now on; returns once those under way have, with
    /// NDIS_STATUS_PENDING if NDIS still holds NBLs (the last one back completes the pause).
    pub fn pause(&self) -> NDIS_STATUS {
        self.gate.lock().running = false;
        while self.gate.lock().indicating != 0 {
            wait(&self.no_indications);
        }
        let mut gate = self.gate.lock();
        if gate.outstanding == 0 {
            NDIS_STATUS_SUCCESS
        } else {
            gate.pause_pending = true;
            NDIS_STATUS_PENDING
        }
    }

    /// MiniportRestartEx.
    pub fn restart(&self) {
        self.gate.lock().running = true;
    }

    /// Frees the NBLs kept for reuse, at halt.
    pub fn free_cached_nbls(&self) {
        let mut cached = core::mem::take(&mut *self.nbl_cache.lock());
        while let Some(nbl) = cached.pop() {
            nbl.free();
        }
    }

    /// MiniportReturnNetBufferLists.
    pub fn return_nbls(&self, nbls: NblList) {
        let count = nbls.len();
        self.take_back(nbls);
        let complete_pause = {
            let mut gate = self.gate.lock();
            gate.outstanding -= count;
            if gate.outstanding == 0 {
                self.all_returned.set();
                core::mem::take(&mut gate.pause_pending)
            } else {
                false
            }
        };
        if complete_pause {
            // SAFETY: the adapter's handle; NDIS waits for this since pause pended.
            unsafe { NdisMPauseComplete(self.miniport) };
        }
    }

    /// An NBL for an indication: from the cache, or newly allocated.
    fn take_cached_nbl(&self) -> Option<PacketNbl> {
        let cached = self.nbl_cache.lock().pop();
        cached.or_else(|| self.nbl_pool.allocate_packet_nbl())
    }

    /// Keeps a returned NBL for reuse, or frees it when the cache is full.
    fn cache_nbl(&self, nbl: PacketNbl) {
        let mut cache = self.nbl_cache.lock();
        if cache.len() < CACHED_NBLS {
            cache.push(nbl);
        } else {
            drop(cache);
            nbl.free();
        }
    }

    /// Reads up to a batch of packets into `batch`, skipping what is not IP (and counting it as
    /// an error), telling the stack of each what `offloads` allow. The ring's lock is held only
    /// to take each packet and its ticket: what is done with the packet is done after it.
    fn read_batch(
        &self,
        batch: &mut NblList,
        counts: &mut Counts,
        offloads: ReceiveOffloads,
    ) -> RingState {
        while batch.len() < BATCH as u32 {
            let (packet, ticket, ring) = {
                let mut receive = self.ring.lock();
                let Some(ring) = receive.as_mut() else {
                    return RingState::Stopped;
                };
                let packet = match ring.reader.next_packet() {
                    Ok(Some(packet)) => packet,
                    Ok(None) => return RingState::Readable,
                    Err(_stopped) => return RingState::Stopped,
                };
                let ticket = ring.order.begin(packet.end());
                (packet, ticket, ring.view())
            };
            self.take_packet(&ring, &packet, ticket, offloads, batch, counts);
        }
        RingState::Readable
    }

    /// One packet read from the ring, which `ticket` holds: described in place, or as the header
    /// before it asks, into `batch`; or counted and its ticket finished.
    fn take_packet(
        &self,
        ring: &RingView,
        packet: &Packet,
        ticket: Ticket,
        offloads: ReceiveOffloads,
        batch: &mut NblList,
        counts: &mut Counts,
    ) {
        let mut head = [0u8; HEAD];
        let copied = ring.region.copy_packet_from(packet, 0, &mut head);
        let offset = (RING_HEADER_SIZE + packet.offset() + PACKET_HEADER_SIZE) as usize;
        // Where the IP packet starts in the ring packet, and what the header lets through
        // zero-copy: a packet of its own size whose checksums are complete (no flag) or
        // verified (DATA_VALID). Anything else the header asks is done on a copy.
        let (skip, info) = if ring.takes_headers {
            if packet.size() < VNET_HDR_LEN as u32 {
                counts.errors += 1;
                self.finish(ticket);
                return;
            }
            let mut bytes = [0u8; VNET_HDR_LEN];
            bytes.copy_from_slice(&head[..VNET_HDR_LEN]);
            let header = VirtioNetHdr::decode(&bytes);
            let verified = header.flags == VIRTIO_NET_HDR_F_DATA_VALID;
            if header.gso_type != VIRTIO_NET_HDR_GSO_NONE || !(header.flags == 0 || verified) {
                let in_place = self
                    .super_packet_in_place(ring, packet, ticket, &header, offloads, batch, counts);
                if let Err(ticket) = in_place {
                    self.receive_copy(ring, packet, ticket, offloads, batch, counts);
                }
                return;
            }
            let ip_head = &head[VNET_HDR_LEN..copied];
            let info = ReceiveInfo {
                checksum: if verified {
                    receive_checksum_info(ip_head, offloads, true)
                } else {
                    0
                },
                coalesced: 0,
            };
            (VNET_HDR_LEN as u32, info)
        } else {
            (0, ReceiveInfo::default())
        };
        let size = packet.size() - skip;
        let ipv6 = match verdict(size, head[skip as usize]) {
            Verdict::Ipv4 => false,
            Verdict::Ipv6 => true,
            Verdict::Skip => {
                counts.errors += 1;
                self.finish(ticket);
                return;
            }
        };
        let Some(mut nbl) = self.take_cached_nbl() else {
            counts.discards += 1;
            self.finish(ticket);
            return;
        };
        // SAFETY: the ring's pages stay locked until every NBL describing them is back
        // (stop waits for that before it lets the ring go); the adapter's own handle.
        unsafe {
            nbl.describe(
                self.miniport,
                ring.pages,
                offset + skip as usize,
                size,
                ipv6,
                info,
                ticket.into_raw(),
            )
        };
        counts.octets += u64::from(size);
        batch.push(nbl);
    }

    /// Gives a packet's ticket back (its NBLs are done with, or it never had one).
    fn finish(&self, ticket: Ticket) {
        if let Some(ring) = self.ring.lock().as_mut() {
            ring.finish(ticket);
        }
    }

    /// Another ticket for the packet `ticket` holds, for another NBL describing part of it
    /// (`None` only without a ring, which the receive thread always has).
    fn share(&self, ticket: &Ticket) -> Option<Ticket> {
        let mut receive = self.ring.lock();
        Some(receive.as_mut()?.order.share(ticket))
    }

    /// A super-packet whose payload goes up in place, its headers the driver's copy: as one RSC
    /// unit where RSC for its IP version is in force and a NIC could have coalesced it, else cut
    /// into segments, each an NBL of its own headers and its share of the payload. `Ok` if it
    /// went into `batch`, or `ticket` back if it needs [`Receiver::receive_copy`] (its headers
    /// run past the bytes looked at, it has no payload, or it is refused, which that counts).
    ///
    /// Everything is decided on the copy of the headers, which is also what the stack reads: the
    /// client can change only the payload, as it can that of any packet indicated in place.
    #[allow(clippy::too_many_arguments)]
    fn super_packet_in_place(
        &self,
        ring: &RingView,
        packet: &Packet,
        ticket: Ticket,
        header: &VirtioNetHdr,
        offloads: ReceiveOffloads,
        batch: &mut NblList,
        counts: &mut Counts,
    ) -> Result<(), Ticket> {
        let mut head = [0u8; VNET_HDR_LEN + SPLIT_HEADERS_CAPACITY];
        let copied = ring.region.copy_packet_from(packet, 0, &mut head);
        let ip_len = (packet.size() as usize).saturating_sub(VNET_HDR_LEN);
        let ip_head = &mut head[VNET_HDR_LEN..copied.max(VNET_HDR_LEN)];
        let Ok(Offload { gso: Some(gso), .. }) = validate_head(header, ip_head, ip_len) else {
            return Err(ticket);
        };
        if gso.segment_count() > MAX_RECEIVE_SEGMENTS || gso.payload_len() == 0 {
            return Err(ticket);
        }
        let ipv6 = gso.layout().ip == IpVersion::V6;
        let rsc = if ipv6 {
            ReceiveOffloads::RSC_V6
        } else {
            ReceiveOffloads::RSC_V4
        };
        // Where the IP packet's payload starts in the ring.
        let payload_at = (RING_HEADER_SIZE + packet.offset() + PACKET_HEADER_SIZE) as usize
            + VNET_HDR_LEN
            + gso.header_len();
        if offloads.has(rsc)
            && let Ok(Receive::Coalesced(unit)) = receive_as_head(ip_head, ip_len, &gso)
        {
            // The TCP checksum is not computed, which would read every byte: "If the NIC or
            // miniport driver validates the TCP and IPv4 checksums but does not recompute them
            // for the coalesced segment, it must set the TcpChecksumValueInvalid and
            // IpChecksumValueInvalid flags" (indicating-coalesced-segments). The client vouched
            // for the segments (a partial checksum, like DATA_VALID, is what Linux's stack takes
            // as checked: `skb_csum_unnecessary`). The IPv4 header's, in the driver's copy, is
            // recomputed.
            let headers = &mut ip_head[..gso.header_len()];
            let ipv4_header = Checksums {
                ipv4_header: true,
                transport: false,
            };
            if fill_checksums_head(headers, ip_len, ipv4_header, 0).is_err() {
                return Err(ticket);
            }
            let info = ReceiveInfo {
                checksum: coalesced_checksum_info(ipv6, false),
                coalesced: NDIS_RSC_NBL_INFO::new(unit.coalesced_segments, unit.duplicate_acks).0,
            };
            self.push_split(
                ring,
                headers,
                payload_at,
                gso.payload_len(),
                ipv6,
                info,
                ticket,
                batch,
                counts,
            );
            return Ok(());
        }
        let Ok(segments) = Segments::of_head(ip_head, &gso) else {
            return Err(ticket);
        };
        let mut ticket = Some(ticket);
        for segment in segments.iter() {
            let payload = segment.payload();
            let payload_sum = sum_ring_bytes(
                &ring.region,
                packet,
                VNET_HDR_LEN + payload.start,
                payload.len(),
            );
            let mut headers = [0u8; SPLIT_HEADERS_CAPACITY];
            let Ok(header_len) = segment.write_headers(&mut headers, payload_sum) else {
                continue;
            };
            let headers = &headers[..header_len];
            let info = ReceiveInfo {
                checksum: receive_checksum_info(headers, offloads, true),
                coalesced: 0,
            };
            // The last segment takes the packet's own ticket, each other a share of it.
            let piece = match ticket.take() {
                Some(own) if segment.is_last() => own,
                Some(own) => {
                    let shared = self.share(&own);
                    ticket = Some(own);
                    match shared {
                        Some(shared) => shared,
                        None => break,
                    }
                }
                None => break,
            };
            let at = payload_at + payload.start - gso.header_len();
            self.push_split(
                ring,
                headers,
                at,
                payload.len(),
                ipv6,
                info,
                piece,
                batch,
                counts,
            );
        }
        // Only if a segment's headers did not fit, which validation rules out, or without a ring.
        if let Some(own) = ticket {
            self.finish(own);
        }
        Ok(())
    }

    /// Puts an NBL for a packet of `headers` (the driver's copy) and the `payload_len` bytes at
    /// `payload_at` in the ring in `batch`, holding `ticket`; or counts it discarded, giving the
    /// ticket back, when no NBL is to be had.
    #[allow(clippy::too_many_arguments)]
    fn push_split(
        &self,
        ring: &RingView,
        headers: &[u8],
        payload_at: usize,
        payload_len: usize,
        ipv6: bool,
        info: ReceiveInfo,
        ticket: Ticket,
        batch: &mut NblList,
        counts: &mut Counts,
    ) {
        let Some(mut nbl) = self.take_cached_nbl() else {
            counts.discards += 1;
            self.finish(ticket);
            return;
        };
        // SAFETY: the ring's pages stay locked until every NBL describing them is back (stop
        // waits for that before it lets the ring go); the payload lies inside the ring packet;
        // the adapter's own handle.
        unsafe {
            nbl.describe_split(
                self.miniport,
                headers,
                ring.pages,
                payload_at,
                payload_len as u32,
                ipv6,
                info,
                ticket.into_raw(),
            )
        };
        counts.octets += (headers.len() + payload_len) as u64;
        batch.push(nbl);
    }

    /// A ring packet whose header asks for work: copied into memory of the driver's (the ring
    /// is the client's, and the bytes in it may change at any moment), then checked, the work
    /// done, and what results put in `batch`. A header that does not describe its packet
    /// ([`validate`]) makes the packet an error, as does one the driver will not serve
    /// ([`MAX_RECEIVE_SEGMENTS`]).
    ///
    /// The packet's ring space is given back only when the last NBL describing the copy comes
    /// back (the copy holds its ticket), as for a packet indicated in place: what the stack holds
    /// stays bounded by the ring, whatever the client writes.
    fn receive_copy(
        &self,
        ring: &RingView,
        packet: &Packet,
        ticket: Ticket,
        offloads: ReceiveOffloads,
        batch: &mut NblList,
        counts: &mut Counts,
    ) {
        let unheld = match self.copy_and_describe(ring, packet, offloads, batch, counts) {
            Some(described) => described.hold_and_release(ticket.into_raw()),
            None => Some(ticket.into_raw()),
        };
        if let Some(ticket) = unheld {
            self.finish(Ticket::from_raw(ticket));
        }
    }

    /// [`Receiver::receive_copy`]'s work: returns the buffer the NBLs it put in `batch` describe
    /// (`None` if it put none there).
    fn copy_and_describe(
        &self,
        ring: &RingView,
        packet: &Packet,
        offloads: ReceiveOffloads,
        batch: &mut NblList,
        counts: &mut Counts,
    ) -> Option<SharedBuffer> {
        let Some(mut whole) = SharedBuffer::new(packet.size()) else {
            counts.discards += 1;
            return None;
        };
        let bytes = whole.bytes_mut().expect("a fresh buffer");
        ring.region.copy_packet_from(packet, 0, bytes);
        let (header, ip) = bytes.split_at_mut(VNET_HDR_LEN);
        let mut header_bytes = [0u8; VNET_HDR_LEN];
        header_bytes.copy_from_slice(header);
        let header = VirtioNetHdr::decode(&header_bytes);
        let Ok(offload) = validate(&header, ip) else {
            counts.errors += 1;
            return None;
        };
        let ipv6 = match verdict(ip.len() as u32, ip.first().copied().unwrap_or(0)) {
            Verdict::Ipv4 => false,
            Verdict::Ipv6 => true,
            Verdict::Skip => {
                counts.errors += 1;
                return None;
            }
        };
        let coalescing = offloads.has(if ipv6 {
            ReceiveOffloads::RSC_V6
        } else {
            ReceiveOffloads::RSC_V4
        });
        if offload
            .gso
            .is_some_and(|gso| gso.segment_count() > MAX_RECEIVE_SEGMENTS)
        {
            counts.errors += 1;
            return None;
        }
        let whole_packet = match &offload.gso {
            None => Some(ReceiveInfo::default()),
            Some(gso) if gso.segment_count() == 1 => Some(ReceiveInfo::default()),
            Some(gso) if coalescing => match receive_as(ip, gso) {
                Ok(Receive::Coalesced(rsc)) => {
                    // The unit's checksums recomputed, as a coalescing NIC "should"
                    // (indicating-coalesced-segments), and marked.
                    let filled = fill_checksums(
                        ip,
                        Checksums {
                            ipv4_header: true,
                            transport: true,
                        },
                    );
                    if filled.is_err() {
                        counts.errors += 1;
                        return None;
                    }
                    Some(ReceiveInfo {
                        checksum: coalesced_checksum_info(ipv6, true),
                        coalesced: NDIS_RSC_NBL_INFO::new(
                            rsc.coalesced_segments,
                            rsc.duplicate_acks,
                        )
                        .0,
                    })
                }
                Ok(Receive::Single) => Some(ReceiveInfo::default()),
                Ok(Receive::Segmented(_)) => None,
                Err(_) => {
                    counts.errors += 1;
                    return None;
                }
            },
            Some(_) => None,
        };
        if let Some(mut info) = whole_packet {
            // One packet: its partial checksum completed (a coalesced unit's are all computed
            // already), and the transport's marked valid when the header said it was, or the
            // driver just computed it at the transport's checksum field.
            let mut transport_valid = offload.checksum == Checksum::Valid;
            if info.coalesced == 0
                && let Checksum::Partial { start, offset } = offload.checksum
            {
                if complete_partial_checksum(ip, usize::from(start), usize::from(offset)).is_err() {
                    counts.errors += 1;
                    return None;
                }
                transport_valid = parse(ip).ok().is_some_and(|layout| {
                    layout.transport().is_ok_and(|transport| {
                        usize::from(start) == layout.ip_header_len
                            && usize::from(offset) == transport.checksum_offset()
                    })
                });
                // A checksum a client put anywhere may have landed on the IP version (Linux puts
                // it where it is told too): the packet goes up as what it now is, or not at all.
                let still = verdict(ip.len() as u32, ip[0]);
                if !matches!(
                    (still, ipv6),
                    (Verdict::Ipv4, false) | (Verdict::Ipv6, true)
                ) {
                    counts.errors += 1;
                    return None;
                }
            }
            if info.coalesced == 0 {
                info.checksum = receive_checksum_info(ip, offloads, transport_valid);
            }
            let len = ip.len() as u32;
            self.push_buffer_packet(&whole, VNET_HDR_LEN as u32, len, ipv6, info, batch, counts);
            return Some(whole);
        }
        // Cut into segments, written one after another into one buffer that their NBLs share.
        let gso = offload.gso?;
        let Ok(segments) = Segments::new(ip, &gso) else {
            counts.errors += 1;
            return None;
        };
        let total: usize = segments.iter().map(|segment| segment.size()).sum();
        let Some(mut cut) = SharedBuffer::new(total as u32) else {
            counts.discards += 1;
            return None;
        };
        let out = cut.bytes_mut().expect("a fresh buffer");
        let mut at = 0;
        for segment in segments.iter() {
            let Ok(len) = segment.write(&mut out[at..]) else {
                counts.errors += 1;
                return None;
            };
            at += len;
        }
        let mut offset = 0;
        for segment in segments.iter() {
            let len = segment.size();
            let info = ReceiveInfo {
                checksum: receive_checksum_info(
                    &cut.bytes()[offset..offset + len.min(HEAD)],
                    offloads,
                    true,
                ),
                coalesced: 0,
            };
            self.push_buffer_packet(&cut, offset as u32, len as u32, ipv6, info, batch, counts);
            offset += len;
        }
        Some(cut)
    }

    /// Puts an NBL for the `len`-byte packet at `offset` in `buffer` in `batch`.
    #[allow(clippy::too_many_arguments)]
    fn push_buffer_packet(
        &self,
        buffer: &SharedBuffer,
        offset: u32,
        len: u32,
        ipv6: bool,
        info: ReceiveInfo,
        batch: &mut NblList,
        counts: &mut Counts,
    ) {
        let Some(mut nbl) = self.take_cached_nbl() else {
            counts.discards += 1;
            return;
        };
        // SAFETY: the adapter's own handle.
        unsafe { nbl.describe_buffer(self.miniport, buffer, offset, len, ipv6, info) };
        counts.octets += u64::from(len);
        batch.push(nbl);
    }

    /// Indicates a batch if the adapter runs; otherwise drops it (NDIS allows no indications
    /// while paused). The batch's counts go into the statistics first, so a packet whose Head
    /// has moved is already counted.
    fn indicate(&self, batch: NblList, mut counts: Counts) {
        let count = batch.len();
        let running = count > 0 && {
            let mut gate = self.gate.lock();
            if gate.running {
                gate.outstanding += count;
                gate.indicating += 1;
                self.all_returned.clear();
                self.no_indications.clear();
            }
            gate.running
        };
        if running {
            counts.packets += u64::from(count);
        } else {
            counts.discards += u64::from(count);
            counts.octets = 0;
        }
        self.counters.add(&counts);
        if running {
            // SAFETY: the adapter's NDIS handle; it runs, and the NBLs are counted out.
            unsafe { batch.indicate(self.miniport, false) };
            let mut gate = self.gate.lock();
            gate.indicating -= 1;
            if gate.indicating == 0 {
                self.no_indications.set();
            }
        } else if count > 0 {
            self.take_back(batch);
        }
    }

    /// NBLs coming back, from NDIS or from a dropped batch: their packets are finished, their
    /// NBLs go back to the cache.
    fn take_back(&self, mut nbls: NblList) {
        let mut receive = self.ring.lock();
        while let Some(mut nbl) = nbls.pop() {
            nbl.forget_pages();
            match nbl.take_owner() {
                PacketOwner::Ring(ticket) => {
                    if let Some(ring) = receive.as_mut() {
                        ring.finish(Ticket::from_raw(ticket));
                    }
                }
                PacketOwner::Buffer(buffer) => {
                    if let (Some(ticket), Some(ring)) = (buffer.release(), receive.as_mut()) {
                        ring.finish(Ticket::from_raw(ticket));
                    }
                }
                PacketOwner::None => {}
            }
            self.cache_nbl(nbl);
        }
    }

    fn begin_batch(&self) {
        let mut gate = self.gate.lock();
        gate.in_batch = true;
        self.batch_done.clear();
    }

    fn end_batch(&self) {
        let mut gate = self.gate.lock();
        gate.in_batch = false;
        self.batch_done.set();
    }

    fn announce_sleep(&self) -> Option<SleepDecision> {
        let mut receive = self.ring.lock();
        let ring = receive.as_mut()?;
        Some(ring.reader.announce_sleep())
    }

    fn end_sleep(&self) {
        if let Some(ring) = self.ring.lock().as_mut() {
            ring.reader.end_sleep();
        }
    }

    fn has_unread(&self) -> bool {
        self.ring
            .lock()
            .as_ref()
            .is_some_and(|ring| ring.reader.has_unread())
    }

    fn receive_event(&self) -> Option<EventReference> {
        self.ring
            .lock()
            .as_ref()
            .map(|ring| ring.tail_moved.try_clone())
    }

    /// Whether the ring stopped for good (the client corrupted it).
    fn ring_stopped(&self) -> Option<RingError> {
        self.ring
            .lock()
            .as_ref()
            .and_then(|ring| ring.reader.stopped())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The receive thread's life: read, indicate, spin briefly, then sleep on the client's
    /// event (after the alertable handshake) or the stop event, until told to stop.
    ///
    /// Each sleep looks at the ring once more after [`RECHECK_MILLISECONDS`] if nothing woke it,
    /// and then sleeps on without a timeout: a client may move Tail without setting the event even
    /// though the driver had set Alertable (wintun.dll before 2026-02 lacks the fence the
    /// handshake needs, so now and then it reads Alertable as 0 just as the driver goes to sleep).
    /// Without the look such a packet waits for the client's next one: Wintun users saw stalls of
    /// seconds. One look is enough: the Tail store the client's missing fence lets slip past its
    /// load of Alertable is already made by then, and Alertable stays set throughout the sleep, so
    /// any later Tail move finds it set and sets the event. An idle session therefore costs no
    /// wake-ups after its first sleep.
    fn run(&self) {
        let Some(tail_moved) = self.receive_event() else {
            return;
        };
        loop {
            if self.stopping() {
                return;
            }
            let mut counts = Counts::default();
            let mut batch = NblList::new();
            self.begin_batch();
            let offloads = ReceiveOffloads::from_bits(self.offloads.load(Ordering::Acquire));
            let state = self.read_batch(&mut batch, &mut counts, offloads);
            let got_packets = !batch.is_empty();
            self.indicate(batch, counts);
            self.end_batch();
            if got_packets {
                continue;
            }
            if let RingState::Stopped = state {
                // A corrupt ring (Head is now 0xFFFFFFFF): nothing more to read until teardown.
                debug_assert!(self.ring_stopped().is_some() || self.stopping());
                wait(&self.stop);
                return;
            }
            if (0..SPIN_POLLS).any(|_| {
                spin_loop();
                self.has_unread()
            }) {
                continue;
            }
            if self.announce_sleep() == Some(SleepDecision::Sleep) {
                let events: [&dyn Waitable; 2] = [&self.stop, &tail_moved];
                let woken_by = match wait_any_for(&events, RECHECK_MILLISECONDS) {
                    None if self.has_unread() => None,
                    None => Some(wait_any(&events)),
                    woken => woken,
                };
                self.end_sleep();
                if woken_by == Some(0) {
                    return;
                }
                // Awake: a manual-reset event the client set stays set until reset. Any Tail
                // move it announced is visible to the read that follows.
                tail_moved.clear();
            }
        }
    }
}

/// The one's complement sum of `len` bytes of `packet` from `start`, read out of the ring in
/// small copies (its bytes are the client's, which may change them as they are read).
fn sum_ring_bytes(region: &RingRegion, packet: &Packet, start: usize, len: usize) -> u16 {
    let mut chunk = [0u8; 256];
    let mut sum = RunningSum::new();
    let mut done = 0;
    while done < len {
        let want = (len - done).min(chunk.len());
        let got = region.copy_packet_from(packet, start + done, &mut chunk[..want]);
        if got == 0 {
            break;
        }
        sum.push(&chunk[..got]);
        done += got;
    }
    sum.sum()
}

/// The receive thread of a registration.
///
/// # Safety
/// `context` is the receiver, which outlives the thread (see Receiver::start).
unsafe extern "efiapi" fn receive_thread(context: PVOID) {
    // SAFETY: as the function's contract says.
    let receiver = unsafe { &*context.cast::<Receiver>() };
    receiver.run();
}
