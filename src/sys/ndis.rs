//! NDIS 6 types and functions (ndis.h, ntddndis.h).

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

use super::nt::{
    PDEVICE_OBJECT, PDRIVER_OBJECT, PMDL, PUNICODE_STRING, PVOID, ULONG, UNICODE_STRING,
};

pub type NDIS_STATUS = i32;
pub type NDIS_HANDLE = *mut c_void;
pub type PNDIS_HANDLE = *mut NDIS_HANDLE;
pub type NDIS_PORT_NUMBER = ULONG;
pub type BOOLEAN = u8;

// NDIS 6 status values, as ndis/status.h defines them: some are the NTSTATUS of the same meaning
// (NDIS_STATUS_FAILURE is 0xC0000001), others NDIS's own codes (0xC001xxxx, 0xC023xxxx).
pub const NDIS_STATUS_SUCCESS: NDIS_STATUS = 0;
pub const NDIS_STATUS_FAILURE: NDIS_STATUS = 0xC000_0001_u32 as i32;
pub const NDIS_STATUS_NOT_SUPPORTED: NDIS_STATUS = 0xC000_00BB_u32 as i32;
pub const NDIS_STATUS_PENDING: NDIS_STATUS = 0x0000_0103;
pub const NDIS_STATUS_RESOURCES: NDIS_STATUS = 0xC000_009A_u32 as i32;
pub const NDIS_STATUS_INVALID_PARAMETER: NDIS_STATUS = 0xC000_000D_u32 as i32;
pub const NDIS_STATUS_INVALID_LENGTH: NDIS_STATUS = 0xC001_0014_u32 as i32;
pub const NDIS_STATUS_INVALID_DATA: NDIS_STATUS = 0xC001_0015_u32 as i32;
pub const NDIS_STATUS_BUFFER_TOO_SHORT: NDIS_STATUS = 0xC001_0016_u32 as i32;
pub const NDIS_STATUS_INVALID_OID: NDIS_STATUS = 0xC001_0017_u32 as i32;
pub const NDIS_STATUS_BUFFER_OVERFLOW: NDIS_STATUS = 0x8000_0005_u32 as i32;
pub const NDIS_STATUS_ADAPTER_NOT_READY: NDIS_STATUS = 0xC001_0011_u32 as i32;
pub const NDIS_STATUS_MEDIA_DISCONNECTED: NDIS_STATUS = 0xC023_001F_u32 as i32;
pub const NDIS_STATUS_PAUSED: NDIS_STATUS = 0xC023_002A_u32 as i32;

/// The miniport's NDIS version: 6.83 (Windows 10 version 1903 and later; the driver needs 2004),
/// the first with UDP segmentation offload (NDIS_OFFLOAD revision 6).
pub const NDIS_MINIPORT_MAJOR_VERSION: u8 = 6;
pub const NDIS_MINIPORT_MINOR_VERSION: u8 = 83;

/// `NDIS_OBJECT_HEADER`: the type, revision and size every NDIS 6 structure starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OBJECT_HEADER {
    pub Type: u8,
    pub Revision: u8,
    pub Size: u16,
}

pub const NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS: u8 = 0x8A;
pub const NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u8 = 2;
/// Revision 3 (NDIS 6.80 and later) adds SynchronousOidRequestHandler.
pub const NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3: u8 = 3;

/// Opaque structures passed to handlers; their fields are declared when the driver reads them.
macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _opaque: [u8; 0],
        }
    )*};
}
opaque!(
    NDIS_MINIPORT_INIT_PARAMETERS,
    NDIS_MINIPORT_PAUSE_PARAMETERS,
    NDIS_MINIPORT_RESTART_PARAMETERS
);

/// `NET_BUFFER`, up to the fields the driver uses. NDIS allocates them.
#[repr(C, align(16))]
pub struct NET_BUFFER {
    pub Next: *mut NET_BUFFER,
    pub CurrentMdl: PMDL,
    pub CurrentMdlOffset: ULONG,
    _padding0: u32,
    /// The low half of the `DataLength` / `stDataLength` (SIZE_T) union.
    pub DataLength: ULONG,
    _padding1: u32,
    pub MdlChain: PMDL,
    pub DataOffset: ULONG,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(NET_BUFFER, CurrentMdl) == 0x08);
    assert!(offset_of!(NET_BUFFER, CurrentMdlOffset) == 0x10);
    assert!(offset_of!(NET_BUFFER, DataLength) == 0x18);
    assert!(offset_of!(NET_BUFFER, MdlChain) == 0x20);
    assert!(offset_of!(NET_BUFFER, DataOffset) == 0x28);
};

pub type NDIS_HALT_ACTION = u32;
pub const NdisHaltDeviceSurpriseRemoved: NDIS_HALT_ACTION = 3;
pub type NDIS_SHUTDOWN_ACTION = u32;
pub type NDIS_DEVICE_PNP_EVENT = u32;
pub const NdisDevicePnPEventSurpriseRemoved: NDIS_DEVICE_PNP_EVENT = 2;

/// `NET_DEVICE_PNP_EVENT`.
#[repr(C)]
pub struct NET_DEVICE_PNP_EVENT {
    pub Header: NDIS_OBJECT_HEADER,
    pub PortNumber: NDIS_PORT_NUMBER,
    pub DevicePnPEvent: NDIS_DEVICE_PNP_EVENT,
    pub InformationBuffer: PVOID,
    pub InformationBufferLength: ULONG,
    pub NdisReserved: [u8; 16],
}

pub const NDIS_OBJECT_TYPE_DEFAULT: u8 = 0x80;
pub const NDIS_OBJECT_TYPE_OID_REQUEST: u8 = 0x96;
pub const NDIS_OBJECT_TYPE_STATUS_INDICATION: u8 = 0x98;
pub const NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES: u8 = 0x9E;
pub const NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES: u8 = 0x9F;

