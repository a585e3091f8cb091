//! The ring IOCTL through the driver on the simulated kernel, from 64- and 32-bit processes of
//! any privilege: an input buffer of any length, built field by field (each field good, near
//! good, or anything) or any bytes at all, over rings whose headers hold any words. Whatever
//! comes in, the driver answers; a refused registration holds nothing; an accepted one ends on
//! close with Tail = 0xFFFFFFFF; and a good registration works afterwards.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oxtun_abi::{
    CallerWidth, MIN_CAPACITY, RING_ENDED, RingDescriptor, RingRegistration,
    TUN_IOCTL_REGISTER_RINGS, ring_size,
};
use oxtun_driver::sys::*;
use oxtun_fuzz::{Sim, with_sim};
use oxtun_sim::{Bitness, Leaks, Process, Token, outstanding};

const READ_WRITE: ACCESS_MASK = FILE_READ_DATA | FILE_WRITE_DATA;
const EVENT_ALL_ACCESS: ACCESS_MASK = 0x001F_0003;

#[derive(Arbitrary, Debug)]
enum Size {
    Good,
    /// The ring size of another capacity: 2^shift bytes.
    Capacity(u8),
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Pointer {
    /// The ring's own memory.
    Good,
    /// The ring's memory moved by this many bytes.
    Near(i32),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Event {
    Good,
    /// An event the process may only wait on.
    WaitOnly,
    /// An event the process may only set.
    SetOnly,
    /// The handle of the device itself.
    Device,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
struct Ring {
    size: Size,
    pointer: Pointer,
    event: Event,
    /// Head, Tail and Alertable as the ring's memory holds them.
    header: [u32; 3],
}

#[derive(Arbitrary, Debug)]
enum Buffer {
    Fields {
        send: Ring,
        receive: Ring,
        /// The buffer cut to, or padded to, this length.
        length: Option<u8>,
    },
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    token: u8,
    bits32: bool,
    buffer: Buffer,
}

/// A client of the device: a process, its handle to the device, two rings' memory and events.
struct Client<'a> {
    process: &'a Process,
    width: CallerWidth,
    memory: [u64; 2],
    events: [u64; 2],
    wait_only: u64,
    set_only: u64,
    device: u64,
}

impl Client<'_> {
    fn descriptor(&self, index: usize, ring: &Ring) -> RingDescriptor {
        let memory = self.memory[index];
        // SAFETY: the ring's memory in the process, at least a header's worth of words.
        unsafe {
            let words = self.process.memory(memory).cast::<u32>();
            for (at, word) in ring.header.iter().enumerate() {
                words.add(at).write(*word);
            }
        }
        RingDescriptor {
            ring_size: match ring.size {
                Size::Good => ring_size(MIN_CAPACITY),
                Size::Capacity(shift) => ring_size(1u32 << (shift % 32)),
                Size::Any(size) => size,
            },
            ring: match ring.pointer {
                Pointer::Good => memory,
                Pointer::Near(by) => memory.wrapping_add_signed(i64::from(by)),
                Pointer::Any(address) => address,
            },
            tail_moved: match ring.event {
                Event::Good => self.events[index],
                Event::WaitOnly => self.wait_only,
                Event::SetOnly => self.set_only,
                Event::Device => self.device,
                Event::Any(handle) => handle,
            },
        }
    }

    fn buffer(&self, buffer: &Buffer) -> Vec<u8> {
        match buffer {
            Buffer::Fields {
                send,
                receive,
                length,
            } => {
                let registration = RingRegistration {
                    send: self.descriptor(0, send),
                    receive: self.descriptor(1, receive),
                };
                let mut bytes = [0u8; 48];
                // A 32-bit caller's pointers and handles are cut to 32 bits, as its own would be.
                let len = match registration.encode(self.width, &mut bytes) {
                    Some(len) => len,
                    None => truncated(&registration)
                        .encode(self.width, &mut bytes)
                        .unwrap(),
                };
                let mut bytes = bytes[..len].to_vec();
                if let Some(length) = length {
                    bytes.resize(usize::from(*length), 0);
                }
                bytes
            }
            Buffer::Bytes(bytes) => bytes.clone(),
        }
    }

    fn good(&self) -> Vec<u8> {
        self.buffer(&Buffer::Fields {
            send: Ring::GOOD,
            receive: Ring::GOOD,
            length: None,
        })
    }
}

impl Ring {
    const GOOD: Ring = Ring {
        size: Size::Good,
        pointer: Pointer::Good,
        event: Event::Good,
        header: [0; 3],
    };
}

fn truncated(registration: &RingRegistration) -> RingRegistration {
    let cut = |ring: &RingDescriptor| RingDescriptor {
        ring_size: ring.ring_size,
        ring: ring.ring & 0xFFFF_FFFF,
        tail_moved: ring.tail_moved & 0xFFFF_FFFF,
    };
    RingRegistration {
        send: cut(&registration.send),
        receive: cut(&registration.receive),
    }
}

/// The send ring's Tail, where the registration in `buffer` says the ring is.
fn send_tail(client: &Client, buffer: &[u8]) -> u32 {
    let registration = RingRegistration::decode(buffer, client.width).expect("it was accepted");
    // SAFETY: the driver accepted the ring, so it lies in the process's memory; Tail is its
    // second word.
    unsafe {
        client
            .process
            .memory(registration.send.ring)
            .cast::<u32>()
            .add(1)
            .read_volatile()
    }
}

/// What the driver holds now is what it held idle, but for receive NBLs (each with its MDL)
/// it keeps for reuse.
fn assert_idle(sim: &Sim) {
    let now = outstanding();
    let idle = &sim.idle;
    let expected = Leaks {
        pool: idle.pool.clone(),
        nbls: now.nbls,
        mdls: idle.mdls + now.nbls - idle.nbls,
        ..*idle
    };
    assert_eq!(now, expected, "the driver holds more than when idle");
}

fuzz_target!(|input: Input| {
    with_sim(|sim| {
        let token =
            [Token::System, Token::Administrator, Token::User][usize::from(input.token % 3)];
        let bitness = if input.bits32 {
            Bitness::Bits32
        } else {
            Bitness::Bits64
        };
        let process = Process::new(token, bitness);
        let handle = process.open(sim.adapter.device(), READ_WRITE);
        let client = Client {
            process: &process,
            width: match bitness {
                Bitness::Bits32 => CallerWidth::Bits32,
                Bitness::Bits64 => CallerWidth::Bits64,
            },
            memory: [0, 1].map(|_| process.allocate(ring_size(MIN_CAPACITY) as usize)),
            events: [0, 1].map(|_| process.create_event(EVENT_ALL_ACCESS).0),
            wait_only: process.create_event(SYNCHRONIZE).0,
            set_only: process.create_event(EVENT_MODIFY_STATE).0,
            device: handle.handle(),
        };

        let buffer = client.buffer(&input.buffer);
        let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &buffer);
        if !NT_SUCCESS(status) {
            assert_idle(sim);
        }
        handle.close();
        assert_idle(sim);
        if NT_SUCCESS(status) {
            assert_eq!(
                send_tail(&client, &buffer),
                RING_ENDED,
                "closing ends the registration"
            );
        }

        if token != Token::User {
            let handle = process.open(sim.adapter.device(), READ_WRITE);
            let status = handle.device_control(TUN_IOCTL_REGISTER_RINGS, &client.good());
            assert_eq!(
                status, STATUS_SUCCESS,
                "a good registration after {input:?}"
            );
            handle.close();
            assert_idle(sim);
        }
    });
});
