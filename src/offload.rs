//! The task offloads the adapter offers NDIS (docs/offloads.md, "The driver"): which ones the
//! administrator's standardized keywords allow, which are in force (only while a client that
//! takes the per-packet header is registered), and the NDIS_OFFLOAD structures that say so.
//!
//! Pure logic over plain values; the adapter keeps the state under its lock, and indicates each
//! change (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG).
//!
//! Sources: "Using Registry Values to Enable and Disable Task Offloading", "UDP Segmentation
//! Offload (USO)" and "Standardized INF Keywords for RSC" (the keywords and their enumerations);
//! NDIS_OFFLOAD, NDIS_TCP_IP_CHECKSUM_OFFLOAD ("Miniport drivers must provide Ethernet
//! encapsulation"), NDIS_TCP_LARGE_SEND_OFFLOAD_V2, NDIS_UDP_SEGMENTATION_OFFLOAD,
//! OID_TCP_OFFLOAD_PARAMETERS and OID_OFFLOAD_ENCAPSULATION.

use core::mem::size_of;

use oxtun_abi::vnet::VNET_HDR_LEN;

use crate::oid::OidAnswer;
use crate::sys::*;

/// One kind of checksum offload, each way: an enumeration keyword's value is `tx | rx << 1`
/// (0 Disabled, 1 Tx Enabled, 2 Rx Enabled, 3 Rx & Tx Enabled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Directions {
    pub tx: bool,
    pub rx: bool,
}

impl Directions {
    pub const BOTH: Directions = Directions { tx: true, rx: true };
    pub const RX: Directions = Directions {
        tx: false,
        rx: true,
    };

    fn from_keyword(value: u32) -> Option<Self> {
        (value <= 3).then_some(Directions {
            tx: value & 1 != 0,
            rx: value & 2 != 0,
        })
    }

    /// An NDIS_OFFLOAD_PARAMETERS checksum setting applied: `None` if it is not one.
    fn with_parameter(self, value: u8) -> Option<Self> {
        match value {
            NDIS_OFFLOAD_PARAMETERS_NO_CHANGE => Some(self),
            NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED => Some(Directions::default()),
            NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED => Some(Directions {
                tx: true,
                rx: false,
            }),
            NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED => Some(Directions::RX),
            NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED => Some(Directions::BOTH),
            _ => None,
        }
    }
}

/// An NDIS_OFFLOAD_PARAMETERS setting of LSOv2, USO or RSC applied: `None` if it is not one.
fn with_switch(current: bool, value: u8) -> Option<bool> {
    match value {
        NDIS_OFFLOAD_PARAMETERS_NO_CHANGE => Some(current),
        NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED => Some(false),
        NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED => Some(true),
        _ => None,
    }
}

/// The offloads the driver has, one switch each: the unit of every state below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    pub ip_checksum_v4: Directions,
    pub tcp_checksum_v4: Directions,
    pub tcp_checksum_v6: Directions,
    pub udp_checksum_v4: Directions,
    pub udp_checksum_v6: Directions,
    pub lso_v4: bool,
    pub lso_v6: bool,
    pub uso_v4: bool,
    pub uso_v6: bool,
    pub rsc_v4: bool,
    pub rsc_v6: bool,
}

/// The encapsulations the driver's offloads work with: all it might be asked for, since an IP
/// packet is all it ever sees. An NdisMediumIP miniport has no Ethernet header, so tcpip may
/// activate its offloads with NDIS_ENCAPSULATION_NULL; which one it sets is for Windows to show
/// (docs/windows.md). Microsoft's NetAdapterCx reports this set for every offload whatever the
/// medium, and takes any OID_OFFLOAD_ENCAPSULATION (netcx/translator/nxoffload.cpp,
/// `TranslateChecksumCapabilities` and `SetEncapsulation`).
pub const ENCAPSULATIONS: ULONG = NDIS_ENCAPSULATION_NULL
    | NDIS_ENCAPSULATION_IEEE_802_3
    | NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q
    | NDIS_ENCAPSULATION_IEEE_802_3_P_AND_Q_IN_OOB
    | NDIS_ENCAPSULATION_IEEE_LLC_SNAP_ROUTED;

