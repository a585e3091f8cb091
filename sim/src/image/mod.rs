pub mod code_check;
pub(crate) mod exports;
pub(crate) mod images;
pub mod loader;
pub(crate) mod pe;
pub(crate) mod seh;
pub(crate) mod unwind;