pub type NDIS_MEDIUM = u32;
pub const NdisMediumIP: NDIS_MEDIUM = 19;
pub type NDIS_PHYSICAL_MEDIUM = u32;
pub const NdisPhysicalMediumUnspecified: NDIS_PHYSICAL_MEDIUM = 0;
pub type NDIS_INTERFACE_TYPE = u32;
pub const NdisInterfaceInternal: NDIS_INTERFACE_TYPE = 0;
pub type NDIS_MEDIA_CONNECT_STATE = u32;
pub const MediaConnectStateUnknown: NDIS_MEDIA_CONNECT_STATE = 0;
pub const MediaConnectStateConnected: NDIS_MEDIA_CONNECT_STATE = 1;
pub const MediaConnectStateDisconnected: NDIS_MEDIA_CONNECT_STATE = 2;
pub type NDIS_MEDIA_DUPLEX_STATE = u32;
pub const MediaDuplexStateFull: NDIS_MEDIA_DUPLEX_STATE = 2;
pub type NDIS_SUPPORTED_PAUSE_FUNCTIONS = u32;
pub const NdisPauseFunctionsUnsupported: NDIS_SUPPORTED_PAUSE_FUNCTIONS = 0;
pub type NET_IF_ACCESS_TYPE = u32;
pub const NET_IF_ACCESS_BROADCAST: NET_IF_ACCESS_TYPE = 2;
pub type NET_IF_DIRECTION_TYPE = u32;
pub const NET_IF_DIRECTION_SENDRECEIVE: NET_IF_DIRECTION_TYPE = 0;
pub type NET_IF_CONNECTION_TYPE = u32;
pub const NET_IF_CONNECTION_DEDICATED: NET_IF_CONNECTION_TYPE = 1;
pub type NET_IFTYPE = u16;
pub const IF_TYPE_PROP_VIRTUAL: NET_IFTYPE = 53;

pub const NDIS_MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK: ULONG = 0x4;
pub const NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND: ULONG = 0x20;

pub const NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2: u8 = 2;
pub const NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2: u16 = 0x1C;

/// `NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES`.
#[repr(C)]
pub struct NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub MiniportAdapterContext: NDIS_HANDLE,
    pub AttributeFlags: ULONG,
    pub CheckForHangTimeInSeconds: u32,
    pub InterfaceType: NDIS_INTERFACE_TYPE,
}

pub const NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2: u8 = 2;
pub const NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2: u16 = 0xE0;
pub const NDIS_MAX_PHYS_ADDRESS_LENGTH: usize = 32;

pub const NDIS_MAC_OPTION_COPY_LOOKAHEAD_DATA: ULONG = 0x1;
pub const NDIS_MAC_OPTION_TRANSFERS_NOT_PEND: ULONG = 0x4;
pub const NDIS_MAC_OPTION_NO_LOOPBACK: ULONG = 0x8;
pub const NDIS_MAC_OPTION_FULL_DUPLEX: ULONG = 0x10;

pub const NDIS_PACKET_TYPE_DIRECTED: ULONG = 0x1;
pub const NDIS_PACKET_TYPE_ALL_MULTICAST: ULONG = 0x4;
pub const NDIS_PACKET_TYPE_BROADCAST: ULONG = 0x8;
pub const NDIS_PACKET_TYPE_ALL_LOCAL: ULONG = 0x80;
pub const NDIS_PACKET_TYPE_ALL_FUNCTIONAL: ULONG = 0x2000;

pub const NDIS_STATISTICS_XMIT_OK_SUPPORTED: ULONG = 0x1;
pub const NDIS_STATISTICS_RCV_OK_SUPPORTED: ULONG = 0x2;
pub const NDIS_STATISTICS_XMIT_ERROR_SUPPORTED: ULONG = 0x4;
pub const NDIS_STATISTICS_RCV_ERROR_SUPPORTED: ULONG = 0x8;
pub const NDIS_STATISTICS_DIRECTED_BYTES_XMIT_SUPPORTED: ULONG = 0x20;
pub const NDIS_STATISTICS_DIRECTED_FRAMES_XMIT_SUPPORTED: ULONG = 0x40;
pub const NDIS_STATISTICS_DIRECTED_BYTES_RCV_SUPPORTED: ULONG = 0x800;
pub const NDIS_STATISTICS_DIRECTED_FRAMES_RCV_SUPPORTED: ULONG = 0x1000;
pub const NDIS_STATISTICS_BYTES_RCV_SUPPORTED: ULONG = 0x80000;
pub const NDIS_STATISTICS_BYTES_XMIT_SUPPORTED: ULONG = 0x100000;
pub const NDIS_STATISTICS_RCV_DISCARDS_SUPPORTED: ULONG = 0x200000;
pub const NDIS_STATISTICS_GEN_STATISTICS_SUPPORTED: ULONG = 0x400000;
pub const NDIS_STATISTICS_XMIT_DISCARDS_SUPPORTED: ULONG = 0x8000000;

