//! Memory (NT's mm): pool, and MDLs over processes' pages. Above ob.

pub mod mdl;
pub mod pool;
