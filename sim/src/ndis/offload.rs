//! Layer: ndis, beneath its exports (`ndis/mod.rs`). It calls nothing of the simulator.
//!
//! Task offloads as NDIS keeps them for an adapter: what the miniport reported it can do
//! (HardwareOffloadCapabilities) and does now (DefaultOffloadConfiguration, then each
//! NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG), what the protocol activated
//! (OID_OFFLOAD_ENCAPSULATION), and the reading of an NDIS_OFFLOAD those rules need: which
//! offloads it says are on. Nothing changes the current configuration but the attributes at
//! initialization and the status indication (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: "Miniport
//! drivers must report the current capabilities ... when current capabilities change").

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
