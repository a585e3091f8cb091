//! Layer: ndis, on top of the kernel. It calls io, mm, ke and bookkeeping.
//!
//! NDIS: the miniport driver's registration, its adapters' life cycle (initialize, restart,
//! pause, halt, surprise removal), OID requests, status indications, NBL pools and sends.
//!
//! NDIS handles given to the driver point at blocks owned here; every handle the driver hands
//! back is checked against the live ones.

// The exports below are the kernel's own functions: their safety contracts are the ones
// Microsoft documents, and checking them is this module's job.
#![allow(clippy::missing_safety_doc)]

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::mem::{offset_of, size_of};
use std::ptr::null_mut;
use std::sync::Mutex;

use oxtun_driver::sys::*;
use oxtun_sim_macros::kernel_export;

mod config;
mod offload;

pub use config::{Registry, RegistryValue};
use offload::SentOffload;
pub use offload::{
    Checksums, OffloadRecord, Offloads, ReceivedOffloads, Segmentation, SendOffload, SendTiming,
    TurnedOff, stack_may_send,
};

use crate::bookkeeping::faults::{Site, should_fail};
use crate::bookkeeping::verifier::{house_rule, unsupported, violation};
use crate::io;
use crate::ke::irql;

/// Status values NDIS returns that the driver itself never uses.
const NDIS_STATUS_BAD_VERSION: NDIS_STATUS = 0xC001_0004_u32 as i32;
const NDIS_STATUS_INVALID_PARAMETER: NDIS_STATUS = 0xC000_000D_u32 as i32;
/// The `NblFlags` that describe a packet (ndis/nbl.h, `#define NDIS_NBL_FLAGS_HD_SPLIT
/// 0x00000100` and the next six): its IP version, transport and header-data split.
const NDIS_NBL_FLAGS_HD_SPLIT: ULONG = 0x100;
const NDIS_NBL_FLAGS_IS_TCP: ULONG = 0x800;
const NDIS_NBL_FLAGS_IS_UDP: ULONG = 0x1000;
const NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER: ULONG = 0x2000;
const NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD: ULONG = 0x4000;
/// "Bits 0x04 to 0x80 are reserved for use by NDIS" (ndis/nbl.h, after
/// `NDIS_NBL_FLAGS_RECV_READ_ONLY`).
const NBL_FLAGS_RESERVED_FOR_NDIS: ULONG = 0xFC;
/// The bit of those the simulated NDIS sets on every NBL it allocates, as NDIS may: a miniport
/// that overwrites `NblFlags` instead of setting and clearing its own flags loses it.
pub const NDIS_ALLOCATION_FLAG: ULONG = 0x20;
/// The receive flags besides DISPATCH_LEVEL that the driver does not use, as the WDK's NDIS
/// headers define them (`#define NDIS_RECEIVE_FLAGS_RESOURCES 0x00000002` and the next).
const NDIS_RECEIVE_FLAGS_RESOURCES: ULONG = 0x2;
const NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE: ULONG = 0x100;
const NDIS_RECEIVE_FLAGS_SINGLE_VLAN: ULONG = 0x200;
const NDIS_RECEIVE_FLAGS_PERFECT_FILTERED: ULONG = 0x400;
/// `NDIS_DEFAULT_PORT_NUMBER` (ndis.h): the port every miniport has.
const NDIS_DEFAULT_PORT_NUMBER: NDIS_PORT_NUMBER = 0;

/// What NDIS installs in a miniport's driver object: its dispatch routines and unload routine.
pub(crate) fn install_ndis_dispatch(object: PDRIVER_OBJECT) {
    // SAFETY: a live driver object of ours, not otherwise in use during registration.
    let object = unsafe { &mut *object };
    for slot in object.MajorFunction.iter_mut() {
        *slot = Some(ndis_dispatch);
    }
    object.DriverUnload = Some(ndis_unload);
}

/// IRPs that reached NDIS's own dispatch routine, by major function.
static NDIS_DISPATCHED: Mutex<BTreeMap<u8, u64>> = Mutex::new(BTreeMap::new());

pub fn ndis_dispatched(major: usize) -> u64 {
    NDIS_DISPATCHED
        .lock()
        .unwrap()
        .get(&(major as u8))
        .copied()
        .unwrap_or(0)
}

/// NDIS's own dispatch routine: opens, cleanups, closes and PnP succeed; it knows no IOCTL.
unsafe extern "efiapi" fn ndis_dispatch(_device: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager (this module) passes a live IRP with its stack location.
    let major = unsafe { (*(*irp).CurrentStackLocation).MajorFunction };
    *NDIS_DISPATCHED.lock().unwrap().entry(major).or_default() += 1;
    let status = if major as usize == IRP_MJ_DEVICE_CONTROL {
        STATUS_INVALID_DEVICE_REQUEST
    } else {
        STATUS_SUCCESS
    };
    // SAFETY: the live IRP, completed once.
    unsafe {
        (*irp).IoStatus.Status = status;
        IofCompleteRequest(irp, 0);
    }
    status
}

/// NDIS's unload routine: calls the miniport's, which deregisters.
unsafe extern "efiapi" fn ndis_unload(object: PDRIVER_OBJECT) {
    // DriverUnload (wdm.h, DRIVER_UNLOAD): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "DriverUnload");
    if let Some(unload) = handlers().and_then(|handlers| handlers.unload) {
        // SAFETY: the driver's unload handler with its driver object.
        unsafe { unload(object) };
    }
}

/// The handlers a miniport registered, copied as NDIS copies them.
#[derive(Clone, Copy)]
pub struct Handlers {
    pub initialize: MINIPORT_INITIALIZE_HANDLER,
    pub halt: MINIPORT_HALT_HANDLER,
    pub unload: Option<MINIPORT_DRIVER_UNLOAD>,
    pub pause: MINIPORT_PAUSE_HANDLER,
    pub restart: MINIPORT_RESTART_HANDLER,
    pub oid_request: MINIPORT_OID_REQUEST_HANDLER,
    pub send: MINIPORT_SEND_NET_BUFFER_LISTS_HANDLER,
    pub return_nbls: MINIPORT_RETURN_NET_BUFFER_LISTS_HANDLER,
    pub cancel_send: MINIPORT_CANCEL_SEND_HANDLER,
    pub device_pnp_event_notify: MINIPORT_DEVICE_PNP_EVENT_NOTIFY_HANDLER,
    pub shutdown: MINIPORT_SHUTDOWN_HANDLER,
    pub cancel_oid_request: MINIPORT_CANCEL_OID_REQUEST_HANDLER,
}

struct MiniportDriver {
    handlers: Handlers,
    context: NDIS_HANDLE,
}

// SAFETY: the driver's context is an opaque value NDIS passes back; nothing here dereferences it.
unsafe impl Send for MiniportDriver {}

static DRIVER: Mutex<Option<MiniportDriver>> = Mutex::new(None);
/// The handle given for the registered driver; only its address matters.
static DRIVER_HANDLE_TARGET: u8 = 0;

fn driver_handle() -> NDIS_HANDLE {
    (&raw const DRIVER_HANDLE_TARGET).cast_mut().cast()
}

/// The registered miniport's handlers, or a violation if none is registered.
pub fn handlers() -> Option<Handlers> {
    let driver = DRIVER.lock().unwrap();
    if driver.is_none() {
        // A check on the simulator's own use: NDIS calls a miniport only after it registered.
        violation("no miniport driver is registered");
    }
    driver.as_ref().map(|driver| driver.handlers)
}

pub fn driver_registered() -> bool {
    DRIVER.lock().unwrap().is_some()
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMRegisterMiniportDriver(
    driver_object: PDRIVER_OBJECT,
    _registry_path: PUNICODE_STRING,
    context: NDIS_HANDLE,
    characteristics: *const NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
    handle: PNDIS_HANDLE,
) -> NDIS_STATUS {
    // NdisMRegisterMiniportDriver (ndis.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisMRegisterMiniportDriver");
    if !io::is_driver_object(driver_object) {
        // DriverObject is "a pointer to an opaque driver object that the miniport driver received in its
        // DriverEntry routine" (NdisMRegisterMiniportDriver).
        violation("NdisMRegisterMiniportDriver with a foreign driver object");
        return NDIS_STATUS_FAILURE;
    }
    // SAFETY: the driver passes its characteristics structure; NDIS reads it during the call.
    let chars = unsafe { &*characteristics };
    let header = chars.Header;
    // The revisions and the size each must give (NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
    // Microsoft's NDIS documentation: revision 1 for NDIS 6.0, 2 adds the direct OID handlers
    // for 6.1, 3 adds SynchronousOidRequestHandler for 6.80; ndis.h's
    // NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_n, the size through the last field of
    // each). The simulator reads only the handlers of revision 1.
    let least_size = match header.Revision {
        1 => offset_of!(
            NDIS_MINIPORT_DRIVER_CHARACTERISTICS,
            DirectOidRequestHandler
        ),
        NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2 => {
            usize::from(NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2)
        }
        NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3 => {
            usize::from(NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3)
        }
        _ => usize::MAX,
    };
    if header.Type != NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS
        || usize::from(header.Size) < least_size
    {
        // NdisMRegisterMiniportDriver reads the characteristics its Header's Type, Revision and Size
        // describe (NDIS_MINIPORT_DRIVER_CHARACTERISTICS: Type
        // NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS, Size for the revision).
        violation(format!("bad characteristics header {header:?}"));
        return NDIS_STATUS_FAILURE;
    }
    if chars.MajorNdisVersion != 6 {
        return NDIS_STATUS_BAD_VERSION;
    }
    if chars.MinorNdisVersion < 20 {
        unsupported(format!(
            "an NDIS 6.{} miniport: the simulator models NDIS 6.20 and later",
            chars.MinorNdisVersion
        ));
        return NDIS_STATUS_BAD_VERSION;
    }
    let required = |name: &str, present: bool| {
        if !present {
            // The handlers NDIS_MINIPORT_DRIVER_CHARACTERISTICS marks "Required" for a miniport.
            violation(format!("required handler {name} missing"));
        }
        present
    };
    let all_present = [
        required("InitializeHandlerEx", chars.InitializeHandlerEx.is_some()),
        required("HaltHandlerEx", chars.HaltHandlerEx.is_some()),
        required("PauseHandler", chars.PauseHandler.is_some()),
        required("RestartHandler", chars.RestartHandler.is_some()),
        required("OidRequestHandler", chars.OidRequestHandler.is_some()),
        required(
            "SendNetBufferListsHandler",
            chars.SendNetBufferListsHandler.is_some(),
        ),
        required(
            "ReturnNetBufferListsHandler",
            chars.ReturnNetBufferListsHandler.is_some(),
        ),
        required("CancelSendHandler", chars.CancelSendHandler.is_some()),
        required(
            "DevicePnPEventNotifyHandler",
            chars.DevicePnPEventNotifyHandler.is_some(),
        ),
        required("ShutdownHandlerEx", chars.ShutdownHandlerEx.is_some()),
        required(
            "CancelOidRequestHandler",
            chars.CancelOidRequestHandler.is_some(),
        ),
    ]
    .into_iter()
    .all(|present| present);
    if !all_present {
        return NDIS_STATUS_FAILURE;
    }
    let mut driver = DRIVER.lock().unwrap();
    if driver.is_some() {
        // A driver registers once, in DriverEntry, and deregisters in its unload routine
        // (NdisMRegisterMiniportDriver, NdisMDeregisterMiniportDriver).
        violation("NdisMRegisterMiniportDriver called twice");
        return NDIS_STATUS_FAILURE;
    }
    *driver = Some(MiniportDriver {
        handlers: Handlers {
            initialize: chars.InitializeHandlerEx.unwrap(),
            halt: chars.HaltHandlerEx.unwrap(),
            unload: chars.UnloadHandler,
            pause: chars.PauseHandler.unwrap(),
            restart: chars.RestartHandler.unwrap(),
            oid_request: chars.OidRequestHandler.unwrap(),
            send: chars.SendNetBufferListsHandler.unwrap(),
            return_nbls: chars.ReturnNetBufferListsHandler.unwrap(),
            cancel_send: chars.CancelSendHandler.unwrap(),
            device_pnp_event_notify: chars.DevicePnPEventNotifyHandler.unwrap(),
            shutdown: chars.ShutdownHandlerEx.unwrap(),
            cancel_oid_request: chars.CancelOidRequestHandler.unwrap(),
        },
        context,
    });
    drop(driver);
    // Like NDIS, take over the driver object's dispatch table and unload routine.
    install_ndis_dispatch(driver_object);
    // SAFETY: the driver's out parameter.
    unsafe { *handle = driver_handle() };
    NDIS_STATUS_SUCCESS
}

#[kernel_export]
pub extern "efiapi" fn NdisMDeregisterMiniportDriver(handle: NDIS_HANDLE) {
    // NdisMDeregisterMiniportDriver (ndis.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisMDeregisterMiniportDriver");
    if handle != driver_handle() {
        // NdisMDeregisterMiniportDriver takes the handle NdisMRegisterMiniportDriver returned.
        violation(format!(
            "NdisMDeregisterMiniportDriver with unknown handle {handle:p}"
        ));
        return;
    }
    if !ADAPTERS.lock().unwrap().is_empty() {
        // A miniport deregisters from its unload routine, which NDIS calls once every adapter has
        // halted (MiniportDriverUnload; "Unloading a Miniport Driver").
        violation("NdisMDeregisterMiniportDriver while adapters exist");
    }
    if DRIVER.lock().unwrap().take().is_none() {
        // Deregistering twice (NdisMDeregisterMiniportDriver undoes one registration).
        violation("NdisMDeregisterMiniportDriver of a driver not registered");
    }
}

/// Where an adapter is in NDIS's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterState {
    Initializing,
    Paused,
    /// MiniportPause returned NDIS_STATUS_PENDING; NdisMPauseComplete has not come yet.
    Pausing,
    Running,
    Halted,
}

