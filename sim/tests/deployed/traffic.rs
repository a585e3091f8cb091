//! Traffic as deployed applications make it: the read-wait event after every send Tail move,
//! pings and bursts of echo requests from the Linux stack answered by the client, and 100,000
//! datagrams each way.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::Emulator;
use crate::linux::{self, Pinger};
use crate::session::{Error, Handshake, Session};
use crate::{
    CLIENT_V4, CLIENT_V6, REFLECT, STACK_V4, STACK_V6, TYPICAL_LIMIT, WAKE_LIMIT, WATCHDOG,
    address, ip, median_and_worst, network_state, receive_batch, start_tun_emulator,
    start_when_free, udp_packet,
};

/// How long a burst of 200 echo requests may take to be answered in full.
const BURST_LIMIT: Duration = Duration::from_secs(1);

/// Answers every echo request until the session ends; how many it answered.
fn answer_echo_requests(session: &Session) -> u64 {
    let mut answered = 0;
    let mut replies = Vec::new();
    loop {
        match receive_batch(session, |packet| replies.extend(ip::echo_reply(packet))) {
            Ok(_) => {}
            Err(Error::HandleEof) => return answered,
            Err(other) => panic!("the responder's receive failed: {other:?}"),
        }
        for reply in replies.drain(..) {
            session.send_retrying(&reply).unwrap();
            answered += 1;
        }
    }
}

/// Runs `body` with a thread answering echo requests on a session of `emulator`, then ends
/// the session; the echo requests answered.
fn with_responder(emulator: &Emulator, body: impl FnOnce()) -> u64 {
    let (session, _) = start_when_free(emulator, Handshake::Fenced);
    thread::scope(|scope| {
        let responder = scope.spawn(|| answer_echo_requests(&session));
        body();
        session.close_handle();
        responder.join().unwrap()
    })
}

/// The send ring's TailMoved event after every move of its Tail, with Send.Alertable left 0:
/// a reader that found the ring empty and waits is woken by each packet.
#[test]
fn the_read_wait_event_is_set_after_every_move_of_the_send_tail() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Unfenced);
    let mut waits = Vec::new();
    for seed in 0..200 {
        assert_eq!(session.receive().err(), Some(Error::NoMoreItems));
        let packet = udp_packet(seed, 64 + seed as usize);
        let start = Instant::now();
        session.send(&packet).unwrap();
        let received = session.receive_waiting(WAKE_LIMIT);
        let waited = start.elapsed();
        let received =
            received.unwrap_or_else(|error| panic!("packet {seed}: {error:?} after {waited:?}"));
        assert_eq!(received.data(), packet);
        received.release();
        waits.push(waited);
    }
    let (median, worst) = median_and_worst(&mut waits);
    println!("200 wake-ups by the read-wait event: median {median:?}, worst {worst:?}");
    assert!(median < TYPICAL_LIMIT, "median wake-up {median:?}");
    assert_eq!(session.rings().send.alertable().load(Ordering::SeqCst), 0);
}

#[test]
fn pings_both_families_answer_in_well_under_a_millisecond() {
    let emulator = start_tun_emulator();
    let mut report = Vec::new();
    let answered = with_responder(&emulator, || {
        for target in [CLIENT_V4, CLIENT_V6] {
            let pinger = Pinger::new(address(target)).unwrap();
            let mut round_trips = Vec::new();
            for sequence in 0..100 {
                let sent = Instant::now();
                pinger
                    .send(sequence, &ip::payload(7, sequence.into(), 56))
                    .unwrap();
                let reply = pinger.receive(WATCHDOG).unwrap_or_else(|| {
                    panic!(
                        "no reply to ping {sequence} of {target}; {}",
                        network_state()
                    )
                });
                assert_eq!(reply.sequence, sequence);
                round_trips.push(reply.at - sent);
            }
            let (median, worst) = median_and_worst(&mut round_trips);
            report.push(format!("{target}: median {median:?}, worst {worst:?}"));
            assert!(
                worst < WAKE_LIMIT && median < TYPICAL_LIMIT,
                "ping {target}: median {median:?}, worst {worst:?}"
            );
        }
    });
    println!("100 pings each: {}", report.join("; "));
    assert!(answered >= 200, "{answered} echo requests answered");
}

#[test]
fn ten_bursts_of_two_hundred_echo_requests_are_all_answered() {
    let emulator = start_tun_emulator();
    let mut report = Vec::new();
    with_responder(&emulator, || {
        for burst in 0..10u16 {
            let target = if burst % 2 == 0 { CLIENT_V4 } else { CLIENT_V6 };
            let pinger = Pinger::new(address(target)).unwrap();
            let start = Instant::now();
            for index in 0..200 {
                let sequence = burst * 200 + index;
                pinger
                    .send(sequence, &ip::payload(8, sequence.into(), 56))
                    .unwrap();
            }
            let mut answered = [false; 200];
            let mut count = 0;
            while count < 200 {
                let left = BURST_LIMIT.saturating_sub(start.elapsed());
                let Some(reply) = pinger.receive(left) else {
                    panic!(
                        "burst {burst} to {target}: {count} of 200 answered in {BURST_LIMIT:?}; {}",
                        network_state()
                    );
                };
                let index = usize::from(reply.sequence.wrapping_sub(burst * 200));
                assert!(index < 200 && !answered[index], "reply {}", reply.sequence);
                answered[index] = true;
                count += 1;
            }
            report.push(format!("{:.2?}", start.elapsed()));
        }
    });
    println!(
        "10 bursts of 200, every request answered in: {}",
        report.join(", ")
    );
}

