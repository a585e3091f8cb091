//! The registration extension: an IOCTL of our own beside TUN_IOCTL_REGISTER_RINGS, through which
//! a client asks for features (so far one: the per-packet header of [`crate::vnet`]) as it
//! registers its rings. Deployed Wintun clients never send it, so they see exactly Wintun's ABI.
//!
//! `TUN_IOCTL_REGISTER_RINGS_EX` is `CTL_CODE(51820, 0xA00, METHOD_BUFFERED, FILE_READ_DATA |
//! FILE_WRITE_DATA)`: the same device type, method and access as Wintun's IOCTL, a function code
//! well clear of Wintun's 0x970 (register) and 0x971 (force close handles, wintun.dll's
//! api/adapter.c). Its input buffer, little-endian:
//!
//! ```text
//! u32 Size      bytes of the whole buffer
//! u32 Version   1
//! u32 Features  OXTUN_FEATURE_* bits asked for
//! u32 Reserved  0
//! TUN_REGISTER_RINGS Rings   (48 bytes, or TUN_REGISTER_RINGS_32's 24 from a 32-bit process)
//! ```
//!
//! so `Size` is 64 (or 40). Growth: a later version appends its fields after `Rings` and its own
//! `Size`; a driver accepts every version it knows and answers STATUS_REVISION_MISMATCH to a newer
//! one, and STATUS_NOT_SUPPORTED to a feature bit it does not know. A driver that knows no
//! extension (an older oxtun, or Wintun) hands the unknown code to NDIS, which fails it (Wintun's
//! driver/wintun.c, `TunDispatchDeviceControl`) with a status no page documents: either way
//! nothing was registered, and the client registers again with TUN_IOCTL_REGISTER_RINGS, without
//! the features, after any failure of this one.

use core::mem::{offset_of, size_of};

use crate::layout::{
    CallerWidth, FILE_READ_DATA, FILE_WRITE_DATA, METHOD_BUFFERED, RegistrationError,
    RingRegistration, TUN_DEVICE_TYPE, TunRegisterRings32, TunRegisterRings64, ctl_code,
};

/// `TUN_IOCTL_REGISTER_RINGS_EX`: registers rings and asks for features.
pub const TUN_IOCTL_REGISTER_RINGS_EX: u32 = ctl_code(
    TUN_DEVICE_TYPE,
    0xA00,
    METHOD_BUFFERED,
    FILE_READ_DATA | FILE_WRITE_DATA,
);
const _: () = assert!(TUN_IOCTL_REGISTER_RINGS_EX == 0xCA6C_E800);

/// The layout version this crate writes and reads.
pub const REGISTRATION_EX_VERSION: u32 = 1;

/// `OXTUN_FEATURE_VNET_HDR`: every packet on both rings is prefixed with a
/// [`VirtioNetHdr`](crate::vnet::VirtioNetHdr).
pub const OXTUN_FEATURE_VNET_HDR: u32 = 1;

/// Features a client asks for, as bits; only bits this crate knows can be held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features(u32);

impl Features {
    pub const NONE: Features = Features(0);
    pub const VNET_HDR: Features = Features(OXTUN_FEATURE_VNET_HDR);
    /// Every feature this crate knows.
    pub const KNOWN: Features = Features(OXTUN_FEATURE_VNET_HDR);

    /// The features of `bits`, or `None` if a bit is unknown.
    pub const fn from_bits(bits: u32) -> Option<Features> {
        if bits & !Self::KNOWN.0 == 0 {
            Some(Features(bits))
        } else {
            None
        }
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The extension's fields before the rings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRegisterRingsExHeader {
    pub size: u32,
    pub version: u32,
    pub features: u32,
    pub reserved: u32,
}

/// The extended registration of a 64-bit process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRegisterRingsEx64 {
    pub header: TunRegisterRingsExHeader,
    pub rings: TunRegisterRings64,
}

/// The extended registration of a 32-bit process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunRegisterRingsEx32 {
    pub header: TunRegisterRingsExHeader,
    pub rings: TunRegisterRings32,
}

const EX_HEADER_LEN: usize = size_of::<TunRegisterRingsExHeader>();