/// The most TCP or UDP payload a large send may carry (MaxOffLoadSize): what fits a ring packet
/// of 0xFFFF bytes after the per-packet header and the largest headers the stack offloads
/// (NDIS_LARGE_SEND_OFFLOAD_MAX_HEADER_LENGTH, 128 bytes: "If header is bigger than this value,
/// it will not do LSO").
pub const MAX_OFFLOAD_SIZE: u32 = 0xFFFF - VNET_HDR_LEN as u32 - 128;
/// The fewest segments a large send must make (MinSegmentCount): one would be a plain packet.
pub const MIN_SEGMENT_COUNT: u32 = 2;

/// The standardized keywords the driver reads, each with the value it takes when the key lacks
/// it or holds one outside its enumeration, which is the INF's default (wintun.inx; tests/inf.rs
/// checks they agree). Receive checksums are on: WireGuardNT and ovpn-dco-win, NdisMediumIP
/// miniports both, mark received checksums valid and tcpip honours it. Everything else is off
/// until Windows shows tcpip uses it on an NdisMediumIP miniport (docs/offloads.md, "Which
/// offloads are on by default", and docs/windows.md).
pub const KEYWORDS: [(&str, u32); 11] = [
    ("*IPChecksumOffloadIPv4", 2),
    ("*TCPChecksumOffloadIPv4", 2),
    ("*TCPChecksumOffloadIPv6", 2),
    ("*UDPChecksumOffloadIPv4", 2),
    ("*UDPChecksumOffloadIPv6", 2),
    ("*LsoV2IPv4", 0),
    ("*LsoV2IPv6", 0),
    ("*UsoIPv4", 0),
    ("*UsoIPv6", 0),
    ("*RscIPv4", 0),
    ("*RscIPv6", 0),
];

impl Offloads {
    pub const NONE: Offloads = Offloads {
        ip_checksum_v4: Directions {
            tx: false,
            rx: false,
        },
        tcp_checksum_v4: Directions {
            tx: false,
            rx: false,
        },
        tcp_checksum_v6: Directions {
            tx: false,
            rx: false,
        },
        udp_checksum_v4: Directions {
            tx: false,
            rx: false,
        },
        udp_checksum_v6: Directions {
            tx: false,
            rx: false,
        },
        lso_v4: false,
        lso_v6: false,
        uso_v4: false,
        uso_v6: false,
        rsc_v4: false,
        rsc_v6: false,
    };

    /// Every offload the driver has: its hardware capabilities.
    pub const ALL: Offloads = Offloads {
        ip_checksum_v4: Directions::BOTH,
        tcp_checksum_v4: Directions::BOTH,
        tcp_checksum_v6: Directions::BOTH,
        udp_checksum_v4: Directions::BOTH,
        udp_checksum_v6: Directions::BOTH,
        lso_v4: true,
        lso_v6: true,
        uso_v4: true,
        uso_v6: true,
        rsc_v4: true,
        rsc_v6: true,
    };

    /// The offloads the keywords allow, `read` giving each keyword's value (in the order of
    /// [`KEYWORDS`]). A missing or out-of-range value takes the keyword's default: "NDIS does
    /// not validate values that a driver reads from the registry ... If the caller determines
    /// that a value is out of bounds, it should use a default value instead"
    /// (NdisReadConfiguration).
    pub fn from_keywords(mut read: impl FnMut(&str) -> Option<u32>) -> Offloads {
        let mut values = [0u32; KEYWORDS.len()];
        for (value, (name, default)) in values.iter_mut().zip(KEYWORDS) {
            let limit = if name.contains("Checksum") { 3 } else { 1 };
            *value = read(name)
                .filter(|value| *value <= limit)
                .unwrap_or(default);
        }
        let checksum = |value: u32| Directions::from_keyword(value).unwrap_or_default();
        Offloads {
            ip_checksum_v4: checksum(values[0]),
            tcp_checksum_v4: checksum(values[1]),
            tcp_checksum_v6: checksum(values[2]),
            udp_checksum_v4: checksum(values[3]),
            udp_checksum_v6: checksum(values[4]),
            lso_v4: values[5] == 1,
            lso_v6: values[6] == 1,
            uso_v4: values[7] == 1,
            uso_v6: values[8] == 1,
            rsc_v4: values[9] == 1,
            rsc_v6: values[10] == 1,
        }
    }