/// `NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES`, revision 2.
#[repr(C)]
pub struct NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub MediaType: NDIS_MEDIUM,
    pub PhysicalMediumType: NDIS_PHYSICAL_MEDIUM,
    pub MtuSize: ULONG,
    pub MaxXmitLinkSpeed: u64,
    pub XmitLinkSpeed: u64,
    pub MaxRcvLinkSpeed: u64,
    pub RcvLinkSpeed: u64,
    pub MediaConnectState: NDIS_MEDIA_CONNECT_STATE,
    pub MediaDuplexState: NDIS_MEDIA_DUPLEX_STATE,
    pub LookaheadSize: ULONG,
    pub PowerManagementCapabilities: PVOID,
    pub MacOptions: ULONG,
    pub SupportedPacketFilters: ULONG,
    pub MaxMulticastListSize: ULONG,
    pub MacAddressLength: u16,
    pub PermanentMacAddress: [u8; NDIS_MAX_PHYS_ADDRESS_LENGTH],
    pub CurrentMacAddress: [u8; NDIS_MAX_PHYS_ADDRESS_LENGTH],
    pub RecvScaleCapabilities: PVOID,
    pub AccessType: NET_IF_ACCESS_TYPE,
    pub DirectionType: NET_IF_DIRECTION_TYPE,
    pub ConnectionType: NET_IF_CONNECTION_TYPE,
    pub IfType: NET_IFTYPE,
    pub IfConnectorPresent: BOOLEAN,
    pub SupportedStatistics: ULONG,
    pub SupportedPauseFunctions: ULONG,
    pub DataBackFillSize: ULONG,
    pub ContextBackFillSize: ULONG,
    pub SupportedOidList: *const NDIS_OID,
    pub SupportedOidListLength: ULONG,
    pub AutoNegotiationFlags: ULONG,
    pub PowerManagementCapabilitiesEx: *mut NDIS_PM_CAPABILITIES,
}

/// `NDIS_PM_CAPABILITIES`, revision 2 (NDIS 6.30): what a miniport of NDIS 6.20 or later reports
/// of its power management in its general attributes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_PM_CAPABILITIES {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub SupportedWoLPacketPatterns: ULONG,
    pub NumTotalWoLPatterns: ULONG,
    pub MaxWoLPatternSize: ULONG,
    pub MaxWoLPatternOffset: ULONG,
    pub MaxWoLPacketSaveBuffer: ULONG,
    pub SupportedProtocolOffloads: ULONG,
    pub NumArpOffloadIPv4Addresses: ULONG,
    pub NumNSOffloadIPv6Addresses: ULONG,
    pub MinMagicPacketWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinPatternWakeUp: NDIS_DEVICE_POWER_STATE,
    pub MinLinkChangeWakeUp: NDIS_DEVICE_POWER_STATE,
    pub SupportedWakeUpEvents: ULONG,
    pub MediaSpecificWakeUpEvents: ULONG,
}
pub const NDIS_PM_CAPABILITIES_REVISION_2: u8 = 2;
pub const NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2: u16 = 0x3C;
/// `NDIS_DEVICE_POWER_STATE::NdisDeviceStateUnspecified`: no such wake-up.
pub const NdisDeviceStateUnspecified: NDIS_DEVICE_POWER_STATE = 0;

const _: () = {
    assert!(offset_of!(NDIS_PM_CAPABILITIES, MinMagicPacketWakeUp) == 0x28);
    assert!(offset_of!(NDIS_PM_CAPABILITIES, SupportedWakeUpEvents) == 0x34);
    assert!(size_of::<NDIS_PM_CAPABILITIES>() == 0x3C);
};

#[cfg(target_pointer_width = "64")]
const _: () = {
    type Registration = NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES;
    assert!(offset_of!(Registration, MiniportAdapterContext) == 0x08);
    assert!(offset_of!(Registration, InterfaceType) == 0x18);
    assert!(size_of::<Registration>() == 0x20);
    type General = NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES;
    assert!(offset_of!(General, MtuSize) == 0x10);
    assert!(offset_of!(General, MaxXmitLinkSpeed) == 0x18);
    assert!(offset_of!(General, MediaConnectState) == 0x38);
    assert!(offset_of!(General, LookaheadSize) == 0x40);
    assert!(offset_of!(General, PowerManagementCapabilities) == 0x48);
    assert!(offset_of!(General, MacOptions) == 0x50);
    assert!(offset_of!(General, MacAddressLength) == 0x5C);
    assert!(offset_of!(General, PermanentMacAddress) == 0x5E);
    assert!(offset_of!(General, CurrentMacAddress) == 0x7E);
    assert!(offset_of!(General, RecvScaleCapabilities) == 0xA0);
    assert!(offset_of!(General, AccessType) == 0xA8);
    assert!(offset_of!(General, IfType) == 0xB4);
    assert!(offset_of!(General, IfConnectorPresent) == 0xB6);
    assert!(offset_of!(General, SupportedStatistics) == 0xB8);
    assert!(offset_of!(General, SupportedOidList) == 0xC8);
    assert!(offset_of!(General, SupportedOidListLength) == 0xD0);
    assert!(offset_of!(General, PowerManagementCapabilitiesEx) == 0xD8);
    assert!(size_of::<General>() == 0xE0);
    assert!(size_of::<NET_DEVICE_PNP_EVENT>() == 0x30);
    assert!(offset_of!(NET_DEVICE_PNP_EVENT, InformationBuffer) == 0x10);
};

pub type NDIS_OID = ULONG;
pub type NDIS_REQUEST_TYPE = u32;
pub const NdisRequestQueryInformation: NDIS_REQUEST_TYPE = 0;
pub const NdisRequestSetInformation: NDIS_REQUEST_TYPE = 1;
pub const NdisRequestQueryStatistics: NDIS_REQUEST_TYPE = 2;
pub const NdisRequestMethod: NDIS_REQUEST_TYPE = 12;

/// The query and set members of `NDIS_OID_REQUEST::DATA`, which share a layout; the method
/// member is longer and the driver supports no method OIDs.
#[repr(C)]
pub struct NDIS_OID_REQUEST_DATA {
    pub Oid: NDIS_OID,
    pub InformationBuffer: PVOID,
    pub InformationBufferLength: u32,
    /// `BytesWritten` for a query, `BytesRead` for a set.
    pub BytesWrittenOrRead: u32,
    pub BytesNeeded: u32,
    pub _method_tail: [u32; 3],
}

