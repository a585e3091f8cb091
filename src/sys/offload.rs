//! Task offloads (ntddndis.h, ndis.h; Microsoft's NDIS documentation, "TCP/IP Task Offload"):
//! what a miniport reports it can do and does now (NDIS_OFFLOAD), what the stack asks of it
//! (NDIS_OFFLOAD_PARAMETERS, NDIS_OFFLOAD_ENCAPSULATION), and the out-of-band information of a
//! NET_BUFFER_LIST that says what to do with one packet.
//!
//! The C structures' bit fields are ULONGs here, with a constant for each field's position;
//! structures the driver never fills (IPsec, encapsulated-packet offloads, 464XLAT) are opaque
//! words of their size.

use core::mem::{offset_of, size_of};

use super::ndis::{FromBytes, NDIS_OBJECT_HEADER, NDIS_OID, NDIS_STATUS};
use super::nt::{PVOID, ULONG};

pub const NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES: u8 = 0xA0;
pub const NDIS_OBJECT_TYPE_OFFLOAD: u8 = 0xA7;
pub const NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION: u8 = 0xA8;

/// `NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG`: the miniport's current offload configuration
/// changed; the buffer is an NDIS_OFFLOAD.
pub const NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: NDIS_STATUS = 0x4002_0006;

/// Set only: turns offloads on and off (NDIS_OFFLOAD_PARAMETERS).
pub const OID_TCP_OFFLOAD_PARAMETERS: NDIS_OID = 0xFC01_020C;
/// Set (queries NDIS answers): activates the offloads for an encapsulation
/// (NDIS_OFFLOAD_ENCAPSULATION).
pub const OID_OFFLOAD_ENCAPSULATION: NDIS_OID = 0x0101_010A;

/// Encapsulation flags, in every `Encapsulation` member.
pub const NDIS_ENCAPSULATION_NOT_SUPPORTED: ULONG = 0;
pub const NDIS_ENCAPSULATION_NULL: ULONG = 0x1;
pub const NDIS_ENCAPSULATION_IEEE_802_3: ULONG = 0x2;
pub const NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q: ULONG = 0x4;
pub const NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q_IN_OOB: ULONG = 0x8;
pub const NDIS_ENCAPSULATION_IEEE_LLC_SNAP_ROUTED: ULONG = 0x10;

/// The values of the two-bit capability fields: in attributes and queries, supported or not; in
/// a current-configuration indication, NDIS_OFFLOAD_SET_ON or OFF.
pub const NDIS_OFFLOAD_NOT_SUPPORTED: ULONG = 0;
pub const NDIS_OFFLOAD_SUPPORTED: ULONG = 1;
pub const NDIS_OFFLOAD_SET_NO_CHANGE: ULONG = 0;
pub const NDIS_OFFLOAD_SET_ON: ULONG = 1;
pub const NDIS_OFFLOAD_SET_OFF: ULONG = 2;

/// One direction of checksum offload for one IP version (a member of
/// NDIS_TCP_IP_CHECKSUM_OFFLOAD): the encapsulations, then two-bit fields at the positions below.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_CHECKSUM_OFFLOAD_PATH {
    pub Encapsulation: ULONG,
    pub Fields: ULONG,
}

/// Bit positions in `Fields`, in the order ntddndis.h declares the ULONG bit fields (which the
/// compiler allocates from the least significant bit): IpOptionsSupported (IPv4) or
/// IpExtensionHeadersSupported (IPv6), TcpOptionsSupported, TcpChecksum, UdpChecksum, and
/// IpChecksum (IPv4 only), two bits each.
impl NDIS_CHECKSUM_OFFLOAD_PATH {
    pub const IP_OPTIONS_SHIFT: u32 = 0;
    pub const TCP_OPTIONS_SHIFT: u32 = 2;
    pub const TCP_SHIFT: u32 = 4;
    pub const UDP_SHIFT: u32 = 6;
    pub const IP_SHIFT: u32 = 8;
}

