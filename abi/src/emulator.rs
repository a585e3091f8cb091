//! The registration message of the Linux emulator's device protocol (design.md, "Emulated
//! device protocol"): what a client sends over the emulator's Unix socket in place of the IOCTL.
//!
//! 16 bytes, little-endian: the IOCTL code, the send ring's size, the receive ring's size, and
//! flags (0). Four descriptors travel with it (SCM_RIGHTS): send ring memfd, send TailMoved
//! eventfd, receive ring memfd, receive TailMoved eventfd. The reply is the NTSTATUS, 4 bytes.
//!
//! The registration extension (see [`crate::extension`]) has its equivalent here: the message's
//! IOCTL code is TUN_IOCTL_REGISTER_RINGS_EX and its flags are the features asked for
//! ([`EMULATOR_FLAG_VNET_HDR`], the same bits as the IOCTL's Features word). Flags stay 0 with
//! TUN_IOCTL_REGISTER_RINGS ([`EmulatorRegistration::encode_extended`] writes the extended
//! message, [`EmulatorRegistration::encode`] the plain one). The emulator hands either to the
//! driver as the IOCTL it stands for ([`EmulatorRequest`]), feature bits as they came, so the
//! driver answers a bit it does not know as it answers the IOCTL (STATUS_NOT_SUPPORTED).

use crate::extension::{Features, OXTUN_FEATURE_VNET_HDR, TUN_IOCTL_REGISTER_RINGS_EX};
use crate::layout::TUN_IOCTL_REGISTER_RINGS;

/// Bytes of a registration message.
pub const REGISTRATION_MESSAGE_LEN: usize = 16;
/// Descriptors that travel with it.
pub const REGISTRATION_DESCRIPTORS: usize = 4;
/// With TUN_IOCTL_REGISTER_RINGS_EX in the message: every ring packet is prefixed with a
/// [`VirtioNetHdr`](crate::vnet::VirtioNetHdr), as [`OXTUN_FEATURE_VNET_HDR`] asks of the driver.
pub const EMULATOR_FLAG_VNET_HDR: u32 = OXTUN_FEATURE_VNET_HDR;

/// A registration message, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatorRegistration {
    pub send_ring_size: u32,
    pub receive_ring_size: u32,
}

/// Which IOCTL a registration message stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorIoctl {
    /// TUN_IOCTL_REGISTER_RINGS (flags 0).
    Register,
    /// TUN_IOCTL_REGISTER_RINGS_EX with these feature bits, as the message carried them: the
    /// driver judges them, as it judges the IOCTL's Features word.
    RegisterEx { features: u32 },
}

/// A registration message, decoded: the rings' sizes and the IOCTL it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatorRequest {
    pub rings: EmulatorRegistration,
    pub ioctl: EmulatorIoctl,
}

/// Why a registration message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatorMessageError {
    /// Not 16 bytes.
    WrongLength(usize),
    /// The IOCTL code is neither TUN_IOCTL_REGISTER_RINGS nor TUN_IOCTL_REGISTER_RINGS_EX.
    UnknownIoctl(u32),
    /// Flags other than 0 with TUN_IOCTL_REGISTER_RINGS.
    UnknownFlags(u32),
}

impl EmulatorRequest {
    pub fn decode(message: &[u8]) -> Result<Self, EmulatorMessageError> {
        let message: &[u8; REGISTRATION_MESSAGE_LEN] = message
            .try_into()
            .map_err(|_| EmulatorMessageError::WrongLength(message.len()))?;
        let word = |at: usize| {
            u32::from_le_bytes([
                message[at],
                message[at + 1],
                message[at + 2],
                message[at + 3],
            ])
        };
        let (code, flags) = (word(0), word(12));
        let ioctl = match code {
            TUN_IOCTL_REGISTER_RINGS if flags == 0 => EmulatorIoctl::Register,
            TUN_IOCTL_REGISTER_RINGS => return Err(EmulatorMessageError::UnknownFlags(flags)),
            TUN_IOCTL_REGISTER_RINGS_EX => EmulatorIoctl::RegisterEx { features: flags },
            _ => return Err(EmulatorMessageError::UnknownIoctl(code)),
        };
        Ok(EmulatorRequest {
            rings: EmulatorRegistration {
                send_ring_size: word(4),
                receive_ring_size: word(8),
            },
            ioctl,
        })
    }

