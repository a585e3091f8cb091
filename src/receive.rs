//! The receive path: a system thread per registration reads the receive ring and indicates its
//! IP packets up the stack in place, several NBLs per indication. NDIS returns the NBLs in any
//! order; Head moves over returned packets in ring order.

use core::hint::spin_loop;

use oxtun_abi::{
    CompletionOrder, PACKET_HEADER_SIZE, RING_HEADER_SIZE, RingError, RingReader, SleepDecision,
    Ticket,
};

use crate::adapter::Adapter;
use crate::sys::*;

/// Most NBLs one indication carries.
const BATCH: usize = 64;
/// Times the thread looks at an empty ring again before it sleeps.
const SPIN_POLLS: u32 = 256;
/// Packets tracked separately while NDIS holds them (see CompletionOrder).
const TRACKED_PACKETS: usize = 256;
/// How long the thread sleeps before it looks at the ring again without being woken (see
/// [`run`]). On Windows the wait ends on the next clock tick after this, about 15.6 ms apart
/// by default; a high-resolution timer would keep the clock interrupt at its fastest for as long
/// as an idle client is connected, which Microsoft advises against.
pub const RECHECK_MILLISECONDS: u32 = 2;

/// The reading side of the receive ring, under the adapter's receive lock.
pub struct ReceiveRing {
    reader: RingReader,
    order: CompletionOrder<TRACKED_PACKETS>,
    pages: LockedPages,
    tail_moved: EventReference,
}

impl ReceiveRing {
    pub fn new(reader: RingReader, pages: LockedPages, tail_moved: EventReference) -> Self {
        ReceiveRing {
            reader,
            order: CompletionOrder::new(),
            pages,
            tail_moved,
        }
    }

    /// Releases the ring space of finished packets, in ring order.
    fn finish(&mut self, ticket: Ticket) {
        if let Some(end) = self.order.finish(ticket) {
            self.reader.release_to(end);
        }
    }
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

/// Counts of one batch, added to the adapter's counters once.
#[derive(Default)]
pub struct ReceiveCounts {
    pub packets: u64,
    pub octets: u64,
    pub errors: u64,
    pub discards: u64,
}

/// Whether the ring can still be read.
enum RingState {
    Readable,
    Stopped,
}

impl Adapter {
    /// Reads up to a batch of packets into `batch`, skipping what is not IP.
    fn read_batch(&self, batch: &mut NblList, counts: &mut ReceiveCounts) -> RingState {
        let mut receive = self.receive.lock();
        let Some(ring) = receive.as_mut() else {
            return RingState::Stopped;
        };
        while batch.len() < BATCH as u32 {
            let packet = match ring.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return RingState::Readable,
                Err(_stopped) => return RingState::Stopped,
            };
            let ticket = ring.order.begin(packet.end());
            let mut first_byte = [0u8; 1];
            ring.reader.copy_packet(&packet, &mut first_byte);
            let ipv6 = match verdict(packet.size(), first_byte[0]) {
                Verdict::Ipv4 => false,
                Verdict::Ipv6 => true,
                Verdict::Skip => {
                    counts.errors += 1;
                    ring.finish(ticket);
                    continue;
                }
            };
            let Some(mut nbl) = self.take_cached_nbl() else {
                counts.discards += 1;
                ring.finish(ticket);
                continue;
            };
            let offset = (RING_HEADER_SIZE + packet.offset() + PACKET_HEADER_SIZE) as usize;
            // SAFETY: the ring's pages stay locked until every NBL describing them is back
            // (teardown waits for that before it unmaps).
            unsafe { nbl.describe(ring.pages, offset, packet.size(), ipv6, ticket.into_raw()) };
            counts.octets += u64::from(packet.size());
            batch.push(nbl);
        }
        RingState::Readable
    }