/// When the simulated stack gives indicated NBLs back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnMode {
    /// Within the indication, as a stack that consumed them at once.
    Immediately,
    /// When the test says ([`crate::Adapter::return_held`]).
    Hold,
    /// Within the next indication, after NDIS has asked another thread to pause the adapter and
    /// that pause has returned (or 100 ms have passed): the order in which a pause can complete
    /// inside an indication. The adapter pauses once; then the mode is `Immediately`.
    PauseDuringIndication,
}

/// A packet the simulated stack received from the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub data: Vec<u8>,
    /// Where the data's first byte is: in the client's ring, for a zero-copy indication.
    pub address: usize,
    pub nbl_flags: u32,
    /// The frame type, in host order (0x0800 or 0x86DD).
    pub ether_type: u16,
    /// What the NBL says of the packet's checksums and coalescing.
    pub offloads: ReceivedOffloads,
}

/// A packet the simulated stack takes from an indication, for a [`ReceiveSink`]: borrowed
/// until the NBL that carries it is returned.
#[derive(Clone, Copy, Debug)]
pub struct Indicated<'a> {
    /// Its bytes where they lie, one slice per MDL of its NET_BUFFER (one, unless the driver
    /// split the packet, its headers in one MDL and its payload in the next).
    pub pieces: &'a [&'a [u8]],
    /// What its NBL says of its checksums (valid, failed) and whether it is a coalesced unit
    /// (NDIS_RSC_NBL_INFO): what an upper edge that passes packets on needs to say the same.
    pub offloads: ReceivedOffloads,
}

impl<'a> Indicated<'a> {
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|piece| piece.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `len` bytes (all, if the packet is shorter) in one slice: borrowed where the
    /// first piece holds them, else copied.
    pub fn head(&self, len: usize) -> Cow<'a, [u8]> {
        match self.pieces.first() {
            Some(first) if first.len() >= len || self.pieces.len() == 1 => {
                Cow::Borrowed(&first[..len.min(first.len())])
            }
            _ => {
                let mut head = Vec::with_capacity(len);
                for piece in self.pieces {
                    let take = piece.len().min(len - head.len());
                    head.extend_from_slice(&piece[..take]);
                }
                Cow::Owned(head)
            }
        }
    }

    /// The whole packet in one slice: borrowed if it lies in one piece, else copied.
    pub fn contiguous(&self) -> Cow<'a, [u8]> {
        match self.pieces {
            [] => Cow::Borrowed(&[]),
            [only] => Cow::Borrowed(only),
            pieces => Cow::Owned(pieces.concat()),
        }
    }
}

/// The receive side of an adapter, as NDIS sees it.
pub struct ReceiveSide {
    pub mode: ReturnMode,
    /// NBLs indicated and not returned, oldest first, that the test returns.
    pub held: Vec<usize>,
    /// NBLs indicated in [`ReturnMode::Immediately`], being returned within the indication.
    pub returning: Vec<usize>,
    pub received: std::collections::VecDeque<Received>,
    /// NBLs per indication, in order, while recording.
    pub indications: Vec<u32>,
    /// Indications so far, recorded or not.
    pub indication_count: u64,
    /// Whether indicated packets are read and kept (or only counted, for benchmarks).
    pub recording: bool,
    /// Packets indicated, recorded or not.
    pub packets: u64,
    /// Where indicated packets go instead of being recorded (the emulator's upper edge).
    pub sink: Option<ReceiveSink>,
}

/// Takes the packets of each indication, in place of the recording: borrowed where the
/// indicated NBLs describe them (the driver's receive ring), before the NBLs are returned.
pub type ReceiveSink = std::sync::Arc<dyn Fn(&[Indicated<'_>]) + Send + Sync>;

/// What the driver told NDIS about an adapter.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pub context: usize,
    pub attribute_flags: u32,
    pub interface_type: u32,
    pub general: Option<General>,
}

/// The general attributes NDIS keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct General {
    pub media_type: u32,
    pub physical_medium: u32,
    pub mtu: u32,
    pub xmit_link_speed: u64,
    pub rcv_link_speed: u64,
    pub media_connect_state: u32,
    pub media_duplex_state: u32,
    pub lookahead: u32,
    pub mac_options: u32,
    pub packet_filters: u32,
    pub mac_address_length: u16,
    pub access_type: u32,
    pub direction_type: u32,
    pub connection_type: u32,
    pub if_type: u16,
    pub connector_present: bool,
    pub supported_statistics: u32,
    pub supported_oids: Vec<u32>,
}

/// NDIS's block for one adapter; the miniport adapter handle points at it.
pub struct AdapterBlock {
    pub state: Mutex<AdapterState>,
    /// Calls of NdisMIndicateReceiveNetBufferLists under way.
    pub indicating: std::sync::atomic::AtomicU32,
    /// Pause the adapter from another thread inside the next NdisMSendNetBufferListsComplete,
    /// before its NBLs count as completed: the order in which a pause can return while a send
    /// call is under way.
    pub pause_during_send_completion: std::sync::atomic::AtomicBool,
    pub state_changed: std::sync::Condvar,
    pub receive: Mutex<ReceiveSide>,
    pub received_changed: std::sync::Condvar,
    pub attributes: Mutex<Attributes>,
    pub link_state: Mutex<Option<NDIS_LINK_STATE>>,
    /// The adapter's registry key, which NdisReadConfiguration reads.
    pub registry: Mutex<Registry>,
    /// What NDIS knows of the adapter's task offloads.
    pub offloads: Mutex<OffloadRecord>,
    pub device: *mut DEVICE_OBJECT,
}

// SAFETY: the device object is owned by the block and only used through raw pointers by the
// driver and the simulated I/O manager.
unsafe impl Send for AdapterBlock {}
// SAFETY: as for Send; all mutable state is behind mutexes.
unsafe impl Sync for AdapterBlock {}

/// Live adapter handles (addresses of their blocks).
static ADAPTERS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());
/// Live NBL pools, with the adapter handle each was allocated for.
static NBL_POOLS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

pub fn nbl_pools_outstanding() -> usize {
    NBL_POOLS.lock().unwrap().len()
}

/// The adapter block behind a handle the driver passed, or a violation.
fn block<'a>(handle: NDIS_HANDLE, what: &str) -> Option<&'a AdapterBlock> {
    if !ADAPTERS.lock().unwrap().contains(&(handle as usize)) {
        // NDIS handles given to a miniport name live adapters: the MiniportAdapterHandle NDIS passed
        // to MiniportInitializeEx (each NdisM function's page); after halt the handle is gone.
        violation(format!("{what} with unknown adapter handle {handle:p}"));
        return None;
    }
    // SAFETY: the handle is a live block: blocks leave the set before they are freed.
    Some(unsafe { &*handle.cast::<AdapterBlock>() })
}

/// Creates an adapter block, with `registry` as its registry key, and its device object; the
/// handle stays valid until [`free_adapter`].
pub fn new_adapter(registry: Registry) -> NDIS_HANDLE {
    let device = io::new_device_object();
    let block = Box::new(AdapterBlock {
        state: Mutex::new(AdapterState::Initializing),
        indicating: std::sync::atomic::AtomicU32::new(0),
        pause_during_send_completion: std::sync::atomic::AtomicBool::new(false),
        state_changed: std::sync::Condvar::new(),
        receive: Mutex::new(ReceiveSide {
            mode: ReturnMode::Immediately,
            held: Vec::new(),
            returning: Vec::new(),
            received: std::collections::VecDeque::new(),
            indications: Vec::new(),
            indication_count: 0,
            recording: true,
            packets: 0,
            sink: None,
        }),
        received_changed: std::sync::Condvar::new(),
        attributes: Mutex::new(Attributes::default()),
        link_state: Mutex::new(None),
        registry: Mutex::new(registry),
        offloads: Mutex::new(OffloadRecord::default()),
        device,
    });
    let handle = Box::into_raw(block);
    ADAPTERS.lock().unwrap().insert(handle as usize);
    handle.cast()
}

/// The adapter's block.
pub fn adapter_block<'a>(handle: NDIS_HANDLE) -> &'a AdapterBlock {
    block(handle, "the simulator").expect("a live adapter")
}

pub fn free_adapter(handle: NDIS_HANDLE) {
    ADAPTERS.lock().unwrap().remove(&(handle as usize));
    let open = CONFIGURATIONS
        .lock()
        .unwrap()
        .values()
        .filter(|open| open.adapter == handle as usize)
        .count();
    if open != 0 {
        // A miniport "can use the configuration handle until NDIS halts the miniport adapter
        // and the MiniportHaltEx function returns" (NdisOpenConfigurationEx), and "must call the
        // NdisCloseConfiguration function to release the configuration handle and related
        // resources" when done.
        violation(format!(
            "the adapter halted with {open} configuration handles open"
        ));
    }
    // SAFETY: created by new_adapter and no longer in the live set.
    let block = unsafe { Box::from_raw(handle.cast::<AdapterBlock>()) };
    io::free_device_object(block.device);
}

/// Calls the driver's MiniportInitializeEx for the adapter, at PASSIVE_LEVEL.
pub fn initialize(handle: NDIS_HANDLE, handlers: &Handlers) -> NDIS_STATUS {
    let driver_context = DRIVER.lock().unwrap().as_ref().map(|d| d.context);
    let mut parameters = InitParameters {
        header: NDIS_OBJECT_HEADER {
            Type: 0x81,
            Revision: 1,
            Size: size_of::<InitParameters>() as u16,
        },
        ..InitParameters::default()
    };
    let status = irql::call_at(PASSIVE_LEVEL, "MiniportInitializeEx", || {
        // SAFETY: the driver's own handler, with NDIS's arguments.
        unsafe {
            (handlers.initialize)(
                handle,
                driver_context.unwrap_or(null_mut()),
                (&raw mut parameters).cast(),
            )
        }
    });
    let block = adapter_block(handle);
    if status == NDIS_STATUS_SUCCESS {
        let attributes = block.attributes.lock().unwrap();
        if attributes.context == 0 || attributes.general.is_none() {
            // A miniport sets its registration and general attributes from MiniportInitializeEx
            // (NdisMSetMiniportAttributes; "Initializing a Miniport Adapter").
            violation("MiniportInitializeEx succeeded without registration and general attributes");
        }
        *block.state.lock().unwrap() = AdapterState::Paused;
    } else if status == NDIS_STATUS_PENDING {
        // MiniportInitializeEx returns NDIS_STATUS_SUCCESS or a failure status, not NDIS_STATUS_PENDING
        // (MINIPORT_INITIALIZE: its return values).
        violation("MiniportInitializeEx may not pend");
    }
    status
}

/// `NDIS_MINIPORT_INIT_PARAMETERS`: the driver does not read it, so `src/sys` leaves it opaque.
#[repr(C)]
#[derive(Default)]
struct InitParameters {
    header: NDIS_OBJECT_HEADER,
    flags: u32,
    allocated_resources: usize,
    im_device_instance_context: usize,
    miniport_add_device_context: usize,
    if_index: u32,
    net_luid: u64,
    default_port_auth_states: usize,
    pci_device_custom_properties: usize,
}
const _: () = assert!(size_of::<InitParameters>() == 0x40);

pub fn set_state(handle: NDIS_HANDLE, state: AdapterState) {
    let block = adapter_block(handle);
    *block.state.lock().unwrap() = state;
    block.state_changed.notify_all();
}

