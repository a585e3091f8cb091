//! Layer: ndis, beneath its exports (`ndis/mod.rs`). It calls nothing of the simulator.
//!
//! Task offloads as NDIS keeps them for an adapter: what the miniport reported it can do
//! (HardwareOffloadCapabilities) and does now (DefaultOffloadConfiguration, then each
//! NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG), what the protocol activated
//! (OID_OFFLOAD_ENCAPSULATION), and the reading of an NDIS_OFFLOAD those rules need: which
//! offloads it says are on. Nothing changes the current configuration but the attributes at
//! initialization and the status indication (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: "Miniport
//! drivers must report the current capabilities ... when current capabilities change").

use std::borrow::Cow;

use oxtun_driver::sys::*;

/// One direction of checksum offload for one IP version: which checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksums {
    pub ip: bool,
    pub tcp: bool,
    pub udp: bool,
}

/// A segmentation offload for one IP version, if on: its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmentation {
    pub max_offload_size: u32,
    pub min_segment_count: u32,
}

/// What an NDIS_OFFLOAD says is on (in a current configuration) or supported (in the hardware
/// capabilities): a field is on when it holds NDIS_OFFLOAD_SUPPORTED, which is also
/// NDIS_OFFLOAD_SET_ON (NDIS_TCP_IP_CHECKSUM_OFFLOAD: "NDIS_OFFLOAD_SET_OFF ... specifies that the
/// feature ... is disabled"), with an encapsulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    pub tx_v4: Checksums,
    pub rx_v4: Checksums,
    pub tx_v6: Checksums,
    pub rx_v6: Checksums,
    pub lso_v4: Option<Segmentation>,
    pub lso_v6: Option<Segmentation>,
    pub uso_v4: Option<Segmentation>,
    pub uso_v6: Option<Segmentation>,
    pub rsc_v4: bool,
    pub rsc_v6: bool,
}

fn field(fields: ULONG, shift: u32) -> bool {
    (fields >> shift) & 3 == NDIS_OFFLOAD_SUPPORTED
}

fn checksums(path: &NDIS_CHECKSUM_OFFLOAD_PATH, has_ip: bool) -> Checksums {
    if path.Encapsulation == NDIS_ENCAPSULATION_NOT_SUPPORTED {
        return Checksums::default();
    }
    Checksums {
        ip: has_ip && field(path.Fields, NDIS_CHECKSUM_OFFLOAD_PATH::IP_SHIFT),
        tcp: field(path.Fields, NDIS_CHECKSUM_OFFLOAD_PATH::TCP_SHIFT),
        udp: field(path.Fields, NDIS_CHECKSUM_OFFLOAD_PATH::UDP_SHIFT),
    }
}

fn segmentation(encapsulation: ULONG, max: ULONG, min: ULONG) -> Option<Segmentation> {
    (encapsulation != NDIS_ENCAPSULATION_NOT_SUPPORTED && max != 0).then_some(Segmentation {
        max_offload_size: max,
        min_segment_count: min,
    })
}

impl Offloads {
    /// The offloads `offload` says are on, reading only what its revision has.
    pub fn of(offload: &NDIS_OFFLOAD) -> Offloads {
        let revision = offload.Header.Revision;
        let checksum = &offload.Checksum;
        let lso = &offload.LsoV2;
        let uso = &offload.UdpSegmentation;
        let has_rsc = revision >= NDIS_OFFLOAD_REVISION_3;
        let has_uso = revision >= NDIS_OFFLOAD_REVISION_6;
        Offloads {
            tx_v4: checksums(&checksum.IPv4Transmit, true),
            rx_v4: checksums(&checksum.IPv4Receive, true),
            tx_v6: checksums(&checksum.IPv6Transmit, false),
            rx_v6: checksums(&checksum.IPv6Receive, false),
            lso_v4: segmentation(
                lso.IPv4.Encapsulation,
                lso.IPv4.MaxOffLoadSize,
                lso.IPv4.MinSegmentCount,
            ),
            lso_v6: segmentation(
                lso.IPv6.Encapsulation,
                lso.IPv6.MaxOffLoadSize,
                lso.IPv6.MinSegmentCount,
            ),
            uso_v4: segmentation(
                uso.IPv4.Encapsulation,
                uso.IPv4.MaxOffLoadSize,
                uso.IPv4.MinSegmentCount & NDIS_UDP_SEGMENTATION_OFFLOAD::MIN_SEGMENT_COUNT_MASK,
            )
            .filter(|_| has_uso),
            uso_v6: segmentation(
                uso.IPv6.Encapsulation,
                uso.IPv6.MaxOffLoadSize,
                uso.IPv6.MinSegmentCount & NDIS_UDP_SEGMENTATION_OFFLOAD::MIN_SEGMENT_COUNT_MASK,
            )
            .filter(|_| has_uso),
            rsc_v4: has_rsc && offload.Rsc.IPv4Enabled != 0,
            rsc_v6: has_rsc && offload.Rsc.IPv6Enabled != 0,
        }
    }