const _: () = {
    assert!(EX_HEADER_LEN == 16);
    assert!(offset_of!(TunRegisterRingsExHeader, size) == 0);
    assert!(offset_of!(TunRegisterRingsExHeader, version) == 4);
    assert!(offset_of!(TunRegisterRingsExHeader, features) == 8);
    assert!(offset_of!(TunRegisterRingsExHeader, reserved) == 12);
    assert!(size_of::<TunRegisterRingsEx64>() == 64);
    assert!(offset_of!(TunRegisterRingsEx64, rings) == 16);
    assert!(size_of::<TunRegisterRingsEx32>() == 40);
    assert!(offset_of!(TunRegisterRingsEx32, rings) == 16);
};

/// An extended registration request, decoded and checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtendedRegistration {
    pub rings: RingRegistration,
    pub features: Features,
}

/// Why an extended registration buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtendedRegistrationError {
    /// Shorter than the fields before the rings (16 bytes).
    TooShort(usize),
    /// `Size` is not the buffer's length.
    SizeMismatch { size: u32, buffer: usize },
    /// A layout version this crate does not know: answer STATUS_REVISION_MISMATCH.
    UnknownVersion(u32),
    /// Feature bits this crate does not know: answer STATUS_NOT_SUPPORTED.
    UnknownFeatures(u32),
    /// `Reserved` is not 0.
    ReservedNotZero(u32),
    /// The rings' part has the size of no layout the caller may use.
    Rings(RegistrationError),
}

impl ExtendedRegistration {
    /// Bytes of the layout a caller of `width` uses.
    pub const fn encoded_len(width: CallerWidth) -> usize {
        EX_HEADER_LEN + RingRegistration::encoded_len(width)
    }

    /// Decodes the IOCTL's input buffer from a `caller`, checking every field: the rings' part
    /// as [`RingRegistration::decode`] does (a 32-bit caller may use either layout).
    pub fn decode(buffer: &[u8], caller: CallerWidth) -> Result<Self, ExtendedRegistrationError> {
        let Some((header, rings)) = buffer.split_first_chunk::<EX_HEADER_LEN>() else {
            return Err(ExtendedRegistrationError::TooShort(buffer.len()));
        };
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let size = word(offset_of!(TunRegisterRingsExHeader, size));
        let version = word(offset_of!(TunRegisterRingsExHeader, version));
        let features = word(offset_of!(TunRegisterRingsExHeader, features));
        let reserved = word(offset_of!(TunRegisterRingsExHeader, reserved));
        if usize::try_from(size) != Ok(buffer.len()) {
            return Err(ExtendedRegistrationError::SizeMismatch {
                size,
                buffer: buffer.len(),
            });
        }
        if version != REGISTRATION_EX_VERSION {
            return Err(ExtendedRegistrationError::UnknownVersion(version));
        }
        if reserved != 0 {
            return Err(ExtendedRegistrationError::ReservedNotZero(reserved));
        }
        let Some(features) = Features::from_bits(features) else {
            return Err(ExtendedRegistrationError::UnknownFeatures(features));
        };
        let rings =
            RingRegistration::decode(rings, caller).map_err(ExtendedRegistrationError::Rings)?;
        Ok(ExtendedRegistration { rings, features })
    }

    /// Encodes the request for a caller of `width` into `buffer`, returning the bytes used, or
    /// `None` if the buffer is too small or a pointer or handle does not fit in 32 bits.
    pub fn encode(&self, width: CallerWidth, buffer: &mut [u8]) -> Option<usize> {
        let len = Self::encoded_len(width);
        let out = buffer.get_mut(..len)?;
        let (header, rings) = out.split_at_mut(EX_HEADER_LEN);
        self.rings.encode(width, rings)?;
        for (at, value) in [
            (offset_of!(TunRegisterRingsExHeader, size), len as u32),
            (
                offset_of!(TunRegisterRingsExHeader, version),
                REGISTRATION_EX_VERSION,
            ),
            (
                offset_of!(TunRegisterRingsExHeader, features),
                self.features.bits(),
            ),
            (offset_of!(TunRegisterRingsExHeader, reserved), 0),
        ] {
            header[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Some(len)
    }
}
