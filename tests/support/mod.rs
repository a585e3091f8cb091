//! What the tests of the driver share: a client's rings and registration, and the adapter set
//! up on the simulated kernel.
#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use oxtun_abi::{
    CallerWidth, ExtendedRegistration, Features, MIN_CAPACITY, RING_ENDED, RingDescriptor,
    RingReader, RingRegion, RingRegistration, RingWriter, TUN_IOCTL_REGISTER_RINGS, ring_size,
};
use oxtun_driver::sys::*;
use oxtun_sim::{Adapter, Bitness, DeviceHandle, Driver, EventObject, Leaks, Process, outstanding};

pub const EVENT_ALL_ACCESS: ACCESS_MASK = 0x001F_0003;
pub const READ_WRITE: ACCESS_MASK = FILE_READ_DATA | FILE_WRITE_DATA;
pub const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008_u32 as i32;
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = 0xC000_0024_u32 as i32;

/// What a client allocates for a registration: two rings and two events.
pub struct ClientRings {
    pub request: RingRegistration,
    pub width: CallerWidth,
    pub send_ring: u64,
    pub send_event: Arc<EventObject>,
    pub receive_ring: u64,
    pub receive_event: Arc<EventObject>,
}

impl ClientRings {
    pub fn new(process: &Process) -> Self {
        Self::with_capacity(process, MIN_CAPACITY)
    }

    pub fn with_capacity(process: &Process, capacity: u32) -> Self {
        let size = ring_size(capacity);
        let send_ring = process.allocate(size as usize);
        let receive_ring = process.allocate(size as usize);
        let (send_handle, send_event) = process.create_event(EVENT_ALL_ACCESS);
        let (receive_handle, receive_event) = process.create_event(EVENT_ALL_ACCESS);
        ClientRings {
            request: RingRegistration {
                send: RingDescriptor {
                    ring_size: size,
                    ring: send_ring,
                    tail_moved: send_handle,
                },
                receive: RingDescriptor {
                    ring_size: size,
                    ring: receive_ring,
                    tail_moved: receive_handle,
                },
            },
            width: match process.bitness() {
                Bitness::Bits32 => CallerWidth::Bits32,
                Bitness::Bits64 => CallerWidth::Bits64,
            },
            send_ring,
            send_event,
            receive_ring,
            receive_event,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut buffer = [0u8; 48];
        let len = self.request.encode(self.width, &mut buffer).unwrap();
        buffer[..len].to_vec()
    }

    /// The TUN_IOCTL_REGISTER_RINGS_EX buffer for these rings, asking for `features`.
    pub fn extended_bytes(&self, features: Features) -> Vec<u8> {
        let extended = ExtendedRegistration {
            rings: self.request,
            features,
        };
        let mut buffer = [0u8; 64];
        let len = extended.encode(self.width, &mut buffer).unwrap();
        buffer[..len].to_vec()
    }

    /// The send ring's Tail, as the client reads it.
    pub fn send_tail(&self) -> u32 {
        // SAFETY (test): the ring's memory is live in the process; Tail is its second word.
        unsafe { AtomicU32::from_ptr((self.send_ring as *mut u32).add(1)) }.load(Ordering::SeqCst)
    }

    /// The receive ring's Head, as the client reads it.
    pub fn receive_head(&self) -> u32 {
        // SAFETY (test): the ring's memory is live in the process; Head is its first word.
        unsafe { AtomicU32::from_ptr(self.receive_ring as *mut u32) }.load(Ordering::SeqCst)
    }

    /// The receive ring's Tail, as the client reads it.
    pub fn receive_tail(&self) -> u32 {
        // SAFETY (test): the ring's memory is live in the process; Tail is its second word.
        unsafe { AtomicU32::from_ptr((self.receive_ring as *mut u32).add(1)) }
            .load(Ordering::SeqCst)
    }

    /// Whether the driver ended the registration: the send ring's Tail and the receive ring's
    /// Head are 0xFFFFFFFF (deployed wintun.dll clients read either as the end), and the send
    /// event is set.
    pub fn ended(&self) -> bool {
        self.send_tail() == RING_ENDED
            && self.receive_head() == RING_ENDED
            && self.send_event.set_count() >= 1
    }
}

pub struct Setup {
    pub driver: Driver,
    pub adapter: Adapter,
    pub loaded: Leaks,
}

pub fn setup() -> Setup {
    setup_with(oxtun_sim::AdapterSetup::default())
}

/// `pool` and the pool blocks of `nbls` receive NBLs the adapter keeps for reuse, sorted.
pub fn with_cached_nbls(
    pool: &[oxtun_sim::pool::Allocation],
    nbls: usize,
) -> Vec<oxtun_sim::pool::Allocation> {
    let parts = oxtun_sim::pool::Allocation {
        size: RECEIVE_NBL_POOL_BYTES,
        tag: POOL_TAG,
        paged: false,
    };
    let mut pool = pool.to_vec();
    pool.extend(std::iter::repeat_n(parts, nbls));
    sorted(pool)
}

/// Pool allocations in an order that does not depend on when they were made.
pub fn sorted(mut pool: Vec<oxtun_sim::pool::Allocation>) -> Vec<oxtun_sim::pool::Allocation> {
    pool.sort_by_key(|allocation| (allocation.size, allocation.paged, allocation.tag));
    pool
}

/// An adapter added as `adapter_setup` says (its registry keywords).
pub fn setup_with(adapter_setup: oxtun_sim::AdapterSetup) -> Setup {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter_with(adapter_setup).unwrap();
    let loaded = outstanding();
    Setup {
        driver,
        adapter,
        loaded,
    }
}

impl Setup {
    pub fn finish(self) {
        self.adapter.halt();
        let leaks = self.driver.unload();
        assert!(leaks.is_empty(), "leaked {leaks}");
    }

