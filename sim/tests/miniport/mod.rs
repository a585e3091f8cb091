//! A minimal NDIS miniport for the simulator's own tests: it does what a test asks of it, so a
//! test can show a rule accepting what Windows accepts, or refusing what Windows refuses, without
//! going through the oxtun driver. It registers with the characteristics revision a test chooses,
//! brings up one adapter, and hands every send and every return to the test's hooks.
#![allow(dead_code)]

use std::ptr::null_mut;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use oxtun_driver::sys::*;
use oxtun_sim::{Adapter, Driver};

/// What the miniport does with a send: the NBLs, the send flags.
pub type SendHook = Box<dyn Fn(*mut NET_BUFFER_LIST, ULONG) + Send>;
/// What the miniport does with NBLs NDIS returns: the NBLs, the return flags.
pub type ReturnHook = Box<dyn Fn(*mut NET_BUFFER_LIST, ULONG) + Send>;
/// How the miniport answers an OID request.
pub type OidHook = Box<dyn Fn(&mut NDIS_OID_REQUEST) -> NDIS_STATUS + Send>;

static SEND: Mutex<Option<SendHook>> = Mutex::new(None);
static RETURN: Mutex<Option<ReturnHook>> = Mutex::new(None);
static OID: Mutex<Option<OidHook>> = Mutex::new(None);
/// The offload attributes the miniport sets at initialization, if any: the default
/// configuration and the hardware capabilities.
static OFFLOADS: Mutex<Option<(NDIS_OFFLOAD, NDIS_OFFLOAD)>> = Mutex::new(None);
static REVISION: AtomicU8 = AtomicU8::new(NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2);
static DRIVER_HANDLE: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());
static ADAPTER_HANDLE: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());

/// Loads the miniport, registering characteristics of `revision` (2 or 3), and adds its adapter.
pub fn load(revision: u8) -> Result<(Driver, Adapter), NTSTATUS> {
    REVISION.store(revision, Ordering::SeqCst);
    let driver = Driver::load_routine(driver_entry)?;
    let adapter = driver.add_adapter().map_err(|status| status as NTSTATUS)?;
    Ok((driver, adapter))
}

pub fn on_send(hook: impl Fn(*mut NET_BUFFER_LIST, ULONG) + Send + 'static) {
    *SEND.lock().unwrap() = Some(Box::new(hook));
}

pub fn on_return(hook: impl Fn(*mut NET_BUFFER_LIST, ULONG) + Send + 'static) {
    *RETURN.lock().unwrap() = Some(Box::new(hook));
}

/// OID requests are answered by `hook` (NDIS_STATUS_NOT_SUPPORTED without one).
pub fn on_oid(hook: impl Fn(&mut NDIS_OID_REQUEST) -> NDIS_STATUS + Send + 'static) {
    *OID.lock().unwrap() = Some(Box::new(hook));
}

/// The next adapter sets offload attributes: `default` as its current configuration, `hardware`
/// as its capabilities.
pub fn offloads_at_initialization(default: NDIS_OFFLOAD, hardware: NDIS_OFFLOAD) {
    *OFFLOADS.lock().unwrap() = Some((default, hardware));
}

/// Indicates NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG with `current`.
pub fn indicate_offloads(mut current: NDIS_OFFLOAD) {
    // SAFETY (test): the adapter's handle; a buffer that lives through the call.
    unsafe {
        indicate_status(
            adapter_handle(),
            NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
            &mut current,
        )
    };
}

/// The handle NDIS gave the adapter, for the test's calls into NDIS.
pub fn adapter_handle() -> NDIS_HANDLE {
    ADAPTER_HANDLE.load(Ordering::SeqCst)
}

/// The adapter context the miniport registered: any non-null value.
fn context() -> NDIS_HANDLE {
    static CONTEXT: u8 = 0;
    (&raw const CONTEXT).cast_mut().cast()
}

unsafe extern "efiapi" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    let revision = REVISION.load(Ordering::SeqCst);
    let mut characteristics = NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: revision,
            Size: if revision == 3 {
                NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3
            } else {
                NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2
            },
        },
        MajorNdisVersion: 6,
        MinorNdisVersion: if revision == 3 { 80 } else { 30 },
        MajorDriverVersion: 1,
        MinorDriverVersion: 0,
        Flags: 0,
        SetOptionsHandler: None,
        InitializeHandlerEx: Some(initialize),
        HaltHandlerEx: Some(halt),
        UnloadHandler: Some(unload),
        PauseHandler: Some(pause),
        RestartHandler: Some(restart),
        OidRequestHandler: Some(oid_request),
        SendNetBufferListsHandler: Some(send),
        ReturnNetBufferListsHandler: Some(return_nbls),
        CancelSendHandler: Some(cancel),
        CheckForHangHandlerEx: None,
        ResetHandlerEx: None,
        DevicePnPEventNotifyHandler: Some(pnp_event),
        ShutdownHandlerEx: Some(shutdown),
        CancelOidRequestHandler: Some(cancel),
        DirectOidRequestHandler: None,
        CancelDirectOidRequestHandler: None,
        SynchronousOidRequestHandler: None,
    };
    let mut handle = null_mut();
    // SAFETY: the driver object and registry path DriverEntry got; characteristics that live
    // for the call; a local for the handle.
    let status = unsafe {
        NdisMRegisterMiniportDriver(
            driver_object,
            registry_path,
            null_mut(),
            &raw mut characteristics,
            &mut handle,
        )
    };
    DRIVER_HANDLE.store(handle, Ordering::SeqCst);
    status
}

unsafe extern "efiapi" fn unload(_driver_object: PDRIVER_OBJECT) {
    // SAFETY: the handle NdisMRegisterMiniportDriver gave, once every adapter has halted.
    unsafe { NdisMDeregisterMiniportDriver(DRIVER_HANDLE.load(Ordering::SeqCst)) };
}