/// Waits until a pending pause completes.
pub fn wait_paused(handle: NDIS_HANDLE) {
    let block = adapter_block(handle);
    let state = block.state.lock().unwrap();
    let (state, timeout) = block
        .state_changed
        .wait_timeout_while(state, std::time::Duration::from_secs(30), |state| {
            *state == AdapterState::Pausing
        })
        .unwrap();
    if timeout.timed_out() {
        // "Pausing an Adapter": a pausing miniport calls NdisMPauseComplete once its outstanding sends
        // and receive indications are done.
        violation(format!("the pause never completed (state {:?})", *state));
    }
}

pub fn state(handle: NDIS_HANDLE) -> AdapterState {
    *adapter_block(handle).state.lock().unwrap()
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMSetMiniportAttributes(
    handle: NDIS_HANDLE,
    attributes: *mut NDIS_OBJECT_HEADER,
) -> NDIS_STATUS {
    // NdisMSetMiniportAttributes (ndis.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisMSetMiniportAttributes");
    let Some(block) = block(handle, "NdisMSetMiniportAttributes") else {
        return NDIS_STATUS_FAILURE;
    };
    if *block.state.lock().unwrap() != AdapterState::Initializing {
        // "A miniport driver must call the NdisMSetMiniportAttributes function from its
        // MiniportInitializeEx function" (NdisMSetMiniportAttributes).
        violation("NdisMSetMiniportAttributes outside MiniportInitializeEx");
        return NDIS_STATUS_FAILURE;
    }
    if should_fail(Site::NdisMSetMiniportAttributes) {
        return NDIS_STATUS_RESOURCES;
    }
    // SAFETY: every attributes structure starts with its header.
    let header = unsafe { *attributes };
    let mut recorded = block.attributes.lock().unwrap();
    match header.Type {
        NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES => {
            if header.Revision < 1
                || header.Size < NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2
            {
                // NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES: Revision and Size for the revision used
                // (ndis.h NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2).
                violation(format!("bad registration attributes header {header:?}"));
                return NDIS_STATUS_INVALID_PARAMETER;
            }
            // SAFETY: the header says this is the registration attributes structure.
            let registration =
                unsafe { &*attributes.cast::<NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES>() };
            if registration.MiniportAdapterContext.is_null() {
                // MiniportAdapterContext identifies the context area NDIS passes back to every MiniportXxx
                // function (NdisMSetMiniportAttributes).
                violation("registration attributes without an adapter context");
            }
            recorded.context = registration.MiniportAdapterContext as usize;
            recorded.attribute_flags = registration.AttributeFlags;
            recorded.interface_type = registration.InterfaceType;
        }
        NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES => {
            if recorded.context == 0 {
                // A miniport sets its general attributes after its registration attributes
                // (NdisMSetMiniportAttributes).
                violation("general attributes before registration attributes");
                return NDIS_STATUS_FAILURE;
            }
            if header.Revision != NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2
                || header.Size < NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2
            {
                // NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES: revision 2 for NDIS 6.20 and later (its page; ndis.h
                // NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2).
                violation(format!("bad general attributes header {header:?}"));
                return NDIS_STATUS_INVALID_PARAMETER;
            }
            // SAFETY: the header says this is the general attributes structure.
            let general =
                unsafe { &*attributes.cast::<NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES>() };
            check_power_management(general);
            let oid_count = general.SupportedOidListLength as usize / size_of::<NDIS_OID>();
            if general.SupportedOidListLength as usize % size_of::<NDIS_OID>() != 0 {
                // SupportedOidListLength is the length in bytes of the array of NDIS_OIDs at SupportedOidList
                // (NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES).
                violation("SupportedOidListLength is not a whole number of OIDs");
            }
            let supported_oids = if oid_count == 0 {
                Vec::new()
            } else {
                // SAFETY: the driver's list of oid_count OIDs, read during the call.
                unsafe { std::slice::from_raw_parts(general.SupportedOidList, oid_count) }.to_vec()
            };
            recorded.general = Some(General {
                media_type: general.MediaType,
                physical_medium: general.PhysicalMediumType,
                mtu: general.MtuSize,
                xmit_link_speed: general.XmitLinkSpeed,
                rcv_link_speed: general.RcvLinkSpeed,
                media_connect_state: general.MediaConnectState,
                media_duplex_state: general.MediaDuplexState,
                lookahead: general.LookaheadSize,
                mac_options: general.MacOptions,
                packet_filters: general.SupportedPacketFilters,
                mac_address_length: general.MacAddressLength,
                access_type: general.AccessType,
                direction_type: general.DirectionType,
                connection_type: general.ConnectionType,
                if_type: general.IfType,
                connector_present: general.IfConnectorPresent != 0,
                supported_statistics: general.SupportedStatistics,
                supported_oids,
            });
        }
        NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES => {
            drop(recorded);
            return set_offload_attributes(block, attributes);
        }
        other => {
            unsupported(format!("miniport attributes of type {other:#x}"));
            return NDIS_STATUS_INVALID_PARAMETER;
        }
    }
    NDIS_STATUS_SUCCESS
}

/// The offload attributes ("Reporting a Miniport Adapter's Task Offload Capabilities":
/// NdisMSetMiniportAttributes from MiniportInitializeEx, with NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES).
fn set_offload_attributes(
    block: &AdapterBlock,
    attributes: *mut NDIS_OBJECT_HEADER,
) -> NDIS_STATUS {
    // SAFETY: every attributes structure starts with its header.
    let header = unsafe { *attributes };
    if header.Revision != NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1
        || header.Size < NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1
    {
        // NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES: "Set ... the Revision member to
        // NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1, and the Size member to
        // NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1".
        violation(format!("bad offload attributes header {header:?}"));
        return NDIS_STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the header says this is the offload attributes structure.
    let offload = unsafe { &*attributes.cast::<NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES>() };
    let read = |pointer: *mut NDIS_OFFLOAD, what: &str| {
        if pointer.is_null() {
            // NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES: DefaultOffloadConfiguration and
            // HardwareOffloadCapabilities each point to an NDIS_OFFLOAD.
            return Err(format!("offload attributes without {what}"));
        }
        // SAFETY: the miniport's NDIS_OFFLOAD, read during the call, as long as its header says.
        let bytes = unsafe {
            let size = usize::from((*pointer).Header.Size).min(size_of::<NDIS_OFFLOAD>());
            std::slice::from_raw_parts(pointer.cast::<u8>(), size.max(4))
        };
        offload::read_offload(bytes).map_err(|error| format!("{what}: {error}"))
    };
    let offloads = read(
        offload.DefaultOffloadConfiguration,
        "DefaultOffloadConfiguration",
    )
    .and_then(|default| {
        read(
            offload.HardwareOffloadCapabilities,
            "HardwareOffloadCapabilities",
        )
        .map(|hardware| (default, hardware))
    });
    let (default, hardware) = match offloads {
        Ok(offloads) => offloads,
        Err(error) => {
            violation(error);
            return NDIS_STATUS_INVALID_PARAMETER;
        }
    };
    if let Some(beyond) = Offloads::of(&default).beyond(&Offloads::of(&hardware)) {
        // HardwareOffloadCapabilities "indicates all the task offload capabilities that are
        // supported by the miniport adapter. These capabilities include capabilities that are
        // currently disabled" (NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES): the current
        // configuration is a part of them.
        violation(format!(
            "the default offload configuration has {beyond}, which the hardware capabilities lack"
        ));
    }
    let mut record = block.offloads.lock().unwrap();
    record.hardware = Some(hardware);
    record.current = default;
    record.previous = default;
    NDIS_STATUS_SUCCESS
}

/// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: the miniport's current offload configuration, which
/// is all that changes it after initialization.
fn current_offloads_indicated(block: &AdapterBlock, indication: &NDIS_STATUS_INDICATION) {
    if indication.StatusBuffer.is_null() {
        // "The StatusBuffer member of the NDIS_STATUS_INDICATION structure contains an
        // NDIS_OFFLOAD structure" (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG).
        violation("NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG without its NDIS_OFFLOAD");
        return;
    }
    // SAFETY: the miniport's buffer of StatusBufferSize bytes, read during the call.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            indication.StatusBuffer.cast::<u8>(),
            indication.StatusBufferSize as usize,
        )
    };
    let current = match offload::read_offload(bytes) {
        Ok(current) => current,
        Err(error) => {
            violation(format!(
                "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG with {error}"
            ));
            return;
        }
    };
    let mut record = block.offloads.lock().unwrap();
    let Some(hardware) = record.hardware else {
        // A miniport reports its offload capabilities in its offload attributes at
        // initialization ("Reporting a NIC's ... Capabilities": "Miniport drivers must include
        // the current ... configuration in the NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES
        // structure"), before it reports changes to them.
        violation(
            "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG from a miniport that set no offload attributes",
        );
        return;
    };
    if let Some(beyond) = Offloads::of(&current).beyond(&Offloads::of(&hardware)) {
        // The current configuration is a subset of the hardware capabilities (see
        // set_offload_attributes); "The contents of the NDIS_OFFLOAD structure reflect only the
        // NIC's current task offload configuration".
        violation(format!(
            "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG turns on {beyond}, which the hardware capabilities lack"
        ));
    }
    record.previous = record.current;
    record.current = current;
    record.indications += 1;
}

