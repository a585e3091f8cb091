//! The simulated NDIS's rules, shown with a minimal miniport of the test's own (`miniport/`):
//! what Windows allows passes, what Windows forbids is reported.

mod miniport;

use oxtun_driver::sys::*;
use oxtun_sim::{Fragmentation, verifier};

/// Runs `work` with violations recorded, and returns them.
fn violations_of(work: impl FnOnce()) -> Vec<String> {
    verifier::record_violations();
    verifier::take_recorded();
    work();
    verifier::take_recorded()
}

/// `NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE` (the WDK's NDIS headers).
const NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE: ULONG = 0x100;

const PACKET: [u8; 20] = [
    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
];

#[oxtun_sim::test]
fn characteristics_of_revision_3_register_a_miniport() {
    // NDIS 6.80 and later miniports, Wintun's among them, register revision 3.
    let (driver, adapter) = miniport::load(3).unwrap();
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn a_send_completed_without_the_dispatch_flag_at_dispatch_level_is_allowed() {
    let (driver, adapter) = miniport::load(2).unwrap();
    // Clearing the flag is always right: the completion does not say it runs at DISPATCH_LEVEL.
    miniport::on_send(|nbls, _flags| miniport::complete(nbls, Some(NDIS_STATUS_SUCCESS), 0));
    let violations = violations_of(|| {
        let statuses = adapter.send(
            &[vec![PACKET.to_vec()]],
            Fragmentation::CONTIGUOUS,
            DISPATCH_LEVEL,
        );
        assert_eq!(statuses, [NDIS_STATUS_SUCCESS]);
    });
    assert_eq!(violations, Vec::<String>::new());
    // Setting it below DISPATCH_LEVEL is the error.
    miniport::on_send(|nbls, _flags| {
        miniport::complete(
            nbls,
            Some(NDIS_STATUS_SUCCESS),
            NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
        )
    });
    let violations = violations_of(|| {
        adapter.send(
            &[vec![PACKET.to_vec()]],
            Fragmentation::CONTIGUOUS,
            PASSIVE_LEVEL,
        );
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("DISPATCH_LEVEL flag"),
        "{violations:?}"
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn an_nbl_completed_without_its_status_written_is_reported() {
    let (driver, adapter) = miniport::load(2).unwrap();
    miniport::on_send(|nbls, flags| miniport::complete(nbls, None, flags));
    let violations = violations_of(|| {
        adapter.send(
            &[vec![PACKET.to_vec()]],
            Fragmentation::CONTIGUOUS,
            DISPATCH_LEVEL,
        );
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("Status"), "{violations:?}");
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// NBLs the test miniport indicates: one pool, and per NBL a pool buffer with the packet and an
/// MDL of its own describing it, as a miniport that copies into non-paged pool builds them.
struct Receives {
    pool: NDIS_HANDLE,
}

impl Receives {
    fn new() -> Receives {
        let parameters = NET_BUFFER_LIST_POOL_PARAMETERS {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
                Size: NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
            },
            ProtocolId: 0,
            fAllocateNetBuffer: 1,
            ContextSize: 0,
            PoolTag: POOL_TAG,
            DataSize: 0,
        };
        // SAFETY (test): the simulator's export, with the adapter's handle and live parameters.
        let pool =
            unsafe { NdisAllocateNetBufferListPool(miniport::adapter_handle(), &parameters) };
        assert!(!pool.is_null());
        Receives { pool }
    }

    /// An NBL carrying `packet` as an IP packet of `ether_type`.
    fn nbl(&self, packet: &[u8], ether_type: u16) -> *mut NET_BUFFER_LIST {
        // SAFETY (test): the simulator's exports; the buffer lives until the MDL is freed (the
        // return hook frees both).
        unsafe {
            let buffer = ExAllocatePool2(POOL_FLAG_NON_PAGED, packet.len(), POOL_TAG);
            std::ptr::copy_nonoverlapping(packet.as_ptr(), buffer.cast(), packet.len());
            let mdl = IoAllocateMdl(buffer, packet.len() as u32, 0, 0, std::ptr::null_mut());
            // As MmBuildMdlForNonPagedPool describes non-paged pool.
            (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
            (*mdl).MappedSystemVa = buffer;
            let nbl = NdisAllocateNetBufferAndNetBufferList(self.pool, 0, 0, mdl, 0, packet.len());
            (*nbl).SourceHandle = miniport::adapter_handle();
            (*nbl).NblFlags |= NDIS_NBL_FLAGS_IS_IPV4;
            (*nbl).NetBufferListInfo[NetBufferListFrameType] = ether_type.to_be() as usize as PVOID;
            nbl
        }
    }
}

/// Frees a returned NBL as a miniport that allocates per indication does: the MDL it finds on
/// the NBL's NET_BUFFER, the buffer that MDL describes, and the NBL.
fn free_returned(nbls: *mut NET_BUFFER_LIST) {
    let mut nbl = nbls;
    while !nbl.is_null() {
        // SAFETY (test): NBLs NDIS returned to the miniport, with their MDLs.
        unsafe {
            let next = (*nbl).Next;
            let mdl = (*(*nbl).FirstNetBuffer).MdlChain;
            let buffer = (*mdl).MappedSystemVa;
            IoFreeMdl(mdl);
            ExFreePoolWithTag(buffer, POOL_TAG);
            NdisFreeNetBufferList(nbl);
            nbl = next;
        }
    }
}

fn chain(nbls: &[*mut NET_BUFFER_LIST]) -> *mut NET_BUFFER_LIST {
    for pair in nbls.windows(2) {
        // SAFETY (test): NBLs the test allocated and owns.
        unsafe { (*pair[0]).Next = pair[1] };
    }
    nbls[0]
}

fn indicate(nbls: &[*mut NET_BUFFER_LIST], flags: ULONG) {
    // SAFETY (test): the simulator's export, with NBLs the test miniport owns.
    unsafe {
        NdisMIndicateReceiveNetBufferLists(
            miniport::adapter_handle(),
            chain(nbls),
            0,
            nbls.len() as u32,
            flags,
        )
    };
}

#[oxtun_sim::test]
fn a_miniport_may_free_the_mdl_it_finds_on_a_returned_nbl() {
    let (driver, adapter) = miniport::load(2).unwrap();
    let receives = Receives::new();
    miniport::on_return(|nbls, _flags| free_returned(nbls));
    let nbls = [
        receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4),
        receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4),
    ];
    indicate(&nbls, 0);
    assert_eq!(adapter.take_received().len(), 2);
    // Every MDL, buffer and NBL the miniport made is gone again.
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn receive_flags_may_leave_out_dispatch_level_and_say_single_ether_type() {
    let (driver, adapter) = miniport::load(2).unwrap();
    let receives = Receives::new();
    miniport::on_return(|nbls, _flags| free_returned(nbls));
    let violations = violations_of(|| {
        let nbls = [
            receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4),
            receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4),
        ];
        oxtun_sim::irql::at_dispatch("a miniport's DPC", || {
            indicate(&nbls, NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE)
        });
    });
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(adapter.take_received().len(), 2);
    // The flags that say what is not so are reported: DISPATCH_LEVEL below it, one EtherType
    // for NBLs of two.
    let violations = violations_of(|| {
        indicate(
            &[receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4)],
            NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
        );
        indicate(
            &[
                receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4),
                receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV6),
            ],
            NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE,
        );
    });
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].contains("DISPATCH_LEVEL flag"),
        "{violations:?}"
    );
    assert!(
        violations[1].contains("SINGLE_ETHER_TYPE"),
        "{violations:?}"
    );
    adapter.take_received();
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn nbls_indicated_with_the_resources_flag_stay_the_miniports() {
    const NDIS_RECEIVE_FLAGS_RESOURCES: ULONG = 0x2;
    let (driver, adapter) = miniport::load(2).unwrap();
    let receives = Receives::new();
    miniport::on_return(|_nbls, _flags| panic!("NDIS returned NBLs indicated with RESOURCES"));
    let nbl = receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4);
    indicate(&[nbl], NDIS_RECEIVE_FLAGS_RESOURCES);
    assert_eq!(adapter.take_received().len(), 1);
    // The miniport has them back as soon as the indication returns.
    free_returned(nbl);
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn an_indicated_nbl_may_carry_info_of_its_own_but_not_what_the_stack_left() {
    /// NetBufferListHashValue (nblinfo.h), a miniport's own to set (a receive's RSS hash); the
    /// offload entries have rules of their own (see the offload tests below).
    const NET_BUFFER_LIST_HASH_VALUE: usize = 8;
    const HASH: usize = 0x1234_5678;
    let (driver, adapter) = miniport::load(2).unwrap();
    let receives = Receives::new();
    // The stack gives the NBL back; the miniport keeps it to indicate again, as is.
    let returned = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = returned.clone();
    miniport::on_return(move |nbl, _flags| kept.lock().unwrap().push(nbl as usize));
    let nbl = receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4);
    // SAFETY (test): an NBL the miniport owns.
    unsafe { (*nbl).NetBufferListInfo[NET_BUFFER_LIST_HASH_VALUE] = HASH as PVOID };
    let violations = violations_of(|| indicate(&[nbl], 0));
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(*returned.lock().unwrap(), [nbl as usize]);
    // Indicated again without clearing what the stack left in it: reported.
    let violations = violations_of(|| indicate(&[nbl], 0));
    assert!(
        violations
            .iter()
            .any(|violation| violation.contains("as the stack left it")),
        "{violations:?}"
    );
    adapter.take_received();
    free_returned(nbl);
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn a_miniport_sets_the_flags_that_describe_its_packet_and_keeps_ndiss() {
    const NDIS_NBL_FLAGS_IS_TCP: ULONG = 0x800;
    const NDIS_NBL_FLAGS_IS_UDP: ULONG = 0x1000;
    let (driver, adapter) = miniport::load(2).unwrap();
    let receives = Receives::new();
    miniport::on_return(|nbls, _flags| free_returned(nbls));
    // NdisSetNblFlag on a fresh NBL: the flags NDIS set at allocation stay, and UDP is true.
    let violations = violations_of(|| {
        let nbl = receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4);
        // SAFETY (test): an NBL the miniport owns.
        unsafe { (*nbl).NblFlags |= NDIS_NBL_FLAGS_IS_UDP };
        indicate(&[nbl], 0);
    });
    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(
        adapter.take_received()[0].nbl_flags,
        oxtun_sim::NDIS_ALLOCATION_FLAG | NDIS_NBL_FLAGS_IS_IPV4 | NDIS_NBL_FLAGS_IS_UDP
    );
    // Flags overwritten (NDIS's bit lost), an IPv4 packet marked IPv6 too, a UDP packet marked
    // TCP: each reported.
    let violations = violations_of(|| {
        for flags in [
            NDIS_NBL_FLAGS_IS_IPV4,
            oxtun_sim::NDIS_ALLOCATION_FLAG | NDIS_NBL_FLAGS_IS_IPV4 | NDIS_NBL_FLAGS_IS_IPV6,
            oxtun_sim::NDIS_ALLOCATION_FLAG | NDIS_NBL_FLAGS_IS_IPV4 | NDIS_NBL_FLAGS_IS_TCP,
        ] {
            let nbl = receives.nbl(&PACKET, NDIS_ETH_TYPE_IPV4);
            // SAFETY (test): an NBL the miniport owns.
            unsafe { (*nbl).NblFlags = flags };
            indicate(&[nbl], 0);
        }
    });
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(
        violations[0].contains("reserves for NDIS"),
        "{violations:?}"
    );
    assert!(
        violations[1].contains("not marked IS_IPV4 alone"),
        "{violations:?}"
    );
    assert!(violations[2].contains("IS_TCP, but"), "{violations:?}");
    adapter.take_received();
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// An NDIS_OFFLOAD of revision 6 with what `set` turns on.
fn offload(set: impl FnOnce(&mut NDIS_OFFLOAD)) -> NDIS_OFFLOAD {
    let mut offload = NDIS_OFFLOAD {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_OFFLOAD,
            Revision: NDIS_OFFLOAD_REVISION_6,
            Size: NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_6,
        },
        ..NDIS_OFFLOAD::default()
    };
    set(&mut offload);
    offload
}

