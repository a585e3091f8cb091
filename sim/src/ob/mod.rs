pub mod process;
pub(crate) mod security;
pub(crate) mod threads;
