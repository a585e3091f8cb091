//! The kernel (NT's ke): the kernel stack, threads as the processor sees them, IRQL, locks, and
//! the dispatcher's objects and waits. Above bookkeeping, beneath everything else.

pub mod clock;
pub mod dispatcher;
pub mod irql;
pub mod stack;
pub(crate) mod sync;
pub mod thread;