/// A miniport of NDIS 6.20 or later reports its power management in
/// `PowerManagementCapabilitiesEx`, and leaves the NDIS 6.0 field NULL ("Reporting Power
/// Management Capabilities", Microsoft's NDIS documentation); the structure's revision follows
/// the miniport's NDIS version (2 for 6.30 and later).
fn check_power_management(general: &NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES) {
    if !general.PowerManagementCapabilities.is_null() {
        // "Reporting Power Management Capabilities": NDIS 6.20 and later miniports report them in
        // PowerManagementCapabilitiesEx and set PowerManagementCapabilities to NULL.
        violation("an NDIS 6.20+ miniport set PowerManagementCapabilities (the NDIS 6.0 field)");
    }
    // SAFETY: the driver's structure, read during the call, if it gave one.
    let Some(capabilities) = (unsafe { general.PowerManagementCapabilitiesEx.as_ref() }) else {
        // The same page: a 6.20+ miniport reports its capabilities at initialization (this driver and
        // Wintun do); NULL here says nothing of them.
        violation("an NDIS 6.20+ miniport left PowerManagementCapabilitiesEx NULL");
        return;
    };
    let header = capabilities.Header;
    if header.Type != NDIS_OBJECT_TYPE_DEFAULT
        || header.Revision != NDIS_PM_CAPABILITIES_REVISION_2
        || header.Size < NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2
    {
        // NDIS_PM_CAPABILITIES: revision 2 for NDIS 6.30 and later (its page; ndis.h
        // NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2).
        violation(format!(
            "an NDIS 6.30+ miniport's power management capabilities header is {header:?}"
        ));
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMIndicateStatusEx(
    handle: NDIS_HANDLE,
    indication: *mut NDIS_STATUS_INDICATION,
) {
    // NdisMIndicateStatusEx (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisMIndicateStatusEx");
    let Some(block) = block(handle, "NdisMIndicateStatusEx") else {
        return;
    };
    if block.attributes.lock().unwrap().context == 0 {
        // NdisMSetMiniportAttributes comes "before the driver calls any other NdisXxx function that
        // depends on the information supplied" to it (NdisMSetMiniportAttributes).
        violation("status indication before registration attributes");
    }
    // SAFETY: the driver's indication, read during the call.
    let indication = unsafe { &*indication };
    if indication.Header.Type != NDIS_OBJECT_TYPE_STATUS_INDICATION
        || indication.Header.Size < NDIS_SIZEOF_STATUS_INDICATION_REVISION_1
    {
        // NDIS_STATUS_INDICATION: Type NDIS_OBJECT_TYPE_STATUS_INDICATION, Size at least
        // NDIS_SIZEOF_STATUS_INDICATION_REVISION_1 (its page).
        violation(format!(
            "bad status indication header {:?}",
            indication.Header
        ));
    }
    if indication.SourceHandle != handle {
        // NDIS_STATUS_INDICATION.SourceHandle: a miniport sets it to its miniport adapter handle (its
        // page).
        violation("status indication whose SourceHandle is not the adapter");
    }
    if indication.StatusCode == NDIS_STATUS_LINK_STATE {
        if (indication.StatusBufferSize as usize) < size_of::<NDIS_LINK_STATE>() {
            // NDIS_STATUS_LINK_STATE: StatusBuffer holds an NDIS_LINK_STATE structure (its page).
            violation("link state indication with a short buffer");
            return;
        }
        // SAFETY: a buffer of at least sizeof(NDIS_LINK_STATE) bytes, read during the call.
        let link = unsafe {
            indication
                .StatusBuffer
                .cast::<NDIS_LINK_STATE>()
                .read_unaligned()
        };
        if link.Header.Size < NDIS_SIZEOF_LINK_STATE_REVISION_1 {
            // NDIS_LINK_STATE: revision 1, NDIS_SIZEOF_LINK_STATE_REVISION_1 (its page).
            violation(format!("bad link state header {:?}", link.Header));
        }
        *block.link_state.lock().unwrap() = Some(link);
    } else if indication.StatusCode == NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG {
        current_offloads_indicated(block, indication);
        let within = WITHIN_NEXT_OFFLOAD_REPORT.lock().unwrap().take();
        if let Some(handler) = within {
            handler();
        }
    }
}

/// What runs within the next NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG, on the indicating thread.
static WITHIN_NEXT_OFFLOAD_REPORT: Mutex<Option<Box<dyn FnOnce() + Send>>> = Mutex::new(None);

/// Runs `handler` once, on the miniport's thread and before NdisMIndicateStatusEx returns, within
/// the next NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG: what a filter's status handler may do before
/// it passes the indication on, an OID request of its own to the miniport among it, which the
/// simulator hands the miniport there and then (the case a miniport must survive; whether NDIS
/// ever does so is for Windows to show).
pub fn within_next_offload_report(handler: impl FnOnce() + Send + 'static) {
    *WITHIN_NEXT_OFFLOAD_REPORT.lock().unwrap() = Some(Box::new(handler));
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMGetDeviceProperty(
    handle: NDIS_HANDLE,
    physical: *mut PDEVICE_OBJECT,
    functional: *mut PDEVICE_OBJECT,
    next: *mut PDEVICE_OBJECT,
    resources: *mut PVOID,
    translated: *mut PVOID,
) {
    // NdisMGetDeviceProperty (ndis.h): "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisMGetDeviceProperty");
    let Some(block) = block(handle, "NdisMGetDeviceProperty") else {
        return;
    };
    // SAFETY: each out parameter is optional; the non-null ones are the driver's locals.
    unsafe {
        for out in [physical, next] {
            if !out.is_null() {
                *out = block.device;
            }
        }
        if !functional.is_null() {
            *functional = block.device;
        }
        for out in [resources, translated] {
            if !out.is_null() {
                *out = null_mut();
            }
        }
    }
}

/// A configuration handle NdisOpenConfigurationEx gave: the adapter it is for, and the values
/// read through it, which live until it is closed.
struct OpenConfiguration {
    adapter: usize,
    values: Vec<config::ReadValue>,
}

/// Open configuration handles, by address.
static CONFIGURATIONS: Mutex<BTreeMap<usize, OpenConfiguration>> = Mutex::new(BTreeMap::new());

/// Configuration handles not closed.
pub fn configurations_outstanding() -> usize {
    CONFIGURATIONS.lock().unwrap().len()
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisOpenConfigurationEx(
    object: *const NDIS_CONFIGURATION_OBJECT,
    handle: PNDIS_HANDLE,
) -> NDIS_STATUS {
    // NdisOpenConfigurationEx: "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisOpenConfigurationEx");
    // SAFETY: the driver's configuration object, read during the call.
    let object = unsafe { &*object };
    if object.Header.Type != NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT
        || object.Header.Revision != NDIS_CONFIGURATION_OBJECT_REVISION_1
        || object.Header.Size < NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1
    {
        // NDIS_CONFIGURATION_OBJECT: Type NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT, Revision
        // NDIS_CONFIGURATION_OBJECT_REVISION_1, Size NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1.
        violation(format!(
            "bad configuration object header {:?}",
            object.Header
        ));
        return NDIS_STATUS_FAILURE;
    }
    if object.NdisHandle == driver_handle() || object.Flags != 0 {
        unsupported("a configuration other than a miniport adapter's");
        return NDIS_STATUS_FAILURE;
    }
    if block(object.NdisHandle, "NdisOpenConfigurationEx").is_none() {
        return NDIS_STATUS_FAILURE;
    }
    let opened = Box::into_raw(Box::new(0u8)) as usize;
    CONFIGURATIONS.lock().unwrap().insert(
        opened,
        OpenConfiguration {
            adapter: object.NdisHandle as usize,
            values: Vec::new(),
        },
    );
    // SAFETY: the driver's out parameter.
    unsafe { *handle = opened as NDIS_HANDLE };
    NDIS_STATUS_SUCCESS
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisReadConfiguration(
    status: *mut NDIS_STATUS,
    value: *mut *mut NDIS_CONFIGURATION_PARAMETER,
    handle: NDIS_HANDLE,
    keyword: PUNICODE_STRING,
    _parameter_type: NDIS_PARAMETER_TYPE,
) {
    // NdisReadConfiguration: "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisReadConfiguration");
    let mut configurations = CONFIGURATIONS.lock().unwrap();
    let Some(open) = configurations.get_mut(&(handle as usize)) else {
        // ConfigurationHandle is a handle NdisOpenConfigurationEx (or NdisOpenConfigurationKeyBy*)
        // returned (NdisReadConfiguration), not yet closed.
        violation(format!(
            "NdisReadConfiguration with unknown configuration handle {handle:p}"
        ));
        return;
    };
    // SAFETY: the driver's NDIS_STRING, read during the call.
    let name = unsafe { config::keyword_name(keyword) };
    let adapter = adapter_block(open.adapter as NDIS_HANDLE);
    let found = name.and_then(|name| adapter.registry.lock().unwrap().get(&name).cloned());
    // SAFETY: the driver's out parameters.
    unsafe {
        match found {
            Some(found) => {
                let mut read = config::ReadValue::of(&found);
                *value = &mut *read.parameter;
                open.values.push(read);
                *status = NDIS_STATUS_SUCCESS;
            }
            // "The requested information could not be found under the opened registry key".
            None => *status = NDIS_STATUS_FAILURE,
        }
    }
}

#[kernel_export]
pub extern "efiapi" fn NdisCloseConfiguration(handle: NDIS_HANDLE) {
    // NdisCloseConfiguration: "IRQL PASSIVE_LEVEL".
    irql::require_at_most(PASSIVE_LEVEL, "NdisCloseConfiguration");
    if CONFIGURATIONS
        .lock()
        .unwrap()
        .remove(&(handle as usize))
        .is_none()
    {
        // NdisCloseConfiguration releases a handle a configuration function returned, once.
        violation(format!(
            "NdisCloseConfiguration of unknown handle {handle:p}"
        ));
        return;
    }
    // SAFETY: the box NdisOpenConfigurationEx made for this handle, freed once.
    drop(unsafe { Box::from_raw(handle.cast::<u8>()) });
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisAllocateNetBufferListPool(
    handle: NDIS_HANDLE,
    parameters: *const NET_BUFFER_LIST_POOL_PARAMETERS,
) -> NDIS_HANDLE {
    // NdisAllocateNetBufferListPool (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisAllocateNetBufferListPool");
    if !handle.is_null() {
        block(handle, "NdisAllocateNetBufferListPool");
    }
    // SAFETY: the driver's parameters, read during the call.
    let parameters = unsafe { &*parameters };
    if parameters.Header.Type != NDIS_OBJECT_TYPE_DEFAULT
        || parameters.Header.Revision != NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
        || parameters.Header.Size < NDIS_SIZEOF_NET_BUFFER_LIST_POOL_PARAMETERS_REVISION_1
    {
        // NET_BUFFER_LIST_POOL_PARAMETERS: Type NDIS_OBJECT_TYPE_DEFAULT, revision 1 (its page).
        violation(format!(
            "bad NBL pool parameters header {:?}",
            parameters.Header
        ));
        return null_mut();
    }
    if parameters.PoolTag == 0 {
        // PoolTag: the kernel pool tag NDIS uses for the pool's allocations
        // (NET_BUFFER_LIST_POOL_PARAMETERS); Driver Verifier refuses pool tagged 0.
        violation("NBL pool without a tag");
    }
    if should_fail(Site::NdisAllocateNetBufferListPool) {
        return null_mut();
    }
    let pool = Box::into_raw(Box::new(parameters.PoolTag));
    NBL_POOLS.lock().unwrap().insert(pool as usize);
    pool.cast()
}

#[kernel_export]
pub extern "efiapi" fn NdisFreeNetBufferListPool(pool: NDIS_HANDLE) {
    // NdisFreeNetBufferListPool (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisFreeNetBufferListPool");
    let in_use = ALLOCATED_NBLS
        .lock()
        .unwrap()
        .values()
        .filter(|nbl| nbl.pool == pool as usize)
        .count();
    if in_use != 0 {
        // "Before freeing a NET_BUFFER_LIST structure pool, you must free all the NET_BUFFER_LIST
        // structures in the pool" (NdisFreeNetBufferListPool).
        violation(format!("freeing an NBL pool with {in_use} NBLs not freed"));
    }
    if !NBL_POOLS.lock().unwrap().remove(&(pool as usize)) {
        // PoolHandle is "a handle that was obtained from a call to the NdisAllocateNetBufferListPool
        // function" (NdisFreeNetBufferListPool).
        violation(format!("freeing unknown NBL pool {pool:p}"));
        return;
    }
    // SAFETY: allocated by NdisAllocateNetBufferListPool and removed from the set once.
    drop(unsafe { Box::from_raw(pool.cast::<u32>()) });
}

/// The result of an OID request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidResult {
    pub status: NDIS_STATUS,
    /// The bytes written (query) or the whole buffer (set).
    pub data: Vec<u8>,
    /// BytesWritten for a query, BytesRead for a set.
    pub bytes_done: u32,
    pub bytes_needed: u32,
}

/// Issues an OID request at PASSIVE_LEVEL and checks the answer's contract.
pub fn oid_request(
    handle: NDIS_HANDLE,
    request_type: NDIS_REQUEST_TYPE,
    oid: NDIS_OID,
    mut buffer: Vec<u8>,
) -> OidResult {
    let handlers = handlers().expect("a registered driver");
    let context = adapter_context(handle);
    // SAFETY: NDIS_OID_REQUEST is plain data; all zeroes is a valid value.
    let mut request: Box<NDIS_OID_REQUEST> = Box::new(unsafe { std::mem::zeroed() });
    request.Header = NDIS_OBJECT_HEADER {
        Type: NDIS_OBJECT_TYPE_OID_REQUEST,
        Revision: 1,
        Size: offset_of!(NDIS_OID_REQUEST, Reserved2) as u16 + 2,
    };
    request.RequestType = request_type;
    request.RequestId = 0x5EED as PVOID;
    request.DATA.Oid = oid;
    request.DATA.InformationBuffer = if buffer.is_empty() {
        null_mut()
    } else {
        buffer.as_mut_ptr().cast()
    };
    request.DATA.InformationBufferLength = buffer.len() as u32;
    let block = adapter_block(handle);
    let offload_set = request_type == NdisRequestSetInformation
        && (oid == OID_TCP_OFFLOAD_PARAMETERS || oid == OID_OFFLOAD_ENCAPSULATION);
    if request_type == NdisRequestSetInformation && oid == OID_TCP_OFFLOAD_PARAMETERS {
        keywords_follow_parameters(block, &buffer);
    }
    let indications_before = block.offloads.lock().unwrap().indications;
    let status = irql::call_at(PASSIVE_LEVEL, "MiniportOidRequest", || {
        // SAFETY: the driver's handler with its adapter context and a live request.
        unsafe { (handlers.oid_request)(context, &mut *request) }
    });
    if status == NDIS_STATUS_PENDING {
        unsupported("pending OID requests (NdisMOidRequestComplete)");
    }
    let done = request.DATA.BytesWrittenOrRead;
    let needed = request.DATA.BytesNeeded;
    if done as usize > buffer.len() {
        // BytesWritten/BytesRead cannot exceed InformationBufferLength (NDIS_OID_REQUEST).
        violation(format!(
            "OID {oid:#x}: {done} bytes done of a {}-byte buffer",
            buffer.len()
        ));
    }
    if (status == NDIS_STATUS_BUFFER_TOO_SHORT || status == NDIS_STATUS_INVALID_LENGTH)
        && needed as usize <= buffer.len()
    {
        // With NDIS_STATUS_BUFFER_TOO_SHORT or NDIS_STATUS_INVALID_LENGTH the miniport sets
        // BytesNeeded to the size it needs (NDIS_OID_REQUEST: BytesNeeded; MiniportOidRequest).
        violation(format!(
            "OID {oid:#x}: short-buffer status with BytesNeeded {needed} <= buffer {}",
            buffer.len()
        ));
    }
    if status == NDIS_STATUS_SUCCESS && offload_set {
        let mut record = block.offloads.lock().unwrap();
        if record.indications == indications_before {
            // "Miniport drivers must use the contents of the NDIS_OFFLOAD_PARAMETERS structure to
            // update the currently reported TCP offload capabilities. After the update, the
            // miniport driver must report the current task offload capabilities with the
            // NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG status indication" (OID_TCP_OFFLOAD_PARAMETERS;
            // OID_OFFLOAD_ENCAPSULATION says the same of NDIS_OFFLOAD_ENCAPSULATION).
            violation(format!(
                "OID {oid:#x} set succeeded without an NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG indication"
            ));
        }
        if oid == OID_TCP_OFFLOAD_PARAMETERS
            && buffer.len() >= usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1)
        {
            let mut whole = [0u8; size_of::<NDIS_OFFLOAD_PARAMETERS>()];
            let len = buffer.len().min(whole.len());
            whole[..len].copy_from_slice(&buffer[..len]);
            let parameters = NDIS_OFFLOAD_PARAMETERS::read_from(&whole).expect("its size");
            record.turned_off.follow(&parameters, buffer.len());
        }
        if oid == OID_OFFLOAD_ENCAPSULATION
            && let Some(set) = NDIS_OFFLOAD_ENCAPSULATION::read_from(&buffer)
        {
            let mut merged = record.encapsulation.unwrap_or_default();
            merged.Header = set.Header;
            for (kept, asked) in [(&mut merged.IPv4, set.IPv4), (&mut merged.IPv6, set.IPv6)] {
                if asked.Enabled != NDIS_OFFLOAD_SET_NO_CHANGE {
                    *kept = asked;
                }
            }
            record.encapsulation = Some(merged);
        }
    }
    if status == NDIS_STATUS_SUCCESS {
        let attributes = block.attributes.lock().unwrap();
        let listed = attributes
            .general
            .as_ref()
            .is_some_and(|general| general.supported_oids.contains(&oid));
        if !listed {
            // The OIDs a miniport answers are the ones it lists (NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES:
            // SupportedOidList; OID_GEN_SUPPORTED_LIST).
            violation(format!(
                "OID {oid:#x} succeeded but is not in the supported list"
            ));
        }
    }
    if request_type != NdisRequestSetInformation {
        buffer.truncate(done as usize);
    }
    OidResult {
        status,
        data: buffer,
        bytes_done: done,
        bytes_needed: needed,
    }
}

/// NDIS writes the keywords an OID_TCP_OFFLOAD_PARAMETERS set changes into the adapter's
/// registry before the miniport sees it (see `config::keywords_of_parameters`).
fn keywords_follow_parameters(block: &AdapterBlock, buffer: &[u8]) {
    if buffer.len() < usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_1) {
        return;
    }
    let mut whole = [0u8; size_of::<NDIS_OFFLOAD_PARAMETERS>()];
    let len = buffer.len().min(whole.len());
    whole[..len].copy_from_slice(&buffer[..len]);
    let parameters = NDIS_OFFLOAD_PARAMETERS::read_from(&whole).expect("its size");
    if parameters.Header.Type != NDIS_OBJECT_TYPE_DEFAULT {
        return;
    }
    let mut registry = block.registry.lock().unwrap();
    for (keyword, value) in config::keywords_of_parameters(&parameters, buffer.len()) {
        registry.set(keyword, value);
    }
}

/// The simulated TCP/IP binds to the adapter: if the miniport reported offloads it can do, it
/// activates them with OID_OFFLOAD_ENCAPSULATION for `encapsulation` on both IP versions
/// ("Protocol drivers set OID_OFFLOAD_ENCAPSULATION after determining the system encapsulation
/// requirements ... The protocol driver must set an encapsulation type that the miniport
/// adapter supports on at least one offload service"). If the miniport fails it, the protocol
/// uses no offloads.
pub fn bind_protocol(handle: NDIS_HANDLE, encapsulation: u32) -> Option<NDIS_STATUS> {
    let hardware = adapter_block(handle).offloads.lock().unwrap().hardware?;
    if Offloads::of(&hardware) == Offloads::default() {
        return None;
    }
    let version = NDIS_OFFLOAD_ENCAPSULATION_IP {
        Enabled: NDIS_OFFLOAD_SET_ON,
        EncapsulationType: encapsulation,
        HeaderSize: 0,
    };
    let request = NDIS_OFFLOAD_ENCAPSULATION {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION,
            Revision: NDIS_OFFLOAD_ENCAPSULATION_REVISION_1,
            Size: NDIS_SIZEOF_OFFLOAD_ENCAPSULATION_REVISION_1,
        },
        IPv4: version,
        IPv6: version,
    };
    // SAFETY: plain integers, all initialized, no padding (28 bytes of ULONGs and a header).
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const request).cast::<u8>(),
            size_of::<NDIS_OFFLOAD_ENCAPSULATION>(),
        )
    };
    let result = oid_request(
        handle,
        NdisRequestSetInformation,
        OID_OFFLOAD_ENCAPSULATION,
        bytes.to_vec(),
    );
    Some(result.status)
}

