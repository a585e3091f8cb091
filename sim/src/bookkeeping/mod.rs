pub mod faults;
pub mod verifier;
