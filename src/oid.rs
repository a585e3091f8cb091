//! OID requests: what the adapter answers to queries and accepts in sets.
//!
//! Pure logic over the request's buffer and the state it answers from; the glue in `driver.rs`
//! takes the buffer out of the NDIS_OID_REQUEST and puts the byte counts back.

use core::mem::size_of;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::statistics::Counters;
use crate::sys::*;

/// What the adapter reports as its MTU and frame size: the largest packet a ring carries.
pub const MTU: u32 = oxtun_abi::MAX_IP_PACKET_SIZE;

/// What OID sets change: kept and answered back, with no effect on a layer-3 virtual link.
pub struct Settings {
    pub packet_filter: AtomicU32,
    pub lookahead: AtomicU32,
}

impl Settings {
    pub const fn new() -> Self {
        Settings {
            packet_filter: AtomicU32::new(0),
            lookahead: AtomicU32::new(MTU),
        }
    }
}

/// The adapter's counters, both ways.
pub struct Traffic<'a> {
    pub sent: &'a Counters,
    pub received: &'a Counters,
}

/// Every OID the adapter answers, as NDIS must be told in the general attributes.
pub static SUPPORTED_OIDS: [NDIS_OID; 21] = [
    OID_GEN_SUPPORTED_LIST,
    OID_GEN_MAXIMUM_FRAME_SIZE,
    OID_GEN_MAXIMUM_TOTAL_SIZE,
    OID_GEN_TRANSMIT_BUFFER_SPACE,
    OID_GEN_RECEIVE_BUFFER_SPACE,
    OID_GEN_TRANSMIT_BLOCK_SIZE,
    OID_GEN_RECEIVE_BLOCK_SIZE,
    OID_GEN_VENDOR_ID,
    OID_GEN_VENDOR_DESCRIPTION,
    OID_GEN_VENDOR_DRIVER_VERSION,
    OID_GEN_CURRENT_PACKET_FILTER,
    OID_GEN_CURRENT_LOOKAHEAD,
    OID_GEN_XMIT_OK,
    OID_GEN_RCV_OK,
    OID_GEN_STATISTICS,
    OID_GEN_INTERRUPT_MODERATION,
    OID_GEN_LINK_PARAMETERS,
    OID_PNP_QUERY_POWER,
    OID_PNP_SET_POWER,
    // Sets only (the adapter's), which change the task offloads; NDIS answers their queries.
    OID_TCP_OFFLOAD_PARAMETERS,
    OID_OFFLOAD_ENCAPSULATION,
];

/// OID_GEN_VENDOR_ID: the vendor's three-byte IEEE OUI, then a byte for the NIC, in that order
/// in the buffer (network byte order, as Wintun answers). Without an OUI of our own the OUI is
/// 0xFFFFFF, as Microsoft's documentation of the OID asks; NIC number 0.
pub const VENDOR_ID: [u8; 4] = [0xFF, 0xFF, 0xFF, 0x00];
/// OID_GEN_VENDOR_DESCRIPTION: a NUL-terminated ASCII string.
pub const VENDOR_DESCRIPTION: &[u8] = b"OxTun Userspace Tunnel\0";
/// OID_GEN_VENDOR_DRIVER_VERSION: major in the high 16 bits, minor in the low.
pub const VENDOR_DRIVER_VERSION: u32 = (parse_u16(env!("CARGO_PKG_VERSION_MAJOR")) as u32) << 16
    | parse_u16(env!("CARGO_PKG_VERSION_MINOR")) as u32;
/// The buffer space each direction reports: the largest ring.
pub const BUFFER_SPACE: u32 = oxtun_abi::MAX_CAPACITY;

const fn parse_u16(digits: &str) -> u16 {
    let bytes = digits.as_bytes();
    let mut value = 0u16;
    let mut index = 0;
    while index < bytes.len() {
        value = value * 10 + (bytes[index] - b'0') as u16;
        index += 1;
    }
    value
}

/// How a request ended: the status, and the counts that go back into the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OidAnswer {
    pub status: NDIS_STATUS,
    /// BytesWritten for a query, BytesRead for a set.
    pub bytes_done: u32,
    pub bytes_needed: u32,
}

