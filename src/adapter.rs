//! One adapter: what MiniportInitializeEx builds and MiniportHaltEx takes down, its state and
//! its counters.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::device;
use crate::oid::SUPPORTED_OIDS;
use crate::rings::{Caller, Registration, SendCounts};
use crate::sys::*;

/// What the adapter reports as its MTU and frame size: the largest packet a ring carries.
pub const MTU: u32 = oxtun_abi::MAX_IP_PACKET_SIZE;
/// The link speed reported both ways. A virtual link has none of its own; a high figure keeps
/// the stack from throttling what the VPN can carry.
pub const LINK_SPEED: u64 = 100_000_000_000;

/// Traffic counters, read by OID_GEN_STATISTICS, XMIT_OK and RCV_OK.
#[derive(Default)]
pub struct Statistics {
    pub sent_packets: AtomicU64,
    pub sent_octets: AtomicU64,
    pub send_errors: AtomicU64,
    pub send_discards: AtomicU64,
    pub received_packets: AtomicU64,
    pub received_octets: AtomicU64,
    pub receive_errors: AtomicU64,
    pub receive_discards: AtomicU64,
}

impl Statistics {
    /// Adds what one send call did.
    pub fn add_sends(&self, counts: &SendCounts) {
        for (counter, value) in [
            (&self.sent_packets, counts.packets),
            (&self.sent_octets, counts.octets),
            (&self.send_errors, counts.errors),
            (&self.send_discards, counts.discards),
        ] {
            if value != 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }
}

/// An NBL pool, freed on drop.
struct NblPool(NDIS_HANDLE);

impl NblPool {
    fn allocate(miniport: NDIS_HANDLE) -> Option<Self> {
        let parameters = NET_BUFFER_LIST_POOL_PARAMETERS {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
                Size: NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1,
            },
            ProtocolId: NDIS_PROTOCOL_ID_DEFAULT,
            fAllocateNetBuffer: 1,
            ContextSize: 0,
            PoolTag: POOL_TAG,
            DataSize: 0,
        };
        // SAFETY: NDIS's adapter handle and parameters that live through the call.
        let pool = unsafe { NdisAllocateNetBufferListPool(miniport, &parameters) };
        (!pool.is_null()).then(|| NblPool(pool))
    }
}

impl Drop for NblPool {
    fn drop(&mut self) {
        // SAFETY: a pool this value allocated; nothing from it is outstanding once the adapter
        // is halted or never started.
        unsafe { NdisFreeNetBufferListPool(self.0) };
    }
}

// SAFETY: an NBL pool handle may be used from any thread.
unsafe impl Send for NblPool {}
// SAFETY: as for Send.
unsafe impl Sync for NblPool {}

pub struct Adapter {
    /// NDIS's handle for the adapter.
    pub miniport: NDIS_HANDLE,
    /// The adapter's functional device object, where the ring IOCTL arrives.
    device: PDEVICE_OBJECT,
    _nbl_pool: NblPool,
    /// Between MiniportRestartEx and MiniportPause.
    running: AtomicBool,
    pub packet_filter: AtomicU32,
    pub lookahead: AtomicU32,
    pub statistics: Statistics,
    /// The rings a client registered, if any: used by senders under rundown protection,
    /// changed only under the device lock.
    rings: RundownSlot<Registration>,
    /// The next adapter in the driver's list (see `device`).
    pub next_adapter: AtomicPtr<Adapter>,
}

// SAFETY: the NDIS handle and the device object are kernel objects usable from any thread; the
// rest is atomics.
unsafe impl Send for Adapter {}
// SAFETY: as for Send.
unsafe impl Sync for Adapter {}

