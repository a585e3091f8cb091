//! The task offloads the driver offers NDIS (docs/offloads.md, "The driver"): its capabilities and
//! current configuration, the offload OIDs, and the keywords, on the simulated kernel, whose
//! rules check each against Microsoft's documents.

mod support;

use oxtun_driver::sys::*;
use oxtun_sim::{AdapterSetup, Checksums, Driver, Offloads, Segmentation};
use support::*;

/// Every checksum each way.
const ALL_CHECKSUMS: Checksums = Checksums {
    ip: true,
    tcp: true,
    udp: true,
};
const TRANSPORT_CHECKSUMS: Checksums = Checksums {
    ip: false,
    tcp: true,
    udp: true,
};
/// What a large send may carry: a ring packet of 0xFFFF bytes less the per-packet header and the
/// 128 bytes of headers the stack offloads at most.
const SEGMENTATION: Option<Segmentation> = Some(Segmentation {
    max_offload_size: 0xFFFF - 10 - 128,
    min_segment_count: 2,
});

#[oxtun_sim::test]
fn the_adapter_reports_every_offload_it_has_and_none_in_force_without_a_client() {
    let setup = setup();
    let record = setup.adapter.offloads();
    let hardware = Offloads::of(&record.hardware.expect("offload attributes"));
    assert_eq!(
        hardware,
        Offloads {
            tx_v4: ALL_CHECKSUMS,
            rx_v4: ALL_CHECKSUMS,
            tx_v6: TRANSPORT_CHECKSUMS,
            rx_v6: TRANSPORT_CHECKSUMS,
            lso_v4: SEGMENTATION,
            lso_v6: SEGMENTATION,
            uso_v4: SEGMENTATION,
            uso_v6: SEGMENTATION,
            rsc_v4: true,
            rsc_v6: true,
        }
    );
    assert_eq!(record.current(), Offloads::default());
    // TCP/IP bound and activated them for Ethernet encapsulation, which the driver took and
    // answered with the current configuration.
    assert!(record.activated(false) && record.activated(true));
    assert_eq!(record.indications, 1);
    setup.finish();
}

/// OID_TCP_OFFLOAD_PARAMETERS: each set that succeeds is indicated; without a client that takes
/// the header nothing comes into force; NDIS keeps the keywords it changes.
#[oxtun_sim::test]
fn offload_parameters_are_indicated_and_bring_nothing_into_force_without_a_client() {
    let setup = setup();
    let indications = setup.adapter.offloads().indications;
    let enable = offload_parameters(5, |parameters| {
        parameters.LsoV2IPv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED;
        parameters.UdpSegmentationIPv6 = NDIS_OFFLOAD_PARAMETERS_LSOV2_ENABLED;
        parameters.TCPIPv4Checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    });
    let answer = setup.adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &enable);
    assert_eq!(answer.status, NDIS_STATUS_SUCCESS);
    assert_eq!(answer.bytes_done as usize, enable.len());
    let record = setup.adapter.offloads();
    assert_eq!(record.indications, indications + 1);
    assert_eq!(record.current(), Offloads::default());
    for (keyword, value) in [
        ("*LsoV2IPv4", "1"),
        ("*UsoIPv6", "1"),
        ("*TCPChecksumOffloadIPv4", "3"),
    ] {
        assert_eq!(
            setup.adapter.registry_value(keyword),
            Some(value.into()),
            "{keyword}"
        );
    }
    setup.finish();
}

