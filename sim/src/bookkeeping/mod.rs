pub mod faults;
pub(crate) mod leaks;
pub mod verifier;