impl Adapter {
    /// MiniportInitializeEx: builds the adapter and tells NDIS what it is. The adapter starts
    /// paused and disconnected; on failure nothing is left allocated.
    pub fn initialize(miniport: NDIS_HANDLE) -> Result<PoolBox<Adapter>, NDIS_STATUS> {
        let mut device = null_mut();
        // SAFETY: NDIS's adapter handle; only the functional device object is asked for.
        unsafe {
            NdisMGetDeviceProperty(
                miniport,
                null_mut(),
                &mut device,
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        let nbl_pool = NblPool::allocate(miniport).ok_or(NDIS_STATUS_RESOURCES)?;
        let adapter = PoolBox::new(Adapter {
            miniport,
            device,
            _nbl_pool: nbl_pool,
            running: AtomicBool::new(false),
            packet_filter: AtomicU32::new(0),
            lookahead: AtomicU32::new(MTU),
            statistics: Statistics::default(),
            rings: RundownSlot::new(),
            next_adapter: AtomicPtr::new(null_mut()),
        })
        .ok_or(NDIS_STATUS_RESOURCES)?;
        adapter.rings.start_empty();
        adapter.set_registration_attributes()?;
        adapter.set_general_attributes()?;
        adapter.indicate_link_state(MediaConnectStateDisconnected);
        device::attach(&adapter);
        Ok(adapter)
    }

    /// MiniportHaltEx: the adapter's last moment.
    pub fn halt(adapter: PoolBox<Adapter>) {
        device::detach(&adapter);
        drop(adapter);
    }

    /// Points the adapter's FDO at the adapter, or at nothing. Called under the device lock,
    /// which the dispatch routines hold while they use the pointer.
    pub fn set_device_context(&self, attached: bool) {
        let context = if attached {
            (self as *const Adapter).cast_mut().cast()
        } else {
            null_mut()
        };
        // SAFETY: the FDO NDIS created for this adapter lives until after halt; Reserved is
        // the driver's own field.
        unsafe { (*self.device).Reserved = context };
    }

    /// The ring IOCTL: one registration at a time. Called under the device lock.
    pub fn register_rings(&self, input: &[u8], caller: &Caller) -> NTSTATUS {
        if self.rings.is_occupied() {
            return STATUS_ALREADY_INITIALIZED;
        }
        let registration = match Registration::new(input, caller) {
            Ok(registration) => registration,
            Err(status) => return status,
        };
        let Some(registration) = PoolBox::new(registration) else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        // SAFETY: the caller holds the device lock, which serializes put and take_if.
        if unsafe { self.rings.put(registration) }.is_err() {
            return STATUS_ALREADY_INITIALIZED;
        }
        self.indicate_link_state(MediaConnectStateConnected);
        STATUS_SUCCESS
    }

    /// Ends the registration if `which` picks it: the one path for every trigger (owner close,
    /// owner exit, removal, halt). Waits for senders using it to finish. Called under the
    /// device lock, at PASSIVE_LEVEL.
    pub fn unregister(&self, which: impl FnOnce(&Registration) -> bool) -> bool {
        // SAFETY: the caller holds the device lock, which serializes put and take_if.
        let Some(mut registration) = (unsafe { self.rings.take_if(which) }) else {
            return false;
        };
        self.indicate_link_state(MediaConnectStateDisconnected);
        registration.close();
        // Unmaps and unlocks both rings and drops the event references, at PASSIVE_LEVEL.
        drop(registration);
        true
    }

    /// MiniportSendNetBufferLists: every NBL is completed, written to the send ring or failed
    /// with the reason.
    pub fn send(&self, chain: NblChain, at_dispatch: bool) {
        let status = if !self.is_running() {
            NDIS_STATUS_PAUSED
        } else if let Some(rings) = self.rings.acquire() {
            rings.send(&chain, &self.statistics);
            NDIS_STATUS_SUCCESS
        } else {
            NDIS_STATUS_MEDIA_DISCONNECTED
        };
        if status != NDIS_STATUS_SUCCESS {
            for nbl in chain.iter() {
                nbl.set_status(status);
            }
        }
        // SAFETY: the chain was sent to this adapter, whose NDIS handle this is.
        unsafe { chain.complete_send(self.miniport, at_dispatch) };
    }

    fn set_registration_attributes(&self) -> Result<(), NDIS_STATUS> {
        let mut attributes = NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
                Revision: NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2,
                Size: NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2,
            },
            MiniportAdapterContext: (self as *const Adapter).cast_mut().cast(),
            AttributeFlags: NDIS_MINIPORT_ATTRIBUTES_NO_HALT_ON_SUSPEND
                | NDIS_MINIPORT_ATTRIBUTES_SURPRISE_REMOVE_OK,
            CheckForHangTimeInSeconds: 0,
            InterfaceType: NdisInterfaceInternal,
        };
        // SAFETY: the adapter handle and attributes that live through the call.
        let status = unsafe { NdisMSetMiniportAttributes(self.miniport, &mut attributes.Header) };
        if status == NDIS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
    }

