//! The x64 release image, and copies of it patched to misbehave, for the tests that show the
//! simulator and the emulator run the image's own code (tests/image.rs,
//! sim/tests/emulator_image.rs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};

#[path = "../artifacts/mod.rs"]
pub mod artifacts;

/// The x64 release image, built first when the sources are newer (`artifacts`), once per
/// process.
pub fn image_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| artifacts::kernel_images().swap_remove(0))
        .clone()
}

pub fn image() -> Vec<u8> {
    let path = image_path();
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The file offset of `rva` in `data`.
pub fn offset_of_rva(data: &[u8], rva: u32) -> usize {
    let file = PeFile64::parse(data).unwrap();
    let (offset, _) = file.section_table().pe_file_range_at(rva).unwrap();
    offset as usize
}

pub fn entry_point(data: &[u8]) -> u32 {
    let file = PeFile64::parse(data).unwrap();
    file.nt_headers().optional_header().address_of_entry_point()
}

/// A copy of the image with `code` written over its entry point, DriverEntry.
pub fn with_driver_entry(code: &[u8]) -> Vec<u8> {
    let mut data = image();
    let at = offset_of_rva(&data, entry_point(&data));
    data[at..at + code.len()].copy_from_slice(code);
    data
}

/// Writes `data` to a file of this test's own and returns its path.
pub fn write_copy(data: &[u8], name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("oxtun-{name}-{}.sys", std::process::id()));
    std::fs::write(&path, data).unwrap();
    path
}

/// A copy of the image in which the name of its import `name` reads `renamed` (as long).
pub fn with_import_renamed(name: &str, renamed: &str) -> Vec<u8> {
    assert_eq!(name.len(), renamed.len());
    let mut data = image();
    let file = PeFile64::parse(&*data).unwrap();
    let table = file.import_table().unwrap().unwrap();
    let mut descriptors = table.descriptors().unwrap();
    let mut found = None;
    while let Some(descriptor) = descriptors.next().unwrap() {
        let mut thunks = table
            .thunks(descriptor.original_first_thunk.get(LE))
            .unwrap();
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().unwrap() {
            let (_, import) = table.hint_name(thunk.address()).unwrap();
            if import == name.as_bytes() {
                // The name follows the two-byte hint.
                found = Some(offset_of_rva(&data, thunk.address() + 2));
            }
        }
    }
    let at = found.unwrap_or_else(|| panic!("the image does not import {name}"));
    data[at..at + renamed.len()].copy_from_slice(renamed.as_bytes());
    data
}
