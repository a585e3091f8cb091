//! A session's device handle, and its closing when the adapter's device is removed.
//!
//! The handle holds the ring registration, so PnP cannot remove the device while it is open.
//! Microsoft's way for an application to let a removal through is a notification on the handle
//! (CM_Register_Notification with CM_NOTIFY_FILTER_TYPE_DEVICEHANDLE, "Registering for
//! Notification of Device Interface Arrival and Device Removal"): on a query-remove, close the
//! handle. The driver closes an owner's handles itself on query-remove too, but only as a last
//! resort (issue 21): with this, it finds none of ours. What each event does is
//! `rules::closes_handle_on`.
//!
//! CM_Register_Notification is looked up when needed (Wine 8's cfgmgr32 lacks it, and a static
//! import would keep the DLL from loading there); where it is missing, or refuses, the session
//! runs without it and the driver's forced close remains.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_NOTIFY_ACTION, CM_NOTIFY_EVENT_DATA, CM_NOTIFY_FILTER, CM_NOTIFY_FILTER_0,
    CM_NOTIFY_FILTER_0_0, CM_NOTIFY_FILTER_TYPE_DEVICEHANDLE, CONFIGRET, CR_SUCCESS,
    HCMNOTIFICATION, PCM_NOTIFY_CALLBACK,
};
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_SUCCESS, HANDLE};

use super::rules::closes_handle_on;
use super::system::system_function;
use crate::log;

/// A device handle that either its owner or the removal notification closes, whichever comes
/// first; the other finds it closed.
pub struct DeviceHandle(AtomicPtr<c_void>);

impl DeviceHandle {
    pub fn new(handle: HANDLE) -> DeviceHandle {
        DeviceHandle(AtomicPtr::new(handle))
    }

    /// The handle, or null once closed.
    pub fn raw(&self) -> HANDLE {
        self.0.load(Ordering::Acquire)
    }

    /// Closes the handle if it is still open; true if this call closed it.
    pub fn close(&self) -> bool {
        let handle = self.0.swap(null_mut(), Ordering::AcqRel);
        if handle.is_null() {
            return false;
        }
        // SAFETY: our handle, taken out of the cell, so closed once.
        unsafe { CloseHandle(handle) };
        true
    }
}

type RegisterNotification = unsafe extern "system" fn(
    *const CM_NOTIFY_FILTER,
    *const c_void,
    PCM_NOTIFY_CALLBACK,
    *mut HCMNOTIFICATION,
) -> CONFIGRET;
type UnregisterNotification = unsafe extern "system" fn(HCMNOTIFICATION) -> CONFIGRET;

/// A registered removal notification for a [`DeviceHandle`], unregistered on drop, which waits
/// for a callback under way (CM_Unregister_Notification's page). The handle must outlive it.
pub struct RemovalNotification {
    notification: HCMNOTIFICATION,
    unregister: UnregisterNotification,
}

// SAFETY: a notification handle may be unregistered from any thread.
unsafe impl Send for RemovalNotification {}
// SAFETY: nothing but the drop uses it.
unsafe impl Sync for RemovalNotification {}

