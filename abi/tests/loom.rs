//! Model checking of the ring protocol's concurrency with loom, which runs each model under every
//! interleaving of its threads and every reordering the C11 memory model allows of their atomic
//! loads, stores and fences (loom's own limits: SeqCst loads and stores count as AcqRel, which
//! only adds false alarms; some load-buffering outcomes are not explored).
//!
//! The models run the crate's own `RingReader`, `RingWriter` and `CompletionOrder`: built with
//! `--cfg loom`, the crate's atomics are loom's (src/sync.rs). Run them with
//!
//!     RUSTFLAGS="--cfg loom" cargo test -p oxtun-abi --release --test loom
//!
//! The models with a handshake fence removed must fail: they show the checker finds the lost
//! wakeup the fences prevent.
//!
//! Most models are explored exhaustively. The two with three threads and a loop each are bounded
//! to 3 preemptions per execution, where they take seconds (set `LOOM_MAX_PREEMPTIONS` to go
//! deeper; without a bound they take many minutes).
#![cfg(loom)]

use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize as Counter;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex, Notify};
use loom::thread;
use oxtun_abi::*;

/// A ring for a model: its bytes (where packet data goes) and its shared words, which are loom's
/// atomics.
struct ModelRing {
    memory: Box<[std::sync::atomic::AtomicU32]>,
    words: ModelWords,
}

impl ModelRing {
    fn new(words: ModelWords) -> Arc<Self> {
        let len = ring_size(MIN_CAPACITY) as usize / 4;
        let memory = (0..len).map(|_| Default::default()).collect();
        Arc::new(ModelRing { memory, words })
    }

    /// The ring as either side sees it. Valid while this ring lives: each thread that uses it
    /// holds the ring's Arc.
    fn region(&self) -> RingRegion {
        let base = NonNull::new(self.memory.as_ptr() as *mut u8).unwrap();
        let len = ring_size(MIN_CAPACITY) as usize;
        // SAFETY: the memory and the words live as long as this ring, which outlives every use
        // of the region (see above); the memory is atomics, so writing it through the region's
        // pointers is allowed.
        unsafe { RingRegion::new(base, len).unwrap().modelled_by(&self.words) }
    }
}

/// Runs `model` under loom, every execution unless `preemptions` bounds how often a thread may
/// be preempted in one (`LOOM_MAX_PREEMPTIONS` overrides the bound), and returns how many
/// executions it explored.
fn explore(
    name: &str,
    preemptions: Option<usize>,
    model: impl Fn() + Sync + Send + 'static,
) -> usize {
    let executions = std::sync::Arc::new(Counter::new(0));
    let counted = executions.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(preemptions);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    let bound = builder.preemption_bound;
    println!("{name}: {executions} executions explored (preemption bound {bound:?})");
    executions
}

/// Runs a model that must fail with a lost wakeup, and says after how many executions it did.
fn expect_lost_wakeup(name: &str, model: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(Counter::new(0));
    let counted = executions.clone();
    // The model's state is loom's and is dropped with the panic: nothing is observed broken.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
        loom::model(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            model();
        })
    }));
    let executions = executions.load(std::sync::atomic::Ordering::Relaxed);
    let Err(panic) = outcome else {
        panic!("{name}: loom explored {executions} executions and found no lost wakeup");
    };
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("lost wakeup"),
        "{name}: failed otherwise: {message}"
    );
    println!("{name}: lost wakeup found in execution {executions}, as expected");
}

fn packet_bytes(reader: &RingReader, packet: &Packet) -> Vec<u8> {
    let mut bytes = vec![0; packet.size() as usize];
    reader.copy_packet(packet, &mut bytes);
    bytes
}

/// What the consumer did after finding the ring empty once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumer {
    /// The packet was already there.
    Read,
    /// It announced sleep and saw Tail had moved.
    ReadAgain,
    /// It announced sleep and went to sleep on the TailMoved event.
    Slept,
}

