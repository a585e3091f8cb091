//! A tiny router between two adapters: every packet one adapter's system sends goes into the
//! other's, both ways. Runs until both adapters go away, then prints what it forwarded.
//!
//!     router SOCKET_A SOCKET_B      (two wintun-emu sockets; see scripts/demo.sh)

use std::process::ExitCode;
use std::thread;

use oxtun_client::{Adapter, Error, Session};

/// Bytes per ring: room for a few TCP windows of 64 KiB packets.
const CAPACITY: u32 = 4 << 20;

#[derive(Default)]
pub struct Forwarded {
    pub packets: u64,
    pub bytes: u64,
    /// Packets the other adapter's ring had no room for: a congested link drops them.
    pub dropped: u64,
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
        let sent = to.send(received.data());
        let len = received.len() as u64;
        drop(received);
        match sent {
            Ok(()) => {
                forwarded.packets += 1;
                forwarded.bytes += len;
            }
            Err(Error::Full) => forwarded.dropped += 1,
            Err(Error::Ended) => return Ok(forwarded),
            Err(error) => return Err(error),
        }
    }
}

fn main() -> ExitCode {
    let sockets: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = sockets.as_slice() else {
        eprintln!("usage: router SOCKET_A SOCKET_B");
        return ExitCode::from(2);
    };
    let start = |socket: &String| {
        Session::start(&Adapter::emulator(socket), CAPACITY)
            .map_err(|error| eprintln!("router: {socket}: {error}"))
    };
    let (Ok(session_a), Ok(session_b)) = (start(a), start(b)) else {
        return ExitCode::FAILURE;
    };
    // Both rings are registered: traffic may start.
    println!("router: ready");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut clean = true;
    thread::scope(|scope| {
        let a_to_b = scope.spawn(|| forward(&session_a, &session_b));
        let b_to_a = scope.spawn(|| forward(&session_b, &session_a));
        for (direction, result) in [("a -> b", a_to_b.join()), ("b -> a", b_to_a.join())] {
            match result.expect("a forwarding thread panicked") {
                Ok(forwarded) => println!(
                    "router: {direction}: {} packets, {} bytes forwarded, {} dropped (ring full)",
                    forwarded.packets, forwarded.bytes, forwarded.dropped
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