/// The context the driver registered for the adapter.
pub fn adapter_context(handle: NDIS_HANDLE) -> NDIS_HANDLE {
    adapter_block(handle).attributes.lock().unwrap().context as NDIS_HANDLE
}

/// NBLs as NDIS allocates them for a send: more room than `src/sys` declares, because the
/// real structure ends in a version-dependent array.
#[repr(C, align(16))]
struct NblStorage {
    nbl: NET_BUFFER_LIST,
    info: [PVOID; 32],
}

/// A NET_BUFFER with the room the real one takes (0xB0 bytes).
#[repr(C, align(16))]
struct NbStorage {
    nb: NET_BUFFER,
    rest: [u8; 0xB0 - size_of::<NET_BUFFER>()],
}

/// How the simulator lays a packet out in MDLs, as the stack's buffers may be.
#[derive(Clone, Copy, Debug)]
pub struct Fragmentation {
    /// Bytes of the first MDL before the packet starts (the NET_BUFFER's current offset).
    pub leading: usize,
    /// The most data one MDL carries; the packet is split into MDLs of this size.
    pub chunk: usize,
}

impl Fragmentation {
    /// One MDL holding the whole packet.
    pub const CONTIGUOUS: Fragmentation = Fragmentation {
        leading: 0,
        chunk: usize::MAX,
    };
}

/// One NBL being sent and the memory behind it, alive until the send returns. Boxed, so the
/// pointers the driver follows stay put while the vectors grow.
#[allow(clippy::vec_box)]
struct SendNbl {
    nbl: Box<NblStorage>,
    _nbs: Vec<Box<NbStorage>>,
    _mdls: Vec<Box<MDL>>,
    _data: Vec<Vec<u8>>,
}

fn build_nbl(packets: &[Vec<u8>], layout: Fragmentation) -> SendNbl {
    build_nbl_with(packets, layout, 0, &[])
}

/// An NBL of `packets` laid out as `layout` says, but with at least `first_mdl` bytes of each
/// packet in its first MDL, and the NetBufferListInfo entries `info`.
fn build_nbl_with(
    packets: &[Vec<u8>],
    layout: Fragmentation,
    first_mdl: usize,
    info: &[(usize, usize)],
) -> SendNbl {
    // SAFETY: plain data; all zeroes is a valid empty NBL.
    let mut nbl: Box<NblStorage> = Box::new(unsafe { std::mem::zeroed() });
    let mut nbs: Vec<Box<NbStorage>> = Vec::new();
    let mut mdls: Vec<Box<MDL>> = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    for packet in packets {
        let mut first: PMDL = null_mut();
        let mut last: PMDL = null_mut();
        let first_len = first_mdl.max(layout.chunk.max(1)).min(packet.len());
        let mut chunks: Vec<Vec<u8>> = std::iter::once(&packet[..first_len])
            .filter(|chunk| !chunk.is_empty())
            .chain(packet[first_len..].chunks(layout.chunk.max(1)))
            .map(<[u8]>::to_vec)
            .collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        chunks[0].splice(0..0, std::iter::repeat_n(0xEE, layout.leading));
        for mut chunk in chunks {
            // SAFETY: plain data; all zeroes is a valid empty MDL.
            let mut mdl: Box<MDL> = Box::new(unsafe { std::mem::zeroed() });
            mdl.MappedSystemVa = chunk.as_mut_ptr().cast();
            mdl.StartVa = mdl.MappedSystemVa;
            mdl.ByteCount = chunk.len() as u32;
            mdl.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
            let pointer: PMDL = &mut *mdl;
            if last.is_null() {
                first = pointer;
            } else {
                // SAFETY: the previous MDL of this chain, alive in `mdls`.
                unsafe { (*last).Next = pointer };
            }
            last = pointer;
            mdls.push(mdl);
            data.push(chunk);
        }
        // SAFETY: plain data; all zeroes is a valid empty NET_BUFFER.
        let mut nb: Box<NbStorage> = Box::new(unsafe { std::mem::zeroed() });
        nb.nb.MdlChain = first;
        nb.nb.CurrentMdl = first;
        nb.nb.CurrentMdlOffset = layout.leading as u32;
        nb.nb.DataOffset = layout.leading as u32;
        nb.nb.DataLength = packet.len() as u32;
        nbs.push(nb);
    }
    for index in (0..nbs.len().saturating_sub(1)).rev() {
        let next: *mut NET_BUFFER = &mut nbs[index + 1].nb;
        nbs[index].nb.Next = next;
    }
    nbl.nbl.FirstNetBuffer = nbs.first_mut().map_or(null_mut(), |nb| &mut nb.nb);
    nbl.nbl.Status = UNWRITTEN_STATUS;
    for &(index, value) in info {
        nbl.nbl.NetBufferListInfo[index] = value as PVOID;
    }
    SendNbl {
        nbl,
        _nbs: nbs,
        _mdls: mdls,
        _data: data,
    }
}

/// NBLs built once and sent again and again, for benchmarks.
pub struct PreparedSend {
    nbls: Vec<SendNbl>,
}

impl PreparedSend {
    pub fn new(nbls: &[Vec<Vec<u8>>], layout: Fragmentation) -> Self {
        let mut nbls: Vec<SendNbl> = nbls
            .iter()
            .map(|packets| build_nbl(packets, layout))
            .collect();
        for index in (0..nbls.len().saturating_sub(1)).rev() {
            let next: *mut NET_BUFFER_LIST = &mut nbls[index + 1].nbl.nbl;
            nbls[index].nbl.nbl.Next = next;
        }
        PreparedSend { nbls }
    }
}

// SAFETY: the storage is touched only by the thread that sends it and by the driver during the
// send.
unsafe impl Send for PreparedSend {}

/// Sends prepared NBLs again; returns how many completed with success.
pub fn send_prepared(handle: NDIS_HANDLE, prepared: &mut PreparedSend, irql: KIRQL) -> usize {
    for nbl in &mut prepared.nbls {
        nbl.nbl.nbl.Status = UNWRITTEN_STATUS;
    }
    send_chain(handle, &mut prepared.nbls[0].nbl.nbl, irql);
    prepared
        .nbls
        .iter()
        .filter(|nbl| nbl.nbl.nbl.Status == NDIS_STATUS_SUCCESS)
        .count()
}

/// Sends the packets it is given where they lie, each as one NBL of one NET_BUFFER and one MDL,
/// in NBL storage kept from one send to the next: how a forwarding stack hands packets it
/// received to a miniport, without copying them (the emulator's upper edge).
pub struct Sender {
    handle: NDIS_HANDLE,
    nbls: Vec<NblStorage>,
    nbs: Vec<NbStorage>,
    mdls: Vec<MDL>,
}

// SAFETY: the storage is touched only by the thread that sends and by the driver during a send.
unsafe impl Send for Sender {}

impl Sender {
    pub fn new(handle: NDIS_HANDLE) -> Self {
        Sender {
            handle,
            nbls: Vec::new(),
            nbs: Vec::new(),
            mdls: Vec::new(),
        }
    }

    /// Sends `packets` in one call at `irql`; returns how many completed with success.
    pub fn send(&mut self, packets: &[&[u8]], irql: KIRQL) -> usize {
        self.send_with(packets, &[], irql)
    }

