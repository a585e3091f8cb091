//! The ring IOCTL's input buffer, decoded for 64- and 32-bit callers from any bytes of any
//! length: refused unless it is exactly the layout's size, and then every field read from its
//! place (encoding the result gives the same bytes back, less the 64-bit layout's padding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::{CallerWidth, RegistrationError, RingRegistration};

fuzz_target!(|buffer: &[u8]| {
    for width in [CallerWidth::Bits64, CallerWidth::Bits32] {
        let expected = RingRegistration::encoded_len(width);
        match RingRegistration::decode(buffer, width) {
            Ok(registration) => {
                assert_eq!(buffer.len(), expected);
                let mut encoded = [0u8; 48];
                let len = registration
                    .encode(width, &mut encoded)
                    .expect("a decoded registration encodes for its own width");
                let mut original = buffer.to_vec();
                if width == CallerWidth::Bits64 {
                    // TUN_REGISTER_RINGS' padding after each RingSize, which encode zeroes.
                    original[4..8].fill(0);
                    original[28..32].fill(0);
                }
                assert_eq!(&encoded[..len], &original[..]);
            }
            Err(RegistrationError::WrongLength {
                expected: said,
                actual,
            }) => {
                assert_ne!(buffer.len(), expected);
                assert_eq!((said, actual), (expected, buffer.len()));
            }
        }
    }
});
