//! The layouts, integer types and constants `src/sys` declares, as C assertions for the WDK's own
//! headers to check.
//!
//! `src/sys` declares the WDK's types and constants by hand, from Microsoft's documentation and
//! public symbol dumps. The WDK's headers are the authority, and they exist only on a Windows build
//! machine, so this test keeps `tests/layout_check.c` equal to what the Rust declarations say;
//! there, clang compiles the file against the WDK's headers for x64 and for ARM64 (docs/windows.md,
//! "The layout check"), and every assertion that fails names a declaration to fix.
//!
//! The layouts are the facts below, listed by hand: a field's path in C is not always its Rust
//! name. The integer types and constants are read from the sources of `src/sys`, so one added
//! later is checked without editing this file: every top-level `pub type` that is an integer, and
//! every top-level `pub const` whose value is an integer literal, cast or not (`0x103`,
//! `0xC000_0001_u32 as i32`). Any other `pub const` must be named in [`UNCHECKED_CONSTANTS`] with
//! the reason. When a declaration changes, regenerate the file with
//! `OXTUN_BLESS=1 cargo nextest run --test layout` and review the diff.

use std::collections::HashMap;
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
            "sizeof(NDIS_PM_CAPABILITIES)",
            size_of::<NDIS_PM_CAPABILITIES>(),
        ),
        (
            "FIELD_OFFSET(NDIS_PM_CAPABILITIES, MinMagicPacketWakeUp)",
            offset_of!(NDIS_PM_CAPABILITIES, MinMagicPacketWakeUp),
        ),
        (
            "FIELD_OFFSET(NDIS_PM_CAPABILITIES, SupportedWakeUpEvents)",
            offset_of!(NDIS_PM_CAPABILITIES, SupportedWakeUpEvents),
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
            "FIELD_OFFSET(NDIS_STATISTICS_INFO, ifHCOutBroadcastOctets)",
            offset_of!(NDIS_STATISTICS_INFO, ifHCOutBroadcastOctets),
        ),
        ("sizeof(NDIS_LINK_STATE)", size_of::<NDIS_LINK_STATE>()),
        (
            "FIELD_OFFSET(NDIS_LINK_STATE, XmitLinkSpeed)",
            offset_of!(NDIS_LINK_STATE, XmitLinkSpeed),
        ),
        (
            "FIELD_OFFSET(NDIS_LINK_STATE, PauseFunctions)",
            offset_of!(NDIS_LINK_STATE, PauseFunctions),
        ),
        ("sizeof(NDIS_STATUS_INDICATION)", size_of::<Indication>()),
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
            "sizeof(NET_BUFFER_LIST_POOL_PARAMETERS)",
            size_of::<NET_BUFFER_LIST_POOL_PARAMETERS>(),
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
            "NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3",
            NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_DRIVER_CHARACTERISTICS, SynchronousOidRequestHandler)",
            offset_of!(Characteristics, SynchronousOidRequestHandler),
        ),
        // ntddndis.h, ndis.h: the task offloads.
        ("sizeof(NDIS_OFFLOAD)", size_of::<NDIS_OFFLOAD>()),
        (
            "NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3",
            NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3.into(),
        ),
        (
            "NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6",
            NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD, Checksum)",
            offset_of!(NDIS_OFFLOAD, Checksum),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD, LsoV2)",
            offset_of!(NDIS_OFFLOAD, LsoV2),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD, Flags)",
            offset_of!(NDIS_OFFLOAD, Flags),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD, Rsc)",
            offset_of!(NDIS_OFFLOAD, Rsc),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD, UdpSegmentation)",
            offset_of!(NDIS_OFFLOAD, UdpSegmentation),
        ),
        (
            "sizeof(NDIS_TCP_IP_CHECKSUM_OFFLOAD)",
            size_of::<NDIS_TCP_IP_CHECKSUM_OFFLOAD>(),
        ),
        (
            "FIELD_OFFSET(NDIS_TCP_IP_CHECKSUM_OFFLOAD, IPv6Receive)",
            offset_of!(NDIS_TCP_IP_CHECKSUM_OFFLOAD, IPv6Receive),
        ),
        (
            "sizeof(NDIS_TCP_LARGE_SEND_OFFLOAD_V2)",
            size_of::<NDIS_TCP_LARGE_SEND_OFFLOAD_V2>(),
        ),
        (
            "FIELD_OFFSET(NDIS_TCP_LARGE_SEND_OFFLOAD_V2, IPv6)",
            offset_of!(NDIS_TCP_LARGE_SEND_OFFLOAD_V2, IPv6),
        ),
        (
            "sizeof(NDIS_UDP_SEGMENTATION_OFFLOAD)",
            size_of::<NDIS_UDP_SEGMENTATION_OFFLOAD>(),
        ),
        (
            "sizeof(NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD)",
            size_of::<NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD>(),
        ),
        (
            "NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1",
            NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES, HardwareOffloadCapabilities)",
            offset_of!(
                NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
                HardwareOffloadCapabilities
            ),
        ),
        (
            "sizeof(NDIS_OFFLOAD_PARAMETERS)",
            size_of::<NDIS_OFFLOAD_PARAMETERS>(),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD_PARAMETERS, Flags)",
            offset_of!(NDIS_OFFLOAD_PARAMETERS, Flags),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD_PARAMETERS, RscIPv4)",
            offset_of!(NDIS_OFFLOAD_PARAMETERS, RscIPv4),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD_PARAMETERS, UdpSegmentation.IPv4)",
            offset_of!(NDIS_OFFLOAD_PARAMETERS, UdpSegmentationIPv4),
        ),
        (
            "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1",
            NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1.into(),
        ),
        (
            "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3",
            NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3.into(),
        ),
        (
            "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5",
            NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5.into(),
        ),
        (
            "sizeof(NDIS_OFFLOAD_ENCAPSULATION)",
            size_of::<NDIS_OFFLOAD_ENCAPSULATION>(),
        ),
        (
            "NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1",
            NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_OFFLOAD_ENCAPSULATION, IPv6)",
            offset_of!(NDIS_OFFLOAD_ENCAPSULATION, IPv6),
        ),
        (
            "sizeof(NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO)",
            size_of::<NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO>(),
        ),
        (
            "sizeof(NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO)",
            size_of::<NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO>(),
        ),
        (
            "sizeof(NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO)",
            size_of::<NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO>(),
        ),
        ("sizeof(NDIS_RSC_NBL_INFO)", size_of::<NDIS_RSC_NBL_INFO>()),
        // ndis.h: the configuration functions.
        (
            "NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1",
            NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1.into(),
        ),
        (
            "FIELD_OFFSET(NDIS_CONFIGURATION_OBJECT, NdisHandle)",
            offset_of!(NDIS_CONFIGURATION_OBJECT, NdisHandle),
        ),
        (
            "FIELD_OFFSET(NDIS_CONFIGURATION_PARAMETER, ParameterData)",
            offset_of!(NDIS_CONFIGURATION_PARAMETER, ParameterData),
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
        ("sizeof(KAPC_STATE)", size_of::<KAPC_STATE>()),
        ("sizeof(OBJECT_ATTRIBUTES)", size_of::<OBJECT_ATTRIBUTES>()),
        (
            "FIELD_OFFSET(OBJECT_ATTRIBUTES, Attributes)",
            offset_of!(OBJECT_ATTRIBUTES, Attributes),
        ),
    ]
}