/// `NDIS_OID_REQUEST`, revision 1 (the fields every NDIS 6 version has).
#[repr(C)]
pub struct NDIS_OID_REQUEST {
    pub Header: NDIS_OBJECT_HEADER,
    pub RequestType: NDIS_REQUEST_TYPE,
    pub PortNumber: NDIS_PORT_NUMBER,
    pub Timeout: u32,
    pub RequestId: PVOID,
    pub RequestHandle: NDIS_HANDLE,
    pub DATA: NDIS_OID_REQUEST_DATA,
    pub NdisReserved: [PVOID; 16],
    pub MiniportReserved: [PVOID; 2],
    pub SourceReserved: [PVOID; 2],
    pub SupportedRevision: u8,
    pub Reserved1: u8,
    pub Reserved2: u16,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(NDIS_OID_REQUEST, RequestType) == 0x04);
    assert!(offset_of!(NDIS_OID_REQUEST, RequestId) == 0x10);
    assert!(offset_of!(NDIS_OID_REQUEST, DATA) == 0x20);
    assert!(
        offset_of!(NDIS_OID_REQUEST, DATA) + offset_of!(NDIS_OID_REQUEST_DATA, BytesNeeded) == 0x38
    );
    assert!(size_of::<NDIS_OID_REQUEST_DATA>() == 0x28);
    assert!(offset_of!(NDIS_OID_REQUEST, NdisReserved) == 0x48);
    assert!(offset_of!(NDIS_OID_REQUEST, SupportedRevision) == 0xE8);
};

pub const NDIS_STATISTICS_INFO_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_STATISTICS_INFO_REVISION_1: u16 = 0x98;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_RCV: ULONG = 0x1;
pub const NDIS_STATISTICS_FLAGS_VALID_BYTES_RCV: ULONG = 0x8;
pub const NDIS_STATISTICS_FLAGS_VALID_RCV_DISCARDS: ULONG = 0x10;
pub const NDIS_STATISTICS_FLAGS_VALID_RCV_ERROR: ULONG = 0x20;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_FRAMES_XMIT: ULONG = 0x40;
pub const NDIS_STATISTICS_FLAGS_VALID_BYTES_XMIT: ULONG = 0x200;
pub const NDIS_STATISTICS_FLAGS_VALID_XMIT_ERROR: ULONG = 0x400;
pub const NDIS_STATISTICS_FLAGS_VALID_XMIT_DISCARDS: ULONG = 0x8000;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_BYTES_RCV: ULONG = 0x10000;
pub const NDIS_STATISTICS_FLAGS_VALID_DIRECTED_BYTES_XMIT: ULONG = 0x80000;

/// `NDIS_STATISTICS_INFO`, the answer to OID_GEN_STATISTICS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_STATISTICS_INFO {
    pub Header: NDIS_OBJECT_HEADER,
    pub SupportedStatistics: ULONG,
    pub ifInDiscards: u64,
    pub ifInErrors: u64,
    pub ifHCInOctets: u64,
    pub ifHCInUcastPkts: u64,
    pub ifHCInMulticastPkts: u64,
    pub ifHCInBroadcastPkts: u64,
    pub ifHCOutOctets: u64,
    pub ifHCOutUcastPkts: u64,
    pub ifHCOutMulticastPkts: u64,
    pub ifHCOutBroadcastPkts: u64,
    pub ifOutErrors: u64,
    pub ifOutDiscards: u64,
    pub ifHCInUcastOctets: u64,
    pub ifHCInMulticastOctets: u64,
    pub ifHCInBroadcastOctets: u64,
    pub ifHCOutUcastOctets: u64,
    pub ifHCOutMulticastOctets: u64,
    pub ifHCOutBroadcastOctets: u64,
}

/// `NDIS_LINK_STATE`, the buffer of an NDIS_STATUS_LINK_STATE indication.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_LINK_STATE {
    pub Header: NDIS_OBJECT_HEADER,
    pub MediaConnectState: NDIS_MEDIA_CONNECT_STATE,
    pub MediaDuplexState: NDIS_MEDIA_DUPLEX_STATE,
    pub XmitLinkSpeed: u64,
    pub RcvLinkSpeed: u64,
    pub PauseFunctions: NDIS_SUPPORTED_PAUSE_FUNCTIONS,
    pub AutoNegotiationFlags: ULONG,
}
pub const NDIS_LINK_STATE_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_LINK_STATE_REVISION_1: u16 = 0x28;
pub const NDIS_STATUS_LINK_STATE: NDIS_STATUS = 0x4001_0017;

/// `NDIS_STATUS_INDICATION`.
#[repr(C)]
pub struct NDIS_STATUS_INDICATION {
    pub Header: NDIS_OBJECT_HEADER,
    pub SourceHandle: NDIS_HANDLE,
    pub PortNumber: NDIS_PORT_NUMBER,
    pub StatusCode: NDIS_STATUS,
    pub Flags: ULONG,
    pub DestinationHandle: NDIS_HANDLE,
    pub RequestId: PVOID,
    pub StatusBuffer: PVOID,
    pub StatusBufferSize: ULONG,
    pub Guid: [u8; 16],
    pub NdisReserved: [PVOID; 4],
}
pub const NDIS_STATUS_INDICATION_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_STATUS_INDICATION_REVISION_1: u16 = 0x70;

