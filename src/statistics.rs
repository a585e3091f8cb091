//! The adapter's traffic counters, one set per direction, and what one call of either data path
//! adds to them at once.

use core::sync::atomic::{AtomicU64, Ordering};

/// What one send call or one receive batch did.
#[derive(Default)]
pub struct Counts {
    pub packets: u64,
    pub octets: u64,
    pub errors: u64,
    pub discards: u64,
}

/// One direction's counters, read by OID_GEN_STATISTICS, XMIT_OK and RCV_OK.
#[derive(Default)]
pub struct Counters {
    packets: AtomicU64,
    octets: AtomicU64,
    errors: AtomicU64,
    discards: AtomicU64,
}

impl Counters {
    pub fn add(&self, counts: &Counts) {
        for (counter, value) in [
            (&self.packets, counts.packets),
            (&self.octets, counts.octets),
            (&self.errors, counts.errors),
            (&self.discards, counts.discards),
        ] {
            if value != 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    pub fn read(&self) -> Counts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counts {
            packets: load(&self.packets),
            octets: load(&self.octets),
            errors: load(&self.errors),
            discards: load(&self.discards),
        }
    }
}