    /// The offloads of one IP version only (the other's off).
    fn ip_version(self, v4: bool, v6: bool) -> Offloads {
        let keep = |directions: Directions, on: bool| {
            if on {
                directions
            } else {
                Directions::default()
            }
        };
        Offloads {
            ip_checksum_v4: keep(self.ip_checksum_v4, v4),
            tcp_checksum_v4: keep(self.tcp_checksum_v4, v4),
            udp_checksum_v4: keep(self.udp_checksum_v4, v4),
            lso_v4: self.lso_v4 && v4,
            uso_v4: self.uso_v4 && v4,
            rsc_v4: self.rsc_v4 && v4,
            tcp_checksum_v6: keep(self.tcp_checksum_v6, v6),
            udp_checksum_v6: keep(self.udp_checksum_v6, v6),
            lso_v6: self.lso_v6 && v6,
            uso_v6: self.uso_v6 && v6,
            rsc_v6: self.rsc_v6 && v6,
        }
    }

    /// An OID_TCP_OFFLOAD_PARAMETERS set applied to these, from its buffer (read once); the
    /// answer for a buffer that is too short or holds values no setting has. Settings for
    /// offloads the driver does not have (LSOv1, IPsec, connection offload, encapsulated
    /// packets) change nothing: they stay off, as the indication that follows says.
    pub fn with_parameters(self, buffer: &[u8]) -> Result<Offloads, OidAnswer> {
        let least = usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1);
        if buffer.len() < least {
            return Err(OidAnswer::short(NDIS_STATUS_INVALID_LENGTH, least));
        }
        // Fields past the buffer (an older revision's) read as 0: no change.
        let mut bytes = [0u8; size_of::<NDIS_OFFLOAD_PARAMETERS>()];
        let len = buffer.len().min(bytes.len());
        bytes[..len].copy_from_slice(&buffer[..len]);
        let request = NDIS_OFFLOAD_PARAMETERS::read_from(&bytes).expect("its size");
        // "If the contents of InformationBuffer are invalid, the miniport driver should return
        // NDIS_STATUS_INVALID_DATA" (OID_TCP_OFFLOAD_PARAMETERS).
        let invalid = OidAnswer::status(NDIS_STATUS_INVALID_DATA);
        if request.Header.Type != NDIS_OBJECT_TYPE_DEFAULT || request.Header.Revision == 0 {
            return Err(invalid);
        }
        let revision = request.Header.Revision;
        let has = |revision_needed: u8, size: u16| {
            revision >= revision_needed && buffer.len() >= usize::from(size)
        };
        let checksum =
            |current: Directions, value: u8| current.with_parameter(value).ok_or(invalid);
        let switch = |current: bool, value: u8| with_switch(current, value).ok_or(invalid);
        let mut next = Offloads {
            ip_checksum_v4: checksum(self.ip_checksum_v4, request.IPv4Checksum)?,
            tcp_checksum_v4: checksum(self.tcp_checksum_v4, request.TCPIPv4Checksum)?,
            udp_checksum_v4: checksum(self.udp_checksum_v4, request.UDPIPv4Checksum)?,
            tcp_checksum_v6: checksum(self.tcp_checksum_v6, request.TCPIPv6Checksum)?,
            udp_checksum_v6: checksum(self.udp_checksum_v6, request.UDPIPv6Checksum)?,
            lso_v4: switch(self.lso_v4, request.LsoV2IPv4)?,
            lso_v6: switch(self.lso_v6, request.LsoV2IPv6)?,
            ..self
        };
        if has(
            NDIS_OFFLOAD_PARAMETERS_REVISION_3,
            NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3,
        ) {
            next.rsc_v4 = switch(self.rsc_v4, request.RscIPv4)?;
            next.rsc_v6 = switch(self.rsc_v6, request.RscIPv6)?;
        }
        if has(
            NDIS_OFFLOAD_PARAMETERS_REVISION_5,
            NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5,
        ) {
            next.uso_v4 = switch(self.uso_v4, request.UdpSegmentationIPv4)?;
            next.uso_v6 = switch(self.uso_v6, request.UdpSegmentationIPv6)?;
        }
        Ok(next)
    }

    /// The NDIS_OFFLOAD that says these offloads, each with every encapsulation of
    /// [`ENCAPSULATIONS`], whether it is on or off (its flags and sizes 0): for the attributes'
    /// hardware capabilities and default configuration, and for each current-configuration
    /// indication.
    pub fn to_ndis(self) -> NDIS_OFFLOAD {
        let encapsulation = ENCAPSULATIONS;
        let bit = |on: bool, shift: u32| {
            if on {
                NDIS_OFFLOAD_SUPPORTED << shift
            } else {
                0
            }
        };
        let path = |ip: Option<bool>, tcp: bool, udp: bool, options: bool| {
            let any = ip.unwrap_or(false) || tcp || udp;
            NDIS_CHECKSUM_OFFLOAD_PATH {
                Encapsulation: encapsulation,
                Fields: bit(any && options, NDIS_CHECKSUM_OFFLOAD_PATH::IP_OPTIONS_SHIFT)
                    | bit(tcp, NDIS_CHECKSUM_OFFLOAD_PATH::TCP_OPTIONS_SHIFT)
                    | bit(tcp, NDIS_CHECKSUM_OFFLOAD_PATH::TCP_SHIFT)
                    | bit(udp, NDIS_CHECKSUM_OFFLOAD_PATH::UDP_SHIFT)
                    | bit(ip.unwrap_or(false), NDIS_CHECKSUM_OFFLOAD_PATH::IP_SHIFT),
            }
        };
        let v4_options = true;
        let segmentation_v4 = |on: bool, minimum: u32| NDIS_SEGMENTATION_OFFLOAD_IPV4 {
            Encapsulation: encapsulation,
            MaxOffLoadSize: if on { MAX_OFFLOAD_SIZE } else { 0 },
            MinSegmentCount: if on { minimum } else { 0 },
        };
        // IPv6 extension headers: abi's segmentation and checksums handle Hop-by-Hop and
        // Destination Options but not a Routing header, so the driver claims none.
        let segmentation_v6 =
            |on: bool, minimum: u32, tcp_options: bool| NDIS_SEGMENTATION_OFFLOAD_IPV6 {
                Encapsulation: encapsulation,
                MaxOffLoadSize: if on { MAX_OFFLOAD_SIZE } else { 0 },
                MinSegmentCount: if on { minimum } else { 0 },
                Fields: bit(
                    on && tcp_options,
                    NDIS_SEGMENTATION_OFFLOAD_IPV6::TCP_OPTIONS_SHIFT,
                ),
            };
        // A UDP super-packet's last datagram may be shorter than the others.
        let uso_minimum =
            MIN_SEGMENT_COUNT | NDIS_UDP_SEGMENTATION_OFFLOAD::SUB_MSS_FINAL_SEGMENT_SUPPORTED;
        NDIS_OFFLOAD {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_OFFLOAD,
                Revision: NDIS_OFFLOAD_REVISION_6,
                Size: NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6,
            },
            Checksum: NDIS_TCP_IP_CHECKSUM_OFFLOAD {
                IPv4Transmit: path(
                    Some(self.ip_checksum_v4.tx),
                    self.tcp_checksum_v4.tx,
                    self.udp_checksum_v4.tx,
                    v4_options,
                ),
                IPv4Receive: path(
                    Some(self.ip_checksum_v4.rx),
                    self.tcp_checksum_v4.rx,
                    self.udp_checksum_v4.rx,
                    v4_options,
                ),
                // Sending, extension headers as above; receiving, the driver marks what the
                // client verified, whatever headers the packet has.
                IPv6Transmit: path(
                    None,
                    self.tcp_checksum_v6.tx,
                    self.udp_checksum_v6.tx,
                    false,
                ),
                IPv6Receive: path(None, self.tcp_checksum_v6.rx, self.udp_checksum_v6.rx, true),
            },
            LsoV2: NDIS_TCP_LARGE_SEND_OFFLOAD_V2 {
                IPv4: segmentation_v4(self.lso_v4, MIN_SEGMENT_COUNT),
                IPv6: segmentation_v6(self.lso_v6, MIN_SEGMENT_COUNT, true),
            },
            Rsc: NDIS_TCP_RECV_SEG_COALESCE_OFFLOAD {
                IPv4Enabled: self.rsc_v4.into(),
                IPv6Enabled: self.rsc_v6.into(),
            },
            UdpSegmentation: NDIS_UDP_SEGMENTATION_OFFLOAD {
                IPv4: segmentation_v4(self.uso_v4, uso_minimum),
                IPv6: segmentation_v6(self.uso_v6, uso_minimum, false),
            },
            ..NDIS_OFFLOAD::default()
        }
    }
}