    /// The first offload these have that `capabilities` lacks, named.
    pub fn beyond(&self, capabilities: &Offloads) -> Option<&'static str> {
        let checksum = |on: Checksums, can: Checksums| {
            (on.ip && !can.ip) || (on.tcp && !can.tcp) || (on.udp && !can.udp)
        };
        let segmentation = |on: Option<Segmentation>, can: Option<Segmentation>| {
            matches!((on, can), (Some(on), Some(can))
                if on.max_offload_size > can.max_offload_size
                    || on.min_segment_count < can.min_segment_count)
                || (on.is_some() && can.is_none())
        };
        [
            (
                checksum(self.tx_v4, capabilities.tx_v4),
                "IPv4 transmit checksums",
            ),
            (
                checksum(self.rx_v4, capabilities.rx_v4),
                "IPv4 receive checksums",
            ),
            (
                checksum(self.tx_v6, capabilities.tx_v6),
                "IPv6 transmit checksums",
            ),
            (
                checksum(self.rx_v6, capabilities.rx_v6),
                "IPv6 receive checksums",
            ),
            (
                segmentation(self.lso_v4, capabilities.lso_v4),
                "LSOv2 for IPv4",
            ),
            (
                segmentation(self.lso_v6, capabilities.lso_v6),
                "LSOv2 for IPv6",
            ),
            (
                segmentation(self.uso_v4, capabilities.uso_v4),
                "USO for IPv4",
            ),
            (
                segmentation(self.uso_v6, capabilities.uso_v6),
                "USO for IPv6",
            ),
            (self.rsc_v4 && !capabilities.rsc_v4, "RSC for IPv4"),
            (self.rsc_v6 && !capabilities.rsc_v6, "RSC for IPv6"),
        ]
        .into_iter()
        .find_map(|(beyond, name)| beyond.then_some(name))
    }
}

/// The size an NDIS_OFFLOAD of `revision` has (ntddndis.h, NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_n:
/// through Flags, IPsecV2, EncapsulatedPacketTaskOffloadGre, EncapsulationTypes, Rfc6877Xlat,
/// UdpSegmentation, and revision 7 the same as 6), or `None` for a revision no header defines.
pub fn offload_size(revision: u8) -> Option<usize> {
    Some(match revision {
        1 => 112,
        2 => 144,
        3 => usize::from(NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3),
        4 => 177,
        5 => 188,
        6 | 7 => usize::from(NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6),
        _ => return None,
    })
}

/// An NDIS_OFFLOAD a miniport hands NDIS, read from `bytes` (as many as it says it gave), and
/// checked as NDIS_OFFLOAD's page asks: Type NDIS_OBJECT_TYPE_OFFLOAD, a revision ntddndis.h
/// defines and the size of that revision. Fields past its revision read as 0.
pub fn read_offload(bytes: &[u8]) -> Result<NDIS_OFFLOAD, String> {
    let header = NDIS_OBJECT_HEADER {
        Type: *bytes.first().ok_or("no NDIS_OFFLOAD")?,
        Revision: *bytes.get(1).ok_or("no NDIS_OFFLOAD")?,
        Size: u16::from_le_bytes([
            *bytes.get(2).ok_or("no NDIS_OFFLOAD")?,
            *bytes.get(3).ok_or("no NDIS_OFFLOAD")?,
        ]),
    };
    let size = offload_size(header.Revision);
    if header.Type != NDIS_OBJECT_TYPE_OFFLOAD
        || size.is_none_or(|size| usize::from(header.Size) < size || bytes.len() < size)
    {
        return Err(format!(
            "an NDIS_OFFLOAD whose header is {header:?} ({} bytes given)",
            bytes.len()
        ));
    }
    let mut whole = [0u8; size_of::<NDIS_OFFLOAD>()];
    let len = size.unwrap_or(0).min(whole.len());
    whole[..len].copy_from_slice(&bytes[..len]);
    Ok(NDIS_OFFLOAD::read_from(&whole).expect("its size"))
}

