//! Small owners and conversions for the Windows calls the adapter and driver code make: wide
//! strings, GUIDs, Win32 errors that are logged where they happen, device information lists,
//! registry keys and security descriptors, each released on drop, and the private folder.

use std::ffi::CStr;
use std::io;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CONFIGRET, CR_SUCCESS, DICD_GENERATE_ID, GUID_DEVCLASS_NET, HDEVINFO, SP_DEVINFO_DATA,
    SPDRP_HARDWAREID, SetupDiCreateDeviceInfoList, SetupDiCreateDeviceInfoW,
    SetupDiDestroyDeviceInfoList, SetupDiGetDeviceInstanceIdW, SetupDiGetDevicePropertyW,
    SetupDiGetDeviceRegistryPropertyW, SetupDiOpenDeviceInfoW, SetupDiSetDeviceRegistryPropertyW,
};
use windows_sys::Win32::Devices::Properties::{DEVPROPKEY, DEVPROPTYPE};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_GEN_FAILURE, ERROR_INSUFFICIENT_BUFFER, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
use windows_sys::Win32::System::LibraryLoader::{
    GetProcAddress, LOAD_LIBRARY_SEARCH_SYSTEM32, LoadLibraryExW,
};
use windows_sys::Win32::System::Registry::{HKEY, RegCloseKey};
use windows_sys::Win32::System::SystemInformation::GetWindowsDirectoryW;
use windows_sys::core::GUID;

use super::rules::SYSTEM_AND_ADMINISTRATORS_ONLY;
use crate::{Error, log};

/// `text` as a NUL-terminated UTF-16 string.
pub fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// The text of a UTF-16 buffer up to its first NUL.
pub fn from_wide(units: &[u16]) -> String {
    let end = units
        .iter()
        .position(|&unit| unit == 0)
        .unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

/// Logs `what` failed with Win32 error `code`, and returns it as an error.
pub fn failed(what: &str, code: u32) -> Error {
    log::error(&format!("{what}: Win32 error {code} ({code:#x})"));
    Error::Io(io::Error::from_raw_os_error(code as i32))
}

/// Logs `what` failed with the thread's last error.
///
/// A call that failed without setting one (Wine's stubs do that) gives ERROR_GEN_FAILURE, so
/// that no failure ever reads as success (0).
pub fn last_failed(what: &str) -> Error {
    // SAFETY: reads this thread's last-error value.
    let code = unsafe { GetLastError() };
    failed(what, if code == 0 { ERROR_GEN_FAILURE } else { code })
}

/// Logs `what` failed with a CONFIGRET, and returns it as the Win32 error CM_MapCrToWin32Err
/// gives it (`default` where it has none), as wintun.dll reports its CONFIGRETs (api/adapter.c;
/// the review, finding 10).
pub fn cr_failed(what: &str, status: CONFIGRET, default: u32) -> Error {
    failed(
        &format!("{what} (CONFIGRET {status:#x})"),
        map_cr(status, default),
    )
}

pub fn cr_check(what: &str, status: CONFIGRET) -> Result<(), Error> {
    if status == CR_SUCCESS {
        Ok(())
    } else {
        Err(cr_failed(what, status, ERROR_GEN_FAILURE))
    }
}

type CmMapCrToWin32Err = unsafe extern "system" fn(CONFIGRET, u32) -> u32;

/// CM_MapCrToWin32Err (cfgmgr32.dll, Windows 8 and later), looked up when first needed: Wine 8's
/// cfgmgr32 lacks it, and a static import would keep the DLL from loading there. Without it,
/// `default`.
pub fn map_cr(status: CONFIGRET, default: u32) -> u32 {
    static FUNCTION: OnceLock<Option<CmMapCrToWin32Err>> = OnceLock::new();
    let function = FUNCTION.get_or_init(|| {
        let function = system_function("cfgmgr32.dll", c"CM_MapCrToWin32Err")?;
        // SAFETY: CM_MapCrToWin32Err's type, as cfgmgr32.h declares it.
        let map: CmMapCrToWin32Err = unsafe { std::mem::transmute(function) };
        Some(map)
    });
    match function {
        // SAFETY: a pure mapping of two integers.
        Some(map) => unsafe { map(status, default) },
        None => default,
    }
}

/// An export of a DLL of Windows' own, loaded from System32 only (and kept loaded), or None
/// if the DLL or the export is missing: for what is newer than the oldest Windows this library
/// must load on, or missing from Wine. The caller transmutes it to the function's type.
pub fn system_function(dll: &str, name: &CStr) -> Option<unsafe extern "system" fn() -> isize> {
    let dll = wide(dll);
    // SAFETY: loads a system DLL from System32 only; it stays loaded for the process's life.
    let module = unsafe { LoadLibraryExW(dll.as_ptr(), null_mut(), LOAD_LIBRARY_SEARCH_SYSTEM32) };
    if module.is_null() {
        return None;
    }
    // SAFETY: looks up a NUL-terminated name in the module we hold.
    unsafe { GetProcAddress(module, name.as_ptr().cast()) }
}

/// A GUID from its 128-bit value, as `GUID::from_u128` lays it out.
pub const fn guid(value: u128) -> GUID {
    GUID::from_u128(value)
}

/// A new random GUID.
pub fn new_guid() -> Result<GUID, Error> {
    let mut guid = GUID::from_u128(0);
    // SAFETY: writes a GUID into our local.
    let result = unsafe { windows_sys::Win32::System::Com::CoCreateGuid(&mut guid) };
    if result < 0 {
        return Err(failed("Failed to make a GUID", result as u32));
    }
    Ok(guid)
}

/// "{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}", as registry values and instance IDs write GUIDs.
pub fn guid_string(guid: &GUID) -> String {
    let d = guid.data4;
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
        guid.data1, guid.data2, guid.data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    )
}

