//! Layer: image, above every kernel layer. It calls the unwind tables and ke's kernel stack (its
//! fault handler).
//!
//! The kernel images mapped now: what of them may be read, and their functions with exception
//! handlers, for the exports that look at the image's memory (KeBugCheckEx) and for SEH.

use std::sync::Mutex;

use crate::image::unwind::GuardedFunction;

/// What the simulator keeps of each mapped image: its range, what it may read of it, and its
/// functions with exception handlers.
struct Mapped {
    base: usize,
    size: usize,
    /// RVA ranges mapped readable.
    readable: Vec<(usize, usize)>,
    guarded: Vec<GuardedFunction>,
}

static MAPPED: Mutex<Vec<Mapped>> = Mutex::new(Vec::new());

/// A copy of `length` bytes at `address`, if they lie in a readable section of a mapped image.
pub(crate) fn image_bytes(address: usize, length: usize) -> Option<Vec<u8>> {
    let mapped = MAPPED.lock().unwrap();
    let image = mapped
        .iter()
        .find(|image| address >= image.base && address - image.base < image.size)?;
    let (start, end) = (
        address - image.base,
        (address - image.base).checked_add(length)?,
    );
    image
        .readable
        .iter()
        .any(|&(begin, finish)| begin <= start && end <= finish)
        .then(|| {
            // SAFETY: the range lies in a section mapped readable, which stays mapped while the
            // image is listed (we hold the list's lock).
            unsafe { std::slice::from_raw_parts(address as *const u8, length) }.to_vec()
        })
}

/// The function of a mapped image containing `address` that has an exception handler, with
/// the image's base.
pub(crate) fn guarded_function_at(address: usize) -> Option<(usize, GuardedFunction)> {
    let mapped = MAPPED.lock().unwrap();
    let image = mapped
        .iter()
        .find(|image| address >= image.base && address - image.base < image.size)?;
    let rva = (address - image.base) as u32;
    image
        .guarded
        .iter()
        .find(|function| (function.begin..function.end).contains(&rva))
        .map(|function| (image.base, function.clone()))
}

/// An image is mapped at `base` (`size` bytes), readable at `readable` (RVA ranges), with the
/// functions `guarded`; faults in its code are the image's too (`crate::ke::stack`).
pub(crate) fn add(
    base: usize,
    size: usize,
    readable: Vec<(usize, usize)>,
    guarded: Vec<GuardedFunction>,
) {
    MAPPED.lock().unwrap().push(Mapped {
        base,
        size,
        readable,
        guarded,
    });
    crate::ke::stack::note_image(base, base + size);
}

/// The image at `base` is being unmapped.
pub(crate) fn remove(base: usize) {
    MAPPED.lock().unwrap().retain(|mapped| mapped.base != base);
    crate::ke::stack::forget_image(base);
}
