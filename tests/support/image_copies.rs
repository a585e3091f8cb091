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

/// A copy of the image whose entry point is code of the test's own, in a code section appended
/// to the image (`.stub`, its header after the last section's). `stub` gets the RVA the code
/// will have and DriverEntry's RVA, and returns the code; the code ends by jumping to
/// DriverEntry with its arguments untouched, or by whatever the test wants.
pub fn with_entry_stub(stub: impl FnOnce(u32, u32) -> Vec<u8>) -> Vec<u8> {
    let mut data = image();
    let entry = entry_point(&data);
    let le16 = |data: &[u8], at: usize| u16::from_le_bytes(data[at..at + 2].try_into().unwrap());
    let le32 = |data: &[u8], at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    let nt = le32(&data, 0x3C) as usize;
    let sections = le16(&data, nt + 6) as usize;
    let optional = nt + 4 + 20;
    let optional_size = le16(&data, nt + 20) as usize;
    let (section_alignment, file_alignment) =
        (le32(&data, optional + 32), le32(&data, optional + 36));
    let (image_size, headers_size) = (le32(&data, optional + 56), le32(&data, optional + 60));
    let header = optional + optional_size + 40 * sections;
    assert!(
        header + 40 <= headers_size as usize && data[header..header + 40].iter().all(|&b| b == 0),
        "no room for another section header"
    );
    let at = image_size.next_multiple_of(section_alignment);
    let code = stub(at, entry);
    let raw_offset = (data.len() as u32).next_multiple_of(file_alignment);
    let raw_size = (code.len() as u32).next_multiple_of(file_alignment);
    data.resize((raw_offset + raw_size) as usize, 0);
    data[raw_offset as usize..raw_offset as usize + code.len()].copy_from_slice(&code);
    let mut section = Vec::with_capacity(40);
    section.extend(b".stub\0\0\0");
    for field in [code.len() as u32, at, raw_size, raw_offset, 0, 0, 0] {
        section.extend(field.to_le_bytes());
    }
    // IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_READ.
    section.extend(0x6000_0020_u32.to_le_bytes());
    assert_eq!(section.len(), 40);
    data[header..header + 40].copy_from_slice(&section);
    data[nt + 6..nt + 8].copy_from_slice(&(sections as u16 + 1).to_le_bytes());
    let end = (at + code.len() as u32).next_multiple_of(section_alignment);
    data[optional + 56..optional + 60].copy_from_slice(&end.to_le_bytes());
    // AddressOfEntryPoint, 16 bytes into the optional header.
    data[optional + 16..optional + 20].copy_from_slice(&at.to_le_bytes());
    data
}

/// `jmp rel32` from the instruction at `from` (an RVA) to `to`.
pub fn jump(from: u32, to: u32) -> Vec<u8> {
    let mut code = vec![0xE9];
    code.extend(to.wrapping_sub(from + 5).to_le_bytes());
    code
}