    fn set_general_attributes(&self) -> Result<(), NDIS_STATUS> {
        let mut attributes = NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
                Revision: NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
                Size: NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
            },
            Flags: 0,
            MediaType: NdisMediumIP,
            PhysicalMediumType: NdisPhysicalMediumUnspecified,
            MtuSize: MTU,
            MaxXmitLinkSpeed: LINK_SPEED,
            XmitLinkSpeed: LINK_SPEED,
            MaxRcvLinkSpeed: LINK_SPEED,
            RcvLinkSpeed: LINK_SPEED,
            MediaConnectState: MediaConnectStateDisconnected,
            MediaDuplexState: MediaDuplexStateFull,
            LookaheadSize: MTU,
            PowerManagementCapabilities: null_mut(),
            MacOptions: NDIS_MAC_OPTION_COPY_LOOKAHEAD_DATA
                | NDIS_MAC_OPTION_TRANSFERS_NOT_PEND
                | NDIS_MAC_OPTION_NO_LOOPBACK
                | NDIS_MAC_OPTION_FULL_DUPLEX,
            SupportedPacketFilters: NDIS_PACKET_TYPE_DIRECTED
                | NDIS_PACKET_TYPE_ALL_MULTICAST
                | NDIS_PACKET_TYPE_BROADCAST
                | NDIS_PACKET_TYPE_ALL_LOCAL
                | NDIS_PACKET_TYPE_ALL_FUNCTIONAL,
            MaxMulticastListSize: 0,
            MacAddressLength: 0,
            PermanentMacAddress: [0; NDIS_MAX_PHYS_ADDRESS_LENGTH],
            CurrentMacAddress: [0; NDIS_MAX_PHYS_ADDRESS_LENGTH],
            RecvScaleCapabilities: null_mut(),
            AccessType: NET_IF_ACCESS_BROADCAST,
            DirectionType: NET_IF_DIRECTION_SENDRECEIVE,
            ConnectionType: NET_IF_CONNECTION_DEDICATED,
            IfType: IF_TYPE_PROP_VIRTUAL,
            IfConnectorPresent: 0,
            SupportedStatistics: NDIS_STATISTICS_XMIT_OK_SUPPORTED
                | NDIS_STATISTICS_RCV_OK_SUPPORTED
                | NDIS_STATISTICS_XMIT_ERROR_SUPPORTED
                | NDIS_STATISTICS_RCV_ERROR_SUPPORTED
                | NDIS_STATISTICS_DIRECTED_BYTES_XMIT_SUPPORTED
                | NDIS_STATISTICS_DIRECTED_FRAMES_XMIT_SUPPORTED
                | NDIS_STATISTICS_DIRECTED_BYTES_RCV_SUPPORTED
                | NDIS_STATISTICS_DIRECTED_FRAMES_RCV_SUPPORTED
                | NDIS_STATISTICS_BYTES_RCV_SUPPORTED
                | NDIS_STATISTICS_BYTES_XMIT_SUPPORTED
                | NDIS_STATISTICS_RCV_DISCARDS_SUPPORTED
                | NDIS_STATISTICS_GEN_STATISTICS_SUPPORTED
                | NDIS_STATISTICS_XMIT_DISCARDS_SUPPORTED,
            SupportedPauseFunctions: NdisPauseFunctionsUnsupported,
            DataBackFillSize: 0,
            ContextBackFillSize: 0,
            SupportedOidList: SUPPORTED_OIDS.as_ptr(),
            SupportedOidListLength: size_of_val(&SUPPORTED_OIDS) as u32,
            AutoNegotiationFlags: 0,
            PowerManagementCapabilitiesEx: null_mut(),
        };
        // SAFETY: the adapter handle and attributes that live through the call; the OID list
        // is static.
        let status = unsafe { NdisMSetMiniportAttributes(self.miniport, &mut attributes.Header) };
        if status == NDIS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Tells NDIS the link went up or down.
    pub fn indicate_link_state(&self, state: NDIS_MEDIA_CONNECT_STATE) {
        let mut link = NDIS_LINK_STATE {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: NDIS_LINK_STATE_REVISION_1,
                Size: NDIS_SIZEOF_LINK_STATE_REVISION_1,
            },
            MediaConnectState: state,
            MediaDuplexState: MediaDuplexStateFull,
            XmitLinkSpeed: LINK_SPEED,
            RcvLinkSpeed: LINK_SPEED,
            PauseFunctions: NdisPauseFunctionsUnsupported,
            AutoNegotiationFlags: 0,
        };
        let mut indication = NDIS_STATUS_INDICATION {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_STATUS_INDICATION,
                Revision: NDIS_STATUS_INDICATION_REVISION_1,
                Size: NDIS_SIZEOF_STATUS_INDICATION_REVISION_1,
            },
            SourceHandle: self.miniport,
            PortNumber: 0,
            StatusCode: NDIS_STATUS_LINK_STATE,
            Flags: 0,
            DestinationHandle: null_mut(),
            RequestId: null_mut(),
            StatusBuffer: (&raw mut link).cast(),
            StatusBufferSize: size_of::<NDIS_LINK_STATE>() as u32,
            Guid: [0; 16],
            NdisReserved: [null_mut(); 4],
        };
        // SAFETY: the adapter handle and an indication whose buffer lives through the call.
        unsafe { NdisMIndicateStatusEx(self.miniport, &mut indication) };
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Release);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}
