//! Bad data from the client: packets the driver must skip, and rings corrupted every way the
//! driver can see; each costs only what it touches.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use crate::common::Emulator;
use crate::session::{ENDED, Error, Handshake, MIN_CAPACITY, Session};
use crate::{
    CLIENT_V4, REFLECT, STACK_V4, TEARDOWN_LIMIT, WAKE_LIMIT, WATCHDOG, address, ip,
    start_tun_emulator, start_when_free, time_until, udp_packet,
};

/// Packets the driver must skip (a Size of 0, a version nibble that is neither 4 nor 6, an
/// IPv4 packet under 20 bytes, an IPv6 one under 40), among good ones: the good ones come
/// back byte-exact and in order, the bad ones do not, and every byte of the ring is given back
/// (the ring wraps many times).
#[test]
fn garbage_packets_are_skipped_and_the_ring_keeps_moving() {
    let emulator = Emulator::start(REFLECT);
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x45],
        vec![0x45; 19],
        vec![0x60; 39],
        vec![0x00; 100],
        vec![0x50; 600],
        vec![0xF0; 1500],
    ];
    let minimal_v6 = {
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet
    };
    let mut sent = 0u64;
    for round in 0..400u32 {
        let good = [
            udp_packet(round, 1000 + round as usize % 500),
            minimal_v6.clone(),
            udp_packet(round + 1_000_000, 8),
        ];
        for (index, packet) in good.iter().enumerate() {
            session
                .send_retrying(&garbage[(round as usize + index) % garbage.len()])
                .unwrap();
            session.send_retrying(packet).unwrap();
            sent += packet.len() as u64;
        }
        for packet in &good {
            let received = session
                .receive_waiting(WATCHDOG)
                .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
            assert!(
                received.data() == packet.as_slice(),
                "round {round}: {:?}",
                ip::payload_label(received.data())
            );
            received.release();
        }
    }
    let (head, tail, _) = session.rings().receive.header();
    assert!(
        time_until(WAKE_LIMIT, || session
            .rings()
            .receive
            .head()
            .load(Ordering::SeqCst)
            == tail)
        .is_some(),
        "the driver left the receive ring at Head {head}, Tail {tail}"
    );
    assert_eq!(
        session.receive().err(),
        Some(Error::NoMoreItems),
        "a skipped packet came back"
    );
    println!(
        "{sent} bytes of good packets came back among 1200 bad ones; the ring wrapped {} times",
        sent / u64::from(MIN_CAPACITY)
    );
}

/// Each way to corrupt the receive ring, on a registration of its own: the driver stops
/// reading it and says so (Head = 0xFFFFFFFF, so the DLL's allocation answers
/// ERROR_HANDLE_EOF), while the send ring still delivers; the next registration works.
#[test]
fn a_corrupt_receive_ring_stops_that_ring_and_nothing_else() {
    let emulator = start_tun_emulator();
    let stack = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    type Corruption = fn(&Session);
    let cases: [(&str, Corruption); 4] = [
        ("Tail past the capacity", |session| {
            let ring = &session.rings().receive;
            ring.tail().store(MIN_CAPACITY + 4, Ordering::SeqCst);
            ring.set_event();
        }),
        ("Tail not a multiple of 4", |session| {
            let ring = &session.rings().receive;
            ring.tail().store(2, Ordering::SeqCst);
            ring.set_event();
        }),
        ("Size over 0xFFFF, which the DLL lets through", |session| {
            session.allocate(0x1_0000).unwrap().send();
            session.rings().receive.set_event();
        }),
        ("a packet running past Tail", |session| {
            let ring = &session.rings().receive;
            ring.write_size(0, 1000);
            ring.tail().store(8, Ordering::SeqCst);
            ring.set_event();
        }),
    ];
    for (round, (name, corrupt)) in cases.into_iter().enumerate() {
        let (session, _) = start_when_free(&emulator, Handshake::Fenced);
        corrupt(&session);
        let ring = &session.rings().receive;
        let stopped = time_until(TEARDOWN_LIMIT, || {
            ring.head().load(Ordering::SeqCst) == ENDED
        });
        assert!(
            stopped.is_some(),
            "{name}: the driver went on reading: {:?}",
            ring.header()
        );
        assert_eq!(
            session.allocate(100).err(),
            Some(Error::HandleEof),
            "{name}"
        );
        let payload = ip::payload(5, round as u32, 700);
        stack.send_to(&payload, client).unwrap();
        assert_eq!(receive_datagram(&session), payload, "{name}");
        session.close_handle();
        println!("{name}: receive ring stopped in {:?}", stopped.unwrap());
    }
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let payload = ip::payload(6, 0, 400);
    assert_stack_receives(&session, &stack_receiver(), &payload);
}