    /// Sends `packets`, the NBL of each with the NetBufferListInfo entries `infos` has for it.
    fn send_with(
        &mut self,
        packets: &[&[u8]],
        infos: &[Vec<(usize, usize)>],
        irql: KIRQL,
    ) -> usize {
        if packets.is_empty() {
            return 0;
        }
        // Grown before any pointer into the storage is taken: the driver holds none after a send.
        if self.nbls.len() < packets.len() {
            // SAFETY: plain data; all zeroes is a valid empty NBL.
            self.nbls
                .resize_with(packets.len(), || unsafe { std::mem::zeroed() });
            // SAFETY: plain data; all zeroes is a valid empty NET_BUFFER.
            self.nbs
                .resize_with(packets.len(), || unsafe { std::mem::zeroed() });
            // SAFETY: plain data; all zeroes is a valid empty MDL.
            self.mdls
                .resize_with(packets.len(), || unsafe { std::mem::zeroed() });
        }
        let mut next: *mut NET_BUFFER_LIST = null_mut();
        for (index, packet) in packets.iter().enumerate().rev() {
            let mdl = &mut self.mdls[index];
            // SAFETY: plain data; all zeroes is a valid empty MDL (and NET_BUFFER, NBL below).
            *mdl = unsafe { std::mem::zeroed() };
            mdl.MappedSystemVa = packet.as_ptr().cast_mut().cast();
            mdl.StartVa = mdl.MappedSystemVa;
            mdl.ByteCount = packet.len() as u32;
            mdl.MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
            let nb = &mut self.nbs[index].nb;
            // SAFETY: as above.
            *nb = unsafe { std::mem::zeroed() };
            nb.MdlChain = mdl;
            nb.CurrentMdl = mdl;
            nb.DataLength = packet.len() as u32;
            let storage = &mut self.nbls[index];
            // SAFETY: as above.
            *storage = unsafe { std::mem::zeroed() };
            storage.nbl.FirstNetBuffer = nb;
            storage.nbl.Status = UNWRITTEN_STATUS;
            storage.nbl.Next = next;
            for &(entry, value) in infos.get(index).map_or(&[][..], |info| &info[..]) {
                storage.nbl.NetBufferListInfo[entry] = value as PVOID;
            }
            next = &mut storage.nbl;
        }
        send_chain(self.handle, next, irql);
        self.nbls[..packets.len()]
            .iter()
            .filter(|storage| storage.nbl.Status == NDIS_STATUS_SUCCESS)
            .count()
    }
}

impl Sender {
    /// Sends `packets` in one call at `irql`, each offloaded as it says: rewritten in place as
    /// tcpip hands such a send over, with its NBL information (see [`stack_prepares`]); the
    /// emulator's way of handing the driver a super-packet. Returns how many completed with
    /// success; a packet the simulator refuses to send counts as failed.
    pub fn send_offloaded(
        &mut self,
        packets: &mut [(&mut [u8], SendOffload)],
        timing: SendTiming,
        irql: KIRQL,
    ) -> usize {
        let mut infos = Vec::with_capacity(packets.len());
        for (packet, offload) in packets.iter_mut() {
            infos.push(stack_prepares(self.handle, packet, *offload, timing));
        }
        let sending: Vec<&[u8]> = packets
            .iter()
            .zip(&infos)
            .filter(|(_, info)| info.is_some())
            .map(|((packet, _), _)| &**packet)
            .collect();
        let infos: Vec<Vec<(usize, usize)>> = infos.into_iter().flatten().collect();
        self.send_with(&sending, &infos, irql)
    }
}

/// Sends the chain from `first` at `irql`, each NBL of which must come back through
/// NdisMSendNetBufferListsComplete exactly once before the send handler returns (the driver
/// never pends sends).
fn send_chain(handle: NDIS_HANDLE, first: *mut NET_BUFFER_LIST, irql: KIRQL) {
    let handlers = handlers().expect("a registered driver");
    let context = adapter_context(handle);
    let state = state(handle);
    if state != AdapterState::Running && state != AdapterState::Paused {
        // A check on the simulator: NDIS sends only to a running or paused adapter.
        violation(format!(
            "the simulator sends to an adapter in state {state:?}"
        ));
    }
    let mut chain = Vec::new();
    let mut nbl = first;
    while !nbl.is_null() {
        chain.push(nbl as usize);
        // SAFETY: an NBL of the caller's chain.
        nbl = unsafe { (*nbl).Next };
    }
    {
        let turned_off = adapter_block(handle).offloads.lock().unwrap().turned_off;
        let mut sent = SENT.lock().unwrap();
        for &nbl in &chain {
            // SAFETY: an NBL of the caller's chain.
            let info = unsafe { (*(nbl as *mut NET_BUFFER_LIST)).NetBufferListInfo };
            let info = info.map(|value| value as usize);
            sent.insert(
                nbl,
                Sent {
                    adapter: handle as usize,
                    offload: SentOffload::of(&info, turned_off),
                },
            );
        }
    }
    let flags = if irql == DISPATCH_LEVEL {
        NDIS_SEND_FLAGS_DISPATCH_LEVEL
    } else {
        0
    };
    irql::call_at(irql, "MiniportSendNetBufferLists", || {
        // SAFETY: the driver's handler with its context and a chain NDIS owns until completion.
        unsafe { (handlers.send)(context, first, 0, flags) }
    });
    let sent = SENT.lock().unwrap();
    for nbl in chain {
        if sent.contains_key(&nbl) {
            // This driver completes its sends within MiniportSendNetBufferLists; the simulator checks each
            // came back (NDIS owns the NBLs again only after NdisMSendNetBufferListsComplete).
            violation(format!("NBL {nbl:#x} was not completed"));
        }
    }
}

/// What a sent NBL's Status holds until the miniport writes it: no NDIS_STATUS value.
const UNWRITTEN_STATUS: NDIS_STATUS = 0x7EAD_BEEF;

/// An NBL sent and not yet completed.
struct Sent {
    /// The adapter it was sent to.
    adapter: usize,
    offload: SentOffload,
}

/// NBLs sent and not yet completed, by address.
static SENT: Mutex<BTreeMap<usize, Sent>> = Mutex::new(BTreeMap::new());

/// A pausing miniport completes every send before its pause completes ("Pausing an Adapter",
/// Microsoft's NDIS documentation): checked when MiniportPause returns success, and at
/// NdisMPauseComplete.
pub fn check_no_send_outstanding(handle: NDIS_HANDLE) {
    let outstanding = SENT
        .lock()
        .unwrap()
        .values()
        .filter(|sent| sent.adapter == handle as usize)
        .count();
    if outstanding != 0 {
        // "Pausing an Adapter": the miniport completes its outstanding send requests before the pause
        // completes.
        violation(format!(
            "the pause completed with {outstanding} sent NBLs not yet completed"
        ));
    }
}

/// Sends one NBL per entry of `nbls` (each a list of packets, one NET_BUFFER each) at `irql`,
/// and returns the status each NBL completed with.
pub fn send(
    handle: NDIS_HANDLE,
    nbls: &[Vec<Vec<u8>>],
    layout: Fragmentation,
    irql: KIRQL,
) -> Vec<NDIS_STATUS> {
    let mut sending: Vec<SendNbl> = nbls
        .iter()
        .map(|packets| build_nbl(packets, layout))
        .collect();
    for index in (0..sending.len().saturating_sub(1)).rev() {
        let next: *mut NET_BUFFER_LIST = &mut sending[index + 1].nbl.nbl;
        sending[index].nbl.nbl.Next = next;
    }
    let first: *mut NET_BUFFER_LIST = sending
        .first_mut()
        .map_or(null_mut(), |nbl| &mut nbl.nbl.nbl);
    send_chain(handle, first, irql);
    sending.iter().map(|nbl| nbl.nbl.nbl.Status).collect()
}

/// How an offloaded send completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadedCompletion {
    pub status: NDIS_STATUS,
    /// TcpLargeSendNetBufferListInfo as the miniport left it.
    pub lso: usize,
}

/// The simulated TCP/IP's half of an offloaded send: the packet, complete and well formed,
/// rewritten as tcpip hands it over for `offload` and its NBL information written
/// ([`offload::tcpip_form`]); the offload checked to be in force first unless `timing` is
/// [`SendTiming::Late`]. Returns the information to write, or `None` (and the violation) when
/// the simulator was asked for what tcpip never sends.
fn stack_prepares(
    handle: NDIS_HANDLE,
    packet: &mut [u8],
    offload: SendOffload,
    timing: SendTiming,
) -> Option<Vec<(usize, usize)>> {
    if timing == SendTiming::InForce {
        let record = adapter_block(handle).offloads.lock().unwrap().clone();
        if let Err(problem) = offload::stack_may_send(&record, packet, offload) {
            // A check on the simulator: tcpip offloads only what is in force.
            violation(format!(
                "the simulated stack offloads a send it may not ({offload:?}): {problem}"
            ));
            return None;
        }
    }
    match offload::tcpip_form(packet, offload) {
        Ok(info) => Some(info),
        Err(problem) => {
            violation(format!(
                "the simulated stack offloads a malformed packet ({offload:?}): {problem}"
            ));
            None
        }
    }
}

