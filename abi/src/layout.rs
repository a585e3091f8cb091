//! The byte layouts and limits of the ring ABI, identical to Wintun's.

use core::mem::{offset_of, size_of};

/// Packets are stored at offsets that are multiples of this (`sizeof(ULONG)`).
pub const ALIGNMENT: u32 = 4;
/// The largest IP packet a ring carries (`TUN_PACKET.Size` at most this).
pub const MAX_IP_PACKET_SIZE: u32 = 0xFFFF;
/// The most ring space one packet takes: its header and data, aligned.
pub const MAX_PACKET_SPACE: u32 = align(size_of::<TunPacketHeader>() as u32 + MAX_IP_PACKET_SIZE);
/// Bytes after the capacity, so a packet that starts near the end never wraps.
pub const TRAILING_BYTES: u32 = MAX_PACKET_SPACE - ALIGNMENT;
/// Smallest ring capacity: 128 KiB.
pub const MIN_CAPACITY: u32 = 128 * 1024;
/// Largest ring capacity: 64 MiB.
pub const MAX_CAPACITY: u32 = 64 * 1024 * 1024;
/// `Head` or `Tail` set to this means the ring is finished: a consumer that found the ring
/// corrupt sets `Head` to it, the driver sets the send ring's `Tail` to it on teardown.
pub const RING_ENDED: u32 = u32::MAX;

/// `TUN_RING` without its flexible `Data` array: the fields both sides share.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRingHeader {
    /// Offset of the first unread packet; written by the consumer.
    pub head: u32,
    /// Offset of the first free byte; written by the producer.
    pub tail: u32,
    /// Non-zero while the consumer sleeps waiting for the TailMoved event.
    pub alertable: i32,
}

/// `TUN_PACKET` without its `Data`: the size of the IP packet that follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunPacketHeader {
    pub size: u32,
}

/// Bytes before `TUN_RING.Data`.
pub const RING_HEADER_SIZE: u32 = size_of::<TunRingHeader>() as u32;
/// Bytes before `TUN_PACKET.Data`.
pub const PACKET_HEADER_SIZE: u32 = size_of::<TunPacketHeader>() as u32;

const _: () = {
    assert!(size_of::<TunRingHeader>() == 12);
    assert!(offset_of!(TunRingHeader, head) == 0);
    assert!(offset_of!(TunRingHeader, tail) == 4);
    assert!(offset_of!(TunRingHeader, alertable) == 8);
    assert!(size_of::<TunPacketHeader>() == 4);
    assert!(MAX_PACKET_SPACE == 0x10004);
    assert!(TRAILING_BYTES == 0x10000);
    assert!(MIN_CAPACITY.is_power_of_two() && MAX_CAPACITY.is_power_of_two());
};

/// Rounds `n` up to the packet alignment.
pub const fn align(n: u32) -> u32 {
    (n + (ALIGNMENT - 1)) & !(ALIGNMENT - 1)
}

/// Ring space one packet of `size` data bytes takes, or `None` if `size` is over the limit.
pub const fn packet_space(size: u32) -> Option<u32> {
    if size > MAX_IP_PACKET_SIZE {
        None
    } else {
        Some(align(PACKET_HEADER_SIZE + size))
    }
}

/// Why a ring size was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSizeError {
    /// The capacity it implies is below 128 KiB or above 64 MiB (or the size is too small to hold
    /// the header and trailing bytes at all).
    CapacityOutOfRange,
    /// The capacity it implies is not a power of two.
    CapacityNotPowerOfTwo,
}

/// The whole region's bytes (`TUN_REGISTER_RINGS.RingSize`) for a capacity.
pub const fn ring_size(capacity: u32) -> u32 {
    RING_HEADER_SIZE + capacity + TRAILING_BYTES
}

