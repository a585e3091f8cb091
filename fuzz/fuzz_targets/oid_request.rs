//! OID requests with any OID, buffer length and contents, through the simulated NDIS to the
//! driver's MiniportOidRequest: the simulator checks the answer's contract (bytes written within
//! the buffer, BytesNeeded beyond it on a short-buffer status, success only for a supported
//! OID) and stops at the first violation; the target checks the adapter still answers after.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oxtun_driver::sys::*;
use oxtun_fuzz::with_sim;

#[derive(Arbitrary, Debug)]
enum Oid {
    /// One of the OIDs the adapter lists as supported.
    Supported(u8),
    /// Any number.
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Request {
    Query { oid: Oid, len: u16 },
    Set { oid: Oid, data: Vec<u8> },
}

fuzz_target!(|requests: Vec<Request>| {
    with_sim(|sim| {
        let supported = sim.adapter.general().supported_oids;
        let pick = |oid: &Oid| match *oid {
            Oid::Supported(index) => supported[usize::from(index) % supported.len()],
            Oid::Any(oid) => oid,
        };
        for request in requests.iter().take(32) {
            match request {
                Request::Query { oid, len } => {
                    let len = usize::from(*len) % 1024;
                    let answer = sim.adapter.query(pick(oid), len);
                    assert!(answer.data.len() <= len);
                    if answer.status == NDIS_STATUS_SUCCESS {
                        assert_eq!(answer.data.len(), answer.bytes_done as usize);
                    }
                }
                Request::Set { oid, data } => {
                    let answer = sim.adapter.set(pick(oid), data);
                    assert!(answer.bytes_done as usize <= data.len());
                }
            }
        }
        let vendor = sim.adapter.query(OID_GEN_VENDOR_ID, 4);
        assert_eq!(vendor.status, NDIS_STATUS_SUCCESS);
        assert_eq!(
            vendor.data,
            [0xFF, 0xFF, 0xFF, 0x00],
            "the OUI and NIC bytes, in order"
        );
        assert_eq!(
            oxtun_sim::outstanding(),
            sim.idle,
            "an OID request left something held"
        );
    });
});