/// The receive path's share of the offloads in force: what it may tell the stack about a
/// packet. Bits, so the receive thread reads them at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiveOffloads(u32);

impl ReceiveOffloads {
    pub const IP_CHECKSUM_V4: u32 = 1 << 0;
    pub const TCP_CHECKSUM_V4: u32 = 1 << 1;
    pub const UDP_CHECKSUM_V4: u32 = 1 << 2;
    pub const TCP_CHECKSUM_V6: u32 = 1 << 3;
    pub const UDP_CHECKSUM_V6: u32 = 1 << 4;
    pub const RSC_V4: u32 = 1 << 5;
    pub const RSC_V6: u32 = 1 << 6;

    pub const fn from_bits(bits: u32) -> Self {
        ReceiveOffloads(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit == bit
    }

    /// Only what both allow.
    pub const fn and(self, other: ReceiveOffloads) -> ReceiveOffloads {
        ReceiveOffloads(self.0 & other.0)
    }
}

/// The send path's share of the offload state: which segmentation offloads NDIS allows (the
/// keywords, OID_TCP_OFFLOAD_PARAMETERS and OID_OFFLOAD_ENCAPSULATION), whoever is registered.
/// A large send of one it does not allow is dropped ("the miniport shall drop all
/// NET_BUFFER_LIST which contain any non-zero LSOv1 or LSOv2 OOB data" once
/// OID_TCP_OFFLOAD_PARAMETERS has turned LSO off, offloading-the-segmentation-of-large-tcp-packets;
/// USO likewise, udp-segmentation-offload-uso-); one it allows is served, with the header or in
/// software, even while it is out of force for want of a client that takes the header: the
/// stack may have built it just before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOffloads(u32);

impl SendOffloads {
    pub const LSO_V4: u32 = 1 << 0;
    pub const LSO_V6: u32 = 1 << 1;
    pub const USO_V4: u32 = 1 << 2;
    pub const USO_V6: u32 = 1 << 3;

