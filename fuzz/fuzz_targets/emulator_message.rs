//! The emulator's registration message from any bytes: accepted only as 16 bytes with one of
//! the two IOCTL codes (and no flags with the plain one), and then it encodes back to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::emulator::{
    EmulatorIoctl, EmulatorMessageError, EmulatorRequest, REGISTRATION_MESSAGE_LEN,
};
use oxtun_abi::{TUN_IOCTL_REGISTER_RINGS, TUN_IOCTL_REGISTER_RINGS_EX};

fuzz_target!(|message: &[u8]| {
    let word = |at: usize| u32::from_le_bytes(message[at..at + 4].try_into().unwrap());
    match EmulatorRequest::decode(message) {
        Ok(request) => {
            assert_eq!(request.encode().as_slice(), message);
            match request.ioctl {
                EmulatorIoctl::Register => assert_eq!(word(0), TUN_IOCTL_REGISTER_RINGS),
                EmulatorIoctl::RegisterEx { features } => {
                    assert_eq!(word(0), TUN_IOCTL_REGISTER_RINGS_EX);
                    assert_eq!(features, word(12));
                }
            }
        }
        Err(EmulatorMessageError::WrongLength(len)) => {
            assert_eq!(len, message.len());
            assert_ne!(len, REGISTRATION_MESSAGE_LEN);
        }
        Err(EmulatorMessageError::UnknownIoctl(code)) => {
            assert_eq!(message.len(), REGISTRATION_MESSAGE_LEN);
            assert_eq!(code, word(0));
            assert_ne!(code, TUN_IOCTL_REGISTER_RINGS);
            assert_ne!(code, TUN_IOCTL_REGISTER_RINGS_EX);
        }
        Err(EmulatorMessageError::UnknownFlags(flags)) => {
            assert_eq!(message.len(), REGISTRATION_MESSAGE_LEN);
            assert_eq!(word(0), TUN_IOCTL_REGISTER_RINGS);
            assert_eq!(flags, word(12));
            assert_ne!(flags, 0);
        }
    }
});