/// NDIS's record of an adapter's offloads.
#[derive(Clone, Debug, Default)]
pub struct OffloadRecord {
    /// HardwareOffloadCapabilities, if the miniport set offload attributes.
    pub hardware: Option<NDIS_OFFLOAD>,
    /// The current configuration: DefaultOffloadConfiguration, then each indication's.
    pub current: NDIS_OFFLOAD,
    /// The current configuration before the last indication: a send NDIS had begun then may
    /// still carry what it allowed ("A miniport-intermediate driver that responds to
    /// OID_TCP_OFFLOAD_PARAMETERS to turn off LSO services must be prepared for a small window
    /// of time where LSO send requests could still reach the miniport driver").
    pub previous: NDIS_OFFLOAD,
    /// The encapsulation the protocol set with OID_OFFLOAD_ENCAPSULATION, if the miniport
    /// took it: without it "the protocol driver must not use any offload settings in send
    /// requests" (OID_OFFLOAD_ENCAPSULATION).
    pub encapsulation: Option<NDIS_OFFLOAD_ENCAPSULATION>,
    /// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG indications so far.
    pub indications: u64,
    /// The segmentation offloads OID_TCP_OFFLOAD_PARAMETERS sets turned off.
    pub turned_off: TurnedOff,
}

impl OffloadRecord {
    /// The offloads in force now.
    pub fn current(&self) -> Offloads {
        Offloads::of(&self.current)
    }

    /// Whether the protocol activated the offloads of an IP version with an encapsulation.
    pub fn activated(&self, ipv6: bool) -> bool {
        self.encapsulation.is_some_and(|encapsulation| {
            let version = if ipv6 {
                encapsulation.IPv6
            } else {
                encapsulation.IPv4
            };
            version.Enabled == NDIS_OFFLOAD_SET_ON
        })
    }
}

/// What the simulated TCP/IP asks of the miniport for one send: abi's reading of an NBL's
/// offload information, which the simulator writes into the NBL as tcpip does.
pub use oxtun_abi::offload::SendOffload;

use oxtun_abi::offload::{IpVersion, Transport, add, ones_complement_sum, parse};

/// When the simulated stack built an offloaded send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendTiming {
    /// While the offload is in force, as tcpip sends ("The TCP/IP transport offloads only those
    /// ... packets" the miniport's current configuration allows; OID_OFFLOAD_ENCAPSULATION:
    /// without the encapsulation set, "the protocol driver must not use any offload settings in
    /// send requests"): the simulator checks it is.
    InForce,
    /// Built before the offload went out of force and sent after: the "small window of time
    /// where LSO send requests could still reach the miniport driver"
    /// (offloading-the-segmentation-of-large-tcp-packets; the same of USO in
    /// udp-segmentation-offload-uso-). Not checked against the configuration.
    Late,
}

/// The bytes of a transport-layer packet where its headers are: `(IP version, transport,
/// transport header offset, headers' length)`, for a packet the caller offloads.
fn headers(packet: &[u8], transport: Transport) -> Result<(IpVersion, usize, usize), String> {
    let layout = parse(packet).map_err(|error| format!("{error:?}"))?;
    let found = layout.transport().map_err(|error| format!("{error:?}"))?;
    if found != transport {
        return Err(format!("a {found:?} packet, not {transport:?}"));
    }
    let transport_len = layout
        .transport_header_len(packet, transport)
        .map_err(|error| format!("{error:?}"))?;
    Ok((
        layout.ip,
        layout.ip_header_len,
        layout.ip_header_len + transport_len,
    ))
}