/// Indicates `code` with `buffer` as its status buffer (NdisMIndicateStatusEx), from the adapter
/// on its default port.
///
/// # Safety
/// `miniport` is NDIS's handle for the adapter, between its registration attributes and the end
/// of MiniportHaltEx; at DISPATCH_LEVEL at most.
pub unsafe fn indicate_status<T>(miniport: NDIS_HANDLE, code: NDIS_STATUS, buffer: &mut T) {
    let mut indication = NDIS_STATUS_INDICATION {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_STATUS_INDICATION,
            Revision: NDIS_STATUS_INDICATION_REVISION_1,
            Size: NDIS_SIZEOF_STATUS_INDICATION_REVISION_1,
        },
        SourceHandle: miniport,
        PortNumber: 0,
        StatusCode: code,
        Flags: 0,
        DestinationHandle: core::ptr::null_mut(),
        RequestId: core::ptr::null_mut(),
        StatusBuffer: (buffer as *mut T).cast(),
        StatusBufferSize: size_of::<T>() as u32,
        Guid: [0; 16],
        NdisReserved: [core::ptr::null_mut(); 4],
    };
    // SAFETY: the caller's adapter handle; an indication whose buffer lives through the call.
    unsafe { NdisMIndicateStatusEx(miniport, &mut indication) };
}

/// `NDIS_INTERRUPT_MODERATION_PARAMETERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_INTERRUPT_MODERATION_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub Flags: ULONG,
    pub InterruptModeration: u32,
}
pub const NDIS_INTERRUPT_MODERATION_PARAMETERS_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1: u16 = 0xC;
pub const NdisInterruptModerationNotSupported: u32 = 1;

/// Structures made only of integers with no padding, so their bytes can be handed out as they
/// are (an OID answer).
///
/// # Safety
/// Implement only for `#[repr(C)]` types without padding bytes.
pub unsafe trait PlainData: Copy {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the implementor has no padding, so all size_of::<Self>() bytes are
        // initialized.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast(), size_of::<Self>()) }
    }
}

/// Structures made only of integers (padding allowed), so any bytes of their size are one: an
/// OID's buffer read into a local.
///
/// # Safety
/// Implement only for `#[repr(C)]` types whose fields are all integers or arrays of them.
pub unsafe trait FromBytes: Copy {
    /// The value the first `size_of::<Self>()` bytes hold, or `None` if there are fewer.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..size_of::<Self>())?;
        // SAFETY: the implementor is plain integers, so any bytes of its size are a value; the
        // slice has that size, read unaligned.
        Some(unsafe { bytes.as_ptr().cast::<Self>().read_unaligned() })
    }
}

// SAFETY: a header, a u32 and u64s: 4 + 4 + 18 * 8 bytes, no padding (size asserted below).
unsafe impl PlainData for NDIS_STATISTICS_INFO {}
// SAFETY: a header and two u32s: 12 bytes, no padding (size asserted below).
unsafe impl PlainData for NDIS_INTERRUPT_MODERATION_PARAMETERS {}

/// `NET_BUFFER_LIST_POOL_PARAMETERS`, revision 1.
#[repr(C)]
pub struct NET_BUFFER_LIST_POOL_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub ProtocolId: u8,
    pub fAllocateNetBuffer: BOOLEAN,
    pub ContextSize: u16,
    pub PoolTag: ULONG,
    pub DataSize: ULONG,
}
pub const NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1: u16 = 0x10;
pub const NDIS_PROTOCOL_ID_DEFAULT: u8 = 0;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<NDIS_STATISTICS_INFO>() == 0x98);
    assert!(offset_of!(NDIS_STATISTICS_INFO, ifHCOutBroadcastOctets) == 0x90);
    assert!(size_of::<NDIS_LINK_STATE>() == 0x28);
    assert!(offset_of!(NDIS_LINK_STATE, XmitLinkSpeed) == 0x10);
    assert!(offset_of!(NDIS_LINK_STATE, PauseFunctions) == 0x20);
    assert!(offset_of!(NDIS_STATUS_INDICATION, SourceHandle) == 0x08);
    assert!(offset_of!(NDIS_STATUS_INDICATION, StatusCode) == 0x14);
    assert!(offset_of!(NDIS_STATUS_INDICATION, DestinationHandle) == 0x20);
    assert!(offset_of!(NDIS_STATUS_INDICATION, StatusBuffer) == 0x30);
    assert!(offset_of!(NDIS_STATUS_INDICATION, Guid) == 0x3C);
    assert!(offset_of!(NDIS_STATUS_INDICATION, NdisReserved) == 0x50);
    assert!(size_of::<NDIS_STATUS_INDICATION>() == 0x70);
    assert!(size_of::<NDIS_INTERRUPT_MODERATION_PARAMETERS>() == 0xC);
    assert!(size_of::<NET_BUFFER_LIST_POOL_PARAMETERS>() == 0x10);
};

pub type SET_OPTIONS_HANDLER = unsafe extern "efiapi" fn(
    NdisDriverHandle: NDIS_HANDLE,
    DriverContext: NDIS_HANDLE,
) -> NDIS_STATUS;
pub type MINIPORT_INITIALIZE_HANDLER = unsafe extern "efiapi" fn(
    NdisMiniportHandle: NDIS_HANDLE,
    MiniportDriverContext: NDIS_HANDLE,
    MiniportInitParameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_HALT_HANDLER =
    unsafe extern "efiapi" fn(MiniportAdapterContext: NDIS_HANDLE, HaltAction: NDIS_HALT_ACTION);
pub type MINIPORT_DRIVER_UNLOAD = unsafe extern "efiapi" fn(DriverObject: PDRIVER_OBJECT);
pub type MINIPORT_PAUSE_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    PauseParameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_RESTART_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    RestartParameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_OID_REQUEST_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    OidRequest: *mut NDIS_OID_REQUEST,
) -> NDIS_STATUS;
pub type MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetBufferList: *mut NET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    SendFlags: ULONG,
);
pub type MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetBufferLists: *mut NET_BUFFER_LIST,
    ReturnFlags: ULONG,
);
pub type MINIPORT_CANCEL_SEND_HANDLER =
    unsafe extern "efiapi" fn(MiniportAdapterContext: NDIS_HANDLE, CancelId: PVOID);
