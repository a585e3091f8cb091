//! One adapter: what MiniportInitializeEx builds and MiniportHaltEx takes down, its state and
//! its counters.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crate::device;
use crate::oid::SUPPORTED_OIDS;
use crate::receive::{ReceiveCounts, ReceiveRing};
use crate::rings::{Caller, Registration, SendCounts};
use crate::sys::*;

/// Most NBLs the adapter keeps for reuse once NDIS returns them.
const CACHED_NBLS: u32 = 1024;

/// Whether the receive path may indicate, and how many NBLs NDIS holds.
struct ReceiveGate {
    running: bool,
    outstanding: u32,
    /// MiniportPause returned NDIS_STATUS_PENDING: the last return completes it.
    pause_pending: bool,
}

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

    /// Adds what one receive batch did.
    pub fn add_receives(&self, counts: &ReceiveCounts) {
        for (counter, value) in [
            (&self.received_packets, counts.packets),
            (&self.received_octets, counts.octets),
            (&self.receive_errors, counts.errors),
            (&self.receive_discards, counts.discards),
        ] {
            if value != 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }
}

pub struct Adapter {
    /// NDIS's handle for the adapter.
    pub miniport: NDIS_HANDLE,
    /// The adapter's functional device object, where the ring IOCTL arrives.
    device: PDEVICE_OBJECT,
    nbl_pool: NblPool,
    /// Between MiniportRestartEx and MiniportPause, for the send path.
    running: AtomicBool,
    receive_gate: SpinLock<ReceiveGate>,
    /// The receive ring's reading side while a registration lives.
    pub(crate) receive: SpinLock<Option<ReceiveRing>>,
    /// NBLs back from NDIS, for the next indications.
    nbl_cache: SpinLock<NblList>,
    /// Tells the receive thread to return.
    stop_receiving: KernelEvent,
    stopping: AtomicBool,
    /// Set when NDIS holds no receive NBL.
    all_returned: KernelEvent,
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
        // SAFETY: NDIS's handle for this adapter, in MiniportInitializeEx.
        let nbl_pool = unsafe { NblPool::allocate(miniport) }.ok_or(NDIS_STATUS_RESOURCES)?;
        let adapter = PoolBox::new(Adapter {
            miniport,
            device,
            nbl_pool,
            running: AtomicBool::new(false),
            receive_gate: SpinLock::new(ReceiveGate {
                running: false,
                outstanding: 0,
                pause_pending: false,
            }),
            receive: SpinLock::new(None),
            nbl_cache: SpinLock::new(NblList::new()),
            stop_receiving: KernelEvent::new(),
            stopping: AtomicBool::new(false),
            all_returned: KernelEvent::new(),
            packet_filter: AtomicU32::new(0),
            lookahead: AtomicU32::new(MTU),
            statistics: Statistics::default(),
            rings: RundownSlot::new(),
            next_adapter: AtomicPtr::new(null_mut()),
        })
        .ok_or(NDIS_STATUS_RESOURCES)?;
        adapter.rings.start_empty();
        adapter.stop_receiving.initialize(false);
        adapter.all_returned.initialize(false);
        adapter.set_registration_attributes()?;
        adapter.set_general_attributes()?;
        adapter.indicate_link_state(MediaConnectStateDisconnected);
        device::attach(&adapter);
        Ok(adapter)
    }

    /// MiniportHaltEx: the adapter's last moment.
    pub fn halt(adapter: PoolBox<Adapter>) {
        device::detach(&adapter);
        let mut cached = core::mem::take(&mut *adapter.nbl_cache.lock());
        while let Some(nbl) = cached.pop() {
            nbl.free();
        }
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
        let Some(mut registration) = PoolBox::new(registration) else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        if let Err(status) = self.start_receiving(&mut registration) {
            return status;
        }
        // SAFETY: the caller holds the device lock, which serializes put and take_if.
        if let Err(registration) = unsafe { self.rings.put(registration) } {
            self.stop_receiving(registration);
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
        self.stop_receiving(registration);
        true
    }

    /// Hands the receive ring to a new receive thread.
    fn start_receiving(&self, registration: &mut Registration) -> Result<(), NTSTATUS> {
        let ring = registration
            .receive_ring()
            .ok_or(STATUS_INVALID_PARAMETER)?;
        *self.receive.lock() = Some(ring);
        self.stopping.store(false, Ordering::Release);
        self.stop_receiving.clear();
        // SAFETY: the thread uses the adapter, which outlives every registration (halt ends
        // the registration, joining the thread, before the adapter goes).
        let thread = unsafe {
            SystemThread::spawn(
                crate::driver::receive_thread,
                (self as *const Adapter).cast_mut().cast(),
            )
        };
        match thread {
            Ok(thread) => {
                registration.receive_thread = Some(thread);
                Ok(())
            }
            Err(status) => {
                let ring = self.receive.lock().take();
                drop(ring);
                Err(status)
            }
        }
    }

    /// Stops the receive thread, waits until NDIS has returned every NBL pointing into the
    /// receive ring, then drops the registration: unmapping and unlocking both rings and
    /// dropping the event references, at PASSIVE_LEVEL.
    fn stop_receiving(&self, mut registration: PoolBox<Registration>) {
        self.stopping.store(true, Ordering::Release);
        self.stop_receiving.set();
        if let Some(thread) = registration.receive_thread.take() {
            thread.join();
        }
        loop {
            self.all_returned.clear();
            if self.receive_gate.lock().outstanding == 0 {
                break;
            }
            wait(&self.all_returned);
        }
        let ring = self.receive.lock().take();
        drop(ring);
        drop(registration);
    }

    pub fn stopping_receive(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn stop_event(&self) -> &KernelEvent {
        &self.stop_receiving
    }

    /// An NBL for an indication: from the cache, or newly allocated.
    pub fn take_cached_nbl(&self) -> Option<PacketNbl> {
        let cached = self.nbl_cache.lock().pop();
        cached.or_else(|| self.nbl_pool.allocate_packet_nbl())
    }

    /// Keeps a returned NBL for reuse, or frees it when the cache is full.
    pub fn cache_nbl(&self, nbl: PacketNbl) {
        let mut cache = self.nbl_cache.lock();
        if cache.len() < CACHED_NBLS {
            cache.push(nbl);
        } else {
            drop(cache);
            nbl.free();
        }
    }

    /// Counts `count` NBLs out to NDIS, if the adapter runs; false if it is paused.
    pub fn lend_receives(&self, count: u32) -> bool {
        let mut gate = self.receive_gate.lock();
        if gate.running {
            gate.outstanding += count;
        }
        gate.running
    }

    /// Counts `count` NBLs back; the last one back completes a pending pause.
    pub fn receives_returned(&self, count: u32) {
        let complete_pause = {
            let mut gate = self.receive_gate.lock();
            gate.outstanding -= count;
            if gate.outstanding == 0 {
                self.all_returned.set();
                core::mem::take(&mut gate.pause_pending)
            } else {
                false
            }
        };
        if complete_pause {
            // SAFETY: the adapter's handle; NDIS waits for this since pause pended.
            unsafe { NdisMPauseComplete(self.miniport) };
        }
    }

    /// MiniportPause: no more indications; done once NDIS has returned every NBL.
    pub fn pause(&self) -> NDIS_STATUS {
        self.running.store(false, Ordering::Release);
        let mut gate = self.receive_gate.lock();
        gate.running = false;
        if gate.outstanding == 0 {
            NDIS_STATUS_SUCCESS
        } else {
            gate.pause_pending = true;
            NDIS_STATUS_PENDING
        }
    }

    /// MiniportRestartEx.
    pub fn restart(&self) -> NDIS_STATUS {
        self.receive_gate.lock().running = true;
        self.running.store(true, Ordering::Release);
        NDIS_STATUS_SUCCESS
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

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}
