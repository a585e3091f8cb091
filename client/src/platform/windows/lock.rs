//! The machine-wide lock that serializes driver installation and adapter creation and removal
//! between processes: a mutex in a private namespace (`rules::NAMESPACE`) whose boundary is
//! BUILTIN\Administrators, with an explicit SYSTEM/Administrators-only descriptor on both, as
//! wintun.dll keeps its own (api/namespace.c). A named mutex in `Global\` would not do: any local
//! user may create one first and hold it, and every creation and removal of every oxtun
//! application would then wait forever (CreateMutexW's page warns of exactly this; the review,
//! finding 1).
//!
//! The namespace handle is kept open for the life of the process, as wintun.dll keeps its own:
//! while it is open, other processes open the namespace rather than make a new one.

use std::ptr::null_mut;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    ERROR_GEN_FAILURE, GetLastError, HANDLE, SetLastError, WAIT_ABANDONED, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, SECURITY_MAX_SID_SIZE, WinBuiltinAdministratorsSid,
};
use windows_sys::Win32::System::Threading::{
    AddSIDToBoundaryDescriptor, CreateBoundaryDescriptorW, CreateMutexW, CreatePrivateNamespaceW,
    DeleteBoundaryDescriptor, INFINITE, OpenPrivateNamespaceW, ReleaseMutex, WaitForSingleObject,
};

use super::rules::{
    INSTALLATION_MUTEX, NAMESPACE, NAMESPACE_ATTEMPTS, NamespaceCall, NamespaceStep,
    SYSTEM_AND_ADMINISTRATORS_ONLY, after_namespace_failure,
};
use super::system::{OwnedHandle, SecurityDescriptor, failed, last_failed, wide};
use crate::Error;

/// The installation mutex, held until dropped.
pub struct InstallationLock(OwnedHandle);

impl InstallationLock {
    pub fn take() -> Result<InstallationLock, Error> {
        let security = SecurityDescriptor::from_sddl(SYSTEM_AND_ADMINISTRATORS_ONLY)?;
        open_namespace(&security)?;
        let name = wide(INSTALLATION_MUTEX);
        let attributes = security.attributes();
        // SAFETY: a mutex in our namespace, opened or created with our descriptor, not owned yet.
        let mutex = unsafe { CreateMutexW(&attributes, 0, name.as_ptr()) };
        if mutex.is_null() {
            return Err(last_failed("Failed to create the installation mutex"));
        }
        let mutex = OwnedHandle(mutex);
        // SAFETY: our mutex handle.
        match unsafe { WaitForSingleObject(mutex.0, INFINITE) } {
            // An owner that died leaves the mutex abandoned: ours now, and what it protected is
            // only ever half-made adapters, which the orphan cleanup removes.
            WAIT_OBJECT_0 | WAIT_ABANDONED => Ok(InstallationLock(mutex)),
            _ => Err(last_failed("Failed to take the installation mutex")),
        }
    }
}

impl Drop for InstallationLock {
    fn drop(&mut self) {
        // SAFETY: we own the mutex (taken in `take`).
        unsafe { ReleaseMutex((self.0).0) };
    }
}

/// This process's handle to the namespace, never closed.
struct Namespace(#[allow(dead_code, reason = "kept open, never read")] HANDLE);

// SAFETY: a kernel handle, valid in any thread of the process.
unsafe impl Send for Namespace {}

static OPENED: Mutex<Option<Namespace>> = Mutex::new(None);

/// Creates the namespace, or opens it if another process made it; once per process.
fn open_namespace(security: &SecurityDescriptor) -> Result<(), Error> {
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if opened.is_some() {
        return Ok(());
    }
    let boundary = Boundary::administrators()?;
    let prefix = wide(NAMESPACE);
    let attributes = security.attributes();
    let mut call = NamespaceCall::Create;
    for _ in 0..NAMESPACE_ATTEMPTS {
        // SAFETY: our descriptor, boundary and NUL-terminated prefix, alive through the call.
        let handle = unsafe {
            match call {
                NamespaceCall::Create => {
                    CreatePrivateNamespaceW(&attributes, boundary.0, prefix.as_ptr())
                }
                NamespaceCall::Open => OpenPrivateNamespaceW(boundary.0, prefix.as_ptr()),
            }
        };
        if !handle.is_null() {
            *opened = Some(Namespace(handle));
            return Ok(());
        }
        // SAFETY: reads this thread's last-error value.
        let error = unsafe { GetLastError() };
        call = match after_namespace_failure(call, error) {
            NamespaceStep::Open => NamespaceCall::Open,
            NamespaceStep::Create => NamespaceCall::Create,
            NamespaceStep::Fail => {
                let what = match call {
                    NamespaceCall::Create => "Failed to create the private namespace",
                    NamespaceCall::Open => "Failed to open the private namespace",
                };
                return Err(failed(
                    what,
                    if error == 0 { ERROR_GEN_FAILURE } else { error },
                ));
            }
        };
    }
    Err(failed(
        "The private namespace kept vanishing between creating and opening it",
        ERROR_GEN_FAILURE,
    ))
}

/// A boundary descriptor, deleted on drop.
struct Boundary(HANDLE);

impl Boundary {
    /// The boundary [`NAMESPACE`] with the one SID BUILTIN\Administrators.
    fn administrators() -> Result<Boundary, Error> {
        let name = wide(NAMESPACE);
        // A call that fails without setting an error (Wine's stub) must not report a stale one.
        // SAFETY: sets this thread's last-error value.
        unsafe { SetLastError(0) };
        // SAFETY: a NUL-terminated name, no flags.
        let handle = unsafe { CreateBoundaryDescriptorW(name.as_ptr(), 0) };
        if handle.is_null() {
            return Err(last_failed("Failed to create the boundary descriptor"));
        }
        let mut boundary = Boundary(handle);
        // A SID is at most SECURITY_MAX_SID_SIZE bytes, 4-byte aligned.
        let mut sid = [0u32; SECURITY_MAX_SID_SIZE as usize / 4];
        let mut size = SECURITY_MAX_SID_SIZE;
        // SAFETY: writes the well-known SID into our buffer of `size` bytes.
        if unsafe {
            CreateWellKnownSid(
                WinBuiltinAdministratorsSid,
                null_mut(),
                sid.as_mut_ptr().cast(),
                &mut size,
            )
        } == 0
        {
            return Err(last_failed("Failed to make the Administrators SID"));
        }
        // SAFETY: our boundary handle (the call may replace it) and the SID made above.
        if unsafe { AddSIDToBoundaryDescriptor(&mut boundary.0, sid.as_mut_ptr().cast()) } == 0 {
            return Err(last_failed(
                "Failed to add the SID to the boundary descriptor",
            ));
        }
        Ok(boundary)
    }
}

impl Drop for Boundary {
    fn drop(&mut self) {
        // SAFETY: our boundary descriptor, deleted once.
        unsafe { DeleteBoundaryDescriptor(self.0) };
    }
}