fn set_u16(packet: &mut [u8], at: usize, value: u16) {
    packet[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Rewrites a complete, well-formed packet into what tcpip hands a miniport for `offload`, as
/// Microsoft's pages describe it:
/// - checksums ("Offloading Checksum Tasks"): the IPv4 header checksum field 0 when the miniport
///   computes it ("the TCP/IP transport always ensures that the checksum field in the IP header
///   of a packet is set to zero"); the TCP or UDP checksum field the pseudo-header's one's
///   complement sum "including ... the TCP length".
/// - LSOv2 (offloading-the-segmentation-of-large-tcp-packets): the IPv4 Total Length 0 ("For
///   LSOv2, set the Total Length field ... to 0"); the TCP checksum field the pseudo-header's
///   sum over the addresses and protocol, without the length; the IPv4 header checksum left to
///   the miniport (0 here).
/// - USO (udp-segmentation-offload-uso-): the UDP checksum field the pseudo-header's sum without
///   the length; the IPv4 header checksum 0.
///
/// Returns the NBL information tcpip writes for it: `(NetBufferListInfo index, value)`.
pub fn tcpip_form(packet: &mut [u8], offload: SendOffload) -> Result<Vec<(usize, usize)>, String> {
    type Checksum = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    type Lso = NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO;
    type Uso = NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO;
    match offload {
        SendOffload::None => Ok(Vec::new()),
        SendOffload::Checksum {
            ipv4_header,
            tcp,
            udp,
        } => {
            let layout = parse(packet).map_err(|error| format!("{error:?}"))?;
            let mut value = match layout.ip {
                IpVersion::V4 => Checksum::TX_IS_IPV4,
                IpVersion::V6 => Checksum::TX_IS_IPV6,
            };
            if ipv4_header && layout.ip == IpVersion::V4 {
                set_u16(packet, 10, 0);
                value |= Checksum::TX_IP_HEADER_CHECKSUM;
            }
            for (asked, transport, bit) in [
                (tcp, Transport::Tcp, Checksum::TX_TCP_CHECKSUM),
                (udp, Transport::Udp, Checksum::TX_UDP_CHECKSUM),
            ] {
                if !asked {
                    continue;
                }
                let (_, offset, _) = headers(packet, transport)?;
                let sum = layout.pseudo_header_sum(packet);
                set_u16(packet, offset + transport.checksum_offset(), sum);
                value |= bit;
                if transport == Transport::Tcp {
                    value |= offset << Checksum::TX_TCP_HEADER_OFFSET_SHIFT;
                }
            }
            Ok(vec![(TcpIpChecksumNetBufferListInfo, value)])
        }
        SendOffload::Lso {
            mss,
            tcp_header_offset,
        } => {
            let (ip, offset, _) = headers(packet, Transport::Tcp)?;
            if offset != tcp_header_offset as usize {
                return Err(format!("the TCP header is at {offset}"));
            }
            let layout = parse(packet).map_err(|error| format!("{error:?}"))?;
            let sum = layout.pseudo_header_sum_for(packet, 0);
            set_u16(packet, offset + Transport::Tcp.checksum_offset(), sum);
            let mut value = mss as usize & Lso::MSS_MASK
                | (offset & Lso::HEADER_OFFSET_MASK) << Lso::HEADER_OFFSET_SHIFT
                | Lso::TYPE_V2;
            match ip {
                IpVersion::V4 => {
                    set_u16(packet, 2, 0);
                    set_u16(packet, 10, 0);
                }
                IpVersion::V6 => value |= Lso::IPV6,
            }
            Ok(vec![(TcpLargeSendNetBufferListInfo, value)])
        }
        SendOffload::Uso {
            mss,
            udp_header_offset,
        } => {
            let (ip, offset, _) = headers(packet, Transport::Udp)?;
            if offset != udp_header_offset as usize {
                return Err(format!("the UDP header is at {offset}"));
            }
            let layout = parse(packet).map_err(|error| format!("{error:?}"))?;
            let sum = layout.pseudo_header_sum_for(packet, 0);
            set_u16(packet, offset + Transport::Udp.checksum_offset(), sum);
            let mut value = mss as usize & 0xF_FFFF | (offset & 0x3FF) << 20;
            match ip {
                IpVersion::V4 => set_u16(packet, 10, 0),
                IpVersion::V6 => value |= Uso::IPV6,
            }
            Ok(vec![(UdpSegmentationOffloadInfo, value)])
        }
    }
}

/// The length of the headers a segmentation offload replicates, for the simulator's own layout
/// of such a send: "All packet headers (Ethernet, IP, TCP) will be in the first MDL of the
/// packet" (offloading-the-segmentation-of-large-tcp-packets).
pub fn replicated_headers(packet: &[u8], offload: SendOffload) -> Option<usize> {
    let transport = match offload {
        SendOffload::Lso { .. } => Transport::Tcp,
        SendOffload::Uso { .. } => Transport::Udp,
        _ => return None,
    };
    headers(packet, transport).ok().map(|(_, _, len)| len)
}

/// What the simulated TCP/IP checks before it offloads a send: the offload is in force (the
/// current configuration has it, for the packet's IP version and transport, and the protocol
/// activated that version's offloads), and a segmentation offload's packet is within its
/// limits ("The length of the TCP user data in the large TCP packet should be equal to or less
/// than ... MaxOffLoadSize"; "The packet must be divisible by at least the minimum number of
/// segments"). An error is the simulator's own mistake, a test asking for what tcpip never
/// does.
pub fn stack_may_send(
    record: &OffloadRecord,
    packet: &[u8],
    offload: SendOffload,
) -> Result<(), String> {
    let ipv6 = packet.first().is_some_and(|byte| byte >> 4 == 6);
    let current = record.current();
    let (tx, lso, uso) = if ipv6 {
        (current.tx_v6, current.lso_v6, current.uso_v6)
    } else {
        (current.tx_v4, current.lso_v4, current.uso_v4)
    };
    if offload != SendOffload::None && !record.activated(ipv6) {
        return Err(
            "the protocol has not activated the offloads (OID_OFFLOAD_ENCAPSULATION)".into(),
        );
    }
    let segmentation = |limits: Option<Segmentation>, transport, mss: u32, what: &str| {
        let Some(limits) = limits else {
            return Err(format!("{what} is not in force"));
        };
        let (_, _, header_len) = headers(packet, transport)?;
        let payload = packet.len() - header_len;
        let segments = payload.div_ceil(mss.max(1) as usize);
        if payload > limits.max_offload_size as usize
            || segments < limits.min_segment_count as usize
        {
            return Err(format!(
                "{what} of {payload} bytes in {segments} segments, beyond MaxOffLoadSize {} or under MinSegmentCount {}",
                limits.max_offload_size, limits.min_segment_count
            ));
        }
        Ok(())
    };
    match offload {
        SendOffload::None => Ok(()),
        SendOffload::Checksum {
            ipv4_header,
            tcp,
            udp,
        } => {
            if (ipv4_header && !ipv6 && !tx.ip) || (tcp && !tx.tcp) || (udp && !tx.udp) {
                return Err(format!(
                    "transmit checksums {tx:?} do not cover {offload:?}"
                ));
            }
            Ok(())
        }
        SendOffload::Lso { mss, .. } => segmentation(lso, Transport::Tcp, mss, "LSOv2"),
        SendOffload::Uso { mss, .. } => segmentation(uso, Transport::Udp, mss, "USO"),
    }
}

/// Which segmentation offloads the last OID_TCP_OFFLOAD_PARAMETERS sets turned off, by IP
/// version (`[IPv4, IPv6]`): after such a set completes, "the miniport shall drop all
/// NET_BUFFER_LIST which contain any non-zero LSOv1 or LSOv2 OOB data"
/// (offloading-the-segmentation-of-large-tcp-packets), and "should reject and return any
/// NET_BUFFER_LIST that has the USO OOB field set" (udp-segmentation-offload-uso-).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnedOff {
    pub lso: [bool; 2],
    pub uso: [bool; 2],
}

impl TurnedOff {
    /// Follows a successful OID_TCP_OFFLOAD_PARAMETERS set of `parameters` (`len` bytes).
    pub fn follow(&mut self, parameters: &NDIS_OFFLOAD_PARAMETERS, len: usize) {
        let follow = |kept: &mut bool, value: u8| match value {
            NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED => *kept = true,
            NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED => *kept = false,
            _ => {}
        };
        follow(&mut self.lso[0], parameters.LsoV2IPv4);
        follow(&mut self.lso[1], parameters.LsoV2IPv6);
        if parameters.Header.Revision >= NDIS_OFFLOAD_PARAMETERS_REVISION_5
            && len >= usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5)
        {
            follow(&mut self.uso[0], parameters.UdpSegmentationIPv4);
            follow(&mut self.uso[1], parameters.UdpSegmentationIPv6);
        }
    }
}