/// One packet, one producer, one consumer that finds the ring empty and runs its half of the
/// handshake: the producer's half is `RingWriter::complete` (store Tail, fence, load Alertable,
/// and set the event if the consumer is alertable), the consumer's `RingReader::announce_sleep`
/// (store Alertable, fence, load Tail). If the consumer decided to sleep, the producer must have
/// seen Alertable and set the event; either way the packet is there to read.
fn handshake_model(words: fn() -> ModelWords) -> Consumer {
    let ring = ModelRing::new(words());
    let mut writer = RingWriter::attach(ring.region()).unwrap();
    let mut reader = RingReader::attach(ring.region()).unwrap();
    let event = Arc::new(AtomicBool::new(false));
    let producer = {
        let (ring, event) = (ring.clone(), event.clone());
        thread::spawn(move || {
            let _ring = ring;
            let mut reservation = writer.reserve(packet_space(4).unwrap()).unwrap();
            assert!(reservation.push_packet(4).unwrap().write(0, b"ping"));
            if writer.complete(reservation).wake_consumer {
                event.store(true, Ordering::Release);
            }
        })
    };
    let consumer = match reader.next_packet().unwrap() {
        Some(_) => Consumer::Read,
        None => match reader.announce_sleep() {
            SleepDecision::Sleep => Consumer::Slept,
            SleepDecision::ReadAgain => Consumer::ReadAgain,
        },
    };
    producer.join().unwrap();
    if consumer == Consumer::Slept {
        assert!(
            event.load(Ordering::Acquire),
            "lost wakeup: the consumer sleeps on a published packet and its event is never set"
        );
        reader.end_sleep();
    }
    if consumer != Consumer::Read {
        let packet = reader.next_packet().unwrap().expect("the published packet");
        assert_eq!(packet_bytes(&reader, &packet), b"ping");
    }
    consumer
}

#[test]
fn handshake_never_loses_a_wakeup() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let outcomes = seen.clone();
    explore("handshake", None, move || {
        let outcome = handshake_model(ModelWords::new);
        let mut outcomes = outcomes.lock().unwrap();
        if !outcomes.contains(&outcome) {
            outcomes.push(outcome);
        }
    });
    // Every path of the handshake was taken in some execution, sleeping among them.
    let seen = seen.lock().unwrap();
    for outcome in [Consumer::Read, Consumer::ReadAgain, Consumer::Slept] {
        assert!(seen.contains(&outcome), "no execution where it {outcome:?}");
    }
}

/// The checker has teeth: without the producer's fence, its load of Alertable may take the value
/// from before the consumer's store while the consumer's load of Tail misses the producer's
/// store; both miss, and the consumer sleeps on a packet.
#[test]
fn without_the_producer_fence_the_wakeup_is_lost() {
    expect_lost_wakeup("handshake without the producer's fence", || {
        handshake_model(|| ModelWords::new().without_producer_fence());
    });
}

/// The same from the other side: both fences are needed (a Dekker-style handshake).
#[test]
fn without_the_consumer_fence_the_wakeup_is_lost() {
    expect_lost_wakeup("handshake without the consumer's fence", || {
        handshake_model(|| ModelWords::new().without_consumer_fence());
    });
}

/// The consumer really sleeps (on an auto-reset event) and wakes repeatedly: two packets
/// published one after the other, each with the handshake. A lost wakeup shows as a deadlock,
/// which loom reports.
#[test]
fn consumer_sleeps_and_wakes_for_each_packet() {
    explore("sleep and wake twice", Some(3), || {
        let ring = ModelRing::new(ModelWords::new());
        let mut writer = RingWriter::attach(ring.region()).unwrap();
        let mut reader = RingReader::attach(ring.region()).unwrap();
        let event = Arc::new(Notify::new());
        let producer = {
            let (ring, event) = (ring.clone(), event.clone());
            thread::spawn(move || {
                let _ring = ring;
                for byte in [1u8, 2] {
                    let mut reservation = writer.reserve(packet_space(1).unwrap()).unwrap();
                    assert!(reservation.push_packet(1).unwrap().write(0, &[byte]));
                    if writer.complete(reservation).wake_consumer {
                        event.notify();
                    }
                }
            })
        };
        let mut received = Vec::new();
        while received.len() < 2 {
            match reader.next_packet().unwrap() {
                Some(packet) => {
                    received.extend(packet_bytes(&reader, &packet));
                    assert!(reader.release_to(packet.end()));
                }
                None => {
                    if reader.announce_sleep() == SleepDecision::Sleep {
                        event.wait();
                        reader.end_sleep();
                    }
                }
            }
        }
        producer.join().unwrap();
        assert_eq!(received, [1, 2]);
    });
}