impl RemovalNotification {
    /// Asks PnP to tell `device` when its device is being removed; None, logged, where Windows
    /// cannot.
    ///
    /// # Safety
    /// `device` stays where it is until the returned value is dropped.
    pub unsafe fn register(device: &DeviceHandle) -> Option<RemovalNotification> {
        let (Some(register), Some(unregister)) = (
            system_function("cfgmgr32.dll", c"CM_Register_Notification"),
            system_function("cfgmgr32.dll", c"CM_Unregister_Notification"),
        ) else {
            log::warn(
                "CM_Register_Notification is missing: the driver closes the session's handle \
                 if the adapter is removed",
            );
            return None;
        };
        // SAFETY: CM_Register_Notification's type, as cfgmgr32.h declares it.
        let register: RegisterNotification = unsafe { std::mem::transmute(register) };
        // SAFETY: CM_Unregister_Notification's type, as cfgmgr32.h declares it.
        let unregister: UnregisterNotification = unsafe { std::mem::transmute(unregister) };
        let filter = CM_NOTIFY_FILTER {
            cbSize: size_of::<CM_NOTIFY_FILTER>() as u32,
            Flags: 0,
            FilterType: CM_NOTIFY_FILTER_TYPE_DEVICEHANDLE,
            Reserved: 0,
            u: CM_NOTIFY_FILTER_0 {
                DeviceHandle: CM_NOTIFY_FILTER_0_0 {
                    hTarget: device.raw(),
                },
            },
        };
        let mut notification: HCMNOTIFICATION = null_mut();
        // SAFETY: our filter and out parameter; the context is `device`, which the caller keeps
        // in place until the notification is unregistered.
        let status = unsafe {
            register(
                &filter,
                (device as *const DeviceHandle).cast(),
                Some(device_event),
                &mut notification,
            )
        };
        if status != CR_SUCCESS {
            log::warn(&format!(
                "Failed to register for the adapter's removal (CONFIGRET {status:#x}): the \
                 driver closes the session's handle if the adapter is removed"
            ));
            return None;
        }
        Some(RemovalNotification {
            notification,
            unregister,
        })
    }
}

impl Drop for RemovalNotification {
    fn drop(&mut self) {
        // SAFETY: our registration, unregistered once, never from its own callback (a session
        // is dropped by the application's threads, not PnP's).
        unsafe { (self.unregister)(self.notification) };
    }
}

/// PnP's callback: closes the handle on the events `rules::closes_handle_on` names, and lets
/// every removal go on (ERROR_SUCCESS; another answer to a query-remove would veto it).
unsafe extern "system" fn device_event(
    _notification: HCMNOTIFICATION,
    context: *const c_void,
    action: CM_NOTIFY_ACTION,
    _data: *const CM_NOTIFY_EVENT_DATA,
    _size: u32,
) -> u32 {
    // SAFETY: the context registered, a DeviceHandle that outlives the registration, which
    // CM_Unregister_Notification ends only after this callback returns.
    let device = unsafe { &*context.cast::<DeviceHandle>() };
    if closes_handle_on(action) && device.close() {
        log::info("The adapter is being removed: the session's handle closed, the session ends");
    }
    ERROR_SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::System::Threading::CreateEventW;

    fn event() -> HANDLE {
        // SAFETY: an unnamed event, owned by the DeviceHandle it goes into.
        unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) }
    }

    /// The callback PnP calls (here called as PnP would, under Wine, which has no PnP
    /// notifications): a query-remove closes the handle, once, whoever comes second finds it
    /// closed, and every event is answered ERROR_SUCCESS, which lets the removal go on.
    #[test]
    fn a_query_remove_closes_the_handle_once() {
        let device = DeviceHandle::new(event());
        let context = (&device as *const DeviceHandle).cast();
        let call = |action| {
            // SAFETY: the context is `device`, alive through the call; no event data is read.
            unsafe { device_event(null_mut(), context, action, std::ptr::null(), 0) }
        };
        assert_eq!(call(3), ERROR_SUCCESS, "a failed query-remove");
        assert!(!device.raw().is_null(), "stays open");
        assert_eq!(call(2), ERROR_SUCCESS, "a query-remove");
        assert!(device.raw().is_null(), "closed");
        assert_eq!(call(5), ERROR_SUCCESS, "remove-complete, after");
        assert!(!device.close(), "the owner finds it closed");
    }

    /// Where CM_Register_Notification is missing (Wine 8), the session goes on without it.
    #[test]
    fn without_notifications_the_handle_stays_the_owners() {
        let device = DeviceHandle::new(event());
        // SAFETY: `device` outlives the (absent or dropped) notification.
        let notification = unsafe { RemovalNotification::register(&device) };
        if system_function("cfgmgr32.dll", c"CM_Register_Notification").is_none() {
            assert!(notification.is_none());
        }
        drop(notification);
        assert!(device.close(), "the owner closes it");
    }
}
