//! Driver entry and unload, and the miniport's registration with NDIS.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::sys::*;

/// NDIS's handle for this miniport driver, from registration until unload.
static MINIPORT_DRIVER: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());

/// The per-adapter context NDIS hands back to every adapter handler.
struct Adapter {
    /// NDIS's handle for the adapter.
    miniport: NDIS_HANDLE,
}

/// The kernel calls this once when it loads the image: register the miniport with NDIS.
///
/// # Safety
/// Called by the kernel at PASSIVE_LEVEL with its driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn DriverEntry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    let characteristics = NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
            Size: NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_2,
        },
        MajorNdisVersion: NDIS_MINIPORT_MAJOR_VERSION,
        MinorNdisVersion: NDIS_MINIPORT_MINOR_VERSION,
        MajorDriverVersion: 0,
        MinorDriverVersion: 1,
        Flags: 0,
        SetOptionsHandler: None,
        InitializeHandlerEx: Some(initialize),
        HaltHandlerEx: Some(halt),
        UnloadHandler: Some(unload),
        PauseHandler: Some(pause),
        RestartHandler: Some(restart),
        OidRequestHandler: Some(oid_request),
        SendNetBufferListsHandler: Some(send_net_buffer_lists),
        ReturnNetBufferListsHandler: Some(return_net_buffer_lists),
        CancelSendHandler: Some(cancel_send),
        CheckForHangHandlerEx: None,
        ResetHandlerEx: None,
        DevicePnPEventNotifyHandler: Some(device_pnp_event_notify),
        ShutdownHandlerEx: Some(shutdown),
        CancelOidRequestHandler: Some(cancel_oid_request),
        DirectOidRequestHandler: None,
        CancelDirectOidRequestHandler: None,
    };
    let mut handle = null_mut();
    // SAFETY: DriverEntry's own arguments, a fully initialized characteristics structure (NDIS
    // copies it) and a local for the handle.
    let status = unsafe {
        NdisMRegisterMiniportDriver(
            driver_object,
            registry_path,
            null_mut(),
            &characteristics,
            &mut handle,
        )
    };
    if status != NDIS_STATUS_SUCCESS {
        return status;
    }
    MINIPORT_DRIVER.store(handle, Ordering::Release);
    STATUS_SUCCESS
}

unsafe extern "system" fn unload(_driver_object: PDRIVER_OBJECT) {
    let handle = MINIPORT_DRIVER.swap(null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: the handle NdisMRegisterMiniportDriver gave, deregistered once.
        unsafe { NdisMDeregisterMiniportDriver(handle) };
    }
}

/// Adapter bring-up (attributes, the ring device) arrives with the control plane; until then
/// NDIS is told no adapter can start, and no other adapter handler is reached.
unsafe extern "system" fn initialize(
    _miniport: NDIS_HANDLE,
    _driver_context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
) -> NDIS_STATUS {
    NDIS_STATUS_FAILURE
}

unsafe extern "system" fn halt(_adapter: NDIS_HANDLE, _action: NDIS_HALT_ACTION) {}

unsafe extern "system" fn pause(
    _adapter: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS
}

unsafe extern "system" fn restart(
    _adapter: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
) -> NDIS_STATUS {
    NDIS_STATUS_SUCCESS
}

unsafe extern "system" fn oid_request(
    _adapter: NDIS_HANDLE,
    _request: *mut NDIS_OID_REQUEST,
) -> NDIS_STATUS {
    NDIS_STATUS_NOT_SUPPORTED
}

/// No rings can be registered yet, so every packet fails as the medium being disconnected.
unsafe extern "system" fn send_net_buffer_lists(
    adapter: NDIS_HANDLE,
    net_buffer_lists: *mut NET_BUFFER_LIST,
    _port: NDIS_PORT_NUMBER,
    send_flags: ULONG,
) {
    let mut nbl = net_buffer_lists;
    while !nbl.is_null() {
        // SAFETY: NDIS hands the driver a valid chain of NBLs, which it owns until completion.
        unsafe {
            set_NET_BUFFER_LIST_STATUS(nbl, NDIS_STATUS_MEDIA_DISCONNECTED);
            nbl = NET_BUFFER_LIST_NEXT_NBL(nbl);
        }
    }
    let complete_flags = if send_flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0 {
        NDIS_SEND_COMPLETE_FLAGS_DISPATCH_LEVEL
    } else {
        0
    };
    // SAFETY: `adapter` is the context this driver gave NDIS for the adapter: an Adapter that
    // lives until halt; the chain goes back to NDIS whole.
    unsafe {
        let adapter = &*adapter.cast::<Adapter>();
        NdisMSendNetBufferListsComplete(adapter.miniport, net_buffer_lists, complete_flags);
    }
}

/// Nothing is indicated yet, so nothing comes back.
unsafe extern "system" fn return_net_buffer_lists(
    _adapter: NDIS_HANDLE,
    _net_buffer_lists: *mut NET_BUFFER_LIST,
    _return_flags: ULONG,
) {
}

/// Sends complete at once, so none is ever waiting to be cancelled.
unsafe extern "system" fn cancel_send(_adapter: NDIS_HANDLE, _cancel_id: PVOID) {}

unsafe extern "system" fn device_pnp_event_notify(
    _adapter: NDIS_HANDLE,
    _event: *mut NET_DEVICE_PNP_EVENT,
) {
}

unsafe extern "system" fn shutdown(_adapter: NDIS_HANDLE, _action: NDIS_SHUTDOWN_ACTION) {}

/// OID requests complete at once, so none is ever waiting to be cancelled.
unsafe extern "system" fn cancel_oid_request(_adapter: NDIS_HANDLE, _request_id: PVOID) {}
