//! A hostile offload header and packet through everything that reads them: the input is a send
//! request selector (1 byte), the 10-byte `virtio_net_hdr`, then the IP packet. What validates
//! must be done inside its slices: a partial checksum changes only its own two bytes; every
//! segment is written into exactly its size, parses again with lengths that match, carries a
//! checksum that verifies and a share of the payload, and the shares add up to the payload. The
//! same bytes as a send Windows asked something of: the header the driver makes must validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxtun_abi::offload::{
    Checksum, IpVersion, SendOffload, add, finish_in_software, header_for_client,
    ones_complement_sum, parse, receive_as, validate,
};
use oxtun_abi::vnet::{VNET_HDR_LEN, VirtioNetHdr};

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Some((header, packet)) = rest.split_first_chunk::<VNET_HDR_LEN>() else {
        return;
    };
    let header = VirtioNetHdr::decode(header);
    read(&header, &mut packet.to_vec());

    let word = |at: usize| u32::from(u16::from_le_bytes([rest[at], rest[at + 1]]));
    let offload = match selector % 4 {
        0 => SendOffload::None,
        1 => SendOffload::Checksum {
            ipv4_header: selector & 0x10 != 0,
            tcp: selector & 0x20 != 0,
            udp: selector & 0x40 != 0,
        },
        2 => SendOffload::Lso {
            mss: word(4) | u32::from(selector & 0x80) << 9,
            tcp_header_offset: word(6) % 128,
        },
        _ => SendOffload::Uso {
            mss: word(4),
            udp_header_offset: word(6) % 128,
        },
    };
    let mut sent = packet.to_vec();
    if let Ok(made) = header_for_client(&mut sent, offload) {
        assert_eq!(sent.len(), packet.len());
        let checked = validate(&made, &sent);
        assert!(
            checked.is_ok(),
            "the driver's own header refused: {checked:?}"
        );
        read(&made, &mut sent);
    }
});

/// What a reader of the ring does with a header and its packet.
fn read(header: &VirtioNetHdr, packet: &mut [u8]) {
    let Ok(offload) = validate(header, packet) else {
        return;
    };
    if let Some(gso) = &offload.gso {
        receive_as(packet, gso).expect("its own packet");
    }
    let before = packet.to_vec();
    let Some(segments) = finish_in_software(packet, &offload).expect("validated") else {
        if let Checksum::Partial { start, offset } = offload.checksum {
            let field = usize::from(start) + usize::from(offset);
            for (at, (old, new)) in before.iter().zip(packet.iter()).enumerate() {
                assert!(
                    old == new || at == field || at == field + 1,
                    "wrote at {at}"
                );
            }
        } else {
            assert_eq!(&before[..], &packet[..]);
        }
        return;
    };
    let gso = offload.gso.expect("segments only of a super-packet");
    let mut payload = 0;
    for segment in segments.iter() {
        let mut bytes = vec![0; segment.size()];
        assert_eq!(segment.write(&mut bytes), Ok(bytes.len()));
        assert!(bytes.len() <= gso.largest_segment());
        payload += segment.payload().len();
        let layout = parse(&bytes).expect("a segment parses");
        assert_eq!(layout.ip_header_len, gso.layout().ip_header_len);
        let transport_len = bytes.len() - layout.ip_header_len;
        let sum = add(
            layout.pseudo_header_sum_for(&bytes, transport_len),
            ones_complement_sum(&bytes[layout.ip_header_len..]),
        );
        assert_eq!(sum, 0xFFFF, "the transport checksum verifies");
        if layout.ip == IpVersion::V4 {
            assert_eq!(
                ones_complement_sum(&bytes[..layout.ip_header_len]),
                0xFFFF,
                "the IPv4 header checksum verifies"
            );
        }
    }
    assert_eq!(payload, gso.payload_len());
}