/// Sends one NBL of one packet per entry of `sends` at `irql`, each offloaded as it says (see
/// [`stack_prepares`]), a segmentation offload's headers in its first MDL; returns how each
/// completed (`None` for a send the simulator refused to make).
pub fn send_offloaded(
    handle: NDIS_HANDLE,
    sends: &[(Vec<u8>, SendOffload)],
    layout: Fragmentation,
    timing: SendTiming,
    irql: KIRQL,
) -> Vec<Option<OffloadedCompletion>> {
    let mut sending: Vec<SendNbl> = Vec::new();
    let mut made = Vec::new();
    for (packet, offload) in sends {
        let mut packet = packet.clone();
        let headers = offload::replicated_headers(&packet, *offload).unwrap_or(0);
        let Some(info) = stack_prepares(handle, &mut packet, *offload, timing) else {
            made.push(false);
            continue;
        };
        made.push(true);
        sending.push(build_nbl_with(&[packet], layout, headers, &info));
    }
    for index in (0..sending.len().saturating_sub(1)).rev() {
        let next: *mut NET_BUFFER_LIST = &mut sending[index + 1].nbl.nbl;
        sending[index].nbl.nbl.Next = next;
    }
    if let Some(first) = sending.first_mut() {
        send_chain(handle, &mut first.nbl.nbl, irql);
    }
    let mut completed = sending.iter().map(|nbl| OffloadedCompletion {
        status: nbl.nbl.nbl.Status,
        lso: nbl.nbl.nbl.NetBufferListInfo[TcpLargeSendNetBufferListInfo] as usize,
    });
    made.into_iter()
        .map(|made| if made { completed.next() } else { None })
        .collect()
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMSendNetBufferListsComplete(
    handle: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    flags: ULONG,
) {
    // NdisMSendNetBufferListsComplete (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisMSendNetBufferListsComplete");
    check_dispatch_flag(
        "NdisMSendNetBufferListsComplete",
        flags,
        NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL,
    );
    if let Some(block) = block(handle, "NdisMSendNetBufferListsComplete")
        && block
            .pause_during_send_completion
            .swap(false, std::sync::atomic::Ordering::SeqCst)
    {
        pause_from_another_thread(handle);
    }
    let mut sent = SENT.lock().unwrap();
    let mut nbl = nbls;
    while !nbl.is_null() {
        let Some(entry) = sent.remove(&(nbl as usize)) else {
            // NdisMSendNetBufferListsComplete returns NBLs "that the miniport driver received in previous
            // calls to its MiniportSendNetBufferLists function", each once.
            violation(format!(
                "completing NBL {nbl:p}, which is not an outstanding send"
            ));
            return;
        };
        // SAFETY: an NBL the simulator sent, live until this completion.
        let (status, lso) = unsafe {
            (
                (*nbl).Status,
                (*nbl).NetBufferListInfo[TcpLargeSendNetBufferListInfo] as usize,
            )
        };
        if let Some(problem) = entry.offload.check_completion(status, lso) {
            violation(problem);
        }
        // The completion returns "the final status of a send request"
        // (NdisMSendNetBufferListsComplete, Microsoft's NDIS documentation), which the protocol
        // reads from each NBL's Status: the miniport writes it first (NET_BUFFER_LIST_STATUS).
        // SAFETY: an NBL the simulator sent, live until this completion.
        if unsafe { (*nbl).Status } == UNWRITTEN_STATUS {
            violation(format!("NBL {nbl:p} completed without its Status written"));
        }
        // SAFETY: the chain the driver completes is made of NBLs the simulator sent.
        nbl = unsafe { (*nbl).Next };
    }
}

/// NBLs the driver allocated, by address, with the pool each came from.
struct AllocatedNbl {
    pool: usize,
    _nbl: Box<NblStorage>,
    _nb: Box<NbStorage>,
}

// SAFETY: the storage is only touched by the driver through the pointers it was given, and by
// the simulator under this table's lock or while the driver has lent it.
unsafe impl Send for AllocatedNbl {}

static ALLOCATED_NBLS: Mutex<BTreeMap<usize, AllocatedNbl>> = Mutex::new(BTreeMap::new());

pub fn nbls_outstanding() -> usize {
    ALLOCATED_NBLS.lock().unwrap().len()
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisAllocateNetBufferAndNetBufferList(
    pool: NDIS_HANDLE,
    context_size: u16,
    context_backfill: u16,
    mdl: PMDL,
    offset: ULONG,
    length: usize,
) -> *mut NET_BUFFER_LIST {
    // NdisAllocateNetBufferAndNetBufferList (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisAllocateNetBufferAndNetBufferList");
    if !NBL_POOLS.lock().unwrap().contains(&(pool as usize)) {
        // PoolHandle is a pool handle NdisAllocateNetBufferListPool returned
        // (NdisAllocateNetBufferAndNetBufferList).
        violation(format!("allocating from unknown NBL pool {pool:p}"));
        return null_mut();
    }
    if context_size != 0 || context_backfill != 0 {
        unsupported("NBL context space (NdisAllocateNetBufferAndNetBufferList's ContextSize)");
    }
    if should_fail(Site::NdisAllocateNetBufferAndNetBufferList) {
        return null_mut();
    }
    // SAFETY: plain data; all zeroes is a valid empty NBL and NET_BUFFER.
    let (mut nbl, mut nb): (Box<NblStorage>, Box<NbStorage>) =
        unsafe { (Box::new(std::mem::zeroed()), Box::new(std::mem::zeroed())) };
    nb.nb.MdlChain = mdl;
    nb.nb.CurrentMdl = mdl;
    nb.nb.DataOffset = offset;
    nb.nb.CurrentMdlOffset = offset;
    nb.nb.DataLength = length as u32;
    nbl.nbl.FirstNetBuffer = &mut nb.nb;
    nbl.nbl.NdisPoolHandle = pool;
    nbl.nbl.NblFlags = NDIS_ALLOCATION_FLAG;
    let address: *mut NET_BUFFER_LIST = &mut nbl.nbl;
    ALLOCATED_NBLS.lock().unwrap().insert(
        address as usize,
        AllocatedNbl {
            pool: pool as usize,
            _nbl: nbl,
            _nb: nb,
        },
    );
    address
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisFreeNetBufferList(nbl: *mut NET_BUFFER_LIST) {
    // NdisFreeNetBufferList (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisFreeNetBufferList");
    let held = ADAPTERS.lock().unwrap().iter().any(|&handle| {
        // SAFETY: a live adapter block.
        let block = unsafe { &*(handle as *const AdapterBlock) };
        let receive = block.receive.lock().unwrap();
        receive.held.contains(&(nbl as usize)) || receive.returning.contains(&(nbl as usize))
    });
    if held {
        // A miniport owns an indicated NBL again only when MiniportReturnNetBufferLists gives it back
        // (MINIPORT_RETURN_NET_BUFFER_LISTS).
        violation("freeing an NBL the stack still holds");
        return;
    }
    if ALLOCATED_NBLS
        .lock()
        .unwrap()
        .remove(&(nbl as usize))
        .is_none()
    {
        // NdisFreeNetBufferList frees an NBL allocated from one of the miniport's pools
        // (NdisFreeNetBufferList).
        violation(format!("freeing NBL {nbl:p}, which was not allocated"));
    }
}

/// What protocols leave in the info entries of an NBL they give back: not the miniport's, so a
/// miniport that indicates the NBL again clears it.
const STACK_LEFTOVER: PVOID = 0x5C81_BB1E as PVOID;

/// The stack's bookkeeping on a receive NBL it gives back, as protocols leave it: info entries
/// of their own and a flag of their own. The NET_BUFFER comes back as it was indicated, MDL chain
/// and offsets included: NDIS returns "NET_BUFFER_LIST structures, associated NET_BUFFER
/// structures, and any attached MDLs" to the miniport (MINIPORT_RETURN_NET_BUFFER_LISTS,
/// Microsoft's NDIS documentation), and a protocol that advanced the data start while it read a
/// packet retreats before it returns it ("Retreat and Advance Operations": "Retreat operations are
/// required ... when a driver returns received data to an underlying driver").
fn scribble_on_returned(nbl: *mut NET_BUFFER_LIST) {
    // SAFETY: an NBL the stack holds until it returns it, which it is about to.
    unsafe {
        for entry in [0, 8, 10, MaxNetBufferListInfo - 1] {
            (*nbl).NetBufferListInfo[entry] = STACK_LEFTOVER;
        }
        (*nbl).NblFlags |= NDIS_NBL_FLAGS_IS_TCP;
    }
}

/// What a miniport must have set on a receive NBL before it indicates it: NDIS routes the
/// return by `SourceHandle` (NET_BUFFER_LIST, Microsoft's NDIS documentation), and nothing the
/// stack left from an earlier indication may remain: a reused NBL carrying the stack's info
/// entries or flags describes a packet it is not. Returns the packet's bytes where they lie, one
/// slice per MDL (none without an MDL), borrowed until the NBL is returned.
fn check_indicated<'a>(handle: NDIS_HANDLE, nbl: *mut NET_BUFFER_LIST) -> Vec<&'a [u8]> {
    // SAFETY: an NBL the driver indicates, live until returned.
    let nbl = unsafe { &*nbl };
    if nbl.SourceHandle != handle {
        violation(format!(
            "an indicated NBL's SourceHandle is {:p}, not the miniport adapter handle",
            nbl.SourceHandle
        ));
    }
    for (entry, &value) in nbl.NetBufferListInfo.iter().enumerate() {
        if value == STACK_LEFTOVER {
            violation(format!(
                "an indicated NBL carries NetBufferListInfo[{entry}] as the stack left it"
            ));
        }
    }
    // SAFETY: the NBL's one NET_BUFFER (read_received checks there is one).
    let nb = unsafe { &*nbl.FirstNetBuffer };
    if nb.CurrentMdl.is_null() {
        // A NET_BUFFER's data is described by its MDL chain (NET_BUFFER: MdlChain, CurrentMdl).
        violation("an indicated NBL's NET_BUFFER has no MDL");
        return Vec::new();
    }
    let pieces = indicated_pieces(std::ptr::from_ref(nbl).cast_mut());
    let packet = Indicated {
        pieces: &pieces,
        offloads: ReceivedOffloads::of(&nbl.NetBufferListInfo),
    };
    // Enough for any IP and transport header the checks look at; the rest only where a check
    // needs every byte.
    let head = packet.head(512);
    check_nbl_flags(nbl.NblFlags, &head);
    let block = adapter_block(handle);
    let record = block.offloads.lock().unwrap().clone();
    let mtu = block
        .attributes
        .lock()
        .unwrap()
        .general
        .as_ref()
        .map_or(u32::MAX, |general| general.mtu);
    let findings =
        offload::check_received(&record, mtu, packet.offloads, &head, packet.len(), || {
            packet.contiguous()
        });
    for problem in findings.violations {
        violation(problem);
    }
    for problem in findings.house_rules {
        house_rule(problem);
    }
    pieces
}

/// The `NblFlags` of an indicated NBL: NDIS's bits as NDIS left them, and the flags that
/// describe the packet true of it (NET_BUFFER_LIST, Microsoft's NDIS documentation: each flag
/// says "All of the Ethernet frames in this NET_BUFFER_LIST structure are" IPv4, IPv6, TCP or
/// UDP frames; IS_IPV4 and IS_IPV6 exclude each other, as IS_TCP and IS_UDP do). A miniport of
/// raw IP packets marks each NBL IPv4 or IPv6 ("MB Raw IP Packet Processing Support": "The
/// NblFlags member ... must be set to NDIS_NBL_FLAGS_IS_IPV4" for an IPv4 packet, IS_IPV6 for
/// an IPv6 one); and header-data split is only for a miniport that enabled it ("Header-Data
/// Split"), which the simulator does not model, so its flags are a leftover.
fn check_nbl_flags(flags: ULONG, packet: &[u8]) {
    if flags & NBL_FLAGS_RESERVED_FOR_NDIS != NDIS_ALLOCATION_FLAG {
        violation(format!(
            "an indicated NBL's flags are {flags:#x}: the bits 0x04 to 0x80, which nbl.h reserves \
             for NDIS, are not as NDIS allocated the NBL ({NDIS_ALLOCATION_FLAG:#x})"
        ));
    }
    let version = packet.first().map(|byte| byte >> 4);
    let (ip_flag, transport) = match version {
        Some(4) => (NDIS_NBL_FLAGS_IS_IPV4, packet.get(9)),
        Some(6) => (NDIS_NBL_FLAGS_IS_IPV6, packet.get(6)),
        _ => (0, None),
    };
    let ip_flags = flags & (NDIS_NBL_FLAGS_IS_IPV4 | NDIS_NBL_FLAGS_IS_IPV6);
    if ip_flag != 0 && ip_flags != ip_flag {
        violation(format!(
            "an indicated IPv{} packet's NBL flags are {flags:#x}, not marked IS_IPV{} alone",
            version.unwrap_or_default(),
            version.unwrap_or_default(),
        ));
    }
    // The transport, where the first header after IP says it: TCP (6), UDP (17), ICMP (1) or
    // ICMPv6 (58). Behind IPv6 extension headers it is not looked for.
    let known = transport
        .copied()
        .filter(|protocol| [1, 6, 17, 58].contains(protocol));
    for (flag, name, protocol) in [
        (NDIS_NBL_FLAGS_IS_TCP, "IS_TCP", 6),
        (NDIS_NBL_FLAGS_IS_UDP, "IS_UDP", 17),
    ] {
        if flags & flag != 0 && known.is_some_and(|known| known != protocol) {
            violation(format!(
                "an indicated NBL's flags are {flags:#x}: {name}, but its packet's protocol is {}",
                known.unwrap_or_default()
            ));
        }
    }
    let split = NDIS_NBL_FLAGS_HD_SPLIT
        | NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_HEADER
        | NDIS_NBL_FLAGS_SPLIT_AT_UPPER_LAYER_PROTOCOL_PAYLOAD;
    if flags & (NDIS_NBL_FLAGS_IS_TCP | NDIS_NBL_FLAGS_IS_UDP)
        == NDIS_NBL_FLAGS_IS_TCP | NDIS_NBL_FLAGS_IS_UDP
        || flags & split != 0
    {
        violation(format!(
            "an indicated NBL's flags are {flags:#x}: both IS_TCP and IS_UDP, or header-data \
             split flags on a miniport without header-data split"
        ));
    }
}

/// An indicated NBL's data where it lies, one slice per MDL of its NET_BUFFER, read as a consumer
/// would.
fn indicated_pieces<'a>(nbl: *mut NET_BUFFER_LIST) -> Vec<&'a [u8]> {
    // SAFETY: an NBL the driver allocated and indicated, live until returned; its one NET_BUFFER
    // (check_indicated looked) and MDL chain, which the driver leaves alone until then.
    unsafe {
        let nb = (*nbl).FirstNetBuffer;
        crate::mm::mdl::mdl_chain_pieces(
            (*nb).CurrentMdl,
            (*nb).CurrentMdlOffset as usize,
            (*nb).DataLength as usize,
        )
    }
}

/// What an indicated NBL carries, read as the stack would.
fn read_received(nbl: *mut NET_BUFFER_LIST) -> Received {
    // SAFETY: an NBL the driver allocated and indicated: live until returned.
    unsafe {
        let nb = (*nbl).FirstNetBuffer;
        if nb.is_null() || !(*nb).Next.is_null() {
            // A miniport indicates one NET_BUFFER on each NET_BUFFER_LIST ("Indicating Received Data from a
            // Miniport Driver").
            violation("a receive NBL must carry exactly one NET_BUFFER");
        }
        let (data, address) = crate::mm::mdl::read_mdl_chain(
            (*nb).CurrentMdl,
            (*nb).CurrentMdlOffset as usize,
            (*nb).DataLength as usize,
        );
        let frame_type = (*nbl).NetBufferListInfo[NetBufferListFrameType] as usize as u16;
        Received {
            data,
            address,
            nbl_flags: (*nbl).NblFlags,
            ether_type: u16::from_be(frame_type),
            offloads: ReceivedOffloads::of(&(*nbl).NetBufferListInfo),
        }
    }
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMIndicateReceiveNetBufferLists(
    handle: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    port: NDIS_PORT_NUMBER,
    count: ULONG,
    flags: ULONG,
) {
    // NdisMIndicateReceiveNetBufferLists (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisMIndicateReceiveNetBufferLists");
    let Some(block) = block(handle, "NdisMIndicateReceiveNetBufferLists") else {
        return;
    };
    check_dispatch_flag(
        "NdisMIndicateReceiveNetBufferLists",
        flags,
        NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL,
    );
    // The flags NdisMIndicateReceiveNetBufferLists documents ("ReceiveFlags"): the ones that only
    // describe the chain are accepted, RESOURCES changes who owns the NBLs, the rest the simulator
    // does not model.
    let modelled = NDIS_RECEIVE_FLAGS_DISPATCH_LEVEL
        | NDIS_RECEIVE_FLAGS_RESOURCES
        | NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE
        | NDIS_RECEIVE_FLAGS_SINGLE_VLAN
        | NDIS_RECEIVE_FLAGS_PERFECT_FILTERED;
    if flags & !modelled != 0 {
        unsupported(format!(
            "receive flags {:#x} (of {flags:#x})",
            flags & !modelled
        ));
    }
    // A miniport indicates on the default port unless it allocated another
    // (NdisMAllocatePort, "NDIS Ports"), which this driver's imports cannot.
    if port != NDIS_DEFAULT_PORT_NUMBER {
        violation(format!(
            "indication on port {port}, which the miniport never allocated"
        ));
    }
    let state = *block.state.lock().unwrap();
    if state != AdapterState::Running {
        // A paused miniport does not indicate received data ("Pausing an Adapter"; "Miniport Adapter
        // States and Operations").
        violation(format!("indication while the adapter is {state:?}"));
    }
    let mut chain = Vec::new();
    let mut next = nbls;
    while !next.is_null() {
        chain.push(next as usize);
        // SAFETY: an NBL of the chain the driver indicates.
        next = unsafe { (*next).Next };
    }
    if chain.len() != count as usize {
        // NumberOfNetBufferLists is the number of NET_BUFFER_LIST structures in the linked list
        // (NdisMIndicateReceiveNetBufferLists).
        violation(format!("indicated {} NBLs but said {count}", chain.len()));
    }
    block
        .indicating
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // NDIS_RECEIVE_FLAGS_RESOURCES: "the miniport driver reclaims ownership of the
    // NET_BUFFER_LIST structures ... immediately after the call to
    // NdisMIndicateReceiveNetBufferLists returns" (NdisMIndicateReceiveNetBufferLists, Microsoft's
    // NDIS documentation): the stack reads them now and never returns them.
    let reclaimed = flags & NDIS_RECEIVE_FLAGS_RESOURCES != 0;
    if flags & NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE != 0 {
        check_single_ether_type(&chain);
    }
    let mut sunk = Vec::new();
    let (mode, sink) = {
        let mut receive = block.receive.lock().unwrap();
        for &nbl in &chain {
            if !ALLOCATED_NBLS.lock().unwrap().contains_key(&nbl) {
                // An indicated NBL comes from a pool of the miniport's (NdisAllocateNetBufferAndNetBufferList).
                violation(format!("indicating NBL {nbl:#x}, which was not allocated"));
                continue;
            }
            let pieces = check_indicated(handle, nbl as *mut NET_BUFFER_LIST);
            if receive.held.contains(&nbl) || receive.returning.contains(&nbl) {
                // An NBL the stack holds is the stack's until MiniportReturnNetBufferLists returns it.
                violation(format!(
                    "indicating NBL {nbl:#x}, which the stack still holds"
                ));
            }
            if receive.sink.is_some() {
                // SAFETY: an NBL the driver indicates, live until returned.
                let info = unsafe { &(*(nbl as *mut NET_BUFFER_LIST)).NetBufferListInfo };
                sunk.push((pieces, ReceivedOffloads::of(info)));
            } else if receive.recording {
                let received = read_received(nbl as *mut NET_BUFFER_LIST);
                receive.received.push_back(received);
            }
            receive.packets += 1;
            match receive.mode {
                // The miniport takes them back when the call returns: the stack keeps nothing.
                _ if reclaimed => {}
                ReturnMode::Hold => receive.held.push(nbl),
                ReturnMode::Immediately | ReturnMode::PauseDuringIndication => {
                    receive.returning.push(nbl)
                }
            }
        }
        receive.indication_count += 1;
        // Kept for the tests that look at them; a long-lived emulator would grow by each.
        if receive.recording {
            receive.indications.push(count);
        }
        let mode = receive.mode;
        if mode == ReturnMode::PauseDuringIndication {
            receive.mode = ReturnMode::Immediately;
        }
        (mode, receive.sink.clone())
    };
    block.received_changed.notify_all();
    if let Some(sink) = sink {
        let packets: Vec<Indicated<'_>> = sunk
            .iter()
            .map(|(pieces, offloads)| Indicated {
                pieces,
                offloads: *offloads,
            })
            .collect();
        sink(&packets);
    }
    if mode == ReturnMode::PauseDuringIndication {
        pause_from_another_thread(handle);
    }
    if mode != ReturnMode::Hold && !reclaimed {
        return_nbls(handle, &chain);
    }
    block
        .indicating
        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
}

/// NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE: "all of the NET_BUFFER_LIST structures in the list ...
/// have the same protocol type (EtherType)" (NdisMIndicateReceiveNetBufferLists, Microsoft's NDIS
/// documentation), which the stack then does not look at for each one.
fn check_single_ether_type(chain: &[usize]) {
    // SAFETY: NBLs the driver indicates, live until returned.
    let frame_type = |nbl: usize| unsafe {
        (*(nbl as *mut NET_BUFFER_LIST)).NetBufferListInfo[NetBufferListFrameType]
    };
    if let Some(&first) = chain.first()
        && chain
            .iter()
            .any(|&nbl| frame_type(nbl) != frame_type(first))
    {
        violation(
            "NDIS_RECEIVE_FLAGS_SINGLE_ETHER_TYPE on an indication whose NBLs have different \
             frame types",
        );
    }
}

/// MiniportPause (to Paused) or MiniportRestartEx (to Running), with NDIS's bookkeeping of the
/// adapter's state.
pub(crate) fn transition(handle: NDIS_HANDLE, from: AdapterState, to: AdapterState) -> NDIS_STATUS {
    let state = state(handle);
    if state != from {
        // A check on the test: NDIS's state machine ("Miniport Adapter States and Operations").
        violation(format!(
            "the simulator moves an adapter {state:?} -> {to:?}"
        ));
    }
    let handlers = handlers().expect("a registered driver");
    let context = adapter_context(handle);
    let status = if to == AdapterState::Paused {
        let mut parameters = PauseParameters {
            header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: 1,
                Size: 0xC,
            },
            flags: 0,
            pause_reason: 0,
        };
        irql::call_at(PASSIVE_LEVEL, "MiniportPause", || {
            // SAFETY: the driver's handler with its context and live parameters.
            unsafe { (handlers.pause)(context, (&raw mut parameters).cast()) }
        })
    } else {
        let mut parameters = RestartParameters {
            header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_DEFAULT,
                Revision: 1,
                Size: 0x14,
            },
            restart_attributes: 0,
            flags: 0,
        };
        irql::call_at(PASSIVE_LEVEL, "MiniportRestartEx", || {
            // SAFETY: the driver's handler with its context and live parameters.
            unsafe { (handlers.restart)(context, (&raw mut parameters).cast()) }
        })
    };
    if status == NDIS_STATUS_SUCCESS && to == AdapterState::Paused {
        check_no_send_outstanding(handle);
    }
    if status == NDIS_STATUS_PENDING && to == AdapterState::Paused {
        set_state(handle, AdapterState::Pausing);
    } else if status == NDIS_STATUS_PENDING {
        unsupported("a pending restart (NdisMRestartComplete)");
    } else if status == NDIS_STATUS_SUCCESS {
        set_state(handle, to);
    }
    status
}

#[repr(C)]
struct PauseParameters {
    header: NDIS_OBJECT_HEADER,
    flags: u32,
    pause_reason: u32,
}

#[repr(C)]
struct RestartParameters {
    header: NDIS_OBJECT_HEADER,
    restart_attributes: usize,
    flags: u32,
}

/// NDIS pausing the adapter from another thread while this one indicates: returns once that
/// pause has returned, or after 100 ms if it waits for this indication (as it may).
fn pause_from_another_thread(handle: NDIS_HANDLE) {
    let (returned, changed) = &*PAUSE_RETURNED;
    *returned.lock().unwrap() = false;
    // The handle names NDIS's adapter block, which NDIS uses from any thread.
    let adapter = handle as usize;
    std::thread::spawn(move || {
        let status = transition(
            adapter as NDIS_HANDLE,
            AdapterState::Running,
            AdapterState::Paused,
        );
        if status != NDIS_STATUS_SUCCESS && status != NDIS_STATUS_PENDING {
            // MiniportPause returns NDIS_STATUS_SUCCESS or NDIS_STATUS_PENDING (MINIPORT_PAUSE).
            violation(format!("MiniportPause failed: {status:#x}"));
        }
        let (returned, changed) = &*PAUSE_RETURNED;
        *returned.lock().unwrap() = true;
        changed.notify_all();
    });
    let _ = changed
        .wait_timeout_while(
            returned.lock().unwrap(),
            std::time::Duration::from_millis(100),
            |returned| !*returned,
        )
        .unwrap();
}

static PAUSE_RETURNED: std::sync::LazyLock<(Mutex<bool>, std::sync::Condvar)> =
    std::sync::LazyLock::new(|| (Mutex::new(false), std::sync::Condvar::new()));

/// A dispatch-level flag may be set only at DISPATCH_LEVEL; clear, it says nothing ("Dispatch
/// IRQL Tracking", Microsoft's NDIS documentation: "If the current IRQL is unknown, or the caller
/// is not running at DISPATCH_LEVEL, the caller should clear this flag", so clearing it is always
/// right and setting it below DISPATCH_LEVEL is the error).
fn check_dispatch_flag(what: &str, flags: ULONG, dispatch_flag: ULONG) {
    let irql = irql::current();
    if flags & dispatch_flag != 0 && irql != DISPATCH_LEVEL {
        violation(format!(
            "{what} with the DISPATCH_LEVEL flag ({flags:#x}) at IRQL {irql}"
        ));
    }
}

/// The stack gives NBLs back to the driver, in the order given, in one call.
pub fn return_nbls(handle: NDIS_HANDLE, nbls: &[usize]) {
    if nbls.is_empty() {
        return;
    }
    let block = adapter_block(handle);
    {
        let mut receive = block.receive.lock().unwrap();
        for nbl in nbls {
            if let Some(position) = receive.held.iter().position(|held| held == nbl) {
                receive.held.remove(position);
            } else if let Some(position) = receive.returning.iter().position(|held| held == nbl) {
                receive.returning.remove(position);
            } else {
                // A check on the simulator's own bookkeeping.
                violation(format!(
                    "the simulator returns NBL {nbl:#x}, which it does not hold"
                ));
                return;
            }
        }
    }
    for &nbl in nbls {
        scribble_on_returned(nbl as *mut NET_BUFFER_LIST);
    }
    for pair in nbls.windows(2) {
        // SAFETY: NBLs the stack held; relinked for the return call.
        unsafe { (*(pair[0] as *mut NET_BUFFER_LIST)).Next = pair[1] as *mut NET_BUFFER_LIST };
    }
    // SAFETY: the last NBL of the chain.
    unsafe { (*(*nbls.last().unwrap() as *mut NET_BUFFER_LIST)).Next = null_mut() };
    let handlers = handlers().expect("a registered driver");
    let context = adapter_context(handle);
    let at_dispatch = irql::current() == DISPATCH_LEVEL;
    let flags = if at_dispatch {
        NDIS_RETURN_FLAGS_DISPATCH_LEVEL
    } else {
        0
    };
    let irql = irql::current();
    irql::call_at(irql, "MiniportReturnNetBufferLists", || {
        // SAFETY: the driver's handler with NBLs it indicated.
        unsafe { (handlers.return_nbls)(context, nbls[0] as *mut NET_BUFFER_LIST, flags) }
    });
}

#[kernel_export]
pub unsafe extern "efiapi" fn NdisMPauseComplete(handle: NDIS_HANDLE) {
    // NdisMPauseComplete (ndis.h): "IRQL <= DISPATCH_LEVEL".
    irql::require_at_most(DISPATCH_LEVEL, "NdisMPauseComplete");
    let Some(block) = block(handle, "NdisMPauseComplete") else {
        return;
    };
    if block.indicating.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        // "Pausing an Adapter": before the pause completes, the miniport waits for all calls to
        // NdisMIndicateReceiveNetBufferLists to return.
        violation(
            "NdisMPauseComplete inside NdisMIndicateReceiveNetBufferLists: the pause completes \
             while an indication is still under way",
        );
    }
    let mut state = block.state.lock().unwrap();
    if *state != AdapterState::Pausing {
        // NdisMPauseComplete completes a pause that MiniportPause pended (NdisMPauseComplete).
        violation(format!(
            "NdisMPauseComplete while the adapter is {:?}",
            *state
        ));
    }
    *state = AdapterState::Paused;
    block.state_changed.notify_all();
    drop(state);
    check_no_send_outstanding(handle);
}