pub type MINIPORT_CHECK_FOR_HANG_HANDLER =
    unsafe extern "efiapi" fn(MiniportAdapterContext: NDIS_HANDLE) -> BOOLEAN;
pub type MINIPORT_RESET_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    AddressingReset: *mut BOOLEAN,
) -> NDIS_STATUS;
pub type MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetDevicePnPEvent: *mut NET_DEVICE_PNP_EVENT,
);
pub type MINIPORT_SHUTDOWN_HANDLER = unsafe extern "efiapi" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    ShutdownAction: NDIS_SHUTDOWN_ACTION,
);
pub type MINIPORT_CANCEL_OID_REQUEST_HANDLER =
    unsafe extern "efiapi" fn(MiniportAdapterContext: NDIS_HANDLE, RequestId: PVOID);
pub type MINIPORT_DIRECT_OID_REQUEST_HANDLER = MINIPORT_OID_REQUEST_HANDLER;
pub type MINIPORT_CANCEL_DIRECT_OID_REQUEST_HANDLER = MINIPORT_CANCEL_OID_REQUEST_HANDLER;
pub type MINIPORT_SYNCHRONOUS_OID_REQUEST_HANDLER = MINIPORT_OID_REQUEST_HANDLER;

/// `NDIS_MINIPORT_DRIVER_CHARACTERISTICS` up to revision 3 (NDIS 6.80 and later).
#[repr(C)]
pub struct NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
    pub Header: NDIS_OBJECT_HEADER,
    pub MajorNdisVersion: u8,
    pub MinorNdisVersion: u8,
    pub MajorDriverVersion: u8,
    pub MinorDriverVersion: u8,
    pub Flags: ULONG,
    pub SetOptionsHandler: Option<SET_OPTIONS_HANDLER>,
    pub InitializeHandlerEx: Option<MINIPORT_INITIALIZE_HANDLER>,
    pub HaltHandlerEx: Option<MINIPORT_HALT_HANDLER>,
    pub UnloadHandler: Option<MINIPORT_DRIVER_UNLOAD>,
    pub PauseHandler: Option<MINIPORT_PAUSE_HANDLER>,
    pub RestartHandler: Option<MINIPORT_RESTART_HANDLER>,
    pub OidRequestHandler: Option<MINIPORT_OID_REQUEST_HANDLER>,
    pub SendNetBufferListsHandler: Option<MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER>,
    pub ReturnNetBufferListsHandler: Option<MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER>,
    pub CancelSendHandler: Option<MINIPORT_CANCEL_SEND_HANDLER>,
    pub CheckForHangHandlerEx: Option<MINIPORT_CHECK_FOR_HANG_HANDLER>,
    pub ResetHandlerEx: Option<MINIPORT_RESET_HANDLER>,
    pub DevicePnPEventNotifyHandler: Option<MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER>,
    pub ShutdownHandlerEx: Option<MINIPORT_SHUTDOWN_HANDLER>,
    pub CancelOidRequestHandler: Option<MINIPORT_CANCEL_OID_REQUEST_HANDLER>,
    pub DirectOidRequestHandler: Option<MINIPORT_DIRECT_OID_REQUEST_HANDLER>,
    pub CancelDirectOidRequestHandler: Option<MINIPORT_CANCEL_DIRECT_OID_REQUEST_HANDLER>,
    pub SynchronousOidRequestHandler: Option<MINIPORT_SYNCHRONOUS_OID_REQUEST_HANDLER>,
}

/// Through CancelDirectOidRequestHandler.
pub const NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u16 = offset_of!(
    NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
    SynchronousOidRequestHandler
) as u16;
/// Through SynchronousOidRequestHandler.
pub const NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3: u16 =
    size_of::<NDIS_MINIPORT_DRIVER_CHARACTERISTICS>() as u16;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<NDIS_OBJECT_HEADER>() == 4);
    assert!(offset_of!(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, Flags) == 8);
    assert!(offset_of!(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, SetOptionsHandler) == 16);
    assert!(
        offset_of!(
            NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
            CancelOidRequestHandler
        ) == 128
    );
    assert!(NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2 == 152);
    assert!(size_of::<NDIS_MINIPORT_DRIVER_CHARACTERISTICS>() == 160);
};

/// Pointer arrays the headers declare `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`.
#[repr(C, align(16))]
pub struct Aligned16<T>(pub T);

/// `NET_BUFFER_LIST`, with `NetBufferListInfo` as long as an NDIS 6.83 driver for a 64-bit
/// Windows compiles it. NDIS allocates NBLs, with at least that many entries (later versions
/// have more), so the size of this struct means nothing.
#[repr(C, align(16))]
pub struct NET_BUFFER_LIST {
    pub Next: *mut NET_BUFFER_LIST,
    pub FirstNetBuffer: *mut NET_BUFFER,
    pub Context: PVOID,
    pub ParentNetBufferList: *mut NET_BUFFER_LIST,
    pub NdisPoolHandle: NDIS_HANDLE,
    pub NdisReserved: Aligned16<[PVOID; 2]>,
    pub ProtocolReserved: Aligned16<[PVOID; 4]>,
    pub MiniportReserved: Aligned16<[PVOID; 2]>,
    pub Scratch: PVOID,
    pub SourceHandle: NDIS_HANDLE,
    pub NblFlags: ULONG,
    pub ChildRefCount: i32,
    pub Flags: ULONG,
    pub Status: NDIS_STATUS,
    pub NetBufferListInfo: [PVOID; MaxNetBufferListInfo],
}

