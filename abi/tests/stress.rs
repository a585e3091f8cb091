//! Real threads on one ring: a million packets of random sizes, contents verified, with the
//! alertable handshake deciding when the consumer sleeps. A lost wakeup shows as a timeout.

mod support;

use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use oxtun_abi::*;
use support::{TestRing, pattern_byte};

/// An auto-reset event, like the TailMoved event.
#[derive(Default)]
struct Event {
    signalled: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    fn set(&self) {
        *self.signalled.lock().unwrap() = true;
        self.changed.notify_one();
    }

    /// Waits for the event and resets it; panics if it never comes (a lost wakeup).
    fn wait(&self) {
        let guard = self.signalled.lock().unwrap();
        let (mut guard, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(20), |signalled| !*signalled)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "the consumer slept through a packet: lost wakeup"
        );
        *guard = false;
    }
}

/// xorshift64*, so producer and consumer derive the same sizes.
struct Sizes(u64);

impl Sizes {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32;
        if r % 100 == 0 {
            (r >> 8) as u32 % (MAX_IP_PACKET_SIZE + 1)
        } else {
            (r >> 8) as u32 % 1500
        }
    }
}

/// Writes packet `id` of `size` bytes: its id in the first 8 bytes when they fit, a pattern after.
fn fill(slot: &mut PacketSlot, id: u64, size: u32) {
    let mut data = [0u8; 1500];
    let mut at = 0;
    while at < size as usize {
        let chunk = (size as usize - at).min(data.len());
        for (i, byte) in data[..chunk].iter_mut().enumerate() {
            *byte = pattern_byte(id, at + i);
        }
        if at == 0 && chunk >= 8 {
            data[..8].copy_from_slice(&id.to_le_bytes());
        }
        assert!(slot.write(at, &data[..chunk]));
        at += chunk;
    }
}

fn verify(bytes: &[u8], id: u64) {
    for (i, &byte) in bytes.iter().enumerate() {
        let expected = if i < 8 && bytes.len() >= 8 {
            id.to_le_bytes()[i]
        } else {
            pattern_byte(id, i)
        };
        assert_eq!(byte, expected, "packet {id} byte {i}");
    }
}

/// Produces packets `ids` with their sizes from `sizes`, sharing the writer behind a lock.
fn produce(writer: &Mutex<RingWriter>, event: &Event, ids: impl Iterator<Item = (u64, u32)>) {
    for (id, size) in ids {
        let space = packet_space(size).unwrap();
        let mut reservation = loop {
            match writer.lock().unwrap().reserve(space) {
                Ok(reservation) => break reservation,
                Err(ReserveError::Full { .. }) => thread::yield_now(),
                Err(other) => panic!("reserve: {other:?}"),
            }
        };
        let mut slot = reservation.push_packet(size).unwrap();
        fill(&mut slot, id, size);
        if writer.lock().unwrap().complete(reservation).wake_consumer {
            event.set();
        }
    }
}

/// Consumes `count` packets, handing each to `check`; releases in batches of `batch`.
fn consume(
    mut reader: RingReader,
    event: &Event,
    count: u64,
    batch: usize,
    mut check: impl FnMut(&[u8]),
) -> u64 {
    let mut buffer = vec![0u8; MAX_IP_PACKET_SIZE as usize];
    let mut unreleased = 0;
    let mut sleeps = 0;
    let mut received = 0;
    while received < count {
        match reader.next_packet().unwrap() {
            Some(packet) => {
                let len = reader.copy_packet(&packet, &mut buffer);
                check(&buffer[..len]);
                received += 1;
                unreleased += 1;
                if unreleased == batch {
                    assert!(reader.release_all());
                    unreleased = 0;
                }
            }
            None => {
                assert!(reader.release_all());
                unreleased = 0;
                if reader.announce_sleep() == SleepDecision::Sleep {
                    event.wait();
                    reader.end_sleep();
                    sleeps += 1;
                }
            }
        }
    }
    assert_eq!(reader.next_packet(), Ok(None));
    sleeps
}

#[test]
fn one_producer_one_consumer_a_million_packets() {
    // Miri interprets every step: a few dozen packets there.
    const COUNT: u64 = if cfg!(miri) { 30 } else { 1_000_000 };
    let ring = TestRing::new(MIN_CAPACITY);
    let writer = Mutex::new(RingWriter::attach(ring.region()).unwrap());
    let reader = RingReader::attach(ring.region()).unwrap();
    let event = Event::default();
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut sizes = Sizes(0x5EED);
            produce(&writer, &event, (0..COUNT).map(|id| (id, sizes.next())));
        });
        let mut sizes = Sizes(0x5EED);
        let mut id = 0;
        let sleeps = consume(reader, &event, COUNT, 7, |bytes| {
            assert_eq!(bytes.len() as u32, sizes.next(), "packet {id} size");
            verify(bytes, id);
            id += 1;
        });
        println!("{COUNT} packets, consumer slept {sleeps} times");
    });
    ring.assert_guard_intact();
}

#[test]
fn two_producers_completing_out_of_order_one_consumer() {
    const PER_PRODUCER: u64 = if cfg!(miri) { 15 } else { 200_000 };
    let ring = TestRing::new(MIN_CAPACITY);
    let writer = Mutex::new(RingWriter::attach(ring.region()).unwrap());
    let reader = RingReader::attach(ring.region()).unwrap();
    let event = Event::default();
    thread::scope(|scope| {
        for producer in 0..2u64 {
            let (writer, event) = (&writer, &event);
            scope.spawn(move || {
                let mut sizes = Sizes(0xA11CE + producer);
                let ids = (0..PER_PRODUCER).map(|n| (producer << 32 | n, sizes.next().max(8)));
                produce(writer, event, ids);
            });
        }
        let mut next = [0u64; 2];
        consume(reader, &event, 2 * PER_PRODUCER, 1, |bytes| {
            let id = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            let producer = (id >> 32) as usize;
            assert_eq!(
                id & 0xFFFF_FFFF,
                next[producer],
                "producer {producer} out of order"
            );
            next[producer] += 1;
            verify(bytes, id);
        });
        assert_eq!(next, [PER_PRODUCER; 2]);
    });
    ring.assert_guard_intact();
}