/// The `pub const`s of `src/sys` that are not compared with the WDK, and why.
const UNCHECKED_CONSTANTS: [(&str, &str); 14] = [
    (
        "SPLIT_HEADERS_CAPACITY",
        "the driver's own: bytes of headers a receive NBL holds, no WDK name",
    ),
    (
        "RECEIVE_NBL_POOL_BYTES",
        "the driver's own: the size of what each receive NBL holds, no WDK name",
    ),
    (
        "SystemExtendedHandleInformation",
        "undocumented: no WDK header declares the SYSTEM_INFORMATION_CLASS values",
    ),
    (
        "POOL_TAG",
        "the driver's own pool tag: the WDK has no such name",
    ),
    (
        "NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2",
        "an offset in the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3",
        "the size of the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
    (
        "NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5",
        "a size computed from the Rust declaration, not a literal: a fact above checks it",
    ),
];

/// The types whose constants are status codes: they compare as NTSTATUS casts, the way
/// ntstatus.h writes them (ndis.h defines each NDIS_STATUS as the NTSTATUS of the same value).
const STATUS_TYPES: [&str; 2] = ["NTSTATUS", "NDIS_STATUS"];

/// Every top-level declaration `src/sys` begins with `keyword`, as (name, what follows the name
/// up to the `;`), whitespace collapsed, in file and source order.
fn declarations(keyword: &str) -> Vec<(String, String)> {
    let folder = format!("{}/src/sys", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "rs"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let mut lines = source.lines();
        while let Some(line) = lines.next() {
            let Some(rest) = line.strip_prefix(keyword) else {
                continue;
            };
            if rest.starts_with("fn ") || rest.starts_with("unsafe fn ") {
                continue;
            }
            let mut statement = rest.to_string();
            while !statement.contains(';') {
                statement += " ";
                statement += lines.next().unwrap().trim();
            }
            let statement = statement[..statement.find(';').unwrap()].to_string();
            let split = statement.find([':', ' ', '=']).unwrap();
            let (name, rest) = statement.split_at(split);
            let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
            found.push((name.to_string(), rest));
        }
    }
    found
}

/// An integer type: its width in bits, and whether it is signed. (`usize` is 64 bits: the check
/// is for the 64-bit targets.)
#[derive(Clone, Copy, Debug)]
struct Integer {
    bits: u32,
    signed: bool,
}

impl Integer {
    fn primitive(name: &str) -> Option<Self> {
        let (signed, bits) = match name.split_at_checked(1)? {
            ("u", bits) => (false, bits),
            ("i", bits) => (true, bits),
            _ => return None,
        };
        let bits = match bits {
            "size" => 64,
            "8" | "16" | "32" | "64" => bits.parse().unwrap(),
            _ => return None,
        };
        Some(Self { bits, signed })
    }

    /// `value` as this type holds it: the low bits, sign-extended if the type is signed (what
    /// `as` does).
    fn wrap(self, value: i128) -> i128 {
        let modulus = 1i128 << self.bits;
        let value = value.rem_euclid(modulus);
        if self.signed && value >= modulus / 2 {
            value - modulus
        } else {
            value
        }
    }
}

/// The integer types of `src/sys` by name: the primitives and every alias that resolves to one.
struct IntegerTypes(HashMap<String, String>);

impl IntegerTypes {
    fn read() -> Self {
        Self(
            declarations("pub type ")
                .into_iter()
                .map(|(name, rest)| (name, rest.trim_start_matches("= ").to_string()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<Integer> {
        Integer::primitive(name).or_else(|| self.get(self.0.get(name)?))
    }

    /// The integer aliases, with their sizes in bytes.
    fn aliases(&self) -> Vec<(String, u32)> {
        let mut aliases: Vec<_> = self
            .0
            .keys()
            .filter_map(|name| Some((name.clone(), self.get(name)?.bits / 8)))
            .collect();
        aliases.sort();
        aliases
    }
}

/// The value of a constant declared `: ty = value`, if `value` is an integer literal (decimal or
/// hexadecimal, with `_` separators and any type suffix), optionally cast `as` an integer type.
fn evaluate(ty: &str, value: &str, types: &IntegerTypes) -> Option<i128> {
    let (literal, cast) = match value.split_once(" as ") {
        Some((literal, cast)) => (literal, Some(types.get(cast)?)),
        None => (value, None),
    };
    let literal = literal.replace('_', "");
    let digits = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ]
    .iter()
    .find_map(|suffix| literal.strip_suffix(suffix))
    .unwrap_or(&literal);
    let number = match digits.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    let number = cast.map_or(number, |cast| cast.wrap(number));
    Some(types.get(ty)?.wrap(number))
}

/// The constants of `src/sys` compared with the WDK's: (name, value as C writes it).
fn constants() -> Vec<(String, String)> {
    let types = IntegerTypes::read();
    let mut constants = Vec::new();
    let mut unreadable = Vec::new();
    for (name, rest) in declarations("pub const ") {
        let (ty, value) = rest.trim_start_matches(": ").split_once(" = ").unwrap();
        let unchecked = UNCHECKED_CONSTANTS
            .iter()
            .any(|(unchecked, _)| *unchecked == name);
        match evaluate(ty, value, &types) {
            _ if unchecked => {}
            Some(number) if STATUS_TYPES.contains(&ty) => {
                constants.push((name, format!("(NTSTATUS){:#010X}", number as u32)));
            }
            Some(number) if number < 0 => constants.push((name, format!("({number})"))),
            Some(number) => constants.push((name, format!("{number:#X}"))),
            None => unreadable.push(format!("{name}{rest}")),
        }
    }
    assert!(
        unreadable.is_empty(),
        "constants of src/sys whose value is not an integer literal: name each in \
         UNCHECKED_CONSTANTS with the reason, or give it a literal value: {unreadable:#?}"
    );
    constants
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
#define NDIS683_MINIPORT 1
/* ntifs.h (which includes ntddk.h) before ndis.h: KAPC_STATE, for KeStackAttachProcess, is
 * declared only there. */
#include <ntifs.h>
#include <ndis.h>

#define CHECK(expression, value) _Static_assert((expression) == (value), #expression \" == \" #value)

/* Layouts. */
",
    );
    for (expression, value) in facts() {
        text += &format!("CHECK({expression}, {value:#X});\n");
    }
    text += "\n/* Integer types. */\n";
    for (name, size) in IntegerTypes::read().aliases() {
        text += &format!("CHECK(sizeof({name}), {size});\n");
    }
    text += "\n/* Constants. */\n";
    for (name, value) in constants() {
        text += &format!("CHECK({name}, {value});\n");
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

/// The values read from the sources are the values the compiler gives the constants, for each
/// form of literal `src/sys` writes.
#[test]
fn constants_read_from_the_sources_have_the_compiled_values() {
    let read: HashMap<_, _> = constants().into_iter().collect();
    for (name, compiled) in [
        (
            "NDIS_STATUS_FAILURE",
            format!("(NTSTATUS){:#010X}", NDIS_STATUS_FAILURE as u32),
        ),
        (
            "NDIS_STATUS_PENDING",
            format!("(NTSTATUS){:#010X}", NDIS_STATUS_PENDING),
        ),
        (
            "STATUS_INVALID_PARAMETER",
            format!("(NTSTATUS){:#010X}", STATUS_INVALID_PARAMETER as u32),
        ),
        ("OID_PNP_SET_POWER", format!("{OID_PNP_SET_POWER:#X}")),
        ("IF_TYPE_PROP_VIRTUAL", format!("{IF_TYPE_PROP_VIRTUAL:#X}")),
        ("NdisRequestMethod", format!("{NdisRequestMethod:#X}")),
        (
            "MDL_PARTIAL_HAS_BEEN_MAPPED",
            format!("{MDL_PARTIAL_HAS_BEEN_MAPPED:#X}"),
        ),
        ("POOL_FLAG_NON_PAGED", format!("{POOL_FLAG_NON_PAGED:#X}")),
        ("UserMode", format!("{UserMode:#X}")),
        (
            "NetBufferListFrameType",
            format!("{NetBufferListFrameType:#X}"),
        ),
    ] {
        assert_eq!(read[name], compiled, "{name}");
    }
}

#[test]
fn every_unchecked_constant_is_still_declared() {
    for (name, _) in UNCHECKED_CONSTANTS {
        assert!(
            declarations("pub const ")
                .iter()
                .any(|(declared, _)| declared == name),
            "UNCHECKED_CONSTANTS names {name}, which src/sys no longer declares"
        );
    }
}

#[test]
fn literals_evaluate_as_the_compiler_evaluates_them() {
    let types = IntegerTypes(HashMap::from([("NTSTATUS".into(), "i32".into())]));
    for (ty, value, expected) in [
        (
            "NTSTATUS",
            "0xC000_0001_u32 as i32",
            i128::from(0xC000_0001_u32 as i32),
        ),
        ("NTSTATUS", "0x102", 0x102),
        ("i16", "0x0020", 0x20),
        ("u32", "0xFD01_0101", 0xFD01_0101),
        ("u16", "53", 53),
        ("i8", "-1", -1),
        ("u64", "0x40", 0x40),
        ("u8", "0xFF_u8", 0xFF),
        ("i32", "0xFFFF_FFFF_u32 as i32", -1),
    ] {
        assert_eq!(
            evaluate(ty, value, &types),
            Some(expected),
            "{ty} = {value}"
        );
    }
    for (ty, value) in [
        ("u32", "u32::from_le_bytes(*b\"OxTn\")"),
        ("u16", "size_of::<NDIS_OBJECT_HEADER>() as u16"),
        ("u32", "FILE_READ_DATA | FILE_WRITE_DATA"),
        ("u32", "0x1 << 4"),
        ("PVOID", "0"),
    ] {
        assert_eq!(evaluate(ty, value, &types), None, "{ty} = {value}");
    }
}