/// A UDP socket of the stack's, for datagrams from the client.
fn stack_receiver() -> UdpSocket {
    let receiver = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    receiver.set_read_timeout(Some(WATCHDOG)).unwrap();
    receiver
}

/// Sends `payload` from the client to `receiver` and checks that it arrives whole.
fn assert_stack_receives(session: &Session, receiver: &UdpSocket, payload: &[u8]) {
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    let packet = ip::udp(client, receiver.local_addr().unwrap(), payload);
    session.send(&packet).unwrap();
    let mut buffer = [0u8; 2000];
    let (len, _) = receiver
        .recv_from(&mut buffer)
        .expect("the client's datagram reached the stack");
    assert_eq!(&buffer[..len], payload);
}

/// The payload of the next UDP datagram the stack sent the client's port 9, past the
/// stack's own IPv6 chatter (router solicitations, MLD reports).
fn receive_datagram(session: &Session) -> Vec<u8> {
    loop {
        let packet = session.receive_waiting(WATCHDOG).unwrap();
        let payload = ip::parse_udp(packet.data())
            .filter(|datagram| datagram.destination.port() == 9)
            .map(|datagram| datagram.payload.to_vec());
        packet.release();
        if let Some(payload) = payload {
            return payload;
        }
    }
}

/// A send ring whose Head the client corrupted: the driver writes nothing more to it (the
/// packets for it are dropped) and the receive ring still carries traffic; the next
/// registration works.
#[test]
fn a_corrupt_send_ring_loses_its_packets_and_nothing_else() {
    let emulator = start_tun_emulator();
    let stack = UdpSocket::bind((address(STACK_V4), 0)).unwrap();
    let receiver = stack_receiver();
    let client = SocketAddr::new(address(CLIENT_V4), 9);
    for bad_head in [MIN_CAPACITY, ENDED, 6] {
        let (session, _) = start_when_free(&emulator, Handshake::Fenced);
        let ring = &session.rings().send;
        ring.head().store(bad_head, Ordering::SeqCst);
        // The Linux stack sends packets of its own (an IPv6 multicast report, say) whenever it
        // likes: one whose send read Head before the store above may still move Tail. Only
        // what the driver writes after that is a fault.
        thread::sleep(Duration::from_millis(20));
        let tail = ring.tail().load(Ordering::SeqCst);
        for sequence in 0..20 {
            stack
                .send_to(&ip::payload(7, sequence, 300), client)
                .unwrap();
        }
        // The client's datagrams to the stack still arrive, and so after the ones above.
        assert_stack_receives(&session, &receiver, &ip::payload(8, bad_head, 500));
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            ring.tail().load(Ordering::SeqCst),
            tail,
            "Head {bad_head:#x}: the driver wrote on"
        );
        session.close_handle();
    }
    let (session, _) = start_when_free(&emulator, Handshake::Fenced);
    let payload = ip::payload(9, 0, 600);
    stack.send_to(&payload, client).unwrap();
    assert_eq!(receive_datagram(&session), payload);
}
