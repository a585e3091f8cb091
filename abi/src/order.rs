//! Finishing out of order, publishing in order.
//!
//! Work on a ring is handed out in ring order (reservations to senders, packets to the network
//! stack) but may finish in any order. The ring pointer may only move over a prefix of finished
//! work. [`CompletionOrder`] tracks the unfinished work in a fixed array: no allocation, and no
//! trust in anything stored in the shared ring.
//!
//! Each entry records where its work ends in the ring and how many pieces of work in it are still
//! unfinished. When all `N` entries are in use, new work joins the newest entry (extending its
//! end), so tracking never fails; under that much concurrency the pointer simply moves in coarser
//! steps.

/// Proof of one piece of unfinished work; hand it back to [`CompletionOrder::finish`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "work that is never finished holds the ring pointer back for good"]
pub struct Ticket {
    entry: u32,
}

impl Ticket {
    /// The ticket as a number, to keep in storage that cannot hold a Rust value (an NBL's
    /// reserved fields). [`Ticket::from_raw`] turns it back.
    pub fn into_raw(self) -> u32 {
        self.entry
    }

    /// A ticket from [`Ticket::into_raw`]. Finishing a ticket that was not issued, or twice,
    /// breaks the tracking (never memory safety): the pointer may then move early or never.
    pub fn from_raw(raw: u32) -> Self {
        Ticket { entry: raw }
    }
}

/// Unfinished work in ring order; see the module documentation.
#[derive(Debug)]
pub struct CompletionOrder<const N: usize> {
    /// Where each entry's work ends, indexed by entry number modulo N.
    ends: [u32; N],
    /// How many pieces of each entry's work are unfinished.
    unfinished: [u32; N],
    /// Number of the oldest entry in use.
    oldest: u32,
    /// Number of the next entry to use; `next - oldest` entries are in use.
    next: u32,
}

impl<const N: usize> Default for CompletionOrder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CompletionOrder<N> {
    const CHECKED_N: u32 = {
        assert!(N.is_power_of_two() && N <= 1 << 16);
        N as u32
    };

    pub const fn new() -> Self {
        CompletionOrder {
            ends: [0; N],
            unfinished: [0; N],
            oldest: 0,
            next: 0,
        }
    }

    /// True when no work is unfinished.
    pub fn is_idle(&self) -> bool {
        self.oldest == self.next
    }

    fn slot(entry: u32) -> usize {
        (entry % Self::CHECKED_N) as usize
    }

    /// Records new work that ends at ring offset `end`, after all work recorded before it.
    pub fn begin(&mut self, end: u32) -> Ticket {
        let in_use = self.next.wrapping_sub(self.oldest);
        let entry = if in_use == Self::CHECKED_N {
            self.next.wrapping_sub(1)
        } else {
            self.unfinished[Self::slot(self.next)] = 0;
            self.next = self.next.wrapping_add(1);
            self.next.wrapping_sub(1)
        };
        let slot = Self::slot(entry);
        self.ends[slot] = end;
        self.unfinished[slot] += 1;
        Ticket { entry }
    }

    /// Another piece of the work `ticket` is for (one of the NBLs a ring packet is cut into):
    /// its work is finished when every piece's ticket is.
    pub fn share(&mut self, ticket: &Ticket) -> Ticket {
        let slot = Self::slot(ticket.entry);
        self.unfinished[slot] += 1;
        Ticket {
            entry: ticket.entry,
        }
    }

    /// Marks the ticket's work finished. Returns the end of the finished prefix if it grew: the
    /// offset the ring pointer may now move to.
    pub fn finish(&mut self, ticket: Ticket) -> Option<u32> {
        let slot = Self::slot(ticket.entry);
        let in_use = self.next.wrapping_sub(self.oldest);
        let age = ticket.entry.wrapping_sub(self.oldest);
        if age >= in_use || self.unfinished[slot] == 0 {
            debug_assert!(false, "finished a ticket that is not outstanding");
            return None;
        }
        self.unfinished[slot] -= 1;
        let mut finished_to = None;
        while !self.is_idle() && self.unfinished[Self::slot(self.oldest)] == 0 {
            finished_to = Some(self.ends[Self::slot(self.oldest)]);
            self.oldest = self.oldest.wrapping_add(1);
        }
        finished_to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_finishes_publish_each_end() {
        let mut order = CompletionOrder::<4>::new();
        let a = order.begin(8);
        let b = order.begin(16);
        assert_eq!(order.finish(a), Some(8));
        assert_eq!(order.finish(b), Some(16));
        assert!(order.is_idle());
    }

    #[test]
    fn out_of_order_finish_waits_for_the_earlier_work() {
        let mut order = CompletionOrder::<4>::new();
        let a = order.begin(8);
        let b = order.begin(16);
        let c = order.begin(24);
        assert_eq!(order.finish(c), None);
        assert_eq!(order.finish(b), None);
        assert_eq!(order.finish(a), Some(24));
        assert!(order.is_idle());
    }

    #[test]
    fn shared_work_finishes_with_its_last_piece() {
        let mut order = CompletionOrder::<4>::new();
        let a = order.begin(8);
        let a2 = order.share(&a);
        let a3 = order.share(&a2);
        let b = order.begin(16);
        assert_eq!(order.finish(a), None);
        assert_eq!(order.finish(b), None);
        assert_eq!(order.finish(a3), None);
        assert_eq!(order.finish(a2), Some(16));
        assert!(order.is_idle());
    }

    #[test]
    fn a_full_table_merges_new_work_into_the_newest_entry() {
        let mut order = CompletionOrder::<2>::new();
        let a = order.begin(4);
        let b = order.begin(8);
        let c = order.begin(12); // joins b's entry
        assert_eq!(order.finish(b), None);
        assert_eq!(order.finish(a), Some(4));
        assert_eq!(order.finish(c), Some(12));
        let d = order.begin(16);
        assert_eq!(order.finish(d), Some(16));
        assert!(order.is_idle());
    }

    #[test]
    fn entry_numbers_wrap_around() {
        let mut order = CompletionOrder::<4>::new();
        order.oldest = u32::MAX - 1;
        order.next = u32::MAX - 1;
        let tickets: [Ticket; 4] = core::array::from_fn(|i| order.begin(i as u32 * 4 + 4));
        let [a, b, c, d] = tickets;
        assert_eq!(order.finish(b), None);
        assert_eq!(order.finish(a), Some(8));
        assert_eq!(order.finish(d), None);
        assert_eq!(order.finish(c), Some(16));
        assert!(order.is_idle());
    }

    #[test]
    fn raw_tickets_round_trip() {
        let mut order = CompletionOrder::<4>::new();
        let raw = order.begin(40).into_raw();
        assert_eq!(order.finish(Ticket::from_raw(raw)), Some(40));
    }
}