/// The capacity a region of `ring_size` bytes holds: `ring_size - 12 - 0x10000`, which must be
/// a power of two from 128 KiB to 64 MiB.
pub const fn capacity_for_ring_size(ring_size: u32) -> Result<u32, RingSizeError> {
    let Some(capacity) = ring_size.checked_sub(RING_HEADER_SIZE + TRAILING_BYTES) else {
        return Err(RingSizeError::CapacityOutOfRange);
    };
    if capacity < MIN_CAPACITY || capacity > MAX_CAPACITY {
        Err(RingSizeError::CapacityOutOfRange)
    } else if !capacity.is_power_of_two() {
        Err(RingSizeError::CapacityNotPowerOfTwo)
    } else {
        Ok(capacity)
    }
}

/// `CTL_CODE(DeviceType, Function, Method, Access)` from the Windows headers.
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The device type part of the IOCTL (the WireGuard port number).
pub const TUN_DEVICE_TYPE: u32 = 51820;
/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `FILE_READ_DATA`.
pub const FILE_READ_DATA: u32 = 1;
/// `FILE_WRITE_DATA`.
pub const FILE_WRITE_DATA: u32 = 2;
/// `TUN_IOCTL_REGISTER_RINGS`: registers a send and a receive ring on an adapter handle.
pub const TUN_IOCTL_REGISTER_RINGS: u32 = ctl_code(
    TUN_DEVICE_TYPE,
    0x970,
    METHOD_BUFFERED,
    FILE_READ_DATA | FILE_WRITE_DATA,
);
const _: () = assert!(TUN_IOCTL_REGISTER_RINGS == 0xCA6C_E5C0);

/// One half of `TUN_REGISTER_RINGS` as a 64-bit process lays it out. Pointer and handle are
/// fixed-width so the layout is the same on every target that builds this crate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRingDescriptor64 {
    pub ring_size: u32,
    pub padding: u32,
    pub ring: u64,
    pub tail_moved: u64,
}

/// `TUN_REGISTER_RINGS` of a 64-bit process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRegisterRings64 {
    pub send: TunRingDescriptor64,
    pub receive: TunRingDescriptor64,
}

/// One half of `TUN_REGISTER_RINGS` as a 32-bit process (native x86, or x86 under WOW64) lays
/// it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRingDescriptor32 {
    pub ring_size: u32,
    pub ring: u32,
    pub tail_moved: u32,
}

/// `TUN_REGISTER_RINGS` of a 32-bit process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRegisterRings32 {
    pub send: TunRingDescriptor32,
    pub receive: TunRingDescriptor32,
}

const _: () = {
    assert!(size_of::<TunRingDescriptor64>() == 24);
    assert!(offset_of!(TunRingDescriptor64, ring_size) == 0);
    assert!(offset_of!(TunRingDescriptor64, ring) == 8);
    assert!(offset_of!(TunRingDescriptor64, tail_moved) == 16);
    assert!(size_of::<TunRegisterRings64>() == 48);
    assert!(offset_of!(TunRegisterRings64, receive) == 24);
    assert!(size_of::<TunRingDescriptor32>() == 12);
    assert!(offset_of!(TunRingDescriptor32, ring) == 4);
    assert!(offset_of!(TunRingDescriptor32, tail_moved) == 8);
    assert!(size_of::<TunRegisterRings32>() == 24);
    assert!(offset_of!(TunRegisterRings32, receive) == 12);
};

/// One ring of a registration, the same for 32- and 64-bit callers. Nothing in it is checked
/// beyond its encoding: the receiver validates the size with [`capacity_for_ring_size`] and the
/// address and handle against the caller's process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingDescriptor {
    pub ring_size: u32,
    /// The ring's address in the caller's process.
    pub ring: u64,
    /// The caller's handle to its TailMoved event.
    pub tail_moved: u64,
}

/// A registration request, decoded from either layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingRegistration {
    pub send: RingDescriptor,
    pub receive: RingDescriptor,
}

/// The pointer width of the process that issued the IOCTL; it decides the buffer's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerWidth {
    Bits32,
    Bits64,
}

/// Why a registration buffer could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationError {
    /// The buffer has the size of no layout its caller may use; `expected` is the size of the
    /// caller's own layout.
    WrongLength { expected: usize, actual: usize },
}