/// `NDIS_TCP_IP_CHECKSUM_OFFLOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_IP_CHECKSUM_OFFLOAD {
    pub IPv4Transmit: NDIS_CHECKSUM_OFFLOAD_PATH,
    pub IPv4Receive: NDIS_CHECKSUM_OFFLOAD_PATH,
    pub IPv6Transmit: NDIS_CHECKSUM_OFFLOAD_PATH,
    pub IPv6Receive: NDIS_CHECKSUM_OFFLOAD_PATH,
}

/// One IP version of a segmentation offload (a member of NDIS_TCP_LARGE_SEND_OFFLOAD_V2 and
/// NDIS_UDP_SEGMENTATION_OFFLOAD): IPv4's is the first three words, IPv6's all four.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_SEGMENTATION_OFFLOAD_IPV4 {
    pub Encapsulation: ULONG,
    pub MaxOffLoadSize: ULONG,
    /// LSOv2: MinSegmentCount; USO: MinSegmentCount:6, SubMssFinalSegmentSupported:1.
    pub MinSegmentCount: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_SEGMENTATION_OFFLOAD_IPV6 {
    pub Encapsulation: ULONG,
    pub MaxOffLoadSize: ULONG,
    /// As in [`NDIS_SEGMENTATION_OFFLOAD_IPV4::MinSegmentCount`].
    pub MinSegmentCount: ULONG,
    /// IpExtensionHeadersSupported:2, then (LSOv2) TcpOptionsSupported:2.
    pub Fields: ULONG,
}

