//! The kernel image: its PE structures, the code check, SEH, the mapped images, the export
//! table and the loader. Above every kernel layer, as the loader binds to all of them.

pub mod code_check;
pub(crate) mod exports;
pub(crate) mod images;
pub mod loader;
pub(crate) mod pe;
pub(crate) mod seh;
pub(crate) mod unwind;
