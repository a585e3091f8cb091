//! The ring IOCTL's input buffer, decoded for 64- and 32-bit callers from any bytes of any
//! length: refused unless it is exactly 48 bytes (the 64-bit layout, for either caller) or 24
//! from a 32-bit caller (the 32-bit layout), and then every field read from its place
//! (encoding the result gives the same bytes back, less the 64-bit layout's padding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::{CallerWidth, RegistrationError, RingRegistration};

fuzz_target!(|buffer: &[u8]| {
    for caller in [CallerWidth::Bits64, CallerWidth::Bits32] {
        let layout = match (buffer.len(), caller) {
            (48, _) => Some(CallerWidth::Bits64),
            (24, CallerWidth::Bits32) => Some(CallerWidth::Bits32),
            _ => None,
        };
        match RingRegistration::decode(buffer, caller) {
            Ok(registration) => {
                let layout = layout.expect("accepted only in a layout of its caller");
                let mut encoded = [0u8; 48];
                let len = registration
                    .encode(layout, &mut encoded)
                    .expect("a decoded registration encodes in its own layout");
                let mut original = buffer.to_vec();
                if layout == CallerWidth::Bits64 {
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
                assert_eq!(layout, None);
                let own = RingRegistration::encoded_len(caller);
                assert_eq!((said, actual), (own, buffer.len()));
            }
        }
    }
});