    pub const fn from_bits(bits: u32) -> Self {
        SendOffloads(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn has(self, bit: u32) -> bool {
        self.0 & bit == bit
    }
}

/// What OID_OFFLOAD_ENCAPSULATION last said of one IP version's offloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Nothing yet: the offloads are configured, and the receive checksums not started ("the
    /// miniport driver must not start checksum ... offload services until after it receives an
    /// OID set request of OID_OFFLOAD_ENCAPSULATION").
    #[default]
    NotYet,
    /// Activated (NDIS_OFFLOAD_SET_ON, with an encapsulation the driver supports).
    On,
    /// Deactivated (NDIS_OFFLOAD_SET_OFF): every offload of this version off.
    Off,
}

impl Activation {
    /// One IP version of an OID_OFFLOAD_ENCAPSULATION set applied: `Err` with the status the OID
    /// page gives for an encapsulation the driver does not support (NDIS_STATUS_INVALID_PARAMETER)
    /// or a value that is no setting (NDIS_STATUS_INVALID_DATA).
    fn with_request(self, request: &NDIS_OFFLOAD_ENCAPSULATION_IP) -> Result<Self, NDIS_STATUS> {
        match request.Enabled {
            NDIS_OFFLOAD_SET_NO_CHANGE => Ok(self),
            NDIS_OFFLOAD_SET_OFF => Ok(Activation::Off),
            NDIS_OFFLOAD_SET_ON
                if request.EncapsulationType != 0
                    && request.EncapsulationType & !ENCAPSULATIONS == 0 =>
            {
                Ok(Activation::On)
            }
            NDIS_OFFLOAD_SET_ON => Err(NDIS_STATUS_INVALID_PARAMETER),
            _ => Err(NDIS_STATUS_INVALID_DATA),
        }
    }
}

/// The adapter's offload state: everything that decides what is in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadState {
    /// What the keywords allow, then what OID_TCP_OFFLOAD_PARAMETERS sets.
    pub enabled: Offloads,
    /// OID_OFFLOAD_ENCAPSULATION for IPv4 and IPv6.
    pub activation: [Activation; 2],
    /// A client that takes the per-packet header is registered.
    pub header_client: bool,
}

impl OffloadState {
    pub const fn new(enabled: Offloads) -> Self {
        OffloadState {
            enabled,
            activation: [Activation::NotYet; 2],
            header_client: false,
        }
    }

