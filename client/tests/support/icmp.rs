//! ICMP echo replies built by the application, for the tests that answer pings through an
//! adapter (shared with the emulator's tests).

use oxtun_client::{Error, Session};

/// Answers every echo request the session receives until the session ends; returns how many.
pub fn answer_pings(session: &Session) -> usize {
    let mut replies = 0;
    while let Ok(received) = session.receive() {
        let reply = echo_reply(received.data());
        drop(received);
        if let Some(reply) = reply {
            while let Err(Error::Full) = session.send(&reply) {
                std::thread::yield_now();
            }
            replies += 1;
        }
    }
    replies
}

/// An ICMP echo reply for an IPv4 or IPv6 echo request, or `None`.
pub fn echo_reply(request: &[u8]) -> Option<Vec<u8>> {
    let mut reply = request.to_vec();
    match request.first()? >> 4 {
        4 if request.len() >= 28 && request[9] == 1 && request[20] == 8 => {
            let header = usize::from(request[0] & 0x0F) * 4;
            reply.copy_within(12..16, 16);
            reply[12..16].copy_from_slice(&request[16..20]);
            reply[header] = 0;
            reply[header + 2..header + 4].copy_from_slice(&[0, 0]);
            let sum = checksum(&reply[header..], 0);
            reply[header + 2..header + 4].copy_from_slice(&sum.to_be_bytes());
            Some(reply)
        }
        6 if request.len() >= 48 && request[6] == 58 && request[40] == 128 => {
            reply[8..24].copy_from_slice(&request[24..40]);
            reply[24..40].copy_from_slice(&request[8..24]);
            reply[40] = 129;
            reply[42..44].copy_from_slice(&[0, 0]);
            let length = (reply.len() - 40) as u32;
            let mut pseudo = 0u32;
            for chunk in reply[8..40].chunks(2) {
                pseudo += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
            }
            pseudo += (length >> 16) + (length & 0xFFFF) + 58;
            let sum = checksum(&reply[40..], pseudo);
            reply[42..44].copy_from_slice(&sum.to_be_bytes());
            Some(reply)
        }
        _ => None,
    }
}

pub fn checksum(bytes: &[u8], start: u32) -> u16 {
    let mut sum = start;
    for chunk in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