    /// The message again, byte for byte.
    pub fn encode(&self) -> [u8; REGISTRATION_MESSAGE_LEN] {
        match self.ioctl {
            EmulatorIoctl::Register => self.rings.encode(),
            EmulatorIoctl::RegisterEx { features } => {
                self.rings.encode_as(TUN_IOCTL_REGISTER_RINGS_EX, features)
            }
        }
    }
}

impl EmulatorRegistration {
    pub fn encode(&self) -> [u8; REGISTRATION_MESSAGE_LEN] {
        self.encode_as(TUN_IOCTL_REGISTER_RINGS, 0)
    }

    /// The message that asks for `features` too: TUN_IOCTL_REGISTER_RINGS_EX, with the feature
    /// bits as its flags.
    pub fn encode_extended(&self, features: Features) -> [u8; REGISTRATION_MESSAGE_LEN] {
        self.encode_as(TUN_IOCTL_REGISTER_RINGS_EX, features.bits())
    }

    fn encode_as(&self, ioctl: u32, flags: u32) -> [u8; REGISTRATION_MESSAGE_LEN] {
        let mut message = [0u8; REGISTRATION_MESSAGE_LEN];
        message[0..4].copy_from_slice(&ioctl.to_le_bytes());
        message[4..8].copy_from_slice(&self.send_ring_size.to_le_bytes());
        message[8..12].copy_from_slice(&self.receive_ring_size.to_le_bytes());
        message[12..16].copy_from_slice(&flags.to_le_bytes());
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RINGS: EmulatorRegistration = EmulatorRegistration {
        send_ring_size: 0x3_000C,
        receive_ring_size: 0x11_000C,
    };

    #[test]
    fn round_trips_and_refuses_what_is_not_a_registration() {
        let message = RINGS.encode();
        assert_eq!(&message[..4], &0xCA6C_E5C0u32.to_le_bytes());
        let request = EmulatorRequest {
            rings: RINGS,
            ioctl: EmulatorIoctl::Register,
        };
        assert_eq!(EmulatorRequest::decode(&message), Ok(request));
        assert_eq!(request.encode(), message);
        assert_eq!(
            EmulatorRequest::decode(&message[..15]),
            Err(EmulatorMessageError::WrongLength(15))
        );
        let mut wrong = message;
        wrong[0] ^= 1;
        assert_eq!(
            EmulatorRequest::decode(&wrong),
            Err(EmulatorMessageError::UnknownIoctl(0xCA6C_E5C1))
        );
        let mut flagged = message;
        flagged[12] = 1;
        assert_eq!(
            EmulatorRequest::decode(&flagged),
            Err(EmulatorMessageError::UnknownFlags(1))
        );
    }

    #[test]
    fn the_extended_message_carries_the_extended_code_and_the_features_as_flags() {
        let message = RINGS.encode_extended(Features::VNET_HDR);
        assert_eq!(&message[..4], &0xCA6C_E800u32.to_le_bytes());
        assert_eq!(&message[4..12], &RINGS.encode()[4..12]);
        assert_eq!(&message[12..], &EMULATOR_FLAG_VNET_HDR.to_le_bytes());
        assert_eq!(
            RINGS.encode_extended(Features::NONE)[12..],
            [0; 4],
            "no features, no flags"
        );
        let request = EmulatorRequest::decode(&message).unwrap();
        assert_eq!(
            request,
            EmulatorRequest {
                rings: RINGS,
                ioctl: EmulatorIoctl::RegisterEx {
                    features: EMULATOR_FLAG_VNET_HDR
                },
            }
        );
        assert_eq!(request.encode(), message);
        // Bits no one knows travel on to the driver, which answers them as the IOCTL's.
        let mut unknown = message;
        unknown[15] = 0x80;
        assert_eq!(
            EmulatorRequest::decode(&unknown).map(|request| request.ioctl),
            Ok(EmulatorIoctl::RegisterEx {
                features: 0x8000_0001
            })
        );
    }
}
