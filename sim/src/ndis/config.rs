//! Layer: ndis, beneath its exports (`ndis/mod.rs`). It calls nothing of the simulator.
//!
//! An adapter's configuration: the values of its registry key, which its INF's AddReg lines and
//! the administrator (Set-NetAdapterAdvancedProperty, or NDIS itself on OID_TCP_OFFLOAD_PARAMETERS)
//! leave there, and the handles NdisOpenConfigurationEx gives to read them.

use std::collections::BTreeMap;

use oxtun_driver::sys::*;

/// A registry value: enumeration keywords are strings ("The keyword values must be of type
/// REG_SZ", NetAdapterCx's "Checksum offload"); a DWORD is possible too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryValue {
    String(String),
    Dword(u32),
}

impl From<&str> for RegistryValue {
    fn from(value: &str) -> Self {
        RegistryValue::String(value.to_string())
    }
}

impl From<u32> for RegistryValue {
    fn from(value: u32) -> Self {
        RegistryValue::Dword(value)
    }
}

/// One adapter's registry key: value names are case-insensitive, as the registry's are.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    values: BTreeMap<String, RegistryValue>,
}

impl Registry {
    pub fn set(&mut self, name: &str, value: RegistryValue) {
        self.values.insert(name.to_ascii_lowercase(), value);
    }

    pub fn get(&self, name: &str) -> Option<&RegistryValue> {
        self.values.get(&name.to_ascii_lowercase())
    }
}

/// What NdisReadConfiguration gives for a value: NDIS_CONFIGURATION_PARAMETER and the string it
/// may point to, kept until the handle is closed ("The memory it allocates for the
/// NDIS_CONFIGURATION_PARAMETER structure is freed when the driver releases the
/// ConfigurationHandle with the NdisCloseConfiguration function", NdisReadConfiguration).
pub struct ReadValue {
    pub parameter: Box<NDIS_CONFIGURATION_PARAMETER>,
    _text: Vec<u16>,
}

// SAFETY: the parameter's string points into `_text`, which moves with it.
unsafe impl Send for ReadValue {}

impl ReadValue {
    /// The parameter NDIS returns for `value`: a string of decimal digits (or a DWORD) as an
    /// integer, which is how drivers read enumeration keywords; any other string as a string.
    pub fn of(value: &RegistryValue) -> ReadValue {
        let integer = match value {
            RegistryValue::Dword(value) => Some(*value),
            RegistryValue::String(text) => text.trim().parse::<u32>().ok(),
        };
        let mut text: Vec<u16> = match value {
            RegistryValue::String(text) => text.encode_utf16().collect(),
            RegistryValue::Dword(_) => Vec::new(),
        };
        let data = match integer {
            // IntegerData, the union's first ULONG.
            Some(integer) => UNICODE_STRING {
                Length: integer as u16,
                MaximumLength: (integer >> 16) as u16,
                Buffer: std::ptr::null_mut(),
            },
            None => UNICODE_STRING {
                Length: (text.len() * 2) as u16,
                MaximumLength: (text.len() * 2) as u16,
                Buffer: text.as_mut_ptr(),
            },
        };
        ReadValue {
            parameter: Box::new(NDIS_CONFIGURATION_PARAMETER {
                ParameterType: if integer.is_some() {
                    NdisParameterInteger
                } else {
                    NdisParameterString
                },
                ParameterData: data,
            }),
            _text: text,
        }
    }
}

/// The keyword a driver passes, from its NDIS_STRING.
///
/// # Safety
/// `keyword` points to a UNICODE_STRING whose buffer holds `Length` bytes.
pub unsafe fn keyword_name(keyword: *const UNICODE_STRING) -> Option<String> {
    // SAFETY: the caller's string, read during the call.
    let keyword = unsafe { keyword.as_ref()? };
    if keyword.Buffer.is_null() || keyword.Length % 2 != 0 {
        return None;
    }
    // SAFETY: as the caller promises, Length bytes of UTF-16.
    let wide =
        unsafe { std::slice::from_raw_parts(keyword.Buffer, usize::from(keyword.Length) / 2) };
    String::from_utf16(wide).ok()
}

/// The keywords NDIS updates when OID_TCP_OFFLOAD_PARAMETERS sets the offloads they stand for
/// ("While NDIS processes this OID and before it passes the OID to the miniport driver, NDIS
/// updates the miniport adapter's offload standardized keywords with the new settings"), as
/// each keyword's enumeration writes them: a checksum's TX_RX_DISABLED 1 to TX_RX_ENABLED 4 as
/// 0 to 3 (tx | rx << 1), LSOv2's, USO's and RSC's DISABLED 1 and ENABLED 2 as 0 and 1.
pub fn keywords_of_parameters(
    parameters: &NDIS_OFFLOAD_PARAMETERS,
    len: usize,
) -> Vec<(&'static str, RegistryValue)> {
    let checksum = |value: u8| match value {
        1 => Some("0"),
        2 => Some("1"),
        3 => Some("2"),
        4 => Some("3"),
        _ => None,
    };
    let switch = |value: u8| match value {
        1 => Some("0"),
        2 => Some("1"),
        _ => None,
    };
    let revision = parameters.Header.Revision;
    let mut fields = vec![
        ("*IPChecksumOffloadIPv4", checksum(parameters.IPv4Checksum)),
        (
            "*TCPChecksumOffloadIPv4",
            checksum(parameters.TCPIPv4Checksum),
        ),
        (
            "*UDPChecksumOffloadIPv4",
            checksum(parameters.UDPIPv4Checksum),
        ),
        (
            "*TCPChecksumOffloadIPv6",
            checksum(parameters.TCPIPv6Checksum),
        ),
        (
            "*UDPChecksumOffloadIPv6",
            checksum(parameters.UDPIPv6Checksum),
        ),
        ("*LsoV2IPv4", switch(parameters.LsoV2IPv4)),
        ("*LsoV2IPv6", switch(parameters.LsoV2IPv6)),
    ];
    if revision >= 3 && len >= usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_3) {
        fields.push(("*RscIPv4", switch(parameters.RscIPv4)));
        fields.push(("*RscIPv6", switch(parameters.RscIPv6)));
    }
    if revision >= 5 && len >= usize::from(NDIS_SIZEOF_OFFLOAD_PARAMETERS_REVISION_5) {
        fields.push(("*UsoIPv4", switch(parameters.UdpSegmentationIPv4)));
        fields.push(("*UsoIPv6", switch(parameters.UdpSegmentationIPv6)));
    }
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name, RegistryValue::from(value?))))
        .collect()
}
