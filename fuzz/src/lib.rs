//! What the fuzz targets share: a ring in memory of exactly its size (so AddressSanitizer, which
//! cargo-fuzz enables, sees any access past it), the reading rules spelled out plainly to compare
//! the reader with, and the simulated kernel with one adapter, loaded once per process.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use oxtun_abi::{
    MAX_IP_PACKET_SIZE, PACKET_HEADER_SIZE, Packet, RING_ENDED, RingError, RingReader, RingRegion,
    align, ring_size,
};
use oxtun_sim::{Adapter, Driver, Leaks};

/// A ring's memory, zeroed, of exactly `12 + capacity + 0x10000` bytes.
pub struct FuzzRing {
    words: Box<[AtomicU32]>,
    capacity: u32,
}

impl FuzzRing {
    pub fn new(capacity: u32) -> Self {
        // Zeroed in one allocation: word by word, under AddressSanitizer, it took most of each
        // run.
        let zeroed = vec![0u32; ring_size(capacity) as usize / 4].into_boxed_slice();
        // SAFETY: AtomicU32 has the size, alignment and bit validity of u32, so a slice of one is
        // a slice of the other; the Box keeps its allocation and layout.
        let words = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU32]) };
        FuzzRing { words, capacity }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn region(&self) -> RingRegion {
        let base = NonNull::new(self.words.as_ptr() as *mut u8).unwrap();
        // SAFETY: the words live as long as this ring, which outlives every reader a target
        // makes; they are atomics, so the reader's stores and copies through its pointers are
        // allowed.
        unsafe { RingRegion::new(base, ring_size(self.capacity) as usize) }.unwrap()
    }

    /// Words of the whole region: Head, Tail, Alertable, then Data.
    pub fn len_words(&self) -> usize {
        self.words.len()
    }

    pub fn word(&self, index: usize) -> u32 {
        self.words[index].load(Ordering::Relaxed)
    }

    pub fn set_word(&self, index: usize, value: u32) {
        self.words[index].store(value, Ordering::Relaxed)
    }

    pub fn head(&self) -> u32 {
        self.word(0)
    }

    pub fn tail(&self) -> u32 {
        self.word(1)
    }

    pub fn alertable(&self) -> u32 {
        self.word(2)
    }

    /// The word at a byte offset into Data (a multiple of 4, inside the region).
    pub fn data_word(&self, offset: u32) -> u32 {
        self.word(3 + offset as usize / 4)
    }

    /// Writes bytes into Data from `offset` on, as far as the region reaches.
    pub fn write_data(&self, offset: u32, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks(4).enumerate() {
            let index = 3 + offset as usize / 4 + i;
            if index >= self.words.len() {
                break;
            }
            let mut word = self.word(index).to_le_bytes();
            word[..chunk.len()].copy_from_slice(chunk);
            self.set_word(index, u32::from_le_bytes(word));
        }
    }

    /// The bytes of Data from `offset` on, `len` of them (inside the region).
    pub fn data_bytes(&self, offset: u32, len: usize) -> Vec<u8> {
        let start = 12 + offset as usize;
        (start..start + len)
            .map(|at| self.word(at / 4).to_le_bytes()[at % 4])
            .collect()
    }

    /// Every word of the region, copied at once (nothing else touches the ring meanwhile: a
    /// target runs on one thread).
    pub fn snapshot(&self) -> Vec<u32> {
        let mut words = vec![0u32; self.words.len()];
        // SAFETY: both hold `len` 4-byte words and do not overlap; no other thread writes the
        // ring.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.words.as_ptr().cast::<u32>(),
                words.as_mut_ptr(),
                words.len(),
            )
        };
        words
    }

    /// Checks that the packet the reader found lies inside the region, and returns its bytes as
    /// the reader copies them.
    pub fn packet(&self, reader: &RingReader, packet: &Packet) -> Vec<u8> {
        let base = self.words.as_ptr() as usize;
        let end = base + self.words.len() * 4;
        let data = reader.packet_data(packet).as_ptr() as usize;
        let offset = packet.offset();
        assert_eq!(data, base + 12 + (offset + PACKET_HEADER_SIZE) as usize);
        assert!(
            data + packet.size() as usize <= end,
            "a packet past the region"
        );
        let mut bytes = vec![0; packet.size() as usize];
        assert_eq!(reader.copy_packet(packet, &mut bytes), bytes.len());
        bytes
    }
}