    /// Indicates a batch if the adapter runs; otherwise drops it (NDIS allows no indications
    /// while paused). The batch's counts go into the statistics first, so a packet whose Head
    /// has moved is already counted.
    fn indicate(&self, batch: NblList, mut counts: ReceiveCounts) {
        let count = batch.len();
        let running = count > 0 && self.lend_receives(count);
        if running {
            counts.packets += u64::from(count);
        } else {
            counts.discards += u64::from(count);
            counts.octets = 0;
        }
        self.statistics.add_receives(&counts);
        if running {
            // SAFETY: the adapter's NDIS handle; it runs, and the NBLs are counted out.
            unsafe { batch.indicate(self.miniport, false) };
        } else if count > 0 {
            self.take_back(batch);
        }
    }

    /// NBLs coming back, from NDIS or from a dropped batch: their packets are finished, their
    /// NBLs go back to the cache.
    fn take_back(&self, mut nbls: NblList) {
        let mut receive = self.receive.lock();
        while let Some(mut nbl) = nbls.pop() {
            if let Some(ring) = receive.as_mut() {
                ring.finish(Ticket::from_raw(nbl.ticket()));
            }
            nbl.forget_pages();
            self.cache_nbl(nbl);
        }
    }

    /// MiniportReturnNetBufferLists.
    pub fn return_nbls(&self, nbls: NblList) {
        let count = nbls.len();
        self.take_back(nbls);
        self.receives_returned(count);
    }

    fn announce_sleep(&self) -> Option<SleepDecision> {
        let mut receive = self.receive.lock();
        let ring = receive.as_mut()?;
        Some(ring.reader.announce_sleep())
    }

    fn end_sleep(&self) {
        if let Some(ring) = self.receive.lock().as_mut() {
            ring.reader.end_sleep();
        }
    }

    fn has_unread(&self) -> bool {
        self.receive
            .lock()
            .as_ref()
            .is_some_and(|ring| ring.reader.has_unread())
    }

    fn receive_event(&self) -> Option<EventReference> {
        self.receive
            .lock()
            .as_ref()
            .map(|ring| ring.tail_moved.try_clone())
    }

    /// Whether the ring stopped for good (the client corrupted it).
    fn ring_stopped(&self) -> Option<RingError> {
        self.receive
            .lock()
            .as_ref()
            .and_then(|ring| ring.reader.stopped())
    }
}

/// The receive thread's life: read, indicate, spin briefly, then sleep on the client's event
/// (after the alertable handshake) or the stop event, until told to stop.
///
/// The sleep also ends every [`RECHECK_MILLISECONDS`]: a client may move Tail without setting
/// the event even though it saw Alertable set (wintun.dll before 2026-02 lacks the fence the
/// handshake needs, so now and then it reads Alertable as 0 just as the driver goes to sleep).
/// Without the re-check such a packet waits for the client's next one: Wintun users saw stalls
/// of seconds.
pub fn run(adapter: &Adapter) {
    let Some(tail_moved) = adapter.receive_event() else {
        return;
    };
    // True after a sleep that ended by its timeout: look once, and sleep again without spinning.
    let mut rechecking = false;
    loop {
        if adapter.stopping_receive() {
            return;
        }
        let mut counts = ReceiveCounts::default();
        let mut batch = NblList::new();
        let state = adapter.read_batch(&mut batch, &mut counts);
        let got_packets = !batch.is_empty();
        adapter.indicate(batch, counts);
        if got_packets {
            rechecking = false;
            continue;
        }
        if let RingState::Stopped = state {
            // A corrupt ring (Head is now 0xFFFFFFFF): nothing more to read until teardown.
            debug_assert!(adapter.ring_stopped().is_some() || adapter.stopping_receive());
            wait(adapter.stop_event());
            return;
        }
        if !rechecking
            && (0..SPIN_POLLS).any(|_| {
                spin_loop();
                adapter.has_unread()
            })
        {
            continue;
        }
        if adapter.announce_sleep() == Some(SleepDecision::Sleep) {
            let woken_by = wait_any_for(&[adapter.stop_event(), &tail_moved], RECHECK_MILLISECONDS);
            adapter.end_sleep();
            if woken_by == Some(0) {
                return;
            }
            rechecking = woken_by.is_none();
        }
    }
}