impl RingRegistration {
    /// Bytes of the layout a caller of `width` uses.
    pub const fn encoded_len(width: CallerWidth) -> usize {
        match width {
            CallerWidth::Bits32 => size_of::<TunRegisterRings32>(),
            CallerWidth::Bits64 => size_of::<TunRegisterRings64>(),
        }
    }

    /// The layout of a `len`-byte buffer from a `caller`: the 64-bit one whenever the buffer has
    /// its size, the 32-bit one only for a 32-bit caller whose buffer has that size (a 32-bit
    /// process may pass either, and Wintun takes both so); `None` for any other length.
    pub const fn layout_of(len: usize, caller: CallerWidth) -> Option<CallerWidth> {
        if len == Self::encoded_len(CallerWidth::Bits64) {
            Some(CallerWidth::Bits64)
        } else if matches!(caller, CallerWidth::Bits32)
            && len == Self::encoded_len(CallerWidth::Bits32)
        {
            Some(CallerWidth::Bits32)
        } else {
            None
        }
    }

    /// Decodes the IOCTL's input buffer (little-endian, as on every Windows target) from a
    /// `caller`, in the layout [`layout_of`](Self::layout_of) picks.
    pub fn decode(buffer: &[u8], caller: CallerWidth) -> Result<Self, RegistrationError> {
        let Some(width) = Self::layout_of(buffer.len(), caller) else {
            return Err(RegistrationError::WrongLength {
                expected: Self::encoded_len(caller),
                actual: buffer.len(),
            });
        };
        let u32_at = |at: usize| {
            let bytes = [buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]];
            u32::from_le_bytes(bytes)
        };
        let u64_at = |at: usize| u64::from(u32_at(at)) | (u64::from(u32_at(at + 4)) << 32);
        let half = |at: usize| match width {
            CallerWidth::Bits32 => RingDescriptor {
                ring_size: u32_at(at + offset_of!(TunRingDescriptor32, ring_size)),
                ring: u64::from(u32_at(at + offset_of!(TunRingDescriptor32, ring))),
                tail_moved: u64::from(u32_at(at + offset_of!(TunRingDescriptor32, tail_moved))),
            },
            CallerWidth::Bits64 => RingDescriptor {
                ring_size: u32_at(at + offset_of!(TunRingDescriptor64, ring_size)),
                ring: u64_at(at + offset_of!(TunRingDescriptor64, ring)),
                tail_moved: u64_at(at + offset_of!(TunRingDescriptor64, tail_moved)),
            },
        };
        let receive_at = match width {
            CallerWidth::Bits32 => offset_of!(TunRegisterRings32, receive),
            CallerWidth::Bits64 => offset_of!(TunRegisterRings64, receive),
        };
        Ok(RingRegistration {
            send: half(0),
            receive: half(receive_at),
        })
    }

    /// Encodes the request for a caller of `width` into `buffer`, returning the bytes used, or
    /// `None` if the buffer is too small or a pointer or handle does not fit in 32 bits.
    pub fn encode(&self, width: CallerWidth, buffer: &mut [u8]) -> Option<usize> {
        let len = Self::encoded_len(width);
        let out = buffer.get_mut(..len)?;
        out.fill(0);
        let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
        for (at, ring) in [(0, &self.send), (len / 2, &self.receive)] {
            put(at, &ring.ring_size.to_le_bytes());
            match width {
                CallerWidth::Bits32 => {
                    let ring_address = u32::try_from(ring.ring).ok()?;
                    let handle = u32::try_from(ring.tail_moved).ok()?;
                    put(
                        at + offset_of!(TunRingDescriptor32, ring),
                        &ring_address.to_le_bytes(),
                    );
                    put(
                        at + offset_of!(TunRingDescriptor32, tail_moved),
                        &handle.to_le_bytes(),
                    );
                }
                CallerWidth::Bits64 => {
                    put(
                        at + offset_of!(TunRingDescriptor64, ring),
                        &ring.ring.to_le_bytes(),
                    );
                    let handle_at = at + offset_of!(TunRingDescriptor64, tail_moved);
                    put(handle_at, &ring.tail_moved.to_le_bytes());
                }
            }
        }
        Some(len)
    }
}