impl OidAnswer {
    pub fn done(bytes: usize) -> Self {
        OidAnswer {
            status: NDIS_STATUS_SUCCESS,
            bytes_done: bytes as u32,
            bytes_needed: 0,
        }
    }

    pub fn status(status: NDIS_STATUS) -> Self {
        OidAnswer {
            status,
            bytes_done: 0,
            bytes_needed: 0,
        }
    }

    pub fn short(status: NDIS_STATUS, needed: usize) -> Self {
        OidAnswer {
            status,
            bytes_done: 0,
            bytes_needed: needed as u32,
        }
    }
}

/// Copies `value` into the query buffer, or says how much room it needs.
fn answer(buffer: &mut [u8], value: &[u8]) -> OidAnswer {
    match buffer.get_mut(..value.len()) {
        Some(out) => {
            out.copy_from_slice(value);
            OidAnswer::done(value.len())
        }
        None => OidAnswer::short(NDIS_STATUS_BUFFER_TOO_SHORT, value.len()),
    }
}

/// A counter as 64 bits, or its low 32 bits when the buffer has room for only that: NDIS asks
/// with either size.
fn answer_counter(buffer: &mut [u8], value: u64) -> OidAnswer {
    if buffer.len() >= size_of::<u64>() {
        answer(buffer, &value.to_ne_bytes())
    } else if buffer.len() >= size_of::<u32>() {
        answer(buffer, &(value as u32).to_ne_bytes())
    } else {
        OidAnswer::short(NDIS_STATUS_BUFFER_TOO_SHORT, size_of::<u64>())
    }
}

pub fn query(settings: &Settings, traffic: Traffic, oid: NDIS_OID, buffer: &mut [u8]) -> OidAnswer {
    let u32_answer = |buffer: &mut [u8], value: u32| answer(buffer, &value.to_ne_bytes());
    match oid {
        OID_GEN_SUPPORTED_LIST => {
            let mut list = [0u8; size_of::<[NDIS_OID; SUPPORTED_OIDS.len()]>()];
            for (chunk, oid) in list.chunks_exact_mut(4).zip(SUPPORTED_OIDS) {
                chunk.copy_from_slice(&oid.to_ne_bytes());
            }
            answer(buffer, &list)
        }
        OID_GEN_MAXIMUM_FRAME_SIZE | OID_GEN_MAXIMUM_TOTAL_SIZE => u32_answer(buffer, MTU),
        OID_GEN_TRANSMIT_BLOCK_SIZE | OID_GEN_RECEIVE_BLOCK_SIZE => u32_answer(buffer, MTU),
        OID_GEN_TRANSMIT_BUFFER_SPACE | OID_GEN_RECEIVE_BUFFER_SPACE => {
            u32_answer(buffer, BUFFER_SPACE)
        }
        OID_GEN_VENDOR_ID => answer(buffer, &VENDOR_ID),
        OID_GEN_VENDOR_DESCRIPTION => answer(buffer, VENDOR_DESCRIPTION),
        OID_GEN_VENDOR_DRIVER_VERSION => u32_answer(buffer, VENDOR_DRIVER_VERSION),
        OID_GEN_CURRENT_PACKET_FILTER => {
            u32_answer(buffer, settings.packet_filter.load(Ordering::Relaxed))
        }
        OID_GEN_CURRENT_LOOKAHEAD => u32_answer(buffer, settings.lookahead.load(Ordering::Relaxed)),
        OID_GEN_XMIT_OK => answer_counter(buffer, traffic.sent.read().packets),
        OID_GEN_RCV_OK => answer_counter(buffer, traffic.received.read().packets),
        OID_GEN_STATISTICS => answer(buffer, statistics(traffic).as_bytes()),
        OID_GEN_INTERRUPT_MODERATION => {
            let parameters = NDIS_INTERRUPT_MODERATION_PARAMETERS {
                Header: NDIS_OBJECT_HEADER {
                    Type: NDIS_OBJECT_TYPE_DEFAULT,
                    Revision: NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1,
                    Size: NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1,
                },
                Flags: 0,
                InterruptModeration: NdisInterruptModerationNotSupported,
            };
            answer(buffer, parameters.as_bytes())
        }
        // A virtual adapter can enter any power state.
        OID_PNP_QUERY_POWER => OidAnswer::done(0),
        _ => OidAnswer::status(NDIS_STATUS_NOT_SUPPORTED),
    }
}