    /// The offloads in force, which the current configuration reports: those enabled, while a
    /// client that takes the header is registered, for each IP version not deactivated.
    pub fn current(&self) -> Offloads {
        if !self.header_client {
            return Offloads::NONE;
        }
        let [v4, v6] = self
            .activation
            .map(|activation| activation != Activation::Off);
        self.enabled.ip_version(v4, v6)
    }

    /// What the receive path may do now: receive checksums only once activated, coalescing
    /// whenever RSC is in force ("The NIC and miniport driver must not indicate coalesced
    /// segments until the protocol driver enables RSC", through OID_TCP_OFFLOAD_PARAMETERS,
    /// which the current configuration reflects).
    pub fn receive(&self) -> ReceiveOffloads {
        let current = self.current();
        let [v4, v6] = self
            .activation
            .map(|activation| activation == Activation::On);
        let mut bits = 0;
        for (on, bit) in [
            (
                v4 && current.ip_checksum_v4.rx,
                ReceiveOffloads::IP_CHECKSUM_V4,
            ),
            (
                v4 && current.tcp_checksum_v4.rx,
                ReceiveOffloads::TCP_CHECKSUM_V4,
            ),
            (
                v4 && current.udp_checksum_v4.rx,
                ReceiveOffloads::UDP_CHECKSUM_V4,
            ),
            (
                v6 && current.tcp_checksum_v6.rx,
                ReceiveOffloads::TCP_CHECKSUM_V6,
            ),
            (
                v6 && current.udp_checksum_v6.rx,
                ReceiveOffloads::UDP_CHECKSUM_V6,
            ),
            (current.rsc_v4, ReceiveOffloads::RSC_V4),
            (current.rsc_v6, ReceiveOffloads::RSC_V6),
        ] {
            if on {
                bits |= bit;
            }
        }
        ReceiveOffloads(bits)
    }

    /// The segmentation offloads NDIS allows the send path (see [`SendOffloads`]).
    pub fn send(&self) -> SendOffloads {
        let [v4, v6] = self
            .activation
            .map(|activation| activation != Activation::Off);
        let allowed = self.enabled.ip_version(v4, v6);
        let mut bits = 0;
        for (on, bit) in [
            (allowed.lso_v4, SendOffloads::LSO_V4),
            (allowed.lso_v6, SendOffloads::LSO_V6),
            (allowed.uso_v4, SendOffloads::USO_V4),
            (allowed.uso_v6, SendOffloads::USO_V6),
        ] {
            if on {
                bits |= bit;
            }
        }
        SendOffloads(bits)
    }