/// LSOv2 for IPv4, Ethernet encapsulation, 60,000 bytes, at least 2 segments.
fn lso_v4(offload: &mut NDIS_OFFLOAD) {
    offload.LsoV2.IPv4 = NDIS_SEGMENTATION_OFFLOAD_IPV4 {
        Encapsulation: NDIS_ENCAPSULATION_IEEE_802_3,
        MaxOffLoadSize: 60_000,
        MinSegmentCount: 2,
    };
}

/// Receive checksums of TCP over IPv4.
fn rx_tcp_v4(offload: &mut NDIS_OFFLOAD) {
    offload.Checksum.IPv4Receive = NDIS_CHECKSUM_OFFLOAD_PATH {
        Encapsulation: NDIS_ENCAPSULATION_IEEE_802_3,
        Fields: NDIS_OFFLOAD_SUPPORTED << NDIS_CHECKSUM_OFFLOAD_PATH::TCP_SHIFT,
    };
}

#[oxtun_sim::test]
fn the_current_offload_configuration_stays_within_the_hardware_capabilities() {
    // At initialization: LSO in force, which the capabilities lack.
    miniport::offloads_at_initialization(offload(lso_v4), offload(rx_tcp_v4));
    let violations = violations_of(|| {
        let (driver, adapter) = miniport::load(2).unwrap();
        // And later, an indication turning on RSC, which the capabilities lack too; one within
        // them is taken.
        miniport::indicate_offloads(offload(|offload| offload.Rsc.IPv4Enabled = 1));
        miniport::indicate_offloads(offload(rx_tcp_v4));
        assert_eq!(
            adapter.offloads().current(),
            oxtun_sim::Offloads {
                rx_v4: oxtun_sim::Checksums {
                    tcp: true,
                    ..Default::default()
                },
                ..Default::default()
            }
        );
        adapter.halt();
        assert!(driver.unload().is_empty());
    });
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].contains("default offload configuration has LSOv2 for IPv4"),
        "{violations:?}"
    );
    assert!(
        violations[1].contains("turns on RSC for IPv4"),
        "{violations:?}"
    );
}

