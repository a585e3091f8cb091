pub mod code_check;
pub(crate) mod exports;
pub mod loader;
pub(crate) mod seh;
