//! The layouts `src/sys` declares, as C assertions for the WDK's own headers to check.
//!
//! `src/sys` asserts its layouts against numbers read from public symbol dumps. The WDK's headers
//! are the authority, and they exist only on a Windows build machine, so this test keeps
//! `tests/layout_check.c` equal to what the Rust declarations say; there, clang compiles the file
//! against the WDK's headers for x64 and for ARM64 (docs/windows.md, "The layout check"), and every
//! assertion that fails names a declaration to fix. When a declaration changes or gains an asserted
//! field, add it below and regenerate the file with `OXTUN_BLESS=1 cargo nextest run --test layout`.

use std::mem::{offset_of, size_of};

use oxtun_driver::sys::*;

/// Each fact: a C expression over the WDK's types, and the value the Rust declaration gives it.
fn facts() -> Vec<(&'static str, usize)> {
    type Registration = NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES;
    type General = NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES;
    type Characteristics = NDIS_MINIPORT_DRIVER_CHARACTERISTICS;
    type Indication = NDIS_STATUS_INDICATION;
    vec![
        // wdm.h
        ("sizeof(KSPIN_LOCK)", size_of::<KSPIN_LOCK>()),
        ("sizeof(KEVENT)", size_of::<KEVENT>()),
        ("sizeof(ERESOURCE)", size_of::<ERESOURCE>()),
        (
            "sizeof(SECURITY_SUBJECT_CONTEXT)",
            size_of::<SECURITY_SUBJECT_CONTEXT>(),
        ),
        ("sizeof(GENERIC_MAPPING)", size_of::<GENERIC_MAPPING>()),
        ("sizeof(UNICODE_STRING)", size_of::<UNICODE_STRING>()),
        (
            "FIELD_OFFSET(UNICODE_STRING, Buffer)",
            offset_of!(UNICODE_STRING, Buffer),
        ),
        ("sizeof(IO_STATUS_BLOCK)", size_of::<IO_STATUS_BLOCK>()),
        ("sizeof(IRP)", size_of::<IRP>()),
        ("FIELD_OFFSET(IRP, MdlAddress)", offset_of!(IRP, MdlAddress)),
        (
            "FIELD_OFFSET(IRP, AssociatedIrp.SystemBuffer)",
            offset_of!(IRP, SystemBuffer),
        ),
        ("FIELD_OFFSET(IRP, IoStatus)", offset_of!(IRP, IoStatus)),
        (
            "FIELD_OFFSET(IRP, RequestorMode)",
            offset_of!(IRP, RequestorMode),
        ),
        ("FIELD_OFFSET(IRP, UserBuffer)", offset_of!(IRP, UserBuffer)),
        (
            "FIELD_OFFSET(IRP, Tail.Overlay.DriverContext)",
            offset_of!(IRP, DriverContext),
        ),
        (
            "FIELD_OFFSET(IRP, Tail.Overlay.Thread)",
            offset_of!(IRP, Thread),
        ),
        (
            "FIELD_OFFSET(IRP, Tail.Overlay.CurrentStackLocation)",
            offset_of!(IRP, CurrentStackLocation),
        ),
        ("sizeof(IO_STACK_LOCATION)", size_of::<IO_STACK_LOCATION>()),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, Parameters.DeviceIoControl.OutputBufferLength)",
            offset_of!(IO_STACK_LOCATION, OutputBufferLength),
        ),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, Parameters.DeviceIoControl.InputBufferLength)",
            offset_of!(IO_STACK_LOCATION, InputBufferLength),
        ),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, Parameters.DeviceIoControl.IoControlCode)",
            offset_of!(IO_STACK_LOCATION, IoControlCode),
        ),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, Parameters.DeviceIoControl.Type3InputBuffer)",
            offset_of!(IO_STACK_LOCATION, Type3InputBuffer),
        ),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, DeviceObject)",
            offset_of!(IO_STACK_LOCATION, DeviceObject),
        ),
        (
            "FIELD_OFFSET(IO_STACK_LOCATION, FileObject)",
            offset_of!(IO_STACK_LOCATION, FileObject),
        ),
        ("sizeof(DRIVER_OBJECT)", size_of::<DRIVER_OBJECT>()),
        (
            "FIELD_OFFSET(DRIVER_OBJECT, DriverName)",
            offset_of!(DRIVER_OBJECT, DriverName),
        ),
        (
            "FIELD_OFFSET(DRIVER_OBJECT, DriverUnload)",
            offset_of!(DRIVER_OBJECT, DriverUnload),
        ),
        (
            "FIELD_OFFSET(DRIVER_OBJECT, MajorFunction)",
            offset_of!(DRIVER_OBJECT, MajorFunction),
        ),
        ("sizeof(DEVICE_OBJECT)", size_of::<DEVICE_OBJECT>()),
        (
            "FIELD_OFFSET(DEVICE_OBJECT, DriverObject)",
            offset_of!(DEVICE_OBJECT, DriverObject),
        ),
        (
            "FIELD_OFFSET(DEVICE_OBJECT, Reserved)",
            offset_of!(DEVICE_OBJECT, Reserved),
        ),
        ("sizeof(MDL)", size_of::<MDL>()),
        (
            "FIELD_OFFSET(MDL, MappedSystemVa)",
            offset_of!(MDL, MappedSystemVa),
        ),
        ("FIELD_OFFSET(MDL, ByteOffset)", offset_of!(MDL, ByteOffset)),
        // ndis.h, ntddndis.h
        (
            "sizeof(NDIS_OBJECT_HEADER)",
            size_of::<NDIS_OBJECT_HEADER>(),
        ),
        (
            "sizeof(NET_DEVICE_PNP_EVENT)",
            size_of::<NET_DEVICE_PNP_EVENT>(),
        ),
        (
            "FIELD_OFFSET(NET_DEVICE_PNP_EVENT, InformationBuffer)",
            offset_of!(NET_DEVICE_PNP_EVENT, InformationBuffer),
        ),
        (
            "sizeof(NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES)",
            size_of::<Registration>(),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES, MiniportAdapterContext)",
            offset_of!(Registration, MiniportAdapterContext),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES, InterfaceType)",
            offset_of!(Registration, InterfaceType),
        ),
        (
            "NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2",
            NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2.into(),
        ),
        (
            "NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2",
            NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2.into(),
        ),
        (
            "sizeof(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES)",
            size_of::<General>(),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, MtuSize)",
            offset_of!(General, MtuSize),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, MaxXmitLinkSpeed)",
            offset_of!(General, MaxXmitLinkSpeed),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, MediaConnectState)",
            offset_of!(General, MediaConnectState),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, LookaheadSize)",
            offset_of!(General, LookaheadSize),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, PowerManagementCapabilities)",
            offset_of!(General, PowerManagementCapabilities),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, MacOptions)",
            offset_of!(General, MacOptions),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, MacAddressLength)",
            offset_of!(General, MacAddressLength),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, PermanentMacAddress)",
            offset_of!(General, PermanentMacAddress),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, CurrentMacAddress)",
            offset_of!(General, CurrentMacAddress),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, RecvScaleCapabilities)",
            offset_of!(General, RecvScaleCapabilities),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, AccessType)",
            offset_of!(General, AccessType),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, IfType)",
            offset_of!(General, IfType),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, IfConnectorPresent)",
            offset_of!(General, IfConnectorPresent),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, SupportedStatistics)",
            offset_of!(General, SupportedStatistics),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, SupportedOidList)",
            offset_of!(General, SupportedOidList),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, SupportedOidListLength)",
            offset_of!(General, SupportedOidListLength),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES, PowerManagementCapabilitiesEx)",
            offset_of!(General, PowerManagementCapabilitiesEx),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, RequestType)",
            offset_of!(NDIS_OID_REQUEST, RequestType),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, RequestId)",
            offset_of!(NDIS_OID_REQUEST, RequestId),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, DATA)",
            offset_of!(NDIS_OID_REQUEST, DATA),
        ),
        (
            "sizeof(((NDIS_OID_REQUEST *)0)->DATA)",
            size_of::<NDIS_OID_REQUEST_DATA>(),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, DATA.QUERY_INFORMATION.InformationBuffer)",
            offset_of!(NDIS_OID_REQUEST, DATA)
                + offset_of!(NDIS_OID_REQUEST_DATA, InformationBuffer),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, DATA.QUERY_INFORMATION.BytesWritten)",
            offset_of!(NDIS_OID_REQUEST, DATA)
                + offset_of!(NDIS_OID_REQUEST_DATA, BytesWrittenOrRead),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, DATA.SET_INFORMATION.BytesRead)",
            offset_of!(NDIS_OID_REQUEST, DATA)
                + offset_of!(NDIS_OID_REQUEST_DATA, BytesWrittenOrRead),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, DATA.QUERY_INFORMATION.BytesNeeded)",
            offset_of!(NDIS_OID_REQUEST, DATA) + offset_of!(NDIS_OID_REQUEST_DATA, BytesNeeded),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, NdisReserved)",
            offset_of!(NDIS_OID_REQUEST, NdisReserved),
        ),
        (
            "FIELD_OFFSET(NDIS_OID_REQUEST, SupportedRevision)",
            offset_of!(NDIS_OID_REQUEST, SupportedRevision),
        ),
        (
            "sizeof(NDIS_STATISTICS_INFO)",
            size_of::<NDIS_STATISTICS_INFO>(),
        ),
        (
            "NDIS_SIZEOF_STATISTICS_INFO_REVISION_1",
            NDIS_SIZEOF_STATISTICS_INFO_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_STATISTICS_INFO, ifHCOutBroadcastOctets)",
            offset_of!(NDIS_STATISTICS_INFO, ifHCOutBroadcastOctets),
        ),
        ("sizeof(NDIS_LINK_STATE)", size_of::<NDIS_LINK_STATE>()),
        (
            "NDIS_SIZEOF_LINK_STATE_REVISION_1",
            NDIS_SIZEOF_LINK_STATE_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_LINK_STATE, XmitLinkSpeed)",
            offset_of!(NDIS_LINK_STATE, XmitLinkSpeed),
        ),
        (
            "FIELD_OFFSET(NDIS_LINK_STATE, PauseFunctions)",
            offset_of!(NDIS_LINK_STATE, PauseFunctions),
        ),
        (
            "NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1",
            NDIS_SIZEOF_LINK_PARAMETERS_REVISION_1,
        ),
        ("sizeof(NDIS_STATUS_INDICATION)", size_of::<Indication>()),
        (
            "NDIS_SIZEOF_STATUS_INDICATION_REVISION_1",
            NDIS_SIZEOF_STATUS_INDICATION_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, SourceHandle)",
            offset_of!(Indication, SourceHandle),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, StatusCode)",
            offset_of!(Indication, StatusCode),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, DestinationHandle)",
            offset_of!(Indication, DestinationHandle),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, StatusBuffer)",
            offset_of!(Indication, StatusBuffer),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, Guid)",
            offset_of!(Indication, Guid),
        ),
        (
            "FIELD_OFFSET(NDIS_STATUS_INDICATION, NdisReserved)",
            offset_of!(Indication, NdisReserved),
        ),
        (
            "sizeof(NDIS_INTERRUPT_MODERATION_PARAMETERS)",
            size_of::<NDIS_INTERRUPT_MODERATION_PARAMETERS>(),
        ),
        (
            "NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1",
            NDIS_SIZEOF_INTERRUPT_MODERATION_PARAMETERS_REVISION_1.into(),
        ),
        (
            "sizeof(NET_BUFFER_LIST_POOL_PARAMETERS)",
            size_of::<NET_BUFFER_LIST_POOL_PARAMETERS>(),
        ),
        (
            "NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1",
            NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1.into(),
        ),
        (
            "NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2",
            NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, Flags)",
            offset_of!(Characteristics, Flags),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, SetOptionsHandler)",
            offset_of!(Characteristics, SetOptionsHandler),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, CancelOidRequestHandler)",
            offset_of!(Characteristics, CancelOidRequestHandler),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, CancelDirectOidRequestHandler)",
            offset_of!(Characteristics, CancelDirectOidRequestHandler),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, Next)",
            offset_of!(NET_BUFFER_LIST, Next),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, FirstNetBuffer)",
            offset_of!(NET_BUFFER_LIST, FirstNetBuffer),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, NdisPoolHandle)",
            offset_of!(NET_BUFFER_LIST, NdisPoolHandle),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, NdisReserved)",
            offset_of!(NET_BUFFER_LIST, NdisReserved),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, ProtocolReserved)",
            offset_of!(NET_BUFFER_LIST, ProtocolReserved),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, MiniportReserved)",
            offset_of!(NET_BUFFER_LIST, MiniportReserved),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, Scratch)",
            offset_of!(NET_BUFFER_LIST, Scratch),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, NblFlags)",
            offset_of!(NET_BUFFER_LIST, NblFlags),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, Status)",
            offset_of!(NET_BUFFER_LIST, Status),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER_LIST, NetBufferListInfo)",
            offset_of!(NET_BUFFER_LIST, NetBufferListInfo),
        ),
        ("NetBufferListFrameType", NetBufferListFrameType),
        ("NDIS_NBL_FLAGS_IS_IPV4", NDIS_NBL_FLAGS_IS_IPV4 as usize),
        ("NDIS_NBL_FLAGS_IS_IPV6", NDIS_NBL_FLAGS_IS_IPV6 as usize),
        (
            "FIELD_OFFSET(NET_BUFFER, Next)",
            offset_of!(NET_BUFFER, Next),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER, CurrentMdl)",
            offset_of!(NET_BUFFER, CurrentMdl),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER, CurrentMdlOffset)",
            offset_of!(NET_BUFFER, CurrentMdlOffset),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER, DataLength)",
            offset_of!(NET_BUFFER, DataLength),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER, MdlChain)",
            offset_of!(NET_BUFFER, MdlChain),
        ),
        (
            "FIELD_OFFSET(NET_BUFFER, DataOffset)",
            offset_of!(NET_BUFFER, DataOffset),
        ),
        ("sizeof(EX_RUNDOWN_REF)", size_of::<EX_RUNDOWN_REF>()),
        ("sizeof(OBJECT_ATTRIBUTES)", size_of::<OBJECT_ATTRIBUTES>()),
        (
            "FIELD_OFFSET(OBJECT_ATTRIBUTES, Attributes)",
            offset_of!(OBJECT_ATTRIBUTES, Attributes),
        ),
        ("MDL_PARTIAL", MDL_PARTIAL as usize),
        (
            "MDL_PARTIAL_HAS_BEEN_MAPPED",
            MDL_PARTIAL_HAS_BEEN_MAPPED as usize,
        ),
    ]
}

const CHECK_FILE: &str = "tests/layout_check.c";

fn check_file() -> String {
    let mut text = String::from(
        "/*
 * Generated by tests/layout.rs from the declarations in src/sys: do not edit. Compiled against
 * the WDK's headers for x64 and ARM64 (docs/windows.md, \"The layout check\"), it fails where
 * src/sys and the WDK disagree.
 */

#define NDIS_MINIPORT_DRIVER 1
#define NDIS630_MINIPORT 1
#include <ntddk.h>
#include <ndis.h>

#define CHECK(expression, value) _Static_assert((expression) == (value), #expression \" == \" #value)

",
    );
    for (expression, value) in facts() {
        text += &format!("CHECK({expression}, {value:#X});\n");
    }
    text
}

#[test]
fn layout_check_file_says_what_src_sys_declares() {
    let path = format!("{}/{CHECK_FILE}", env!("CARGO_MANIFEST_DIR"));
    let expected = check_file();
    if std::env::var_os("OXTUN_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "{CHECK_FILE} is not what src/sys declares; regenerate it with \
         `OXTUN_BLESS=1 cargo nextest run --test layout` and review the diff"
    );
}