impl NDIS_SEGMENTATION_OFFLOAD_IPV6 {
    /// In `Fields`: IpExtensionHeadersSupported, then TcpOptionsSupported.
    pub const IP_EXTENSION_HEADERS_SHIFT: u32 = 0;
    pub const TCP_OPTIONS_SHIFT: u32 = 2;
}

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V1`, unused: the driver offers LSOv2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V1 {
    pub IPv4: [ULONG; 4],
}

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_V2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_V2 {
    pub IPv4: NDIS_SEGMENTATION_OFFLOAD_IPV4,
    pub IPv6: NDIS_SEGMENTATION_OFFLOAD_IPV6,
}

/// `NDIS_UDP_SEGMENTATION_OFFLOAD` (NDIS 6.83).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_UDP_SEGMENTATION_OFFLOAD {
    pub IPv4: NDIS_SEGMENTATION_OFFLOAD_IPV4,
    pub IPv6: NDIS_SEGMENTATION_OFFLOAD_IPV6,
}

impl NDIS_UDP_SEGMENTATION_OFFLOAD {
    /// In a `MinSegmentCount` word: MinSegmentCount in the low 6 bits, then
    /// SubMssFinalSegmentSupported.
    pub const MIN_SEGMENT_COUNT_MASK: ULONG = 0x3F;
    pub const SUB_MSS_FINAL_SEGMENT_SUPPORTED: ULONG = 1 << 6;
}

/// `NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD`: IPv4.Enabled and IPv6.Enabled, BOOLEANs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD {
    pub IPv4Enabled: u8,
    pub IPv6Enabled: u8,
}

pub const NDIS_OFFLOAD_REVISION_3: u8 = 3;
pub const NDIS_OFFLOAD_REVISION_6: u8 = 6;

/// `NDIS_OFFLOAD` through revision 6 (NDIS 6.83).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD {
    pub Header: NDIS_OBJECT_HEADER,
    pub Checksum: NDIS_TCP_IP_CHECKSUM_OFFLOAD,
    pub LsoV1: NDIS_TCP_LARGE_SEND_OFFLOAD_V1,
    /// `NDIS_IPSEC_OFFLOAD_V1`.
    pub IPsecV1: [ULONG; 7],
    pub LsoV2: NDIS_TCP_LARGE_SEND_OFFLOAD_V2,
    pub Flags: ULONG,
    /// `NDIS_IPSEC_OFFLOAD_V2`.
    pub IPsecV2: [ULONG; 8],
    pub Rsc: NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD,
    /// `NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD`.
    pub EncapsulatedPacketTaskOffloadGre: [ULONG; 2],
    /// `NDIS_ENCAPSULATED_PACKET_TASK_OFFLOAD_V2`.
    pub EncapsulatedPacketTaskOffloadVxlan: [ULONG; 5],
    pub EncapsulationTypes: u8,
    /// `NDIS_RFC6877_464XLAT_OFFLOAD`.
    pub Rfc6877Xlat: [ULONG; 2],
    pub UdpSegmentation: NDIS_UDP_SEGMENTATION_OFFLOAD,
}

/// Through EncapsulatedPacketTaskOffloadGre.
pub const NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3: u16 =
    (offset_of!(NDIS_OFFLOAD, EncapsulatedPacketTaskOffloadGre) + 8) as u16;
/// Through UdpSegmentation: the whole structure.
pub const NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6: u16 = size_of::<NDIS_OFFLOAD>() as u16;

const _: () = {
    assert!(size_of::<NDIS_TCP_IP_CHECKSUM_OFFLOAD>() == 32);
    assert!(size_of::<NDIS_TCP_LARGE_SEND_OFFLOAD_V2>() == 28);
    assert!(size_of::<NDIS_UDP_SEGMENTATION_OFFLOAD>() == 28);
    assert!(offset_of!(NDIS_OFFLOAD, Checksum) == 4);
    assert!(offset_of!(NDIS_OFFLOAD, LsoV2) == 80);
    assert!(offset_of!(NDIS_OFFLOAD, Flags) == 108);
    assert!(offset_of!(NDIS_OFFLOAD, Rsc) == 144);
    assert!(offset_of!(NDIS_OFFLOAD, EncapsulatedPacketTaskOffloadGre) == 148);
    assert!(offset_of!(NDIS_OFFLOAD, UdpSegmentation) == 188);
    assert!(NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3 == 156);
    assert!(size_of::<NDIS_OFFLOAD>() == 216);
};

/// `NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES`.
#[repr(C)]
pub struct NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
    pub Header: NDIS_OBJECT_HEADER,
    pub DefaultOffloadConfiguration: *mut NDIS_OFFLOAD,
    pub HardwareOffloadCapabilities: *mut NDIS_OFFLOAD,
    /// `NDIS_TCP_CONNECTION_OFFLOAD`: connection (chimney) offload, which the driver has none of.
    pub DefaultTcpConnectionOffloadConfiguration: PVOID,
    pub TcpConnectionOffloadHardwareCapabilities: PVOID,
}
pub const NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1: u16 =
    size_of::<NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES>() as u16;

#[cfg(target_pointer_width = "64")]
const _: () = {
    type Attributes = NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES;
    assert!(offset_of!(Attributes, DefaultOffloadConfiguration) == 8);
    assert!(offset_of!(Attributes, TcpConnectionOffloadHardwareCapabilities) == 32);
    assert!(NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1 == 40);
};

/// `NDIS_OFFLOAD_PARAMETERS` through revision 5 (NDIS 6.83): what an OID_TCP_OFFLOAD_PARAMETERS
/// set asks, one byte per offload (0: no change).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_PARAMETERS {
    pub Header: NDIS_OBJECT_HEADER,
    pub IPv4Checksum: u8,
    pub TCPIPv4Checksum: u8,
    pub UDPIPv4Checksum: u8,
    pub TCPIPv6Checksum: u8,
    pub UDPIPv6Checksum: u8,
    pub LsoV1: u8,
    pub IPsecV1: u8,
    pub LsoV2IPv4: u8,
    pub LsoV2IPv6: u8,
    pub TcpConnectionIPv4: u8,
    pub TcpConnectionIPv6: u8,
    pub Flags: ULONG,
    pub IPsecV2: u8,
    pub IPsecV2IPv4: u8,
    pub RscIPv4: u8,
    pub RscIPv6: u8,
    pub EncapsulatedPacketTaskOffload: u8,
    pub EncapsulationTypes: u8,
    pub EncapsulationProtocolParameters: ULONG,
    pub UdpSegmentationIPv4: u8,
    pub UdpSegmentationIPv6: u8,
}
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_1: u8 = 1;
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_3: u8 = 3;
pub const NDIS_OFFLOAD_PARAMETERS_REVISION_5: u8 = 5;
/// Through Flags.
pub const NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1: u16 =
    (offset_of!(NDIS_OFFLOAD_PARAMETERS, Flags) + 4) as u16;
/// Through EncapsulationTypes (RscIPv4 and RscIPv6 are in it).
pub const NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3: u16 =
    (offset_of!(NDIS_OFFLOAD_PARAMETERS, EncapsulationTypes) + 1) as u16;
/// Through UdpSegmentation (its IPv6 byte).
pub const NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5: u16 =
    (offset_of!(NDIS_OFFLOAD_PARAMETERS, UdpSegmentationIPv6) + 1) as u16;

/// Checksum settings in NDIS_OFFLOAD_PARAMETERS.
pub const NDIS_OFFLOAD_PARAMETERS_NO_CHANGE: u8 = 0;
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED: u8 = 1;
pub const NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED: u8 = 2;
pub const NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED: u8 = 3;
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED: u8 = 4;
/// LSOv2, USO and RSC settings (the same values for each).
pub const NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED: u8 = 1;
pub const NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED: u8 = 2;

const _: () = {
    assert!(offset_of!(NDIS_OFFLOAD_PARAMETERS, Flags) == 16);
    assert!(offset_of!(NDIS_OFFLOAD_PARAMETERS, RscIPv4) == 22);
    assert!(offset_of!(NDIS_OFFLOAD_PARAMETERS, EncapsulationProtocolParameters) == 28);
    assert!(offset_of!(NDIS_OFFLOAD_PARAMETERS, UdpSegmentationIPv4) == 32);
    assert!(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1 == 20);
    assert!(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3 == 26);
    assert!(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5 == 34);
};

// SAFETY: a header and bytes and a ULONG: integers only.
unsafe impl FromBytes for NDIS_OFFLOAD_PARAMETERS {}

/// One IP version of `NDIS_OFFLOAD_ENCAPSULATION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_ENCAPSULATION_IP {
    /// NDIS_OFFLOAD_SET_ON, _OFF or _NO_CHANGE.
    pub Enabled: ULONG,
    pub EncapsulationType: ULONG,
    pub HeaderSize: ULONG,
}

