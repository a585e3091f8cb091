//! The driver's load, adapter life cycle and OID requests, on the simulated kernel with its
//! contract checks (any violation aborts the test).

use oxtun_driver::sys::*;
use oxtun_sim::faults::{self, Site};
use oxtun_sim::{AdapterState, Driver, Fragmentation, outstanding};

fn u32_of(bytes: &[u8]) -> u32 {
    u32::from_ne_bytes(bytes.try_into().unwrap())
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes.try_into().unwrap())
}

#[oxtun_sim::test]
fn load_and_unload_leave_nothing_behind() {
    let driver = Driver::load().unwrap();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
}

#[oxtun_sim::test]
fn adapter_comes_up_as_a_running_disconnected_ip_adapter() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    assert_eq!(adapter.state(), AdapterState::Running);
    let general = adapter.general();
    assert_eq!(general.media_type, NdisMediumIP);
    assert_eq!(general.physical_medium, NdisPhysicalMediumUnspecified);
    assert_eq!(general.mtu, 0xFFFF);
    assert_eq!(general.media_connect_state, MediaConnectStateDisconnected);
    assert_eq!(general.media_duplex_state, MediaDuplexStateFull);
    assert_eq!(general.if_type, IF_TYPE_PROP_VIRTUAL);
    assert!(!general.connector_present);
    assert_eq!(general.access_type, NET_IF_ACCESS_BROADCAST);
    assert_eq!(general.direction_type, NET_IF_DIRECTION_SENDRECEIVE);
    assert_eq!(general.connection_type, NET_IF_CONNECTION_DEDICATED);
    assert_eq!(general.mac_address_length, 0, "layer 3: no MAC address");
    assert!(general.xmit_link_speed > 0 && general.rcv_link_speed > 0);
    assert_ne!(
        general.supported_statistics & NDIS_STATISTICS_GEN_STATISTICS_SUPPORTED,
        0
    );
    assert_eq!(
        adapter.attribute_flags(),
        NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND | NDIS_MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK
    );
    assert_eq!(adapter.link_state(), Some(MediaConnectStateDisconnected));
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn initialization_failing_at_each_allocation_site_leaves_nothing_behind() {
    let driver = Driver::load().unwrap();
    let loaded = outstanding();
    faults::reset();
    driver.add_adapter().unwrap().halt();
    let calls = faults::calls();
    assert!(calls.get(&Site::ExAllocatePool2).is_some_and(|&n| n >= 1));
    assert!(calls.contains_key(&Site::NdisAllocateNetBufferListPool));
    assert!(calls.contains_key(&Site::NdisMSetMiniportAttributes));
    for (&site, &count) in &calls {
        for nth in 1..=count {
            faults::fail_call(site, nth);
            let status = driver
                .add_adapter()
                .map(|_| ())
                .expect_err("initialization survived a failed allocation");
            assert_ne!(status, NDIS_STATUS_SUCCESS);
            let now = outstanding();
            assert_eq!(now, loaded, "{site:?} call {nth} failed: now holding {now}");
        }
    }
    faults::reset();
    driver.add_adapter().unwrap().halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn queries_answer_with_short_exact_and_long_buffers() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    let u32_oids = [
        (OID_GEN_MAXIMUM_TOTAL_SIZE, 0xFFFF),
        (OID_GEN_MAXIMUM_FRAME_SIZE, 0xFFFF),
        (OID_GEN_TRANSMIT_BLOCK_SIZE, 0xFFFF),
        (OID_GEN_RECEIVE_BLOCK_SIZE, 0xFFFF),
        (OID_GEN_TRANSMIT_BUFFER_SPACE, 64 << 20),
        (OID_GEN_RECEIVE_BUFFER_SPACE, 64 << 20),
        (OID_GEN_VENDOR_DRIVER_VERSION, 0x0000_0001),
        (OID_GEN_CURRENT_LOOKAHEAD, 0xFFFF),
        (OID_GEN_CURRENT_PACKET_FILTER, 0),
    ];
    for (oid, value) in u32_oids {
        let short = adapter.query(oid, 3);
        assert_eq!(short.status, NDIS_STATUS_BUFFER_TOO_SHORT, "{oid:#x}");
        assert_eq!((short.bytes_done, short.bytes_needed), (0, 4), "{oid:#x}");
        for len in [4, 64] {
            let answer = adapter.query(oid, len);
            assert_eq!(answer.status, NDIS_STATUS_SUCCESS, "{oid:#x}");
            assert_eq!(answer.bytes_done, 4);
            assert_eq!(u32_of(&answer.data), value, "{oid:#x}");
        }
    }

    // The OUI's three bytes, then the NIC's: 0xFFFFFF (no OUI of our own) and 0.
    let vendor = adapter.query(OID_GEN_VENDOR_ID, 4);
    assert_eq!(vendor.data, [0xFF, 0xFF, 0xFF, 0x00]);
    let short = adapter.query(OID_GEN_VENDOR_ID, 3);
    assert_eq!(
        (short.status, short.bytes_needed),
        (NDIS_STATUS_BUFFER_TOO_SHORT, 4)
    );

    let description = adapter.query(OID_GEN_VENDOR_DESCRIPTION, 256);
    assert_eq!(description.data, b"OxTun Userspace Tunnel\0");
    let short = adapter.query(OID_GEN_VENDOR_DESCRIPTION, 4);
    assert_eq!(
        (short.status, short.bytes_needed),
        (NDIS_STATUS_BUFFER_TOO_SHORT, 23)
    );

    let list = adapter.query(OID_GEN_SUPPORTED_LIST, 1024);
    let listed: Vec<u32> = list.data.chunks(4).map(u32_of).collect();
    assert_eq!(listed, adapter.general().supported_oids);
    assert!(listed.contains(&OID_GEN_STATISTICS));

    let statistics = adapter.query(OID_GEN_STATISTICS, 0x98);
    assert_eq!(
        (statistics.status, statistics.bytes_done),
        (NDIS_STATUS_SUCCESS, 0x98)
    );
    assert_eq!(
        &statistics.data[..4],
        &[NDIS_OBJECT_TYPE_DEFAULT, 1, 0x98, 0]
    );
    let short = adapter.query(OID_GEN_STATISTICS, 0x97);
    assert_eq!(
        (short.status, short.bytes_needed),
        (NDIS_STATUS_BUFFER_TOO_SHORT, 0x98)
    );

    let moderation = adapter.query(OID_GEN_INTERRUPT_MODERATION, 12);
    assert_eq!(moderation.status, NDIS_STATUS_SUCCESS);
    assert_eq!(
        u32_of(&moderation.data[8..12]),
        NdisInterruptModerationNotSupported
    );

    assert_eq!(
        adapter.query(OID_PNP_QUERY_POWER, 4).status,
        NDIS_STATUS_SUCCESS
    );
    assert_eq!(
        adapter.query(0x0101_0101, 64).status,
        NDIS_STATUS_NOT_SUPPORTED
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn packet_counters_answer_in_64_or_32_bits_as_the_buffer_allows() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    for oid in [OID_GEN_XMIT_OK, OID_GEN_RCV_OK] {
        let wide = adapter.query(oid, 8);
        assert_eq!((wide.status, wide.bytes_done), (NDIS_STATUS_SUCCESS, 8));
        assert_eq!(u64_of(&wide.data), 0);
        let narrow = adapter.query(oid, 4);
        assert_eq!((narrow.status, narrow.bytes_done), (NDIS_STATUS_SUCCESS, 4));
        let short = adapter.query(oid, 2);
        assert_eq!(
            (short.status, short.bytes_needed),
            (NDIS_STATUS_BUFFER_TOO_SHORT, 8)
        );
    }
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn sets_read_what_they_need_and_refuse_short_buffers() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    let filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
    let set = adapter.set(OID_GEN_CURRENT_PACKET_FILTER, &filter.to_ne_bytes());
    assert_eq!((set.status, set.bytes_done), (NDIS_STATUS_SUCCESS, 4));
    assert_eq!(
        u32_of(&adapter.query(OID_GEN_CURRENT_PACKET_FILTER, 4).data),
        filter
    );
    let short = adapter.set(OID_GEN_CURRENT_PACKET_FILTER, &[0u8; 3]);
    assert_eq!(
        (short.status, short.bytes_needed),
        (NDIS_STATUS_INVALID_LENGTH, 4)
    );
    let mut long = NDIS_PACKET_TYPE_ALL_LOCAL.to_ne_bytes().to_vec();
    long.extend([0xEE; 4]);
    let set = adapter.set(OID_GEN_CURRENT_PACKET_FILTER, &long);
    assert_eq!(
        (set.status, set.bytes_done),
        (NDIS_STATUS_SUCCESS, 4),
        "reads only its 4 bytes"
    );
    assert_eq!(
        u32_of(&adapter.query(OID_GEN_CURRENT_PACKET_FILTER, 4).data),
        NDIS_PACKET_TYPE_ALL_LOCAL
    );

    let set = adapter.set(OID_GEN_CURRENT_LOOKAHEAD, &1500u32.to_ne_bytes());
    assert_eq!(set.status, NDIS_STATUS_SUCCESS);
    assert_eq!(
        u32_of(&adapter.query(OID_GEN_CURRENT_LOOKAHEAD, 4).data),
        1500
    );
    let too_big = adapter.set(OID_GEN_CURRENT_LOOKAHEAD, &0x10000u32.to_ne_bytes());
    assert_eq!(too_big.status, NDIS_STATUS_INVALID_DATA);

    for len in [0x20, 0x30] {
        let link = adapter.set(OID_GEN_LINK_PARAMETERS, &vec![0; len]);
        assert_eq!((link.status, link.bytes_done), (NDIS_STATUS_SUCCESS, 0x20));
    }
    let short = adapter.set(OID_GEN_LINK_PARAMETERS, &[0; 0x1F]);
    assert_eq!(
        (short.status, short.bytes_needed),
        (NDIS_STATUS_INVALID_LENGTH, 0x20)
    );

    let moderation = adapter.set(OID_GEN_INTERRUPT_MODERATION, &[0; 12]);
    assert_eq!(moderation.status, NDIS_STATUS_INVALID_DATA);

    let power = adapter.set(OID_PNP_SET_POWER, &1u32.to_ne_bytes());
    assert_eq!((power.status, power.bytes_done), (NDIS_STATUS_SUCCESS, 4));
    assert_eq!(
        adapter.set(OID_PNP_SET_POWER, &[1]).status,
        NDIS_STATUS_INVALID_LENGTH
    );

    assert_eq!(
        adapter.set(OID_GEN_VENDOR_ID, &[0; 4]).status,
        NDIS_STATUS_NOT_SUPPORTED
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn sends_fail_as_paused_or_disconnected_at_either_irql() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    let nbls = |count: usize| vec![vec![vec![0x45; 20]]; count];
    let send = |count, irql| adapter.send(&nbls(count), Fragmentation::CONTIGUOUS, irql);
    for irql in [PASSIVE_LEVEL, DISPATCH_LEVEL] {
        assert_eq!(send(3, irql), vec![NDIS_STATUS_MEDIA_DISCONNECTED; 3]);
    }
    assert_eq!(adapter.pause(), NDIS_STATUS_SUCCESS);
    assert_eq!(adapter.state(), AdapterState::Paused);
    assert_eq!(send(2, DISPATCH_LEVEL), vec![NDIS_STATUS_PAUSED; 2]);
    assert_eq!(adapter.restart(), NDIS_STATUS_SUCCESS);
    assert_eq!(send(1, PASSIVE_LEVEL), vec![NDIS_STATUS_MEDIA_DISCONNECTED]);
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn surprise_removal_and_several_adapters_tear_down_cleanly() {
    let driver = Driver::load().unwrap();
    let first = driver.add_adapter().unwrap();
    let second = driver.add_adapter().unwrap();
    first.surprise_remove();
    assert_eq!(second.state(), AdapterState::Running);
    second.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn shutdown_and_cancellations_leave_the_adapter_working() {
    let driver = Driver::load().unwrap();
    let adapter = driver.add_adapter().unwrap();
    adapter.cancel(0x1234);
    adapter.shutdown();
    assert_eq!(
        adapter.query(OID_GEN_VENDOR_ID, 4).status,
        NDIS_STATUS_SUCCESS
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}
