//! A ring in test memory, with raw access for playing a hostile peer and guard words after the
//! region that must never change.
#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use oxtun_abi::{RingRegion, ring_size};

const GUARD_WORDS: usize = 64;
const GUARD: u32 = 0xDEAD_BEEF;

pub struct TestRing {
    words: Box<[AtomicU32]>,
    capacity: u32,
}

impl TestRing {
    pub fn new(capacity: u32) -> Self {
        let region_words = ring_size(capacity) as usize / 4;
        // Zeroed in one allocation rather than word by word, which Miri takes seconds over.
        let zeroed = vec![0u32; region_words + GUARD_WORDS].into_boxed_slice();
        // SAFETY: AtomicU32 has the size, alignment and bit validity of u32, so a slice of one
        // is a slice of the other; the Box keeps its allocation and layout.
        let words = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU32]) };
        for word in &words[region_words..] {
            word.store(GUARD, Ordering::SeqCst);
        }
        TestRing { words, capacity }
    }

    pub fn region(&self) -> RingRegion {
        let base = NonNull::new(self.words.as_ptr() as *mut u8).unwrap();
        // SAFETY: the words outlive every region a test makes from them, and are only accessed
        // atomically or through the region.
        unsafe { RingRegion::new(base, ring_size(self.capacity) as usize) }.unwrap()
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn head(&self) -> u32 {
        self.words[0].load(Ordering::SeqCst)
    }

    pub fn tail(&self) -> u32 {
        self.words[1].load(Ordering::SeqCst)
    }

    pub fn alertable(&self) -> u32 {
        self.words[2].load(Ordering::SeqCst)
    }

    pub fn set_head(&self, value: u32) {
        self.words[0].store(value, Ordering::SeqCst)
    }

    pub fn set_tail(&self, value: u32) {
        self.words[1].store(value, Ordering::SeqCst)
    }

    /// Writes a 32-bit word at a byte offset into Data (a multiple of 4).
    pub fn set_data_word(&self, offset: u32, value: u32) {
        assert_eq!(offset % 4, 0);
        self.words[3 + offset as usize / 4].store(value, Ordering::SeqCst)
    }

    pub fn data_word(&self, offset: u32) -> u32 {
        self.words[3 + offset as usize / 4].load(Ordering::SeqCst)
    }

    pub fn assert_guard_intact(&self) {
        let region_words = ring_size(self.capacity) as usize / 4;
        for word in &self.words[region_words..] {
            assert_eq!(
                word.load(Ordering::SeqCst),
                GUARD,
                "a write ran past the region"
            );
        }
    }
}

/// Deterministic packet contents: byte `i` of packet `seed`.
pub fn pattern_byte(seed: u64, i: usize) -> u8 {
    (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ (i as u8).wrapping_mul(31)
}

pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // The pattern repeats every 256 bytes: built a block at a time, which Miri runs far faster
    // than a byte at a time.
    let block: Vec<u8> = (0..256).map(|i| pattern_byte(seed, i)).collect();
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let take = (len - bytes.len()).min(block.len());
        bytes.extend_from_slice(&block[..take]);
    }
    bytes
}