/// `NDIS_OFFLOAD_ENCAPSULATION`, the buffer of OID_OFFLOAD_ENCAPSULATION.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_OFFLOAD_ENCAPSULATION {
    pub Header: NDIS_OBJECT_HEADER,
    pub IPv4: NDIS_OFFLOAD_ENCAPSULATION_IP,
    pub IPv6: NDIS_OFFLOAD_ENCAPSULATION_IP,
}
pub const NDIS_OFFLOAD_ENCAPSULATION_REVISION_1: u8 = 1;
pub const NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1: u16 =
    size_of::<NDIS_OFFLOAD_ENCAPSULATION>() as u16;
const _: () = assert!(NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1 == 28);
// SAFETY: a header and ULONGs: integers only.
unsafe impl FromBytes for NDIS_OFFLOAD_ENCAPSULATION {}
// SAFETY: a header, ULONGs, arrays of them and bytes: integers only.
unsafe impl FromBytes for NDIS_OFFLOAD {}

/// Indexes of `NET_BUFFER_LIST::NetBufferListInfo` (`NDIS_NET_BUFFER_LIST_INFO`, nblinfo.h, x64
/// and ARM64) for the offloads.
pub const TcpIpChecksumNetBufferListInfo: usize = 0;
pub const TcpLargeSendNetBufferListInfo: usize = 2;
pub const TcpRecvSegCoalesceInfo: usize = 22;
/// The send path's use of the receive path's TcpRecvSegCoalesceInfo entry (NDIS 6.83).
pub const UdpSegmentationOffloadInfo: usize = 22;
pub const RscTcpTimestampDelta: usize = 23;

/// `NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO`, the TcpIpChecksumNetBufferListInfo entry: its
/// bit fields in the order nblchecksum.h declares them. A send's (Transmit): IsIPv4, IsIPv6,
/// TcpChecksum, UdpChecksum, IpHeaderChecksum, then TcpHeaderOffset at bit 16 (10 bits). A
/// receive's (Receive): the checksums the miniport found failed or valid.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO(pub usize);