/// The GUID a string of `guid_string`'s form names.
pub fn parse_guid(text: &str) -> Option<GUID> {
    let hex: String = text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split('-')
        .collect();
    (hex.len() == 32)
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
        .map(GUID::from_u128)
}

/// C structures for which all-zero bytes are a valid value (integers, arrays of them, null
/// pointers), which Windows calls take zeroed with only their size set.
///
/// # Safety
/// Implement it only for such structures.
pub unsafe trait Plain: Sized {
    fn zeroed() -> Self {
        // SAFETY: the implementer's promise: all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: each is a C structure of integers, arrays and pointers.
unsafe impl Plain for windows_sys::Win32::Devices::DeviceAndDriverInstallation::SP_DEVINFO_DATA {}
// SAFETY: as above.
unsafe impl Plain
    for windows_sys::Win32::Devices::DeviceAndDriverInstallation::SP_DRVINFO_DATA_V2_W
{
}
// SAFETY: as above.
unsafe impl Plain for windows_sys::Win32::NetworkManagement::IpHelper::MIB_IPINTERFACE_ROW {}
// SAFETY: as above.
unsafe impl Plain for windows_sys::Win32::Foundation::FILETIME {}
// SAFETY: as above.
unsafe impl Plain for windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW {}

/// The longest device instance ID, less its NUL (MAX_DEVICE_ID_LEN).
pub const MAX_INSTANCE_ID: usize = 199;

/// A device information list, destroyed on drop.
pub struct DeviceList(pub HDEVINFO);

impl Drop for DeviceList {
    fn drop(&mut self) {
        // SAFETY: our list, destroyed once.
        unsafe { SetupDiDestroyDeviceInfoList(self.0) };
    }
}

impl DeviceList {
    /// A new, empty list of the Net class.
    pub fn new_net() -> Result<DeviceList, Error> {
        // SAFETY: creates a list; no pointers but the class GUID, a constant.
        let list = unsafe { SetupDiCreateDeviceInfoList(&GUID_DEVCLASS_NET, null_mut()) };
        if list == INVALID_HANDLE_VALUE as _ {
            return Err(last_failed("Failed to create a device information list"));
        }
        Ok(DeviceList(list))
    }

    /// A new element of the list, not registered, with the hardware ID `hardware_id` (its
    /// instance ID is `ROOT\<hardware ID>\<number>`).
    pub fn new_element(&self, hardware_id: &str) -> Result<SP_DEVINFO_DATA, Error> {
        let mut device = SP_DEVINFO_DATA {
            cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
            ..Plain::zeroed()
        };
        let name = wide(hardware_id);
        // SAFETY: our list, a NUL-terminated name and our element.
        if unsafe {
            SetupDiCreateDeviceInfoW(
                self.0,
                name.as_ptr(),
                &GUID_DEVCLASS_NET,
                null(),
                null_mut(),
                DICD_GENERATE_ID,
                &mut device,
            )
        } == 0
        {
            return Err(last_failed("Failed to create a device information element"));
        }
        let mut ids = wide(hardware_id);
        ids.push(0); // a multi-string: one more NUL
        // SAFETY: the element's hardware IDs, from our buffer of that many bytes.
        if unsafe {
            SetupDiSetDeviceRegistryPropertyW(
                self.0,
                &mut device,
                SPDRP_HARDWAREID,
                ids.as_ptr().cast(),
                size_of_val(ids.as_slice()) as u32,
            )
        } == 0
        {
            return Err(last_failed("Failed to set the hardware ID"));
        }
        Ok(device)
    }

    /// The device of `instance_id`, added to the list; the Win32 error if there is none, not
    /// logged.
    pub fn open(&self, instance_id: &str) -> Result<SP_DEVINFO_DATA, u32> {
        let mut device = SP_DEVINFO_DATA {
            cbSize: size_of::<SP_DEVINFO_DATA>() as u32,
            ..Plain::zeroed()
        };
        let id = wide(instance_id);
        // SAFETY: our list, a NUL-terminated instance ID and our element.
        if unsafe { SetupDiOpenDeviceInfoW(self.0, id.as_ptr(), null_mut(), 0, &mut device) } == 0 {
            // SAFETY: reads this thread's last-error value.
            return Err(unsafe { GetLastError() });
        }
        Ok(device)
    }

    /// The raw bytes of a device's property, or None if it has none (or it cannot be read).
    pub fn property(&self, device: &SP_DEVINFO_DATA, key: &DEVPROPKEY) -> Option<Vec<u8>> {
        let mut kind: DEVPROPTYPE = 0;
        let mut size = 0u32;
        // SAFETY: asks the size only (no buffer); the list and element are ours.
        let sized = unsafe {
            SetupDiGetDevicePropertyW(self.0, device, key, &mut kind, null_mut(), 0, &mut size, 0)
        };
        // SAFETY: reads this thread's last-error value.
        if sized != 0 || unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
            return None;
        }
        let mut buffer = vec![0u8; size as usize];
        // SAFETY: a buffer of the size the first call asked for.
        let read = unsafe {
            SetupDiGetDevicePropertyW(
                self.0,
                device,
                key,
                &mut kind,
                buffer.as_mut_ptr(),
                size,
                &mut size,
                0,
            )
        };
        (read != 0).then(|| {
            buffer.truncate(size as usize);
            buffer
        })
    }

    /// The instance ID of `device`.
    pub fn instance_id(&self, device: &SP_DEVINFO_DATA) -> Result<String, Error> {
        let mut buffer = [0u16; MAX_INSTANCE_ID + 1];
        // SAFETY: our list and element, and our buffer with its length in characters.
        let ok = unsafe {
            SetupDiGetDeviceInstanceIdW(
                self.0,
                device,
                buffer.as_mut_ptr(),
                buffer.len() as u32,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(last_failed("Failed to get the device's instance ID"));
        }
        Ok(from_wide(&buffer))
    }

    /// The device's first hardware ID (SPDRP_HARDWAREID, a multi-string), or None.
    pub fn hardware_id(&self, device: &SP_DEVINFO_DATA) -> Option<String> {
        let mut units = [0u16; 512];
        // SAFETY: our list and element, and our buffer with its size in bytes.
        let read = unsafe {
            SetupDiGetDeviceRegistryPropertyW(
                self.0,
                device,
                SPDRP_HARDWAREID,
                null_mut(),
                units.as_mut_ptr().cast(),
                size_of_val(&units) as u32,
                null_mut(),
            )
        };
        (read != 0).then(|| from_wide(&units))
    }

    /// A string property.
    pub fn string_property(&self, device: &SP_DEVINFO_DATA, key: &DEVPROPKEY) -> Option<String> {
        let bytes = self.property(device, key)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        Some(from_wide(&units))
    }
}

/// A registry key, closed on drop.
pub struct RegistryKey(pub HKEY);

impl Drop for RegistryKey {
    fn drop(&mut self) {
        // SAFETY: our key, closed once.
        unsafe { RegCloseKey(self.0) };
    }
}

/// A handle closed on drop.
pub struct OwnedHandle(pub HANDLE);

impl Drop for OwnedHandle {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A security descriptor made from its SDDL string, freed on drop.
pub struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

impl SecurityDescriptor {
    pub fn from_sddl(sddl: &str) -> Result<SecurityDescriptor, Error> {
        let text = wide(sddl);
        let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: a NUL-terminated string; the descriptor is allocated for us (LocalFree).
        if unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                null_mut(),
            )
        } == 0
        {
            return Err(last_failed("Failed to make a security descriptor"));
        }
        Ok(SecurityDescriptor(descriptor))
    }

    /// Security attributes with this descriptor, the handle not inherited; valid while `self`.
    pub fn attributes(&self) -> SECURITY_ATTRIBUTES {
        SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        }
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: the descriptor ConvertStringSecurityDescriptorToSecurityDescriptorW allocated.
        unsafe { LocalFree(self.0) };
    }
}

