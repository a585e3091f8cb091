//! Objects, handles and processes (NT's ob, ps and se): handle tables and references, processes
//! and their memory, system threads, access checks. Above ke.

pub mod process;
pub(crate) mod security;
pub(crate) mod threads;
