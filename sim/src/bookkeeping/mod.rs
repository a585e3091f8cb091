//! Bookkeeping beneath every layer: contract violations, fault injection, and what the driver
//! holds (pool, registrations), which every layer reports to and none asks anything of.

pub mod faults;
pub mod leaks;
pub mod verifier;
