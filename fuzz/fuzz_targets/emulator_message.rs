//! The emulator's registration message from any bytes: accepted only as 16 bytes with the IOCTL
//! code and no flags, and then it encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::TUN_IOCTL_REGISTER_RINGS;
use oxtun_abi::emulator::{EmulatorMessageError, EmulatorRegistration, REGISTRATION_MESSAGE_LEN};

fuzz_target!(|message: &[u8]| {
    let word = |at: usize| u32::from_le_bytes(message[at..at + 4].try_into().unwrap());
    match EmulatorRegistration::decode(message) {
        Ok(registration) => {
            assert_eq!(registration.encode().as_slice(), message);
        }
        Err(EmulatorMessageError::WrongLength(len)) => {
            assert_eq!(len, message.len());
            assert_ne!(len, REGISTRATION_MESSAGE_LEN);
        }
        Err(EmulatorMessageError::UnknownIoctl(code)) => {
            assert_eq!(message.len(), REGISTRATION_MESSAGE_LEN);
            assert_eq!(code, word(0));
            assert_ne!(code, TUN_IOCTL_REGISTER_RINGS);
        }
        Err(EmulatorMessageError::UnknownFlags(flags)) => {
            assert_eq!(message.len(), REGISTRATION_MESSAGE_LEN);
            assert_eq!(word(0), TUN_IOCTL_REGISTER_RINGS);
            assert_eq!(flags, word(12));
            assert_ne!(flags, 0);
        }
    }
});
