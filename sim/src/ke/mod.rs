pub mod dispatcher;
pub mod irql;
pub mod stack;
pub(crate) mod sync;
pub mod thread;