    /// Everything is as it was after the adapter came up, but for receive NBLs the adapter
    /// keeps for reuse (each with its two MDLs and its pool block; freed at halt, which `finish`
    /// checks).
    pub fn assert_nothing_held(&self) {
        let now = outstanding();
        let expected = Leaks {
            pool: with_cached_nbls(&self.loaded.pool, now.nbls),
            nbls: now.nbls,
            mdls: self.loaded.mdls + 2 * now.nbls,
            ..self.loaded.clone()
        };
        let now = Leaks {
            pool: sorted(now.pool.clone()),
            ..now
        };
        assert_eq!(now, expected, "holding {now}");
    }
}

/// Opens the adapter's device in `process` and registers fresh rings through it.
pub fn register<'a>(adapter: &Adapter, process: &'a Process) -> (DeviceHandle<'a>, ClientRings) {
    let handle = process.open(adapter.device(), READ_WRITE);
    let rings = ClientRings::new(process);
    let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_SUCCESS);
    (handle, rings)
}

/// Opens the adapter's device in `process` and registers fresh rings through the extended IOCTL,
/// asking for the per-packet header.
pub fn register_with_headers<'a>(
    adapter: &Adapter,
    process: &'a Process,
) -> (DeviceHandle<'a>, ClientRings) {
    let handle = process.open(adapter.device(), READ_WRITE);
    let rings = ClientRings::new(process);
    let status = handle.device_control(
        oxtun_abi::TUN_IOCTL_REGISTER_RINGS_EX,
        &rings.extended_bytes(Features::VNET_HDR),
    );
    assert_eq!(status, STATUS_SUCCESS);
    (handle, rings)
}

impl ClientRings {
    /// The send ring as the client reads it.
    pub fn send_reader(&self) -> RingReader {
        let region = client_region(self.send_ring, self.request.send.ring_size);
        RingReader::attach(region).unwrap()
    }

    /// The receive ring as the client writes it.
    pub fn receive_writer(&self) -> RingWriter {
        let region = client_region(self.receive_ring, self.request.receive.ring_size);
        RingWriter::attach(region).unwrap()
    }
}

fn client_region(address: u64, size: u32) -> RingRegion {
    let base = NonNull::new(address as *mut u8).unwrap();
    // SAFETY (test): the ring's memory lives as long as the process, which outlives the test's
    // use of it; it is shared with the driver, which RingRegion allows.
    unsafe { RingRegion::new(base, size as usize) }.unwrap()
}

/// Reads every packet now in the ring, releasing them.
pub fn drain(reader: &mut RingReader) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet().unwrap() {
        let mut data = vec![0; packet.size() as usize];
        reader.copy_packet(&packet, &mut data);
        packets.push(data);
    }
    assert!(reader.release_all());
    packets
}

