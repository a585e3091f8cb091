//! NDIS 6 types and functions (ndis.h, ntddndis.h).

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

use super::nt::{PDRIVER_OBJECT, PUNICODE_STRING, PVOID, ULONG};

pub type NDIS_STATUS = i32;
pub type NDIS_HANDLE = *mut c_void;
pub type PNDIS_HANDLE = *mut NDIS_HANDLE;
pub type NDIS_PORT_NUMBER = ULONG;
pub type BOOLEAN = u8;

// The NDIS 6 status values are the NTSTATUS values of the same names (STATUS_NDIS_*).
pub const NDIS_STATUS_SUCCESS: NDIS_STATUS = 0;
pub const NDIS_STATUS_FAILURE: NDIS_STATUS = 0xC000_0001_u32 as i32;
pub const NDIS_STATUS_NOT_SUPPORTED: NDIS_STATUS = 0xC000_00BB_u32 as i32;
pub const NDIS_STATUS_MEDIA_DISCONNECTED: NDIS_STATUS = 0xC023_001F_u32 as i32;
pub const NDIS_STATUS_PAUSED: NDIS_STATUS = 0xC023_002A_u32 as i32;

/// The miniport's NDIS version: 6.30 (Windows 8 and later).
pub const NDIS_MINIPORT_MAJOR_VERSION: u8 = 6;
pub const NDIS_MINIPORT_MINOR_VERSION: u8 = 30;

/// `NDIS_OBJECT_HEADER`: the type, revision and size every NDIS 6 structure starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NDIS_OBJECT_HEADER {
    pub Type: u8,
    pub Revision: u8,
    pub Size: u16,
}

pub const NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS: u8 = 0x8A;
pub const NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u8 = 2;

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
    NDIS_MINIPORT_RESTART_PARAMETERS,
    NDIS_OID_REQUEST,
    NET_DEVICE_PNP_EVENT,
    NET_BUFFER
);

pub type NDIS_HALT_ACTION = u32;
pub type NDIS_SHUTDOWN_ACTION = u32;

pub type SET_OPTIONS_HANDLER = unsafe extern "system" fn(
    NdisDriverHandle: NDIS_HANDLE,
    DriverContext: NDIS_HANDLE,
) -> NDIS_STATUS;
pub type MINIPORT_INITIALIZE_HANDLER = unsafe extern "system" fn(
    NdisMiniportHandle: NDIS_HANDLE,
    MiniportDriverContext: NDIS_HANDLE,
    MiniportInitParameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_HALT_HANDLER =
    unsafe extern "system" fn(MiniportAdapterContext: NDIS_HANDLE, HaltAction: NDIS_HALT_ACTION);
pub type MINIPORT_DRIVER_UNLOAD = unsafe extern "system" fn(DriverObject: PDRIVER_OBJECT);
pub type MINIPORT_PAUSE_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    PauseParameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_RESTART_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    RestartParameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
) -> NDIS_STATUS;
pub type MINIPORT_OID_REQUEST_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    OidRequest: *mut NDIS_OID_REQUEST,
) -> NDIS_STATUS;
pub type MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetBufferList: *mut NET_BUFFER_LIST,
    PortNumber: NDIS_PORT_NUMBER,
    SendFlags: ULONG,
);
pub type MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetBufferLists: *mut NET_BUFFER_LIST,
    ReturnFlags: ULONG,
);
pub type MINIPORT_CANCEL_SEND_HANDLER =
    unsafe extern "system" fn(MiniportAdapterContext: NDIS_HANDLE, CancelId: PVOID);
pub type MINIPORT_CHECK_FOR_HANG_HANDLER =
    unsafe extern "system" fn(MiniportAdapterContext: NDIS_HANDLE) -> BOOLEAN;
pub type MINIPORT_RESET_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    AddressingReset: *mut BOOLEAN,
) -> NDIS_STATUS;
pub type MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    NetDevicePnPEvent: *mut NET_DEVICE_PNP_EVENT,
);
pub type MINIPORT_SHUTDOWN_HANDLER = unsafe extern "system" fn(
    MiniportAdapterContext: NDIS_HANDLE,
    ShutdownAction: NDIS_SHUTDOWN_ACTION,
);
pub type MINIPORT_CANCEL_OID_REQUEST_HANDLER =
    unsafe extern "system" fn(MiniportAdapterContext: NDIS_HANDLE, RequestId: PVOID);
pub type MINIPORT_DIRECT_OID_REQUEST_HANDLER = MINIPORT_OID_REQUEST_HANDLER;
pub type MINIPORT_CANCEL_DIRECT_OID_REQUEST_HANDLER = MINIPORT_CANCEL_OID_REQUEST_HANDLER;

/// `NDIS_MINIPORT_DRIVER_CHARACTERISTICS` up to revision 2 (NDIS 6.1 and later).
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
}

pub const NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2: u16 =
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
    assert!(size_of::<NDIS_MINIPORT_DRIVER_CHARACTERISTICS>() == 152);
};

/// Pointer arrays the headers declare `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)`.
#[repr(C, align(16))]
pub struct Aligned16<T>(pub T);

/// `NET_BUFFER_LIST`, up to the fields the driver uses. NDIS allocates NBLs and the length of
/// the trailing `NetBufferListInfo` array varies by Windows version, so its size means nothing.
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
}

#[cfg(target_pointer_width = "64")]
const _: () = {
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

#[cfg_attr(
    windows,
    link(name = "ndis.sys", kind = "raw-dylib", modifiers = "+verbatim")
)]
unsafe extern "system" {
    pub fn NdisMRegisterMiniportDriver(
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: PUNICODE_STRING,
        MiniportDriverContext: NDIS_HANDLE,
        MiniportDriverCharacteristics: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
        NdisMiniportDriverHandle: PNDIS_HANDLE,
    ) -> NDIS_STATUS;
    pub fn NdisMDeregisterMiniportDriver(NdisMiniportDriverHandle: NDIS_HANDLE);
    pub fn NdisMSendNetBufferListsComplete(
        MiniportAdapterHandle: NDIS_HANDLE,
        NetBufferList: *mut NET_BUFFER_LIST,
        SendCompleteFlags: ULONG,
    );
}