/// The Windows folder (%WINDIR%).
pub fn windows_folder() -> Result<String, Error> {
    let mut windows = [0u16; 260];
    // SAFETY: our buffer and its length.
    let len = unsafe { GetWindowsDirectoryW(windows.as_mut_ptr(), windows.len() as u32) };
    if len == 0 || len as usize >= windows.len() {
        return Err(last_failed("Failed to get the Windows folder"));
    }
    Ok(from_wide(&windows[..len as usize]))
}

/// A new folder only SYSTEM and Administrators can enter, for the extracted package and the
/// native helper: %WINDIR%\Temp\oxtun-<random>, made with an explicit protected descriptor, as
/// wintun.dll makes its own (api/resource.c): %WINDIR%\Temp's inherited ACL lets Users create
/// files in its subfolders (the review, finding 13). A folder that already exists is refused
/// rather than reused.
pub fn private_folder() -> Result<std::path::PathBuf, Error> {
    let name = guid_string(&new_guid()?);
    let directory = std::path::PathBuf::from(windows_folder()?)
        .join("Temp")
        .join(format!("oxtun-{}", name.trim_matches(['{', '}'])));
    let security = SecurityDescriptor::from_sddl(SYSTEM_AND_ADMINISTRATORS_ONLY)?;
    let attributes = security.attributes();
    let path = wide(&directory.to_string_lossy());
    // SAFETY: a NUL-terminated path and our attributes, alive through the call.
    if unsafe { CreateDirectoryW(path.as_ptr(), &attributes) } == 0 {
        return Err(last_failed("Failed to create a temporary folder"));
    }
    Ok(directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_and_parse_as_the_registry_writes_them() {
        let value = guid(0x0123_4567_89AB_CDEF_0011_2233_4455_6677);
        let text = guid_string(&value);
        assert_eq!(text, "{01234567-89AB-CDEF-0011-223344556677}");
        let parsed = parse_guid(&text).unwrap();
        assert_eq!(guid_string(&parsed), text);
        assert!(parse_guid("{0123}").is_none());
    }
}