/// Ring bytes from `from` forward to `to`.
pub fn distance(capacity: u32, from: u32, to: u32) -> u32 {
    to.wrapping_sub(from) & (capacity - 1)
}

/// A consumer as the rules in design.md describe it, written plainly: the expected outcome of
/// each call, given the ring's words at the moment of the call.
#[derive(Debug)]
pub struct Rules {
    pub capacity: u32,
    /// Released up to here.
    pub head: u32,
    /// Read up to here.
    pub read: u32,
    pub stopped: Option<RingError>,
}

/// What `next_packet` should return: a packet as (offset, size, end), none, or an error.
pub type Next = Result<Option<(u32, u32, u32)>, RingError>;

impl Rules {
    /// Attaching at `head`: the consumer's own value from then on.
    pub fn attach(capacity: u32, head: u32) -> Result<Self, RingError> {
        if head == RING_ENDED {
            Err(RingError::ConsumerStopped)
        } else if head >= capacity {
            Err(RingError::HeadOutOfRange(head))
        } else if !head.is_multiple_of(4) {
            Err(RingError::HeadMisaligned(head))
        } else {
            Ok(Rules {
                capacity,
                head,
                read: head,
                stopped: None,
            })
        }
    }

    /// The next packet, given Tail now and the word at the read position now.
    pub fn next(&mut self, tail: u32, size_at_read: u32) -> Next {
        if let Some(error) = self.stopped {
            return Err(error);
        }
        let outcome = if tail == RING_ENDED {
            Err(RingError::Ended)
        } else if tail >= self.capacity {
            Err(RingError::TailOutOfRange(tail))
        } else if !tail.is_multiple_of(4) {
            Err(RingError::TailMisaligned(tail))
        } else if distance(self.capacity, self.head, tail)
            < distance(self.capacity, self.head, self.read)
        {
            Err(RingError::TailBehindRead(tail))
        } else if tail == self.read {
            Ok(None)
        } else if size_at_read > MAX_IP_PACKET_SIZE {
            Err(RingError::SizeTooLarge(size_at_read))
        } else {
            let space = align(PACKET_HEADER_SIZE + size_at_read);
            if space > distance(self.capacity, self.read, tail) {
                Err(RingError::SizePastTail(size_at_read))
            } else {
                let end = (self.read + space) & (self.capacity - 1);
                let packet = (self.read, size_at_read, end);
                self.read = end;
                Ok(Some(packet))
            }
        };
        if let Err(error) = outcome {
            self.stopped = Some(error);
        }
        outcome
    }

    /// Whether releasing up to `end` is allowed, and if so the release.
    pub fn release_to(&mut self, end: u32) -> bool {
        let allowed = self.stopped.is_none()
            && end < self.capacity
            && end.is_multiple_of(4)
            && distance(self.capacity, self.head, end)
                <= distance(self.capacity, self.head, self.read);
        if allowed {
            self.head = end;
        }
        allowed
    }
}

/// The outcome the reader gave, in the rules' terms.
pub fn outcome(result: Result<Option<Packet>, RingError>) -> Next {
    result.map(|packet| packet.map(|p| (p.offset(), p.size(), p.end())))
}

/// The simulated kernel with the driver loaded and one adapter, for one fuzzing process.
pub struct Sim {
    pub driver: Driver,
    pub adapter: Adapter,
    /// What the driver holds with the adapter up and idle.
    pub idle: Leaks,
}

thread_local! {
    static SIM: Sim = {
        let driver = Driver::load().expect("the driver loads");
        let adapter = driver.add_adapter().expect("an adapter comes up");
        let idle = oxtun_sim::outstanding();
        Sim { driver, adapter, idle }
    };
}

/// Runs `with` on the process's simulated kernel, loading it on first use. libFuzzer calls a
/// target from one thread, so the kernel stays in that thread.
pub fn with_sim<R>(with: impl FnOnce(&Sim) -> R) -> R {
    SIM.with(with)
}