/// `NDIS_NET_BUFFER_LIST_INFO::NetBufferListFrameType`: the EtherType, in network byte order.
pub const NetBufferListFrameType: usize = 7;
/// `NDIS_NET_BUFFER_LIST_INFO::MaxNetBufferListInfo` for NDIS 6.83 on x64 and ARM64 (nblinfo.h:
/// the entries up to `RscTcpTimestampDelta`, then NDIS 6.50's `GftOffloadInformation` and
/// `GftFlowEntryId` and NDIS 6.80's `NetBufferListInfoReserved3`).
pub const MaxNetBufferListInfo: usize = 27;
pub const NDIS_NBL_FLAGS_HD_SPLIT: ULONG = 0x100;
pub const NDIS_NBL_FLAGS_IS_IPV4: ULONG = 0x200;
pub const NDIS_NBL_FLAGS_IS_IPV6: ULONG = 0x400;
pub const NDIS_NBL_FLAGS_IS_TCP: ULONG = 0x800;
pub const NDIS_NBL_FLAGS_IS_UDP: ULONG = 0x1000;
pub const NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER: ULONG = 0x2000;
pub const NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD: ULONG = 0x4000;
pub const NDIS_ETH_TYPE_IPV4: u16 = 0x0800;
pub const NDIS_ETH_TYPE_IPV6: u16 = 0x86DD;
pub const NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
pub const NDIS_RETURN_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(NET_BUFFER_LIST, NetBufferListInfo) == 0x90);
    assert!(offset_of!(NET_BUFFER_LIST, Next) == 0);
    assert!(offset_of!(NET_BUFFER_LIST, FirstNetBuffer) == 0x08);
    assert!(offset_of!(NET_BUFFER_LIST, NdisPoolHandle) == 0x20);
    assert!(offset_of!(NET_BUFFER_LIST, NdisReserved) == 0x30);
    assert!(offset_of!(NET_BUFFER_LIST, MiniportReserved) == 0x60);
    assert!(offset_of!(NET_BUFFER_LIST, Scratch) == 0x70);
    assert!(offset_of!(NET_BUFFER_LIST, NblFlags) == 0x80);
    assert!(offset_of!(NET_BUFFER_LIST, Status) == 0x8C);
};

/// `NET_BUFFER_LIST_NEXT_NBL`.
///
/// # Safety
/// `nbl` points to a valid NET_BUFFER_LIST.
pub unsafe fn NET_BUFFER_LIST_NEXT_NBL(nbl: *mut NET_BUFFER_LIST) -> *mut NET_BUFFER_LIST {
    // SAFETY: the caller guarantees nbl is valid.
    unsafe { (*nbl).Next }
}

/// `NET_BUFFER_LIST_FIRST_NB`.
///
/// # Safety
/// `nbl` points to a valid NET_BUFFER_LIST.
pub unsafe fn NET_BUFFER_LIST_FIRST_NB(nbl: *mut NET_BUFFER_LIST) -> *mut NET_BUFFER {
    // SAFETY: the caller guarantees nbl is valid.
    unsafe { (*nbl).FirstNetBuffer }
}

/// `NET_BUFFER_LIST_STATUS(nbl) = status`.
///
/// # Safety
/// `nbl` points to a valid NET_BUFFER_LIST that this driver currently owns.
pub unsafe fn set_NET_BUFFER_LIST_STATUS(nbl: *mut NET_BUFFER_LIST, status: NDIS_STATUS) {
    // SAFETY: the caller guarantees nbl is valid and ours to write.
    unsafe { (*nbl).Status = status }
}

/// `NDIS_SEND_FLAGS_DISPATCH_LEVEL`: the send handler runs at DISPATCH_LEVEL.
pub const NDIS_SEND_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;
/// `NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL`: the caller of the completion is at DISPATCH_LEVEL.
pub const NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL: ULONG = 0x1;