/// The send path: two producers (CPUs sending) share a writer behind a lock, which they hold only
/// to reserve and to complete; they fill their packets outside it and may complete in either
/// order. The consumer sees every packet byte-exact, in reservation order, so Tail never passed
/// a reservation still being filled; and it is woken whenever it sleeps.
#[test]
fn two_producers_completing_out_of_order_publish_in_ring_order() {
    explore("two producers", Some(3), || {
        let ring = ModelRing::new(ModelWords::new());
        // The writer, and the order reservations were made in.
        let shared = Arc::new(Mutex::new((
            RingWriter::attach(ring.region()).unwrap(),
            Vec::new(),
        )));
        let mut reader = RingReader::attach(ring.region()).unwrap();
        let event = Arc::new(Notify::new());
        let sizes = [(1u8, 5u32), (2, 9)];
        let producers = sizes.map(|(id, size)| {
            let (ring, shared, event) = (ring.clone(), shared.clone(), event.clone());
            thread::spawn(move || {
                let _ring = ring;
                let mut reservation = {
                    let mut shared = shared.lock().unwrap();
                    let reservation = shared.0.reserve(packet_space(size).unwrap()).unwrap();
                    shared.1.push(id);
                    reservation
                };
                let mut slot = reservation.push_packet(size).unwrap();
                assert!(slot.write(0, &vec![id; size as usize]));
                let published = shared.lock().unwrap().0.complete(reservation);
                if published.wake_consumer {
                    event.notify();
                }
            })
        });
        let mut received = Vec::new();
        while received.len() < 2 {
            match reader.next_packet().unwrap() {
                Some(packet) => {
                    let bytes = packet_bytes(&reader, &packet);
                    let id = bytes.first().copied();
                    let expected = sizes.iter().find(|&&(known, _)| Some(known) == id);
                    let Some(&(id, size)) = expected else {
                        panic!("a packet that was never written: {bytes:?}");
                    };
                    assert_eq!(bytes, vec![id; size as usize], "a half-written packet");
                    received.push(id);
                    assert!(reader.release_to(packet.end()));
                }
                None => {
                    if reader.announce_sleep() == SleepDecision::Sleep {
                        event.wait();
                        reader.end_sleep();
                    }
                }
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        assert_eq!(
            received,
            shared.lock().unwrap().1,
            "not in reservation order"
        );
        assert!(shared.lock().unwrap().0.is_idle());
    });
}

/// The receive path: packets go up in ring order, and NDIS returns them from two threads in any
/// order. Each return finishes its ticket under the lock and releases the finished prefix. A
/// third thread, the client, loads Head: every packet Head has passed must have been returned,
/// and the client must see that (the returns happen before the Head store it reads).
fn returns_release_in_ring_order<const N: usize>() {
    const PACKETS: usize = 3;
    let ring = ModelRing::new(ModelWords::new());
    let mut writer = RingWriter::attach(ring.region()).unwrap();
    let mut reader = RingReader::attach(ring.region()).unwrap();
    let mut order = CompletionOrder::<N>::new();
    let mut ends = [0u32; PACKETS];
    let mut tickets = [0u32; PACKETS];
    for (i, byte) in [10u8, 11, 12].into_iter().enumerate() {
        let mut reservation = writer.reserve(packet_space(4).unwrap()).unwrap();
        assert!(reservation.push_packet(4).unwrap().write(0, &[byte; 4]));
        assert!(writer.complete(reservation).tail_moved);
        let packet = reader.next_packet().unwrap().unwrap();
        ends[i] = packet.end();
        tickets[i] = order.begin(packet.end()).into_raw();
    }
    let start = ring.words.head().load(Ordering::Relaxed);
    let returned: Arc<[AtomicBool; PACKETS]> =
        Arc::new(std::array::from_fn(|_| AtomicBool::new(false)));
    let receive = Arc::new(Mutex::new((order, reader)));
    let return_packets = |packets: &'static [usize]| {
        let (ring, returned, receive) = (ring.clone(), returned.clone(), receive.clone());
        thread::spawn(move || {
            let _ring = ring;
            for &i in packets {
                returned[i].store(true, Ordering::Relaxed);
                let mut receive = receive.lock().unwrap();
                let (order, reader) = &mut *receive;
                if let Some(end) = order.finish(Ticket::from_raw(tickets[i])) {
                    for (j, &packet_end) in ends.iter().enumerate() {
                        if packet_end <= end {
                            assert!(returned[j].load(Ordering::Relaxed), "packet {j} unreturned");
                        }
                    }
                    assert!(reader.release_to(end));
                }
            }
        })
    };
    let returners = [return_packets(&[2, 0]), return_packets(&[1])];
    let head = ring.words.head().load(Ordering::Acquire);
    assert!(start <= head && head <= ends[PACKETS - 1]);
    for (i, &end) in ends.iter().enumerate() {
        if end <= head {
            assert!(
                returned[i].load(Ordering::Relaxed),
                "Head passed packet {i} before it was returned"
            );
        }
    }
    for returner in returners {
        returner.join().unwrap();
    }
    let receive = receive.lock().unwrap();
    assert!(receive.0.is_idle() && receive.1.all_released());
    assert_eq!(ring.words.head().load(Ordering::Relaxed), ends[PACKETS - 1]);
}

#[test]
fn out_of_order_returns_release_in_ring_order() {
    explore(
        "returns, a ticket per packet",
        None,
        returns_release_in_ring_order::<4>,
    );
}

/// The same when the tracking table is full and later packets share an entry (the driver's
/// table has 256 entries; here 2 for 3 packets).
#[test]
fn out_of_order_returns_release_in_ring_order_with_shared_entries() {
    explore(
        "returns, packets sharing an entry",
        None,
        returns_release_in_ring_order::<2>,
    );
}

/// A hostile producer storing Tail and Size while the reader loads them, in every interleaving
/// and reordering: whatever pair of values the reader sees, it reads only a well-formed packet
/// inside the region or stops the ring.
#[test]
fn a_producer_scribbling_during_reads_never_gets_a_bad_packet_through() {
    explore("scribbling producer", None, || {
        let ring = ModelRing::new(ModelWords::new());
        let mut reader = RingReader::attach(ring.region()).unwrap();
        let scribbler = {
            let ring = ring.clone();
            thread::spawn(move || {
                ring.words.size(0).store(8, Ordering::Relaxed);
                ring.words.tail().store(12, Ordering::Release);
                ring.words.size(0).store(0x1_0000, Ordering::Relaxed);
                ring.words.tail().store(6, Ordering::Release);
            })
        };
        for _ in 0..2 {
            match reader.next_packet() {
                Ok(Some(packet)) => {
                    assert_eq!((packet.offset(), packet.size(), packet.end()), (0, 8, 12));
                }
                Ok(None) => {}
                Err(error) => {
                    assert!(matches!(
                        error,
                        RingError::SizeTooLarge(0x1_0000) | RingError::TailMisaligned(6)
                    ));
                    assert_eq!(ring.words.head().load(Ordering::Relaxed), RING_ENDED);
                    assert_eq!(reader.next_packet(), Err(error), "stopped for good");
                }
            }
        }
        scribbler.join().unwrap();
    });
}
