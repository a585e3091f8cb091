//! A tiny router between two adapters: every packet one adapter's system sends goes into the
//! other's, both ways. Each session asks for the offload header (docs/offloads.md, "The client"):
//! where both have it, a TCP or UDP super-packet crosses whole, its header with it; where only the
//! sending side has it, the packet is finished in software on the way (cut into segments, its
//! checksum completed), since the other side's system takes only packets of their own size.
//! Runs until both adapters go away, then prints what it forwarded.
//!
//!     router [--plain] SOCKET_A SOCKET_B      (two wintun-emu sockets; see scripts/demo.sh)
//!
//! `--plain` asks for no header: Wintun's ABI on both sides.

use std::process::ExitCode;
use std::thread;

use oxtun_client::vnet::VirtioNetHdr;
use oxtun_client::{Adapter, Error, Features, Session};

/// Bytes per ring: room for a few TCP windows of 64 KiB packets.
const CAPACITY: u32 = 4 << 20;

#[derive(Default)]
pub struct Forwarded {
    /// Packets received and forwarded (a super-packet counts once).
    pub packets: u64,
    /// Their IP bytes.
    pub bytes: u64,
    /// Packets the other adapter's ring had no room for: a congested link drops them.
    pub dropped: u64,
    /// Packets the other session could not carry: one too large for the ring once a header goes
    /// before it, or one whose bytes changed under its header after it was validated.
    pub refused: u64,
    /// Super-packets cut into segments on the way, for a session without headers.
    pub cut: u64,
}

/// Moves packets from `from`'s system into `to`'s until either session ends. (The emulator's
/// benchmark routes with it too.)
pub fn forward(from: &Session, to: &Session) -> Result<Forwarded, Error> {
    let mut forwarded = Forwarded::default();
    loop {
        let received = match from.receive() {
            Ok(received) => received,
            Err(Error::Ended) => return Ok(forwarded),
            Err(error) => return Err(error),
        };
        // Without headers on `from`, a packet of its own size whose checksums are complete.
        let header = received.header().unwrap_or(VirtioNetHdr::NONE);
        let is_super_packet = received
            .offload()
            .is_some_and(|offload| offload.gso.is_some());
        // As it is when `to` has headers too; finished in software when it has not.
        let sent = to.send_with_header(&header, received.data());
        let len = received.len() as u64;
        drop(received);
        match sent {
            Ok(_) => {
                forwarded.packets += 1;
                forwarded.bytes += len;
                forwarded.cut += u64::from(is_super_packet && !to.has_headers());
            }
            Err(Error::Full) => forwarded.dropped += 1,
            Err(Error::TooLarge(_) | Error::Offload(_)) => forwarded.refused += 1,
            Err(Error::Ended) => return Ok(forwarded),
            Err(error) => return Err(error),
        }
    }
}

fn main() -> ExitCode {
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let features = match arguments.first().map(String::as_str) {
        Some("--plain") => {
            arguments.remove(0);
            Features::NONE
        }
        _ => Features::VNET_HDR,
    };
    let [a, b] = arguments.as_slice() else {
        eprintln!("usage: router [--plain] SOCKET_A SOCKET_B");
        return ExitCode::from(2);
    };
    let start = |socket: &String| {
        Session::start_with(&Adapter::emulator(socket), CAPACITY, features)
            .map_err(|error| eprintln!("router: {socket}: {error}"))
    };
    let (Ok(session_a), Ok(session_b)) = (start(a), start(b)) else {
        return ExitCode::FAILURE;
    };
    // Both rings are registered: traffic may start.
    let headers = |session: &Session| if session.has_headers() { "yes" } else { "no" };
    println!(
        "router: ready (offload headers: a {}, b {})",
        headers(&session_a),
        headers(&session_b)
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut clean = true;
    thread::scope(|scope| {
        let a_to_b = scope.spawn(|| forward(&session_a, &session_b));
        let b_to_a = scope.spawn(|| forward(&session_b, &session_a));
        for (direction, result) in [("a -> b", a_to_b.join()), ("b -> a", b_to_a.join())] {
            match result.expect("a forwarding thread panicked") {
                Ok(forwarded) => println!(
                    "router: {direction}: {} packets, {} bytes forwarded, {} dropped (ring full), \
                     {} refused, {} super-packets cut in software",
                    forwarded.packets,
                    forwarded.bytes,
                    forwarded.dropped,
                    forwarded.refused,
                    forwarded.cut
                ),
                Err(error) => {
                    eprintln!("router: {direction}: {error}");
                    clean = false;
                }
            }
        }
    });
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