impl NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO {
    pub const TX_IS_IPV4: usize = 1 << 0;
    pub const TX_IS_IPV6: usize = 1 << 1;
    pub const TX_TCP_CHECKSUM: usize = 1 << 2;
    pub const TX_UDP_CHECKSUM: usize = 1 << 3;
    pub const TX_IP_HEADER_CHECKSUM: usize = 1 << 4;
    pub const TX_TCP_HEADER_OFFSET_SHIFT: u32 = 16;
    pub const RX_TCP_CHECKSUM_FAILED: usize = 1 << 0;
    pub const RX_UDP_CHECKSUM_FAILED: usize = 1 << 1;
    pub const RX_IP_CHECKSUM_FAILED: usize = 1 << 2;
    pub const RX_TCP_CHECKSUM_SUCCEEDED: usize = 1 << 3;
    pub const RX_UDP_CHECKSUM_SUCCEEDED: usize = 1 << 4;
    pub const RX_IP_CHECKSUM_SUCCEEDED: usize = 1 << 5;
    pub const RX_LOOPBACK: usize = 1 << 6;
    pub const RX_TCP_CHECKSUM_VALUE_INVALID: usize = 1 << 7;
    pub const RX_IP_CHECKSUM_VALUE_INVALID: usize = 1 << 8;
}

/// `NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO`, the TcpLargeSendNetBufferListInfo entry
/// (nbllso.h): MSS in the low 20 bits, TcpHeaderOffset in the next 10, Type at bit 30
/// (NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE 1, V1 0), and for LSOv2 IPVersion at bit 31
/// (NDIS_TCP_LARGE_SEND_OFFLOAD_IPv6 1). On completion of an LSOv2 send the miniport writes
/// LsoV2TransmitComplete: Reserved (the low 30 bits) 0, and Type V2.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(pub usize);

impl NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO {
    pub const MSS_MASK: usize = 0xF_FFFF;
    pub const HEADER_OFFSET_SHIFT: u32 = 20;
    pub const HEADER_OFFSET_MASK: usize = 0x3FF;
    pub const TYPE_V2: usize = 1 << 30;
    pub const IPV6: usize = 1 << 31;

    pub fn mss(self) -> u32 {
        (self.0 & Self::MSS_MASK) as u32
    }

    pub fn header_offset(self) -> u32 {
        ((self.0 >> Self::HEADER_OFFSET_SHIFT) & Self::HEADER_OFFSET_MASK) as u32
    }

    pub fn is_v2(self) -> bool {
        self.0 & Self::TYPE_V2 != 0
    }

    /// LsoV2TransmitComplete, as the miniport leaves it ("set the LsoV2TransmitComplete.Reserved
    /// member ... to zero and the LsoV2TransmitComplete.Type member to
    /// NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE"): bit 31 is Reserved2, which it keeps.
    pub fn v2_completed(self) -> Self {
        NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(self.0 & !0x7FFF_FFFF | Self::TYPE_V2)
    }
}

/// `NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO`, the UdpSegmentationOffloadInfo entry
/// (nbluso.h): MSS in the low 20 bits, UdpHeaderOffset in the next 10, IPVersion at bit 31
/// (NDIS_UDP_SEGMENTATION_OFFLOAD_IPV6 1).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO(pub usize);

impl NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO {
    pub const IPV6: usize = 1 << 31;

    pub fn mss(self) -> u32 {
        (self.0 & 0xF_FFFF) as u32
    }

    pub fn header_offset(self) -> u32 {
        ((self.0 >> 20) & 0x3FF) as u32
    }
}

/// `NDIS_RSC_NBL_INFO`, the TcpRecvSegCoalesceInfo entry of a received NBL (nblrsc.h):
/// CoalescedSegCount in the low 16 bits, DupAckCount in the next 16.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NDIS_RSC_NBL_INFO(pub usize);

impl NDIS_RSC_NBL_INFO {
    pub fn new(coalesced_segments: u16, duplicate_acks: u16) -> Self {
        NDIS_RSC_NBL_INFO(usize::from(coalesced_segments) | usize::from(duplicate_acks) << 16)
    }

    pub fn coalesced_segments(self) -> u16 {
        self.0 as u16
    }

    pub fn duplicate_acks(self) -> u16 {
        (self.0 >> 16) as u16
    }
}
