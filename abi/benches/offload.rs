//! Figures for the offloads done in software: segmentation of a 64 KiB TCP super-packet at an MSS
//! of 1460 into 1500-byte segments written one after another into one buffer (as into a ring
//! reservation), and the checksum over the same bytes, for IPv4 and IPv6; in Gbit/s of TCP
//! payload, so the segmentation figure is the rate the driver can serve a plain client's large
//! sends at, or a client cut super-packets at, on one core.
//!
//! Each figure is the best of several rounds, printed with the spread of the rounds (best to
//! worst, as a share of the best): other work on a 2-core machine takes a core now and then.
//!
//! Run: `cargo bench -p oxtun-abi --bench offload`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use oxtun_abi::offload::{
    Segments, SendOffload, complete_partial_checksum, header_for_client, ones_complement_sum,
    validate,
};

const MSS: usize = 1460;
/// 44 segments of 1460 bytes: 64,240 bytes of payload, the most whole MSS that fit 64 KiB.
const SEGMENTS: usize = 44;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_millis(400);

fn super_packet(ipv6: bool) -> Vec<u8> {
    let payload_len = MSS * SEGMENTS;
    let mut tcp = vec![0u8; 20 + payload_len];
    tcp[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK, PSH
    for (i, byte) in tcp[20..].iter_mut().enumerate() {
        *byte = (i * 31 + i / 97) as u8;
    }
    let mut packet = if ipv6 {
        let mut header = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        header[4..6].copy_from_slice(&(tcp.len() as u16).to_be_bytes());
        header.extend((0..32).map(|i| i as u8));
        header
    } else {
        let mut header = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        header[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
        header.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 7]);
        header
    };
    let tcp_offset = packet.len() as u32;
    packet.extend_from_slice(&tcp);
    let lso = SendOffload::Lso {
        mss: MSS as u32,
        tcp_header_offset: tcp_offset,
    };
    header_for_client(&mut packet, lso).expect("a valid super-packet");
    packet
}

/// Runs `work` (over `payload_bytes` of payload) for a round at a time; the best round's rate in
/// Gbit/s and the spread of the rounds.
fn measure(payload_bytes: usize, mut work: impl FnMut()) -> (f64, f64) {
    let mut rates = Vec::new();
    work(); // warm up
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < ROUND {
            work();
            runs += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        rates.push(runs as f64 * payload_bytes as f64 * 8.0 / seconds / 1e9);
    }
    let best = rates.iter().cloned().fold(0.0, f64::max);
    let worst = rates.iter().cloned().fold(f64::MAX, f64::min);
    (best, (best - worst) / best)
}

fn main() {
    println!(
        "{:<6} {:<44} {:>9} {:>7}",
        "IP", "work (64 KiB TCP super-packet, MSS 1460)", "Gbit/s", "spread"
    );
    for ipv6 in [false, true] {
        let name = if ipv6 { "IPv6" } else { "IPv4" };
        let packet = super_packet(ipv6);
        let transport_at = if ipv6 { 40 } else { 20 };
        let header = header_for_client(
            &mut packet.clone(),
            SendOffload::Lso {
                mss: MSS as u32,
                tcp_header_offset: transport_at as u32,
            },
        )
        .unwrap();
        let payload = MSS * SEGMENTS;
        let mut out = vec![0u8; SEGMENTS * (transport_at + 20 + MSS)];

        let segmentation = measure(payload, || {
            let offload = validate(&header, black_box(&packet)).unwrap();
            let segments = Segments::new(&packet, &offload.gso.unwrap()).unwrap();
            let mut at = 0;
            for segment in segments.iter() {
                at += segment.write(&mut out[at..]).unwrap();
            }
            black_box(&out);
        });
        let mut copy = packet.clone();
        let completion = measure(payload, || {
            complete_partial_checksum(black_box(&mut copy), transport_at, 16).unwrap();
        });
        let sum = measure(payload, || {
            black_box(ones_complement_sum(black_box(&packet)));
        });
        for (work, (rate, spread)) in [
            ("validate + segment into 44 x 1500 B", segmentation),
            ("complete the partial checksum (NEEDS_CSUM)", completion),
            ("one's complement sum alone", sum),
        ] {
            println!("{name:<6} {work:<44} {rate:>9.1} {:>6.0}%", spread * 100.0);
        }
    }
}