#[oxtun_sim::test]
fn an_ndis_offload_must_have_its_type_and_the_size_of_its_revision() {
    miniport::offloads_at_initialization(offload(|_| {}), offload(lso_v4));
    let (driver, adapter) = miniport::load(2).unwrap();
    let violations = violations_of(|| {
        miniport::indicate_offloads(offload(|offload| offload.Header.Revision = 9));
        miniport::indicate_offloads(offload(|offload| {
            offload.Header.Size = NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3
        }));
        miniport::indicate_offloads(offload(|offload| {
            offload.Header.Type = NDIS_OBJECT_TYPE_DEFAULT
        }));
        // A revision 3 structure of its size is fine: it has no USO, which it cannot say.
        miniport::indicate_offloads(offload(|offload| {
            offload.Header.Revision = NDIS_OFFLOAD_REVISION_3;
            offload.Header.Size = NDIS_SIZEOF_NDIS_OFFLOAD_REVISION_3;
        }));
    });
    assert_eq!(violations.len(), 3, "{violations:?}");
    assert!(
        violations
            .iter()
            .all(|violation| violation.contains("header")),
        "{violations:?}"
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// OID_TCP_OFFLOAD_PARAMETERS and OID_OFFLOAD_ENCAPSULATION: "After the update, the miniport
/// driver must report the current task offload capabilities with the
/// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG status indication."
#[oxtun_sim::test]
fn an_offload_oid_set_that_succeeds_must_be_followed_by_the_current_configuration() {
    miniport::offloads_at_initialization(offload(|_| {}), offload(lso_v4));
    // The binding's OID_OFFLOAD_ENCAPSULATION is answered with an indication.
    miniport::on_oid(|request| {
        if request.DATA.Oid == OID_OFFLOAD_ENCAPSULATION {
            miniport::indicate_offloads(offload(lso_v4));
        }
        NDIS_STATUS_SUCCESS
    });
    let (driver, adapter) = miniport::load(2).unwrap();
    assert!(adapter.offloads().activated(false));
    assert_eq!(adapter.offloads().indications, 1);
    // OID_TCP_OFFLOAD_PARAMETERS taken without one.
    let parameters = [
        0x80, 1, 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let violations = violations_of(|| {
        assert_eq!(
            adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &parameters).status,
            NDIS_STATUS_SUCCESS
        );
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("without an NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG"),
        "{violations:?}"
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

#[oxtun_sim::test]
fn a_configuration_handle_is_closed_before_the_adapter_halts() {
    let (driver, adapter) = miniport::load(2).unwrap();
    let object = NDIS_CONFIGURATION_OBJECT {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
            Revision: NDIS_CONFIGURATION_OBJECT_REVISION_1,
            Size: NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
        },
        NdisHandle: miniport::adapter_handle(),
        Flags: 0,
    };
    let mut handle = std::ptr::null_mut();
    // SAFETY (test): the simulator's export, with a live object and a local for the handle.
    let status = unsafe { NdisOpenConfigurationEx(&object, &mut handle) };
    assert_eq!(status, NDIS_STATUS_SUCCESS);
    let violations = violations_of(|| adapter.halt());
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("configuration handles open"),
        "{violations:?}"
    );
    let leaks = driver.unload();
    assert_eq!(leaks.configurations, 1);
    // SAFETY (test): the handle opened above, closed once.
    unsafe { NdisCloseConfiguration(handle) };
}

#[oxtun_sim::test]
fn a_current_offload_configuration_comes_only_from_a_miniport_that_set_offload_attributes() {
    // No offload attributes at initialization, then an indication of the current configuration.
    let (driver, adapter) = miniport::load(2).unwrap();
    let violations = violations_of(|| miniport::indicate_offloads(offload(lso_v4)));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("set no offload attributes"),
        "{violations:?}"
    );
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// An IPv4 packet of `transport` (6 or 17) with a 20- or 8-byte header and `payload` bytes, its
/// lengths and checksums right.
fn ipv4(transport: u8, payload: usize) -> Vec<u8> {
    let header = if transport == 6 { 20 } else { 8 };
    let len = 20 + header + payload;
    let mut packet = vec![0u8; len];
    packet[..20].copy_from_slice(&[
        0x45,
        0,
        (len >> 8) as u8,
        len as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        transport,
        0,
        0,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        2,
    ]);
    packet[20..22].copy_from_slice(&4000u16.to_be_bytes());
    packet[22..24].copy_from_slice(&5000u16.to_be_bytes());
    if transport == 6 {
        packet[24..28].copy_from_slice(&1u32.to_be_bytes());
        packet[32] = 5 << 4;
        packet[33] = 0x10; // ACK
        packet[34..36].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        packet[24..26].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    for (at, byte) in packet[20 + header..].iter_mut().enumerate() {
        *byte = at as u8;
    }
    oxtun_abi::offload::fill_checksums(
        &mut packet,
        oxtun_abi::offload::Checksums {
            ipv4_header: true,
            transport: true,
        },
    )
    .unwrap();
    packet
}

/// A miniport with LSOv2 for IPv4 in force (and its capability), activated when the simulated
/// TCP/IP binds; OID_TCP_OFFLOAD_PARAMETERS turns it off.
fn load_with_lso() -> (oxtun_sim::Driver, oxtun_sim::Adapter) {
    miniport::offloads_at_initialization(offload(lso_v4), offload(lso_v4));
    miniport::on_oid(|request| {
        let current = if request.DATA.Oid == OID_TCP_OFFLOAD_PARAMETERS {
            offload(|_| {})
        } else {
            offload(lso_v4)
        };
        miniport::indicate_offloads(current);
        NDIS_STATUS_SUCCESS
    });
    miniport::load(2).unwrap()
}

const LSO: oxtun_sim::SendOffload = oxtun_sim::SendOffload::Lso {
    mss: 1000,
    tcp_header_offset: 20,
};

#[oxtun_sim::test]
fn an_lsov2_send_reaches_the_miniport_as_tcpip_sends_it_and_completes_with_its_info_written() {
    let (driver, adapter) = load_with_lso();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen_by_hook = seen.clone();
    miniport::on_send(move |nbls, flags| {
        // SAFETY (test): the NBL the simulator sent, the miniport's until completed.
        unsafe {
            let nb = (*nbls).FirstNetBuffer;
            let mdl = (*nb).CurrentMdl;
            let first = std::slice::from_raw_parts(
                (*mdl).MappedSystemVa.cast::<u8>(),
                (*mdl).ByteCount as usize,
            );
            seen_by_hook.lock().unwrap().push((
                (*nbls).NetBufferListInfo[TcpLargeSendNetBufferListInfo] as usize,
                first.to_vec(),
            ));
        }
        miniport::complete(nbls, Some(NDIS_STATUS_SUCCESS), flags);
    });
    // Completed without LsoV2TransmitComplete written.
    let send = || {
        adapter.send_offloaded(
            &[(ipv4(6, 3000), LSO)],
            Fragmentation {
                leading: 0,
                chunk: 16,
            },
            oxtun_sim::SendTiming::InForce,
            DISPATCH_LEVEL,
        )
    };
    let violations = violations_of(|| {
        send();
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("LsoV2TransmitComplete"),
        "{violations:?}"
    );
    // What the miniport got: MSS 1000, the TCP header at 20, LSOv2, IPv4; the headers in the
    // first MDL; the IPv4 Total Length 0 and the TCP checksum the pseudo-header's sum without
    // the length.
    let (info, first_mdl) = seen.lock().unwrap()[0].clone();
    assert_eq!(info, 1000 | 20 << 20 | 1 << 30);
    assert_eq!(first_mdl.len(), 40);
    assert_eq!(&first_mdl[2..4], &[0, 0]);
    let sum = oxtun_abi::offload::pseudo_header_sum(&first_mdl[12..20], 6, 0);
    assert_eq!(first_mdl[36..38], sum.to_be_bytes());
    // Written as the page asks: no violation.
    miniport::on_send(|nbls, flags| {
        // SAFETY (test): the NBL the simulator sent, the miniport's until completed.
        unsafe {
            let info = &mut (*nbls).NetBufferListInfo[TcpLargeSendNetBufferListInfo];
            *info = NDIS_TCP_LARGE_SEND_OFFLOAD_NET_BUFFER_LIST_INFO(*info as usize)
                .v2_completed()
                .0 as PVOID;
        }
        miniport::complete(nbls, Some(NDIS_STATUS_SUCCESS), flags);
    });
    let violations = violations_of(|| {
        let completed = send();
        assert_eq!(completed[0].unwrap().status, NDIS_STATUS_SUCCESS);
        assert_eq!(completed[0].unwrap().lso & 0x7FFF_FFFF, 1 << 30);
    });
    assert_eq!(violations, Vec::<String>::new());
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// offloading-the-segmentation-of-large-tcp-packets: after OID_TCP_OFFLOAD_PARAMETERS turns LSO
/// off, "the miniport shall drop all NET_BUFFER_LIST which contain any non-zero LSOv1 or LSOv2
/// OOB data".
#[oxtun_sim::test]
fn an_lso_send_that_arrives_after_the_oid_turned_lso_off_is_dropped() {
    let (driver, adapter) = load_with_lso();
    // LsoV2IPv4 = NDIS_OFFLOAD_PARAMETERS_LSOV2_DISABLED, nothing else changed.
    let parameters = [
        0x80, 1, 20, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(
        adapter.set(OID_TCP_OFFLOAD_PARAMETERS, &parameters).status,
        NDIS_STATUS_SUCCESS
    );
    // The simulated stack sends no LSO now...
    let violations = violations_of(|| {
        let completed = adapter.send_offloaded(
            &[(ipv4(6, 3000), LSO)],
            Fragmentation::CONTIGUOUS,
            oxtun_sim::SendTiming::InForce,
            DISPATCH_LEVEL,
        );
        assert_eq!(completed, [None]);
    });
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("the simulated stack offloads a send it may not"),
        "{violations:?}"
    );
    // ...but one built before may still come, and the miniport must not send it.
    let late = |status| {
        miniport::on_send(move |nbls, flags| {
            // SAFETY (test): the NBL the simulator sent, the miniport's until completed.
            unsafe {
                (*nbls).NetBufferListInfo[TcpLargeSendNetBufferListInfo] = (1usize << 30) as PVOID
            };
            miniport::complete(nbls, Some(status), flags);
        });
        violations_of(|| {
            adapter.send_offloaded(
                &[(ipv4(6, 3000), LSO)],
                Fragmentation::CONTIGUOUS,
                oxtun_sim::SendTiming::Late,
                DISPATCH_LEVEL,
            );
        })
    };
    let violations = late(NDIS_STATUS_SUCCESS);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("turned that offload off"),
        "{violations:?}"
    );
    assert_eq!(late(NDIS_STATUS_FAILURE), Vec::<String>::new());
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// Receive checksums and RSC for IPv4 as capabilities; `current` in force at initialization,
/// activated when the simulated TCP/IP binds.
fn load_with_receive_offloads(current: NDIS_OFFLOAD) -> (oxtun_sim::Driver, oxtun_sim::Adapter) {
    let hardware = offload(|offload| {
        rx_tcp_v4(offload);
        offload.Checksum.IPv4Receive.Fields |= NDIS_OFFLOAD_SUPPORTED
            << NDIS_CHECKSUM_OFFLOAD_PATH::IP_SHIFT
            | NDIS_OFFLOAD_SUPPORTED << NDIS_CHECKSUM_OFFLOAD_PATH::UDP_SHIFT;
        offload.Rsc.IPv4Enabled = 1;
    });
    miniport::offloads_at_initialization(current, hardware);
    miniport::on_oid(move |_request| {
        miniport::indicate_offloads(current);
        NDIS_STATUS_SUCCESS
    });
    miniport::load(2).unwrap()
}

/// Indicates `packet` with the checksum flags `checksum` and the NDIS_RSC_NBL_INFO `rsc`, and
/// returns the violations.
fn indicate_with(packet: &[u8], checksum: usize, rsc: usize) -> Vec<String> {
    let receives = Receives::new();
    miniport::on_return(|nbls, _flags| free_returned(nbls));
    let nbl = receives.nbl(packet, 0x0800);
    // SAFETY (test): an NBL the test miniport owns until it indicates it.
    unsafe {
        (*nbl).NetBufferListInfo[TcpIpChecksumNetBufferListInfo] = checksum as PVOID;
        (*nbl).NetBufferListInfo[TcpRecvSegCoalesceInfo] = rsc as PVOID;
    }
    let violations = violations_of(|| indicate(&[nbl], 0));
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    violations
}

type ChecksumInfo = NDIS_TCP_IP_CHECKSUM_NET_BUFFER_LIST_INFO;

/// "Offloading Checksum Tasks": a miniport sets the receive flags for a packet "on which it
/// performs checksum tasks"; OID_OFFLOAD_ENCAPSULATION: it "must not start checksum offload
/// services until after it receives" that OID.
#[oxtun_sim::test]
fn receive_checksum_flags_only_for_checksums_in_force_and_activated() {
    let (driver, adapter) = load_with_receive_offloads(offload(rx_tcp_v4));
    let valid = ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED;
    // TCP over IPv4 is in force: fine.
    assert_eq!(indicate_with(&ipv4(6, 100), valid, 0), Vec::<String>::new());
    // The IPv4 header and UDP checksums are not.
    let violations = indicate_with(&ipv4(17, 100), ChecksumInfo::RX_UDP_CHECKSUM_SUCCEEDED, 0);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("UDP checksum flags"),
        "{violations:?}"
    );
    let violations = indicate_with(
        &ipv4(6, 100),
        valid | ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED,
        0,
    );
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("IP checksum flags"),
        "{violations:?}"
    );
    // A verdict on a TCP checksum of a UDP packet: a house rule.
    let violations = indicate_with(&ipv4(17, 100), valid, 0);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].starts_with("house rule")
            && violations[0].contains("checksum it does not have"),
        "{violations:?}"
    );
    // A checksum both failed and succeeded, and a coalesced unit's timestamp delta on a packet
    // that is none: house rules too.
    let violations = indicate_with(
        &ipv4(6, 100),
        valid | ChecksumInfo::RX_TCP_CHECKSUM_FAILED,
        0,
    );
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("both failed and succeeded"),
        "{violations:?}"
    );
    let receives = Receives::new();
    miniport::on_return(|nbls, _flags| free_returned(nbls));
    let nbl = receives.nbl(&ipv4(6, 100), 0x0800);
    // SAFETY (test): an NBL the test miniport owns until it indicates it.
    unsafe { (*nbl).NetBufferListInfo[RscTcpTimestampDelta] = 7 as PVOID };
    let violations = violations_of(|| indicate(&[nbl], 0));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("RscTcpTimestampDelta"),
        "{violations:?}"
    );
    // SAFETY (test): the pool, empty again.
    unsafe { NdisFreeNetBufferListPool(receives.pool) };
    adapter.take_received();
    adapter.halt();
    assert!(driver.unload().is_empty());
    // Not yet activated: the protocol's OID_OFFLOAD_ENCAPSULATION failed.
    miniport::offloads_at_initialization(offload(rx_tcp_v4), offload(rx_tcp_v4));
    miniport::on_oid(|_request| NDIS_STATUS_INVALID_PARAMETER);
    let (driver, adapter) = miniport::load(2).unwrap();
    let violations = indicate_with(&ipv4(6, 100), valid, 0);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("not in force and activated"),
        "{violations:?}"
    );
    adapter.take_received();
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// indicating-coalesced-segments: no coalesced unit "until the protocol driver enables RSC";
/// each one with "IpChecksumSucceeded and TcpChecksumSucceeded" set, and its checksums
/// recomputed or flagged TcpChecksumValueInvalid and IpChecksumValueInvalid.
#[oxtun_sim::test]
fn a_coalesced_unit_only_with_rsc_in_force_and_its_checksums_marked_valid() {
    let rsc_v4 = |offload: &mut NDIS_OFFLOAD| offload.Rsc.IPv4Enabled = 1;
    let valid = ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED | ChecksumInfo::RX_IP_CHECKSUM_SUCCEEDED;
    let unit = ipv4(6, 4000);
    let rsc_info = NDIS_RSC_NBL_INFO::new(3, 0).0;
    // RSC not in force.
    let (driver, adapter) = load_with_receive_offloads(offload(|_| {}));
    let violations = indicate_with(&unit, valid, rsc_info);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("RSC for IPv4 is not in force"),
        "{violations:?}"
    );
    // A packet over the adapter's MtuSize (1500) without NDIS_RSC_NBL_INFO: a house rule.
    let violations = indicate_with(&unit, 0, 0);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("over the adapter's MtuSize 1500"),
        "{violations:?}"
    );
    adapter.take_received();
    adapter.halt();
    assert!(driver.unload().is_empty());
    // RSC in force: the unit is taken with both flags, not without them.
    let (driver, adapter) = load_with_receive_offloads(offload(rsc_v4));
    assert_eq!(indicate_with(&unit, valid, rsc_info), Vec::<String>::new());
    let received = adapter.take_received();
    assert_eq!(received[0].offloads.coalesced_segments(), 3);
    let violations = indicate_with(&unit, ChecksumInfo::RX_TCP_CHECKSUM_SUCCEEDED, rsc_info);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("without IpChecksumSucceeded"),
        "{violations:?}"
    );
    // Its checksums are right, or flagged as not recomputed: a wrong TCP checksum is refused
    // unless TcpChecksumValueInvalid says so, a wrong IPv4 header checksum unless
    // IpChecksumValueInvalid does.
    let mut unsummed = unit.clone();
    unsummed[36..38].fill(0);
    let violations = indicate_with(&unsummed, valid, rsc_info);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("TCP checksum is wrong, not flagged TcpChecksumValueInvalid"),
        "{violations:?}"
    );
    let tcp_value_invalid = valid | ChecksumInfo::RX_TCP_CHECKSUM_VALUE_INVALID;
    assert_eq!(
        indicate_with(&unsummed, tcp_value_invalid, rsc_info),
        Vec::<String>::new()
    );
    unsummed[10..12].fill(0);
    let violations = indicate_with(&unsummed, tcp_value_invalid, rsc_info);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].contains("IPv4 header checksum is wrong"),
        "{violations:?}"
    );
    let both_invalid = tcp_value_invalid | ChecksumInfo::RX_IP_CHECKSUM_VALUE_INVALID;
    assert_eq!(
        indicate_with(&unsummed, both_invalid, rsc_info),
        Vec::<String>::new()
    );
    // Nor is a UDP packet a coalesced unit.
    let violations = indicate_with(&ipv4(17, 4000), valid, rsc_info);
    assert!(
        violations
            .iter()
            .any(|violation| violation.contains("not a TCP segment")),
        "{violations:?}"
    );
    adapter.take_received();
    adapter.halt();
    assert!(driver.unload().is_empty());
}
