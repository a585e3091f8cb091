pub mod mdl;
pub mod pool;