#[oxtun_sim::test]
fn bad_offload_oids_are_refused_with_their_statuses_and_change_nothing() {
    let setup = setup();
    let indications = setup.adapter.offloads().indications;
    let good = offload_parameters(5, |_| {});
    let mut wrong_type = good.clone();
    wrong_type[0] = 0x81;
    let cases = [
        (
            OID_TCP_OFFLOAD_PARAMETERS,
            good[..19].to_vec(),
            NDIS_STATUS_INVALID_LENGTH,
        ),
        (
            OID_TCP_OFFLOAD_PARAMETERS,
            wrong_type,
            NDIS_STATUS_INVALID_DATA,
        ),
        (
            OID_TCP_OFFLOAD_PARAMETERS,
            offload_parameters(5, |parameters| parameters.TCPIPv6Checksum = 5),
            NDIS_STATUS_INVALID_DATA,
        ),
        (
            OID_TCP_OFFLOAD_PARAMETERS,
            offload_parameters(5, |parameters| parameters.RscIPv4 = 3),
            NDIS_STATUS_INVALID_DATA,
        ),
        (
            OID_OFFLOAD_ENCAPSULATION,
            offload_encapsulation(NDIS_OFFLOAD_SET_ON, NDIS_ENCAPSULATION_IEEE_802_3)[..27]
                .to_vec(),
            NDIS_STATUS_INVALID_LENGTH,
        ),
        (
            OID_OFFLOAD_ENCAPSULATION,
            // No encapsulation NDIS defines (ndis/encapsulationconfig.h ends at 0x10).
            offload_encapsulation(NDIS_OFFLOAD_SET_ON, 0x20),
            NDIS_STATUS_INVALID_PARAMETER,
        ),
        (
            OID_OFFLOAD_ENCAPSULATION,
            offload_encapsulation(3, NDIS_ENCAPSULATION_IEEE_802_3),
            NDIS_STATUS_INVALID_DATA,
        ),
    ];
    for (oid, buffer, status) in cases {
        let answer = setup.adapter.set(oid, &buffer);
        assert_eq!(
            answer.status,
            status,
            "OID {oid:#x}, {} bytes",
            buffer.len()
        );
    }
    assert_eq!(setup.adapter.offloads().indications, indications);
    // A revision 1 buffer, shorter than today's, is read as far as it goes.
    let revision_1 = offload_parameters(1, |parameters| {
        parameters.LsoV2IPv6 = NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED
    });
    assert_eq!(revision_1.len(), 20);
    let answer = setup.adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &revision_1);
    assert_eq!(answer.status, NDIS_STATUS_SUCCESS);
    // Deactivating every offload is taken and indicated.
    let off = offload_encapsulation(NDIS_OFFLOAD_SET_OFF, 0);
    assert_eq!(
        setup.adapter.set(OID_OFFLOAD_ENCAPSULATION, &off).status,
        NDIS_STATUS_SUCCESS
    );
    let record = setup.adapter.offloads();
    assert_eq!(record.indications, indications + 2);
    assert!(!record.activated(false) && !record.activated(true));
    // Activating them with no Ethernet header (NDIS_ENCAPSULATION_NULL), which an NdisMediumIP
    // adapter may well be asked for, is taken too.
    let null = offload_encapsulation(NDIS_OFFLOAD_SET_ON, NDIS_ENCAPSULATION_NULL);
    assert_eq!(
        setup.adapter.set(OID_OFFLOAD_ENCAPSULATION, &null).status,
        NDIS_STATUS_SUCCESS
    );
    let record = setup.adapter.offloads();
    assert_eq!(record.indications, indications + 3);
    assert!(record.activated(false) && record.activated(true));
    setup.finish();
}

/// The keywords are read at initialization through NdisOpenConfigurationEx, and the handle
/// closed (the simulator reports one left open at halt, and counts it among the leaks).
#[oxtun_sim::test]
fn the_keywords_are_read_at_initialization_and_the_configuration_closed() {
    let driver = Driver::load().unwrap();
    let adapter = driver
        .add_adapter_with(
            AdapterSetup::default()
                .keyword("*LsoV2IPv4", "1")
                .keyword("*RscIPv6", "not a number"),
        )
        .unwrap();
    assert_eq!(oxtun_sim::outstanding().configurations, 0);
    adapter.halt();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
}
