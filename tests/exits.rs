//! Process exits, anywhere in the system, while clients register, send, receive and go away on
//! several threads: every registration ends exactly once, whichever way it ends, and a process
//! that owns no rings passes the driver's exit notification without waiting for anything. The
//! simulator flags a notify routine that takes a lock someone holds across a wait.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oxtun_abi::TUN_IOCTL_REGISTER_RINGS;
use oxtun_driver::sys::*;
use oxtun_sim::{Bitness, Fragmentation, Process, Token};
use support::*;

/// How a client's registration ends.
#[derive(Clone, Copy)]
enum End {
    CloseHandle,
    Exit,
    /// Exits while another process keeps a duplicate of its handle open.
    ExitWithHandleDuplicated,
}

const CLIENTS: u64 = 3;
/// Each client's rounds, at least; then on until `WANTED_REGISTRATIONS` have won (on a loaded
/// machine most attempts find the adapter registered), up to `MAX_ROUNDS`.
const ROUNDS: u64 = 60;
const WANTED_REGISTRATIONS: u64 = 10;
const MAX_ROUNDS: u64 = 5000;

#[oxtun_sim::test]
fn exits_race_registrations_teardowns_and_traffic() {
    let setup = setup();
    let adapter = &setup.adapter;
    let stop = AtomicBool::new(false);
    let registered = AtomicU64::new(0);
    let attempts = AtomicU64::new(0);
    let slowest_bystander_exit = std::sync::Mutex::new(Duration::ZERO);
    thread::scope(|scope| {
        // The stack sends all along.
        scope.spawn(|| {
            let nbls: Vec<Vec<Vec<u8>>> = (0..4).map(|seed| vec![ipv4(seed, 300)]).collect();
            while !stop.load(Ordering::Relaxed) {
                adapter.send(&nbls, Fragmentation::CONTIGUOUS, DISPATCH_LEVEL);
            }
        });
        // Processes that never touch the adapter come and go.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let bystander = Process::new(Token::User, Bitness::Bits64);
                let started = Instant::now();
                bystander.exit();
                let took = started.elapsed();
                let mut slowest = slowest_bystander_exit.lock().unwrap();
                *slowest = (*slowest).max(took);
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (adapter, registered, attempts) = (&adapter, &registered, &attempts);
                scope.spawn(move || {
                    for round in 0..MAX_ROUNDS {
                        if round >= ROUNDS
                            && registered.load(Ordering::Relaxed) >= WANTED_REGISTRATIONS
                        {
                            break;
                        }
                        let end = [End::CloseHandle, End::Exit, End::ExitWithHandleDuplicated]
                            [((client + round) % 3) as usize];
                        attempts.fetch_add(1, Ordering::Relaxed);
                        run_client(adapter, end, round, registered);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let registered = registered.load(Ordering::Relaxed);
    println!(
        "{registered} registrations of {} attempts; slowest exit of a process owning no rings: {:?}",
        attempts.load(Ordering::Relaxed),
        slowest_bystander_exit.lock().unwrap()
    );
    assert!(
        registered >= WANTED_REGISTRATIONS,
        "too few registrations won: {registered}"
    );
    assert_eq!(
        adapter.link_state(),
        Some(MediaConnectStateDisconnected),
        "every registration ended"
    );
    setup.assert_nothing_held();
    setup.finish();
}

/// One client: tries to register; if it wins, moves a few packets; then ends as `end` says.
fn run_client(adapter: &oxtun_sim::Adapter, end: End, round: u64, registered: &AtomicU64) {
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(adapter.device(), READ_WRITE);
    let rings = ClientRings::new(&process);
    let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    if status == STATUS_SUCCESS {
        registered.fetch_add(1, Ordering::Relaxed);
        let mut writer = rings.receive_writer();
        let packets: Vec<Vec<u8>> = (0..4).map(|seed| ipv6(round * 8 + seed, 120)).collect();
        client_write(&mut writer, &rings.receive_event, &packets);
    } else {
        assert_eq!(status, STATUS_ALREADY_INITIALIZED);
    }
    match end {
        End::CloseHandle => {
            handle.close();
            if status == STATUS_SUCCESS {
                assert!(rings.ended());
            }
            process.exit();
        }
        End::Exit => {
            // The handle closes with the process.
            std::mem::forget(handle);
            process.exit();
        }
        End::ExitWithHandleDuplicated => {
            let keeper = Process::new(Token::Administrator, Bitness::Bits64);
            let duplicate = process.duplicate_handle(handle.handle(), &keeper);
            std::mem::forget(handle);
            process.exit();
            if status == STATUS_SUCCESS {
                assert!(rings.send_event.set_count() >= 1, "the exit ended it");
            }
            keeper.close_handle(duplicate);
            keeper.exit();
        }
    }
}
