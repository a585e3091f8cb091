//! An adapter's configuration: the values of its registry key (the standardized keywords the INF
//! puts there, and what the administrator sets), read through NDIS.

use core::ptr::{NonNull, null_mut};

use super::ndis::*;
use super::nt::UNICODE_STRING;

/// The adapter's configuration, open until dropped (NdisCloseConfiguration, which also frees
/// every value read through it).
pub struct AdapterConfiguration(NonNull<core::ffi::c_void>);

impl AdapterConfiguration {
    /// Opens the configuration of the adapter `miniport` (NdisOpenConfigurationEx); `None` if
    /// NDIS cannot.
    ///
    /// # Safety
    /// `miniport` is NDIS's handle for the adapter, which has not halted; at PASSIVE_LEVEL.
    pub unsafe fn open(miniport: NDIS_HANDLE) -> Option<Self> {
        let object = NDIS_CONFIGURATION_OBJECT {
            Header: NDIS_OBJECT_HEADER {
                Type: NDIS_OBJECT_TYPE_CONFIGURATION_OBJECT,
                Revision: NDIS_CONFIGURATION_OBJECT_REVISION_1,
                Size: NDIS_SIZEOF_CONFIGURATION_OBJECT_REVISION_1,
            },
            NdisHandle: miniport,
            Flags: 0,
        };
        let mut handle = null_mut();
        // SAFETY: a configuration object for the caller's adapter and a local for the handle.
        let status = unsafe { NdisOpenConfigurationEx(&object, &mut handle) };
        if status != NDIS_STATUS_SUCCESS {
            return None;
        }
        NonNull::new(handle).map(AdapterConfiguration)
    }

    /// The value of `keyword` (ASCII, at most 63 characters) as an integer, if the key holds one
    /// (an enumeration keyword is a string of decimal digits, which NDIS returns as an integer);
    /// `None` if it is absent or not a number. NDIS does not validate values: the caller does.
    pub fn read_integer(&self, keyword: &str) -> Option<u32> {
        let mut wide = [0u16; 64];
        if keyword.len() >= wide.len() || !keyword.is_ascii() {
            return None;
        }
        for (slot, byte) in wide.iter_mut().zip(keyword.bytes()) {
            *slot = u16::from(byte);
        }
        let length = (keyword.len() * 2) as u16;
        let mut name = UNICODE_STRING {
            Length: length,
            MaximumLength: length,
            Buffer: wide.as_mut_ptr(),
        };
        let mut status = NDIS_STATUS_FAILURE;
        let mut value: *mut NDIS_CONFIGURATION_PARAMETER = null_mut();
        // SAFETY: the open handle, a name that lives through the call, and locals for the
        // results.
        unsafe {
            NdisReadConfiguration(
                &mut status,
                &mut value,
                self.0.as_ptr(),
                &mut name,
                NdisParameterInteger,
            )
        };
        if status != NDIS_STATUS_SUCCESS {
            return None;
        }
        // SAFETY: on success NDIS points `value` at a parameter it keeps until the handle is
        // closed, which `self` outlives this read.
        let value = unsafe { value.as_ref()? };
        let integer = value.ParameterType == NdisParameterInteger
            || value.ParameterType == NdisParameterHexInteger;
        // IntegerData is the union's first ULONG, where the string's Length and MaximumLength
        // lie.
        integer.then(|| {
            let data = &value.ParameterData;
            u32::from(data.Length) | u32::from(data.MaximumLength) << 16
        })
    }
}

impl Drop for AdapterConfiguration {
    fn drop(&mut self) {
        // SAFETY: the handle NdisOpenConfigurationEx gave, closed once.
        unsafe { NdisCloseConfiguration(self.0.as_ptr()) };
    }
}