unsafe extern "efiapi" fn initialize(
    adapter: NDIS_HANDLE,
    _driver_context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
) -> NDIS_STATUS {
    ADAPTER_HANDLE.store(adapter, Ordering::SeqCst);
    let mut registration = NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES,
            Revision: NDIS_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2,
            Size: NDIS_SIZEOF_MINIPORT_ADAPTER_REGISTRATION_ATTRIBUTES_REVISION_2,
        },
        MiniportAdapterContext: context(),
        AttributeFlags: 0,
        CheckForHangTimeInSeconds: 0,
        InterfaceType: NdisInterfaceInternal,
    };
    let mut power = NDIS_PM_CAPABILITIES {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_DEFAULT,
            Revision: NDIS_PM_CAPABILITIES_REVISION_2,
            Size: NDIS_SIZEOF_NDIS_PM_CAPABILITIES_REVISION_2,
        },
        ..NDIS_PM_CAPABILITIES::default()
    };
    // SAFETY: plain data; all zeroes is a valid start for the attributes.
    let mut general: NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES = unsafe { std::mem::zeroed() };
    general.Header = NDIS_OBJECT_HEADER {
        Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES,
        Revision: NDIS_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
        Size: NDIS_SIZEOF_MINIPORT_ADAPTER_GENERAL_ATTRIBUTES_REVISION_2,
    };
    general.MediaType = NdisMediumIP;
    general.MtuSize = 1500;
    general.MediaConnectState = MediaConnectStateConnected;
    general.PowerManagementCapabilitiesEx = &mut power;
    // The OIDs a test's hook may answer.
    static SUPPORTED: [NDIS_OID; 2] = [OID_TCP_OFFLOAD_PARAMETERS, OID_OFFLOAD_ENCAPSULATION];
    general.SupportedOidList = SUPPORTED.as_ptr();
    general.SupportedOidListLength = size_of_val(&SUPPORTED) as u32;
    let offloads = *OFFLOADS.lock().unwrap();
    // SAFETY: NDIS's adapter handle, in MiniportInitializeEx; attributes that live for the calls.
    unsafe {
        let status = NdisMSetMiniportAttributes(adapter, (&raw mut registration).cast());
        if status != NDIS_STATUS_SUCCESS {
            return status;
        }
        let status = NdisMSetMiniportAttributes(adapter, (&raw mut general).cast());
        if status != NDIS_STATUS_SUCCESS {
            return status;
        }
        if let Some((mut default, mut hardware)) = offloads {
            let mut attributes = NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES {
                Header: NDIS_OBJECT_HEADER {
                    Type: NDIS_OBJECT_TYPE_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES,
                    Revision: NDIS_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
                    Size: NDIS_SIZEOF_MINIPORT_ADAPTER_OFFLOAD_ATTRIBUTES_REVISION_1,
                },
                DefaultOffloadConfiguration: &mut default,
                HardwareOffloadCapabilities: &mut hardware,
                DefaultTcpConnectionOffloadConfiguration: null_mut(),
                TcpConnectionOffloadHardwareCapabilities: null_mut(),
            };
            return NdisMSetMiniportAttributes(adapter, (&raw mut attributes).cast());
        }
        NDIS_STATUS_SUCCESS
    }
}

unsafe extern "efiapi" fn halt(_context: NDIS_HANDLE, _action: NDIS_HALT_ACTION) {}

unsafe extern "efiapi" fn pause(
    _context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS
}

unsafe extern "efiapi" fn restart(
    _context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS
}

unsafe extern "efiapi" fn oid_request(
    _context: NDIS_HANDLE,
    request: *mut NDIS_OID_REQUEST,
) -> NDIS_STATUS {
    let hook = OID.lock().unwrap();
    match hook.as_ref() {
        // SAFETY: NDIS's request, the miniport's until it returns.
        Some(hook) => hook(unsafe { &mut *request }),
        None => NDIS_STATUS_NOT_SUPPORTED,
    }
}

unsafe extern "efiapi" fn send(
    _context: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    _port: NDIS_PORT_NUMBER,
    flags: ULONG,
) {
    let hook = SEND.lock().unwrap();
    (hook.as_ref().expect("a test's send hook"))(nbls, flags);
}

unsafe extern "efiapi" fn return_nbls(
    _context: NDIS_HANDLE,
    nbls: *mut NET_BUFFER_LIST,
    flags: ULONG,
) {
    let hook = RETURN.lock().unwrap();
    (hook.as_ref().expect("a test's return hook"))(nbls, flags);
}

unsafe extern "efiapi" fn cancel(_context: NDIS_HANDLE, _id: PVOID) {}

unsafe extern "efiapi" fn pnp_event(_context: NDIS_HANDLE, _event: *mut NET_DEVICE_PNP_EVENT) {}

unsafe extern "efiapi" fn shutdown(_context: NDIS_HANDLE, _action: NDIS_SHUTDOWN_ACTION) {}

/// Completes every NBL of a send with `status` (when given), with the completion flags `flags`.
pub fn complete(nbls: *mut NET_BUFFER_LIST, status: Option<NDIS_STATUS>, flags: ULONG) {
    let mut nbl = nbls;
    while let Some(status) = status
        && !nbl.is_null()
    {
        // SAFETY: an NBL of the send the miniport owns until it completes it.
        unsafe {
            (*nbl).Status = status;
            nbl = (*nbl).Next;
        }
    }
    // SAFETY: the send's own NBLs, completed once, with the adapter's handle.
    unsafe { NdisMSendNetBufferListsComplete(adapter_handle(), nbls, flags) };
}