/// What the simulator remembers of an offloaded send until the miniport completes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SentOffload {
    /// An LSOv2 send: its completion writes LsoV2TransmitComplete.
    pub lso_v2: bool,
    /// Sent after an OID_TCP_OFFLOAD_PARAMETERS set turned its segmentation offload off: the
    /// miniport drops it (see [`TurnedOff`]).
    pub must_fail: bool,
}

impl SentOffload {
    /// What sending an NBL with `info` (its NetBufferListInfo) means, given `turned_off`.
    pub fn of(info: &[usize], turned_off: TurnedOff) -> SentOffload {
        let lso =
            NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(info[TcpLargeSendNetBufferListInfo]);
        let uso = info[UdpSegmentationOffloadInfo];
        let lso_version =
            usize::from(lso.0 & NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO::IPV6 != 0);
        let uso_version =
            usize::from(uso & NDIS_UDP_SEGMENTATION_OFFLOAD_NET_BUFFER_LIST_INFO::IPV6 != 0);
        SentOffload {
            lso_v2: lso.is_v2() && lso.mss() != 0,
            must_fail: (lso.0 != 0 && turned_off.lso[lso_version])
                || (uso != 0 && turned_off.uso[uso_version]),
        }
    }

    /// What is wrong with the completion of such a send, with `status` and `lso` (its
    /// TcpLargeSendNetBufferListInfo as completed).
    pub fn check_completion(&self, status: NDIS_STATUS, lso: usize) -> Option<String> {
        if self.lso_v2
            && lso & 0x7FFF_FFFF != NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO::TYPE_V2
        {
            // "When a send operation is complete, the miniport driver must set the
            // LsoV2TransmitComplete.Reserved member of the
            // NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO structure to zero and the
            // LsoV2TransmitComplete.Type member to NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE"
            // (offloading-the-segmentation-of-large-tcp-packets).
            return Some(format!(
                "an LSOv2 send completed with its TcpLargeSendNetBufferListInfo {lso:#x}, not \
                 LsoV2TransmitComplete (Reserved 0, Type NDIS_TCP_LARGE_SEND_OFFLOAD_V2_TYPE)"
            ));
        }
        if self.must_fail && status == NDIS_STATUS_SUCCESS {
            return Some(
                "a segmentation offload send completed with success after OID_TCP_OFFLOAD_PARAMETERS \
                 turned that offload off: the miniport drops it"
                    .into(),
            );
        }
        None
    }
}