    /// An OID_OFFLOAD_ENCAPSULATION set applied, from its buffer; the answer if refused.
    pub fn with_encapsulation(mut self, buffer: &[u8]) -> Result<Self, OidAnswer> {
        let size = usize::from(NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1);
        let Some(request) = NDIS_OFFLOAD_ENCAPSULATION::read_from(buffer) else {
            return Err(OidAnswer::short(NDIS_STATUS_INVALID_LENGTH, size));
        };
        if request.Header.Type != NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION {
            return Err(OidAnswer::status(NDIS_STATUS_INVALID_DATA));
        }
        let [v4, v6] = self.activation;
        self.activation = [
            v4.with_request(&request.IPv4).map_err(OidAnswer::status)?,
            v6.with_request(&request.IPv6).map_err(OidAnswer::status)?,
        ];
        Ok(self)
    }
}

/// The most segments the driver cuts one super-packet from a client into, when it cannot go up
/// whole: 512 covers 64 KiB of payload at an MSS of 128 bytes, far below any a TCP stack uses
/// (IPv4's least is 536, "Requirements for Internet Hosts", RFC 1122, section 3.3.3; IPv6's
/// minimum MTU is 1280). A super-packet that would make more is dropped and counted as an error:
/// it asks for more NBLs and memory than any real sender needs.
pub const MAX_RECEIVE_SEGMENTS: usize = 512;

/// The receive checksum information (NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive) of a
/// packet whose first bytes are `head`, within what `offloads` puts in force:
/// - IpChecksumSucceeded for an IPv4 header (all of it in `head`) whose checksum the driver
///   verified here: a client's DATA_VALID speaks of the transport's checksum only (Linux's
///   CHECKSUM_UNNECESSARY; its IP layer checks the header itself, `ip_rcv_core`).
/// - TcpChecksumSucceeded or UdpChecksumSucceeded when `transport_valid` (the client verified
///   it, DATA_VALID, or the driver computed it) and the packet's transport header follows its
///   IP header directly, not in a fragment.
///
/// Nothing else is set: a flag the driver cannot vouch for is left for the stack to check.
pub fn receive_checksum_info(
    head: &[u8],
    offloads: ReceiveOffloads,
    transport_valid: bool,
) -> usize {
    type Info = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let mut info = 0;
    let (transport, tcp_bit, udp_bit) = match head.first().map(|byte| byte >> 4) {
        Some(4) => {
            let header_len = usize::from(head[0] & 0x0F) * 4;
            if offloads.has(ReceiveOffloads::IP_CHECKSUM_V4)
                && header_len >= 20
                && head.len() >= header_len
                && oxtun_abi::offload::ones_complement_sum(&head[..header_len]) == 0xFFFF
            {
                info |= Info::RX_IP_CHECKSUM_SUCCEEDED;
            }
            let fragment = head.len() >= 8 && u16::from_be_bytes([head[6], head[7]]) & 0x3FFF != 0;
            let protocol = head.get(9).copied().filter(|_| !fragment);
            (
                protocol,
                ReceiveOffloads::TCP_CHECKSUM_V4,
                ReceiveOffloads::UDP_CHECKSUM_V4,
            )
        }
        Some(6) => (
            head.get(6).copied(),
            ReceiveOffloads::TCP_CHECKSUM_V6,
            ReceiveOffloads::UDP_CHECKSUM_V6,
        ),
        _ => return 0,
    };
    if transport_valid {
        match transport {
            Some(oxtun_abi::offload::PROTOCOL_TCP) if offloads.has(tcp_bit) => {
                info |= Info::RX_TCP_CHECKSUM_SUCCEEDED;
            }
            Some(oxtun_abi::offload::PROTOCOL_UDP) if offloads.has(udp_bit) => {
                info |= Info::RX_UDP_CHECKSUM_SUCCEEDED;
            }
            _ => {}
        }
    }
    info
}

/// The checksum information of a coalesced unit the driver indicates: "The NIC and miniport
/// driver must always set the IpChecksumSucceeded and TcpChecksumSucceeded flags"
/// (indicating-coalesced-segments). It "should recompute the TCP and IPv4 checksums"; if
/// `tcp_recomputed` is false it did not recompute TCP's, and "must set the TcpChecksumValueInvalid
/// and IpChecksumValueInvalid flags" (the same page), the IPv4 one only where the IPv4 header's
/// is not recomputed either, which the driver always does. IPv6 has no header checksum.
pub fn coalesced_checksum_info(ipv6: bool, tcp_recomputed: bool) -> usize {
    type Info = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let ip = if ipv6 {
        0
    } else {
        Info::RX_IP_CHECKSUM_SUCCEEDED
    };
    let tcp_value = if tcp_recomputed {
        0
    } else {
        Info::RX_TCP_CHECKSUM_VALUE_INVALID
    };
    Info::RX_TCP_CHECKSUM_SUCCEEDED | ip | tcp_value
}
