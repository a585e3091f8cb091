//! Driver entry and unload, and the miniport handlers NDIS calls: thin glue from NDIS's raw
//! arguments to the adapter's code.

use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::adapter::Adapter;
use crate::device;
use crate::oid;
use crate::sys::*;

/// NDIS's handle for this miniport driver, from registration until unload.
static MINIPORT_DRIVER: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(null_mut());

/// The kernel calls this once when it loads the image: register the miniport with NDIS.
///
/// # Safety
/// Called by the kernel at PASSIVE_LEVEL with its driver object and registry path.
#[unsafe(no_mangle)]
pub unsafe extern "efiapi" fn DriverEntry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    let characteristics = NDIS_MINIPORT_DRIVER_CHARACTERISTICS {
        Header: NDIS_OBJECT_HEADER {
            Type: NDIS_OBJECT_TYPE_MINIPORT_DRIVER_CHARACTERISTICS,
            Revision: NDIS_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3,
            Size: NDIS_SIZEOF_MINIPORT_DRIVER_CHARACTERISTICS_REVISION_3,
        },
        MajorNdisVersion: NDIS_MINIPORT_MAJOR_VERSION,
        MinorNdisVersion: NDIS_MINIPORT_MINOR_VERSION,
        MajorDriverVersion: (oid::VENDOR_DRIVER_VERSION >> 16) as u8,
        MinorDriverVersion: oid::VENDOR_DRIVER_VERSION as u8,
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
        // Optional ("Miniport Adapter OID Requests": required only with RSSv2).
        SynchronousOidRequestHandler: None,
    };
    let status = device::start();
    if !NT_SUCCESS(status) {
        return status;
    }
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
        device::stop();
        return status;
    }
    MINIPORT_DRIVER.store(handle, Ordering::Release);
    // SAFETY: our driver object, just registered with NDIS; no IRP has arrived yet.
    unsafe { device::hook_dispatch(driver_object) };
    STATUS_SUCCESS
}

unsafe extern "efiapi" fn unload(_driver_object: PDRIVER_OBJECT) {
    let handle = MINIPORT_DRIVER.swap(null_mut(), Ordering::AcqRel);
    if !handle.is_null() {
        // SAFETY: the handle NdisMRegisterMiniportDriver gave, deregistered once.
        unsafe { NdisMDeregisterMiniportDriver(handle) };
        device::stop();
    }
}

/// The adapter behind the context NDIS passes to every adapter handler.
///
/// # Safety
/// `context` is the MiniportAdapterContext this driver registered, between a successful
/// MiniportInitializeEx and the end of MiniportHaltEx.
unsafe fn adapter<'a>(context: NDIS_HANDLE) -> &'a Adapter {
    // SAFETY: the context is the pool-allocated Adapter, alive until halt frees it.
    unsafe { &*context.cast::<Adapter>() }
}

unsafe extern "efiapi" fn initialize(
    miniport: NDIS_HANDLE,
    _driver_context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_INIT_PARAMETERS,
) -> NDIS_STATUS {
    match Adapter::initialize(miniport) {
        Ok(adapter) => {
            // Owned by NDIS as the adapter context until halt.
            let _context = adapter.into_raw();
            NDIS_STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "efiapi" fn halt(context: NDIS_HANDLE, _action: NDIS_HALT_ACTION) {
    if let Some(context) = NonNull::new(context.cast::<Adapter>()) {
        // SAFETY: the context initialize gave NDIS; halt is its last use.
        Adapter::halt(unsafe { PoolBox::from_raw(context) });
    }
}

unsafe extern "efiapi" fn pause(
    context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_PAUSE_PARAMETERS,
) -> NDIS_STATUS {
    // SAFETY: NDIS passes the adapter's context.
    unsafe { adapter(context) }.pause()
}

unsafe extern "efiapi" fn restart(
    context: NDIS_HANDLE,
    _parameters: *mut NDIS_MINIPORT_RESTART_PARAMETERS,
) -> NDIS_STATUS {
    // SAFETY: NDIS passes the adapter's context.
    unsafe { adapter(context) }.restart()
}

unsafe extern "efiapi" fn oid_request(
    context: NDIS_HANDLE,
    request: *mut NDIS_OID_REQUEST,
) -> NDIS_STATUS {
    // SAFETY: NDIS passes the adapter's context and a request it owns until this returns.
    let (adapter, request) = unsafe { (adapter(context), &mut *request) };
    let data = &mut request.DATA;
    let buffer: &mut [u8] = if data.InformationBuffer.is_null() {
        &mut []
    } else {
        // SAFETY: NDIS's information buffer: InformationBufferLength bytes, ours during the
        // call.
        unsafe {
            core::slice::from_raw_parts_mut(
                data.InformationBuffer.cast(),
                data.InformationBufferLength as usize,
            )
        }
    };
    let request_type = request.RequestType;
    let answer = if request_type == NdisRequestSetInformation {
        adapter.set(data.Oid, buffer)
    } else if request_type == NdisRequestQueryInformation
        || request_type == NdisRequestQueryStatistics
    {
        adapter.query(data.Oid, buffer)
    } else {
        return NDIS_STATUS_NOT_SUPPORTED;
    };
    data.BytesWrittenOrRead = answer.bytes_done;
    data.BytesNeeded = answer.bytes_needed;
    answer.status
}

unsafe extern "efiapi" fn send_net_buffer_lists(
    context: NDIS_HANDLE,
    net_buffer_lists: *mut NET_BUFFER_LIST,
    _port: NDIS_PORT_NUMBER,
    send_flags: ULONG,
) {
    // SAFETY: NDIS passes the adapter's context and a chain the driver owns until it completes
    // it (NblChain completes it exactly once).
    let (adapter, chain) = unsafe { (adapter(context), NblChain::from_send(net_buffer_lists)) };
    adapter.send(chain, send_flags & NDIS_SEND_FLAGS_DISPATCH_LEVEL != 0);
}

unsafe extern "efiapi" fn return_net_buffer_lists(
    context: NDIS_HANDLE,
    net_buffer_lists: *mut NET_BUFFER_LIST,
    _return_flags: ULONG,
) {
    // SAFETY: NDIS passes the adapter's context and NBLs this driver indicated.
    let (adapter, nbls) = unsafe { (adapter(context), NblList::from_returned(net_buffer_lists)) };
    adapter.return_nbls(nbls);
}

/// Sends complete at once, so none is ever waiting to be cancelled.
unsafe extern "efiapi" fn cancel_send(_context: NDIS_HANDLE, _cancel_id: PVOID) {}

unsafe extern "efiapi" fn device_pnp_event_notify(
    _context: NDIS_HANDLE,
    _event: *mut NET_DEVICE_PNP_EVENT,
) {
}

/// Nothing to quiesce: the adapter drives no hardware. (This may run at HIGH_LEVEL during a
/// bug check, so it must touch nothing anyway.)
unsafe extern "efiapi" fn shutdown(_context: NDIS_HANDLE, _action: NDIS_SHUTDOWN_ACTION) {}

/// OID requests complete at once, so none is ever waiting to be cancelled.
unsafe extern "efiapi" fn cancel_oid_request(_context: NDIS_HANDLE, _request_id: PVOID) {}
