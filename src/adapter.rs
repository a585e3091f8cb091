//! One adapter: what MiniportInitializeEx builds and MiniportHaltEx takes down, its state, and
//! the one registration of rings it may have.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use crate::device;
use crate::offload::{OffloadState, Offloads, SendOffloads};
use crate::oid::{self, MTU, OidAnswer, SUPPORTED_OIDS, Settings, Traffic};
use crate::receive::Receiver;
use crate::rings::{
    Caller, Owner, Registration, RegistrationIoctl, RegistrationRequest, RegistrationSlot,
    complete_large_send,
};
use crate::statistics::Counters;
use crate::sys::*;

/// The link speed reported both ways. A virtual link has none of its own; a high figure keeps
/// the stack from throttling what the VPN can carry.
pub const LINK_SPEED: u64 = 100_000_000_000;

pub struct Adapter {
    /// NDIS's handle for the adapter.
    pub miniport: NDIS_HANDLE,
    /// The adapter's functional device object, where the ring IOCTL arrives.
    pub device: DeviceObject,
    /// Held by each send call; run down (refusing sends) from MiniportPause to
    /// MiniportRestartEx, so pause returns only once every send call under way has completed
    /// its NBLs, as NDIS requires of a pausing miniport ("Pausing an Adapter", NDIS
    /// documentation).
    sending: Rundown,
    settings: Settings,
    /// The task offloads: what the keywords and the stack enable, and whether a client that
    /// takes them is registered. Changed at PASSIVE_LEVEL only, each change indicated while the
    /// lock is held, so NDIS sees them in the order they happen.
    offloads: PassiveLock<OffloadState>,
    /// The send path's share of the offload state ([`SendOffloads`]), changed under `offloads`.
    send_offloads: AtomicU32,
    sent: Counters,
    receiver: Receiver,
    registration: RegistrationSlot,
    /// Held by whoever reaches the adapter from outside NDIS (the dispatch routines, the process
    /// notify routine); halt waits for them once the adapter is unreachable (see `device`).
    pub users: Rundown,
    /// The next adapter in the driver's list (see `device`), changed under the list's lock.
    pub next: AtomicPtr<Adapter>,
}