/// Writes packets to the receive ring as the client does: one reservation, then the handshake's
/// wake-up if the driver sleeps. False, writing nothing, if they do not fit now.
pub fn client_write(writer: &mut RingWriter, event: &EventObject, packets: &[Vec<u8>]) -> bool {
    let bytes = packets
        .iter()
        .map(|packet| oxtun_abi::packet_space(packet.len() as u32).unwrap())
        .sum();
    let mut reservation = match writer.reserve(bytes) {
        Ok(reservation) => reservation,
        Err(oxtun_abi::ReserveError::Full { .. }) => return false,
        Err(other) => panic!("the receive ring failed: {other:?}"),
    };
    for packet in packets {
        let mut slot = reservation.push_packet(packet.len() as u32).unwrap();
        assert!(slot.write(0, packet));
    }
    if writer.complete(reservation).wake_consumer {
        event.set();
    }
    true
}

/// An IPv4-looking packet (version 4, header length 5) of `len` bytes, the rest a pattern.
pub fn ipv4(seed: u64, len: usize) -> Vec<u8> {
    ip_packet(0x45, seed, len)
}

/// An IPv6-looking packet of `len` bytes.
pub fn ipv6(seed: u64, len: usize) -> Vec<u8> {
    ip_packet(0x60, seed, len)
}

fn ip_packet(first: u8, seed: u64, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (seed.wrapping_mul(0x9E37_79B9) >> 8) as u8 ^ (i as u8).wrapping_mul(7))
        .collect();
    for (i, byte) in seed.to_le_bytes().iter().enumerate() {
        if 4 + i < len {
            bytes[4 + i] = *byte;
        }
    }
    if let Some(byte) = bytes.first_mut() {
        *byte = first;
    }
    bytes
}

/// The adapter's OID_GEN_STATISTICS answer.
pub fn statistics(adapter: &Adapter) -> NDIS_STATISTICS_INFO {
    let answer = adapter.query(OID_GEN_STATISTICS, 0x98);
    assert_eq!(answer.status, NDIS_STATUS_SUCCESS);
    // SAFETY (test): the answer is a whole NDIS_STATISTICS_INFO, plain data.
    unsafe {
        answer
            .data
            .as_ptr()
            .cast::<NDIS_STATISTICS_INFO>()
            .read_unaligned()
    }
}

/// Waits (20 seconds at most) until the driver has released everything the client wrote to the
/// receive ring: Head caught up with Tail.
pub fn wait_released(rings: &ClientRings) {
    let start = Instant::now();
    while rings.receive_head() != rings.receive_tail() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Head stuck at {:#x}",
            rings.receive_head()
        );
        std::thread::yield_now();
    }
}

/// The bytes of an OID_TCP_OFFLOAD_PARAMETERS buffer of `revision`, all settings "no change"
/// but what `set` changes.
pub fn offload_parameters(revision: u8, set: impl FnOnce(&mut NDIS_OFFLOAD_PARAMETERS)) -> Vec<u8> {
    // SAFETY (test): plain integers; zeroed, padding included, and changed in place only, so
    // every byte read below is initialized.
    let mut parameters: Box<NDIS_OFFLOAD_PARAMETERS> = Box::new(unsafe { std::mem::zeroed() });
    parameters.Header = NDIS_OBJECT_HEADER {
        Type: NDIS_OBJECT_TYPE_DEFAULT,
        Revision: revision,
        Size: match revision {
            1 => NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1,
            3 => NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3,
            _ => NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5,
        },
    };
    set(&mut parameters);
    let size = usize::from(parameters.Header.Size);
    // SAFETY (test): the box's initialized bytes, `size` of them at most its size.
    unsafe { std::slice::from_raw_parts((&raw const *parameters).cast::<u8>(), size) }.to_vec()
}

/// The bytes of an OID_OFFLOAD_ENCAPSULATION buffer setting both IP versions to `enabled` with
/// `encapsulation`.
pub fn offload_encapsulation(enabled: u32, encapsulation: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend([NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION, 1]);
    bytes.extend(NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1.to_ne_bytes());
    for _ in 0..2 {
        for word in [enabled, encapsulation, 0] {
            bytes.extend(word.to_ne_bytes());
        }
    }
    bytes
}