kernel_imports!("ndis.sys" {
    pub fn NdisMRegisterMiniportDriver(
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: PUNICODE_STRING,
        MiniportDriverContext: NDIS_HANDLE,
        MiniportDriverCharacteristics: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
        NdisMiniportDriverHandle: PNDIS_HANDLE,
    ) -> NDIS_STATUS;
    pub fn NdisMDeregisterMiniportDriver(NdisMiniportDriverHandle: NDIS_HANDLE);
    pub fn NdisMSetMiniportAttributes(
        NdisMiniportHandle: NDIS_HANDLE,
        MiniportAttributes: *mut NDIS_OBJECT_HEADER,
    ) -> NDIS_STATUS;
    pub fn NdisMIndicateStatusEx(
        MiniportAdapterHandle: NDIS_HANDLE,
        StatusIndication: *mut NDIS_STATUS_INDICATION,
    );
    pub fn NdisMGetDeviceProperty(
        MiniportAdapterHandle: NDIS_HANDLE,
        PhysicalDeviceObject: *mut PDEVICE_OBJECT,
        FunctionalDeviceObject: *mut PDEVICE_OBJECT,
        NextDeviceObject: *mut PDEVICE_OBJECT,
        AllocatedResources: *mut PVOID,
        AllocatedResourcesTranslated: *mut PVOID,
    );
    pub fn NdisAllocateNetBufferListPool(
        NdisHandle: NDIS_HANDLE,
        Parameters: *const NET_BUFFER_LIST_POOL_PARAMETERS,
    ) -> NDIS_HANDLE;
    pub fn NdisFreeNetBufferListPool(PoolHandle: NDIS_HANDLE);
    pub fn NdisAllocateNetBufferAndNetBufferList(
        PoolHandle: NDIS_HANDLE,
        ContextSize: u16,
        ContextBackFill: u16,
        MdlChain: PMDL,
        DataOffset: ULONG,
        DataLength: usize,
    ) -> *mut NET_BUFFER_LIST;
    pub fn NdisFreeNetBufferList(NetBufferList: *mut NET_BUFFER_LIST);
    pub fn NdisMIndicateReceiveNetBufferLists(
        MiniportAdapterHandle: NDIS_HANDLE,
        NetBufferLists: *mut NET_BUFFER_LIST,
        PortNumber: NDIS_PORT_NUMBER,
        NumberOfNetBufferLists: ULONG,
        ReceiveFlags: ULONG,
    );
    pub fn NdisMPauseComplete(MiniportAdapterHandle: NDIS_HANDLE);
    pub fn NdisMSendNetBufferListsComplete(
        MiniportAdapterHandle: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        SendCompleteFlags: ULONG,
    );
    pub fn NdisOpenConfigurationEx(
        ConfigObject: *const NDIS_CONFIGURATION_OBJECT,
        ConfigurationHandle: PNDIS_HANDLE,
    ) -> NDIS_STATUS;
    pub fn NdisReadConfiguration(
        Status: *mut NDIS_STATUS,
        ParameterValue: *mut *mut NDIS_CONFIGURATION_PARAMETER,
        ConfigurationHandle: NDIS_HANDLE,
        Keyword: PUNICODE_STRING,
        ParameterType: NDIS_PARAMETER_TYPE,
    );
    pub fn NdisCloseConfiguration(ConfigurationHandle: NDIS_HANDLE);
});

pub const NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT: u8 = 0xA9;

/// `NDIS_CONFIGURATION_OBJECT`: which configuration NdisOpenConfigurationEx opens (with the
/// miniport adapter handle, the adapter's).
#[repr(C)]
pub struct NDIS_CONFIGURATION_OBJECT {
    pub Header: NDIS_OBJECT_HEADER,
    pub NdisHandle: NDIS_HANDLE,
    pub Flags: ULONG,
}
pub const NDIS_CONFIGURATION_OBJECT_REVISION_1: u8 = 1;
/// Through Flags.
pub const NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1: u16 =
    (offset_of!(NDIS_CONFIGURATION_OBJECT, Flags) + 4) as u16;

pub type NDIS_PARAMETER_TYPE = u32;
pub const NdisParameterInteger: NDIS_PARAMETER_TYPE = 0;
pub const NdisParameterHexInteger: NDIS_PARAMETER_TYPE = 1;
pub const NdisParameterString: NDIS_PARAMETER_TYPE = 2;

/// `NDIS_CONFIGURATION_PARAMETER`: the type, then the union of the value (IntegerData for the
/// integer types; StringData, an NDIS_STRING, for a string).
#[repr(C)]
pub struct NDIS_CONFIGURATION_PARAMETER {
    pub ParameterType: NDIS_PARAMETER_TYPE,
    pub ParameterData: UNICODE_STRING,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(NDIS_CONFIGURATION_OBJECT, NdisHandle) == 8);
    assert!(NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1 == 20);
    assert!(offset_of!(NDIS_CONFIGURATION_PARAMETER, ParameterData) == 8);
};

pub const OID_GEN_SUPPORTED_LIST: NDIS_OID = 0x0001_0101;
pub const OID_GEN_MAXIMUM_FRAME_SIZE: NDIS_OID = 0x0001_0106;
pub const OID_GEN_TRANSMIT_BUFFER_SPACE: NDIS_OID = 0x0001_0108;
pub const OID_GEN_RECEIVE_BUFFER_SPACE: NDIS_OID = 0x0001_0109;
pub const OID_GEN_TRANSMIT_BLOCK_SIZE: NDIS_OID = 0x0001_010A;
pub const OID_GEN_RECEIVE_BLOCK_SIZE: NDIS_OID = 0x0001_010B;
pub const OID_GEN_VENDOR_ID: NDIS_OID = 0x0001_010C;
pub const OID_GEN_VENDOR_DESCRIPTION: NDIS_OID = 0x0001_010D;
pub const OID_GEN_CURRENT_PACKET_FILTER: NDIS_OID = 0x0001_010E;
pub const OID_GEN_CURRENT_LOOKAHEAD: NDIS_OID = 0x0001_010F;
pub const OID_GEN_MAXIMUM_TOTAL_SIZE: NDIS_OID = 0x0001_0111;
pub const OID_GEN_VENDOR_DRIVER_VERSION: NDIS_OID = 0x0001_0116;
pub const OID_GEN_LINK_PARAMETERS: NDIS_OID = 0x0001_0208;
pub const OID_GEN_INTERRUPT_MODERATION: NDIS_OID = 0x0001_0209;
pub const OID_GEN_XMIT_OK: NDIS_OID = 0x0002_0101;
pub const OID_GEN_RCV_OK: NDIS_OID = 0x0002_0102;
pub const OID_GEN_STATISTICS: NDIS_OID = 0x0002_0106;
pub const OID_PNP_SET_POWER: NDIS_OID = 0xFD01_0101;
pub const OID_PNP_QUERY_POWER: NDIS_OID = 0xFD01_0102;

/// `NDIS_LINK_PARAMETERS`, the buffer of an OID_GEN_LINK_PARAMETERS set.
pub const NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1: usize = 0x20;
/// `NDIS_DEVICE_POWER_STATE`, the buffer of the OID_PNP power OIDs.
pub type NDIS_DEVICE_POWER_STATE = u32;