/// The u32 at the start of a set's buffer, or the answer for a buffer too short to hold one.
fn set_u32(buffer: &[u8]) -> Result<u32, OidAnswer> {
    match buffer.first_chunk::<4>() {
        Some(bytes) => Ok(u32::from_ne_bytes(*bytes)),
        None => Err(OidAnswer::short(
            NDIS_STATUS_INVALID_LENGTH,
            size_of::<u32>(),
        )),
    }
}

pub fn set(settings: &Settings, oid: NDIS_OID, buffer: &[u8]) -> OidAnswer {
    match oid {
        OID_GEN_CURRENT_PACKET_FILTER => match set_u32(buffer) {
            Ok(filter) => {
                settings.packet_filter.store(filter, Ordering::Relaxed);
                OidAnswer::done(4)
            }
            Err(answer) => answer,
        },
        OID_GEN_CURRENT_LOOKAHEAD => match set_u32(buffer) {
            Ok(lookahead) if lookahead <= MTU => {
                settings.lookahead.store(lookahead, Ordering::Relaxed);
                OidAnswer::done(4)
            }
            Ok(_) => OidAnswer::status(NDIS_STATUS_INVALID_DATA),
            Err(answer) => answer,
        },
        // Link parameters of a virtual link: accepted, nothing to change.
        OID_GEN_LINK_PARAMETERS if buffer.len() < NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1 => {
            OidAnswer::short(
                NDIS_STATUS_INVALID_LENGTH,
                NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1,
            )
        }
        OID_GEN_LINK_PARAMETERS => OidAnswer::done(NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1),
        // There are no interrupts to moderate: a set is refused as the documentation asks.
        OID_GEN_INTERRUPT_MODERATION => OidAnswer::status(NDIS_STATUS_INVALID_DATA),
        OID_PNP_SET_POWER => match set_u32(buffer) {
            Ok(_power_state) => OidAnswer::done(size_of::<NDIS_DEVICE_POWER_STATE>()),
            Err(answer) => answer,
        },
        _ => OidAnswer::status(NDIS_STATUS_NOT_SUPPORTED),
    }
}

fn statistics(traffic: Traffic) -> NDIS_STATISTICS_INFO {
    let (sent, received) = (traffic.sent.read(), traffic.received.read());
    NDIS_STATISTICS_INFO {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_DEFAULT,
            Revision: NDIS_STATISTICS_INFO_REVISION_1,
            Size: NDIS_SIZEOF_STATISTICS_INFO_REVISION_1,
        },
        SupportedStatistics: NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_RCV
            | NDIS_STATISTICS_FLAGS_VALID_BYTES_RCV
            | NDIS_STATISTICS_FLAGS_VALID_RCV_DISCARDS
            | NDIS_STATISTICS_FLAGS_VALID_RCV_ERROR
            | NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_XMIT
            | NDIS_STATISTICS_FLAGS_VALID_BYTES_XMIT
            | NDIS_STATISTICS_FLAGS_VALID_XMIT_ERROR
            | NDIS_STATISTICS_FLAGS_VALID_XMIT_DISCARDS
            | NDIS_STATISTICS_FLAGS_VALID_DIRECTED_BYTES_RCV
            | NDIS_STATISTICS_FLAGS_VALID_DIRECTED_BYTES_XMIT,
        ifInDiscards: received.discards,
        ifInErrors: received.errors,
        ifHCInOctets: received.octets,
        ifHCInUcastPkts: received.packets,
        ifHCInUcastOctets: received.octets,
        ifHCOutOctets: sent.octets,
        ifHCOutUcastPkts: sent.packets,
        ifHCOutUcastOctets: sent.octets,
        ifOutErrors: sent.errors,
        ifOutDiscards: sent.discards,
        ..NDIS_STATISTICS_INFO::default()
    }
}
