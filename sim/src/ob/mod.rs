pub mod process;
pub(crate) mod security;