/// What an indicated NBL says of its packet's offloads, from its NetBufferListInfo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceivedOffloads {
    /// TcpIpChecksumNetBufferListInfo: NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO.Receive.
    pub checksum: usize,
    /// TcpRecvSegCoalesceInfo: NDIS_RSC_NBL_INFO, 0 for a packet that is no coalesced unit.
    pub rsc: usize,
    /// RscTcpTimestampDelta.
    pub timestamp_delta: usize,
}

impl ReceivedOffloads {
    pub fn of(info: &[PVOID]) -> ReceivedOffloads {
        ReceivedOffloads {
            checksum: info[TcpIpChecksumNetBufferListInfo] as usize,
            rsc: info[TcpRecvSegCoalesceInfo] as usize,
            timestamp_delta: info[RscTcpTimestampDelta] as usize,
        }
    }

    /// CoalescedSegCount: segments in the unit, 0 for a packet that is none.
    pub fn coalesced_segments(&self) -> u16 {
        NDIS_RSC_NBL_INFO(self.rsc).coalesced_segments()
    }
}

/// The checks on what an indicated packet says of its offloads, given the adapter's record and
/// MtuSize: `head` is the packet's first bytes (its headers), `len` its length, and `whole` gives
/// all of it for the one check that reads every byte.
pub fn check_received<'a>(
    record: &OffloadRecord,
    mtu: u32,
    offloads: ReceivedOffloads,
    head: &[u8],
    len: usize,
    whole: impl FnOnce() -> Cow<'a, [u8]>,
) -> Findings {
    type Checksum = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let mut violations = Vec::new();
    let mut house_rules = Vec::new();
    let ipv6 = head.first().is_some_and(|byte| byte >> 4 == 6);
    let protocol = if ipv6 { head.get(6) } else { head.get(9) }.copied();
    let current = record.current();
    let (rx, rsc_on) = if ipv6 {
        (current.rx_v6, current.rsc_v6)
    } else {
        (current.rx_v4, current.rsc_v4)
    };
    let activated = record.activated(ipv6);
    let coalesced = offloads.rsc != 0;
    let flags = offloads.checksum;
    if coalesced {
        // "The NIC and miniport driver must not indicate coalesced segments until the protocol
        // driver enables RSC" (indicating-coalesced-segments), which the current configuration
        // reflects.
        if !rsc_on {
            violations.push(format!(
                "an RSC unit (NDIS_RSC_NBL_INFO {:#x}) indicated while RSC for IPv{} is not in force",
                offloads.rsc,
                if ipv6 { 6 } else { 4 }
            ));
        }
        // An SCU must "Look like a normal TCP segment" and "Be no larger than the maximum legal
        // IP datagram length" (indicating-coalesced-segments).
        if protocol != Some(6) || len > if ipv6 { 65535 + 40 } else { 65535 } {
            violations.push(format!(
                "an RSC unit of {len} bytes that is not a TCP segment of a legal IP datagram's \
                 length"
            ));
        }
        // "The NIC and miniport driver must always set the IpChecksumSucceeded and
        // TcpChecksumSucceeded flags ... before indicating the coalesced segment"
        // (indicating-coalesced-segments); IPv6 has no header checksum.
        let needed = Checksum::RX_TCP_CHECKSUM_SUCCEEDED
            | if ipv6 {
                0
            } else {
                Checksum::RX_IP_CHECKSUM_SUCCEEDED
            };
        if flags & needed != needed {
            violations.push(format!(
                "an RSC unit indicated with checksum flags {flags:#x}, without \
                 IpChecksumSucceeded and TcpChecksumSucceeded"
            ));
        }
        violations.extend(unflagged_wrong_checksums(flags, ipv6, head, whole));
    } else {
        if offloads.timestamp_delta != 0 {
            // RscTcpTimestampDelta describes the segments of a coalesced unit
            // (NDIS_NET_BUFFER_LIST_INFO); on any other packet it says nothing true.
            house_rules.push("RscTcpTimestampDelta on a packet that is no RSC unit".to_string());
        }
        let ip_flags = Checksum::RX_IP_CHECKSUM_FAILED
            | Checksum::RX_IP_CHECKSUM_SUCCEEDED
            | Checksum::RX_IP_CHECKSUM_VALUE_INVALID;
        let tcp_flags = Checksum::RX_TCP_CHECKSUM_FAILED
            | Checksum::RX_TCP_CHECKSUM_SUCCEEDED
            | Checksum::RX_TCP_CHECKSUM_VALUE_INVALID;
        let udp_flags = Checksum::RX_UDP_CHECKSUM_FAILED | Checksum::RX_UDP_CHECKSUM_SUCCEEDED;
        // A miniport sets these flags for "a receive packet on which it performs checksum tasks"
        // ("Offloading Checksum Tasks"), which it does only for the receive checksums in force
        // ("the miniport driver must not start checksum offload services until after it
        // receives an OID set request of OID_OFFLOAD_ENCAPSULATION", OID_OFFLOAD_ENCAPSULATION).
        for (mask, on, name) in [
            (ip_flags, rx.ip, "IP"),
            (tcp_flags, rx.tcp, "TCP"),
            (udp_flags, rx.udp, "UDP"),
        ] {
            if flags & mask != 0 && !(on && activated) {
                violations.push(format!(
                    "an IPv{} packet indicated with {name} checksum flags ({flags:#x}) while that \
                     receive checksum offload is not in force and activated",
                    if ipv6 { 6 } else { 4 }
                ));
            }
        }
        let succeeded_for = [
            (
                Checksum::RX_TCP_CHECKSUM_SUCCEEDED | Checksum::RX_TCP_CHECKSUM_FAILED,
                6,
            ),
            (
                Checksum::RX_UDP_CHECKSUM_SUCCEEDED | Checksum::RX_UDP_CHECKSUM_FAILED,
                17,
            ),
        ];
        for (mask, transport) in succeeded_for {
            if flags & mask != 0 && protocol.is_some_and(|protocol| protocol != transport) {
                house_rules.push(format!(
                    "a packet of protocol {} indicated with the checksum flags of protocol \
                         {transport} ({flags:#x}): a verdict on a checksum it does not have",
                    protocol.unwrap_or_default()
                ));
            }
        }
        for (failed, succeeded, name) in [
            (
                Checksum::RX_IP_CHECKSUM_FAILED,
                Checksum::RX_IP_CHECKSUM_SUCCEEDED,
                "IP",
            ),
            (
                Checksum::RX_TCP_CHECKSUM_FAILED,
                Checksum::RX_TCP_CHECKSUM_SUCCEEDED,
                "TCP",
            ),
            (
                Checksum::RX_UDP_CHECKSUM_FAILED,
                Checksum::RX_UDP_CHECKSUM_SUCCEEDED,
                "UDP",
            ),
        ] {
            if flags & (failed | succeeded) == failed | succeeded {
                house_rules.push(format!(
                    "a packet indicated with its {name} checksum both failed and succeeded"
                ));
            }
        }
        if len > mtu as usize {
            house_rules.push(format!(
                "a packet of {len} bytes, over the adapter's MtuSize {mtu}, indicated without \
                     NDIS_RSC_NBL_INFO: only a coalesced unit is larger than the medium's MTU"
            ));
        }
    }
    Findings {
        violations,
        house_rules,
    }
}