/// Datagram `sequence`'s payload length: small, typical and large packets by turns.
fn payload_len(sequence: u32) -> usize {
    [8, 64, 200, 512, 1200, 1400, 1472, 9000][sequence as usize % 8]
}

/// 100,000 UDP datagrams from the Linux stack through the driver's send path to the client,
/// in order, and 100,000 from four client threads through its receive path to the stack, all
/// byte-exact, both families by turns, both directions at once. A bounded number in flight:
/// a full ring or queue drops packets, as a congested link does.
#[test]
fn a_hundred_thousand_packets_each_way_arrive_byte_exact() {
    const COUNT: u32 = 100_000;
    const SENDERS: u32 = 4;
    const IN_FLIGHT: u64 = 64;
    let emulator = start_tun_emulator();
    let session = Session::start(&emulator.socket, 1 << 22, Handshake::Unfenced).unwrap();
    let to_client = [
        SocketAddr::new(address(CLIENT_V4), 9),
        SocketAddr::new(address(CLIENT_V6), 9),
    ];
    let stack_sockets = [
        UdpSocket::bind((address(STACK_V4), 0)).unwrap(),
        UdpSocket::bind((address(STACK_V6), 0)).unwrap(),
    ];
    let stack_receiver = UdpSocket::bind("[::]:0").unwrap();
    stack_receiver.set_read_timeout(Some(WATCHDOG)).unwrap();
    linux::make_room(&stack_receiver);
    let receiver_port = stack_receiver.local_addr().unwrap().port();
    let received_by_client = AtomicU64::new(0);
    let received_by_stack: Vec<AtomicU64> = (0..SENDERS).map(|_| AtomicU64::new(0)).collect();
    let start = Instant::now();
    thread::scope(|scope| {
        let (session, received_by_client, received_by_stack) =
            (&session, &received_by_client, &received_by_stack);
        scope.spawn(move || {
            for sequence in 0..COUNT {
                while u64::from(sequence) >= received_by_client.load(Ordering::SeqCst) + IN_FLIGHT {
                    thread::yield_now();
                    assert!(
                        start.elapsed() < WATCHDOG * 6,
                        "the client stopped receiving"
                    );
                }
                let family = (sequence % 2) as usize;
                let payload = ip::payload(0, sequence, payload_len(sequence));
                stack_sockets[family]
                    .send_to(&payload, to_client[family])
                    .unwrap();
            }
        });
        scope.spawn(move || {
            let mut next = 0;
            while next < COUNT {
                receive_batch(session, |packet| {
                    let Some(datagram) =
                        ip::parse_udp(packet).filter(|d| d.destination.port() == 9)
                    else {
                        return; // The stack's own IPv6 chatter.
                    };
                    assert_eq!(datagram.source.is_ipv4(), next % 2 == 0, "packet {next}");
                    assert!(
                        datagram.payload == ip::payload(0, next, payload_len(next)),
                        "packet {next} from the stack: {:?}",
                        ip::payload_label(datagram.payload)
                    );
                    next += 1;
                    received_by_client.store(next.into(), Ordering::SeqCst);
                })
                .unwrap();
            }
        });
        for stream in 1..=SENDERS {
            scope.spawn(move || {
                let received = &received_by_stack[stream as usize - 1];
                for sequence in 0..COUNT / SENDERS {
                    while u64::from(sequence) >= received.load(Ordering::SeqCst) + IN_FLIGHT / 4 {
                        thread::yield_now();
                        assert!(
                            start.elapsed() < WATCHDOG * 6,
                            "the stack stopped receiving"
                        );
                    }
                    let (from, to) = if sequence % 2 == 0 {
                        (CLIENT_V4, STACK_V4)
                    } else {
                        (CLIENT_V6, STACK_V6)
                    };
                    let packet = ip::udp(
                        SocketAddr::new(address(from), 1000 + stream as u16),
                        SocketAddr::new(address(to), receiver_port),
                        &ip::payload(stream, sequence, payload_len(sequence)),
                    );
                    session.send_retrying(&packet).unwrap();
                }
            });
        }
        let mut seen: Vec<Vec<bool>> =
            vec![vec![false; (COUNT / SENDERS) as usize]; SENDERS as usize];
        let mut buffer = vec![0u8; 0x1_0000];
        for count in 0..COUNT {
            let (len, _) = stack_receiver.recv_from(&mut buffer).unwrap_or_else(|error| {
                let counts: Vec<u64> = received_by_stack
                    .iter()
                    .map(|count| count.load(Ordering::SeqCst))
                    .collect();
                panic!(
                    "the stack got {count} datagrams (by client thread: {counts:?}), then {error}; \
                     receive ring (Head, Tail, Alertable): {:?}; {}",
                    session.rings().receive.header(),
                    network_state()
                )
            });
            let payload = &buffer[..len];
            let (stream, sequence) = ip::payload_label(payload).unwrap();
            assert!((1..=SENDERS).contains(&stream) && sequence < COUNT / SENDERS);
            assert!(
                payload == ip::payload(stream, sequence, payload_len(sequence)),
                "datagram {sequence} of client thread {stream}"
            );
            let seen = &mut seen[stream as usize - 1][sequence as usize];
            assert!(
                !*seen,
                "datagram {sequence} of client thread {stream} twice"
            );
            *seen = true;
            received_by_stack[stream as usize - 1].fetch_add(1, Ordering::SeqCst);
        }
    });
    let elapsed = start.elapsed();
    println!(
        "{COUNT} packets each way, byte-exact, in {elapsed:.2?} ({:.0} packets/s each way)",
        f64::from(COUNT) / elapsed.as_secs_f64()
    );
}