// SAFETY: the NDIS handle and the device object are kernel objects usable from any thread; the
// rest is locks, atomics and events.
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
        let device = DeviceObject::from_raw(device).ok_or(NDIS_STATUS_FAILURE)?;
        // SAFETY: NDIS's handle for this adapter, in MiniportInitializeEx.
        let receiver = unsafe { Receiver::new(miniport) }?;
        // SAFETY: as above.
        let enabled = unsafe { read_offload_keywords(miniport) };
        let adapter = PoolBox::new(Adapter {
            miniport,
            device,
            sending: Rundown::new(),
            settings: Settings::new(),
            offloads: PassiveLock::new(OffloadState::new(enabled)),
            send_offloads: AtomicU32::new(OffloadState::new(enabled).send().bits()),
            sent: Counters::default(),
            receiver,
            registration: RegistrationSlot::new(),
            users: Rundown::new(),
            next: AtomicPtr::new(null_mut()),
        })
        .ok_or(NDIS_STATUS_RESOURCES)?;
        // Paused until NDIS restarts it.
        adapter.sending.wait_for_release();
        adapter.receiver.initialize();
        adapter.registration.initialize();
        adapter.offloads.initialize();
        adapter.set_registration_attributes()?;
        adapter.set_general_attributes()?;
        adapter.set_offload_attributes()?;
        adapter.indicate_link_state(MediaConnectStateDisconnected);
        device::attach(&adapter);
        Ok(adapter)
    }

    /// MiniportHaltEx: the adapter's last moment.
    pub fn halt(adapter: PoolBox<Adapter>) {
        device::detach(&adapter);
        drop(adapter.end_registration(Owner::Any));
        adapter.receiver.free_cached_nbls();
        drop(adapter);
    }

    /// Either ring IOCTL: one registration at a time.
    pub fn register_rings(
        &self,
        input: &[u8],
        ioctl: RegistrationIoctl,
        caller: Caller,
    ) -> NTSTATUS {
        let owner_file = caller.file.identity();
        let Some(claim) = self.registration.claim(owner_file) else {
            return STATUS_ALREADY_INITIALIZED;
        };
        let request = match RegistrationRequest::decode(input, ioctl, caller.width) {
            Ok(request) => request,
            Err(status) => return status,
        };
        let registration = match Registration::new(request, caller) {
            Ok(registration) => registration,
            Err(status) => return status,
        };
        let Some(mut registration) = PoolBox::new(registration) else {
            return STATUS_INSUFFICIENT_RESOURCES;
        };
        let ring = registration.receive_ring().expect("a new registration's");
        let takes_headers = registration.takes_headers();
        if self.receiver.start(ring).is_err() {
            // As Wintun answers a receive thread that could not start.
            return NDIS_STATUS_FAILURE;
        }
        // Before the registration is published: once it is, another thread may end it (its
        // handle's cleanup, a removal), and its end must find the offloads it takes out of force
        // already in force, or they would stay in force with no client.
        if takes_headers {
            self.set_header_client(true);
        }
        if claim.publish(registration) {
            // Its owner's handle closed meanwhile, and found nothing to end: it ends now. The
            // IOCTL succeeded, and the client sees the end in its rings, as it would had the
            // close come a moment later.
            drop(self.end_registration(Owner::File(owner_file)));
            return STATUS_SUCCESS;
        }
        self.indicate_link_state(MediaConnectStateConnected);
        STATUS_SUCCESS
    }

    /// A client that takes the per-packet header came or went: the offloads the keywords and
    /// the stack enable come into force, or go out of it. At PASSIVE_LEVEL.
    fn set_header_client(&self, registered: bool) {
        let state = self.offloads.enter();
        let next = OffloadState {
            header_client: registered,
            ..state.get()
        };
        self.apply_offloads(&state, next);
    }

    /// Whether a registration of `owner` lives or is ending.
    pub fn has_registration_of(&self, owner: Owner) -> bool {
        self.registration.is_held_by(owner)
    }

    /// Ends the registration if `owner` names it: the one path for every trigger (the owner's
    /// handle closing, the owner exiting, removal, halt). The client sees the end (the send
    /// ring's Tail becomes 0xFFFFFFFF and its event is set); then the receive thread stops, NDIS
    /// gives back every NBL pointing into the receive ring, and both rings are unmapped and
    /// unlocked. Returns a reference to the owner's file object if the owner is a user-mode
    /// process, for whoever must close its handles (a kernel component's handles are kernel
    /// handles, which are its own to close). At PASSIVE_LEVEL.
    pub fn end_registration(&self, owner: Owner) -> Option<Option<FileReference>> {
        let mut ending = self.registration.take(owner)?;
        self.indicate_link_state(MediaConnectStateDisconnected);
        ending.registration().close();
        self.receiver.stop();
        let registration = ending.registration();
        if registration.takes_headers() {
            // Before the slot is empty again: the next registration finds nothing in force.
            self.set_header_client(false);
        }
        let owner_file = registration
            .owned_from_user_mode()
            .then(|| registration.owner_file().try_clone());
        drop(ending);
        Some(owner_file)
    }

    /// Like [`Adapter::end_registration`], and if another thread is already ending the
    /// registration of `owner`, waits until it has: the owner's exit may not return before the
    /// pages it locked are unlocked (bug check 0x76, PROCESS_HAS_LOCKED_PAGES).
    pub fn end_registration_and_wait(&self, owner: Owner) {
        if self.end_registration(owner).is_none() {
            self.registration.wait_ended(owner);
        }
    }

    /// MiniportPause: no more sends to the ring or indications; returns once the send calls
    /// and indications under way have, and is done once NDIS has returned every NBL.
    pub fn pause(&self) -> NDIS_STATUS {
        self.sending.wait_for_release();
        self.receiver.pause()
    }

    /// MiniportRestartEx.
    pub fn restart(&self) -> NDIS_STATUS {
        self.receiver.restart();
        // SAFETY: the adapter is paused (NDIS restarts only a paused adapter, and never while
        // it pauses it), so the pause's wait has returned and nothing else waits or restarts.
        unsafe { self.sending.reinitialize() };
        NDIS_STATUS_SUCCESS
    }

    /// MiniportSendNetBufferLists: every NBL is completed, written to the send ring or failed
    /// with the reason.
    pub fn send(&self, chain: NblChain, at_dispatch: bool) {
        let running = self.sending.acquire();
        let status = if running.is_none() {
            NDIS_STATUS_PAUSED
        } else if let Some(rings) = self.registration.acquire() {
            let allowed = SendOffloads::from_bits(self.send_offloads.load(Ordering::Acquire));
            rings.send(&chain, &self.sent, allowed);
            NDIS_STATUS_SUCCESS
        } else {
            NDIS_STATUS_MEDIA_DISCONNECTED
        };
        for nbl in chain.iter() {
            if status != NDIS_STATUS_SUCCESS {
                nbl.set_status(status);
            }
            // Every LSOv2 NBL, sent or failed here, paused or without a client.
            complete_large_send(&nbl);
        }
        // SAFETY: the chain was sent to this adapter, whose NDIS handle this is.
        unsafe { chain.complete_send(self.miniport, at_dispatch) };
        drop(running);
    }

    /// MiniportReturnNetBufferLists.
    pub fn return_nbls(&self, nbls: NblList) {
        self.receiver.return_nbls(nbls);
    }

    /// A query OID request.
    pub fn query(&self, oid: NDIS_OID, buffer: &mut [u8]) -> oid::OidAnswer {
        let traffic = Traffic {
            sent: &self.sent,
            received: &self.receiver.counters,
        };
        oid::query(&self.settings, traffic, oid, buffer)
    }

    /// A set OID request.
    pub fn set(&self, oid: NDIS_OID, buffer: &[u8]) -> OidAnswer {
        match oid {
            OID_TCP_OFFLOAD_PARAMETERS => {
                let read = buffer.len().min(size_of::<NDIS_OFFLOAD_PARAMETERS>());
                self.change_offloads(read, |state| {
                    let enabled = state.enabled.with_parameters(buffer)?;
                    Ok(OffloadState { enabled, ..state })
                })
            }
            OID_OFFLOAD_ENCAPSULATION => self.change_offloads(
                NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1.into(),
                |state| state.with_encapsulation(buffer),
            ),
            _ => oid::set(&self.settings, oid, buffer),
        }
    }

    /// Applies an OID's change to the offloads and reports the current configuration, as both
    /// offload OIDs require of a set that succeeds ("After the update, the miniport driver must
    /// report the current task offload capabilities with the NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG
    /// status indication", OID_TCP_OFFLOAD_PARAMETERS and OID_OFFLOAD_ENCAPSULATION). At
    /// PASSIVE_LEVEL.
    fn change_offloads(
        &self,
        read: usize,
        change: impl FnOnce(OffloadState) -> Result<OffloadState, OidAnswer>,
    ) -> OidAnswer {
        let state = self.offloads.enter();
        match change(state.get()) {
            Ok(next) => {
                self.apply_offloads(&state, next);
                OidAnswer::done(read)
            }
            Err(answer) => answer,
        }
    }

    /// Puts `next` in force and reports it, the offloads' lock (`state`) held or entered again:
    /// what the receive path loses it stops saying before the report, what it gains it says only
    /// after ([`Receiver::set_offloads`]); the send path's share changes before the report, so a
    /// send call that begins after the OID that turned a large send off drops such sends (one
    /// already under way may still carry one through: the window the LSO page warns of).
    ///
    /// The report may come back into the driver on this thread: a filter's status handler that
    /// issues an offload OID request before it passes the report on. That request enters the
    /// lock again, puts its change in force and reports it from inside this report; the stack
    /// then sees this older report after it. So once the report returns, if the state moved
    /// under it, the state now is reported again, until a report leaves it as it was.
    fn apply_offloads(&self, state: &PassiveLockGuard<'_, OffloadState>, next: OffloadState) {
        self.receiver
            .set_offloads(self.receiver.offloads().and(next.receive()));
        self.send_offloads
            .store(next.send().bits(), Ordering::Release);
        state.set(next);
        let mut reported = next;
        loop {
            self.indicate_offloads(reported.current());
            let now = state.get();
            if now == reported {
                break;
            }
            reported = now;
        }
        self.receiver.set_offloads(reported.receive());
    }

    /// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG with `current`.
    fn indicate_offloads(&self, current: Offloads) {
        let mut offload = current.to_ndis();
        // SAFETY: the adapter's handle, set up before any indication.
        unsafe {
            indicate_status(
                self.miniport,
                NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
                &mut offload,
            )
        };
    }

    /// The offload attributes ("Reporting a miniport adapter's task offload capabilities" at
    /// initialization, NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES): every offload the driver has as
    /// its hardware capabilities, whatever the keywords say ("These capabilities include
    /// capabilities that are currently disabled by standardized keywords"), and as the current
    /// configuration what is in force now, which is nothing: no client is registered yet.
    fn set_offload_attributes(&self) -> Result<(), NDIS_STATUS> {
        let mut hardware = Offloads::ALL.to_ndis();
        let mut current = self.offloads.enter().get().current().to_ndis();
        let mut attributes = NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
                Revision: NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
                Size: NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
            },
            DefaultOffloadConfiguration: &mut current,
            HardwareOffloadCapabilities: &mut hardware,
            DefaultTcpConnectionOffloadConfiguration: null_mut(),
            TcpConnectionOffloadHardwareCapabilities: null_mut(),
        };
        // SAFETY: the adapter handle and attributes (and the structures they point to) that
        // live through the call.
        let status = unsafe { NdisMSetMiniportAttributes(self.miniport, &mut attributes.Header) };
        if status == NDIS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
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
        // Miniports of NDIS 6.20 and later report their power management here ("Reporting Power
        // Management Capabilities", Microsoft's NDIS documentation): a virtual link wakes
        // nothing, as Wintun reports too.
        let mut power_management = NDIS_PM_CAPABILITIES {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: NDIS_PM_CAPABILITIES_REVISION_2,
                Size: NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2,
            },
            MinMagicPacketWakeUp: NdisDeviceStateUnspecified,
            MinPatternWakeUp: NdisDeviceStateUnspecified,
            MinLinkChangeWakeUp: NdisDeviceStateUnspecified,
            ..NDIS_PM_CAPABILITIES::default()
        };
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
            PowerManagementCapabilitiesEx: &raw mut power_management,
        };
        // SAFETY: the adapter handle and attributes (and the capabilities they point to) that
        // live through the call; the OID list is static.
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
        // SAFETY: the adapter's handle, set up before any indication; at PASSIVE_LEVEL.
        unsafe { indicate_status(self.miniport, NDIS_STATUS_LINK_STATE, &mut link) };
    }
}

/// The offloads the adapter's standardized keywords allow ("The miniport driver must read all of
/// the granular settings from the registry at initialization", "Using Registry Values to Enable
/// and Disable Task Offloading"); each keyword's default if the configuration cannot be opened.
///
/// # Safety
/// `miniport` is NDIS's handle for the adapter, in MiniportInitializeEx.
unsafe fn read_offload_keywords(miniport: NDIS_HANDLE) -> Offloads {
    // SAFETY: as the function's contract says.
    let configuration = unsafe { AdapterConfiguration::open(miniport) };
    Offloads::from_keywords(|keyword| configuration.as_ref()?.read_integer(keyword))
}