/// A coalesced unit's checksums that are wrong but not flagged so. "The NIC or miniport driver
/// should recompute the TCP and IPv4 checksums ... If the NIC or miniport driver validates the TCP
/// and IPv4 checksums but does not recompute them for the coalesced segment, it must set the
/// TcpChecksumValueInvalid and IpChecksumValueInvalid flags" (indicating-coalesced-segments): a
/// checksum is either right or flagged as not recomputed. (The stack may forward the unit, and
/// then relies on what is not flagged.)
fn unflagged_wrong_checksums<'a>(
    flags: usize,
    ipv6: bool,
    head: &[u8],
    whole: impl FnOnce() -> Cow<'a, [u8]>,
) -> Vec<String> {
    type Checksum = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;
    let mut wrong = Vec::new();
    let header_len = usize::from(head.first().copied().unwrap_or(0) & 0x0F) * 4;
    if !ipv6
        && flags & Checksum::RX_IP_CHECKSUM_VALUE_INVALID == 0
        && (20..=head.len()).contains(&header_len)
        && ones_complement_sum(&head[..header_len]) != 0xFFFF
    {
        wrong.push(
            "an RSC unit's IPv4 header checksum is wrong, not flagged IpChecksumValueInvalid"
                .to_string(),
        );
    }
    if flags & Checksum::RX_TCP_CHECKSUM_VALUE_INVALID != 0 {
        return wrong;
    }
    let packet = whole();
    let packet = packet.as_ref();
    if let Ok(layout) = parse(packet)
        && add(
            layout.pseudo_header_sum(packet),
            ones_complement_sum(&packet[layout.ip_header_len..]),
        ) != 0xFFFF
    {
        wrong.push(
            "an RSC unit's TCP checksum is wrong, not flagged TcpChecksumValueInvalid".to_string(),
        );
    }
    wrong
}

/// What [`check_received`] found: contract violations, and breaches of house rules.
#[derive(Debug, Default)]
pub struct Findings {
    pub violations: Vec<String>,
    pub house_rules: Vec<String>,
}
