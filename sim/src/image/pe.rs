//! Layer: image, the loader and the export table, above every kernel layer. It calls nothing of
//! the simulator.
//!
//! What the loader, the code check and SEH read of a PE32+ image beyond what the `object` crate
//! gives: the exception directory, a section's size in memory, and the imports with their slots.

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageThunkData, PeFile64};

/// The image's exception directory: a RUNTIME_FUNCTION for each function that is not a leaf.
pub(crate) fn runtime_functions<'data>(
    file: &PeFile64<'data>,
    data: &'data [u8],
) -> Result<&'data [pe::ImageRuntimeFunctionEntry], String> {
    let Some(directory) = file.data_directory(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION) else {
        return Ok(&[]);
    };
    let entries = directory
        .data(data, &file.section_table())
        .map_err(|error| format!("exception directory: {error}"))?;
    object::pod::slice_from_all_bytes::<pe::ImageRuntimeFunctionEntry>(entries)
        .map_err(|()| "exception directory: not a whole number of entries".to_string())
}

/// A section's size in memory; a VirtualSize of 0 means its raw size, as Windows reads it.
pub(crate) fn virtual_size(section: &pe::ImageSectionHeader) -> usize {
    match section.virtual_size.get(LE) {
        0 => section.size_of_raw_data.get(LE) as usize,
        size => size as usize,
    }
}

/// One import of the image: its DLL, its name (or ordinal), and the RVA of its slot in the
/// import address table.
pub(crate) struct Import {
    pub dll: String,
    pub name: Result<String, u16>,
    pub slot: u32,
}

/// Every import of the image, in the order of its import directory.
pub(crate) fn imports(file: &PeFile64) -> object::read::Result<Vec<Import>> {
    let mut imports = Vec::new();
    let Some(table) = file.import_table()? else {
        return Ok(imports);
    };
    let mut descriptors = table.descriptors()?;
    while let Some(descriptor) = descriptors.next()? {
        let dll = String::from_utf8_lossy(table.name(descriptor.name.get(LE))?).into_owned();
        let first_thunk = descriptor.first_thunk.get(LE);
        let lookup = match descriptor.original_first_thunk.get(LE) {
            0 => first_thunk,
            lookup => lookup,
        };
        let mut thunks = table.thunks(lookup)?;
        let mut slot = first_thunk;
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>()? {
            let name = if thunk.is_ordinal() {
                Err(thunk.ordinal())
            } else {
                let (_hint, name) = table.hint_name(thunk.address())?;
                Ok(String::from_utf8_lossy(name).into_owned())
            };
            imports.push(Import {
                dll: dll.clone(),
                name,
                slot,
            });
            slot += 8;
        }
    }
    Ok(imports)
}

/// The RVA of the import address table's slot for `dll!name`, if the image imports it. DLL names
/// compare without case, as Windows compares module names.
pub(crate) fn import_slot(file: &PeFile64, dll: &str, name: &str) -> Result<Option<u32>, String> {
    let imports = imports(file).map_err(|error| format!("import directory: {error}"))?;
    Ok(imports
        .iter()
        .find(|import| import.dll.eq_ignore_ascii_case(dll) && import.name.as_deref() == Ok(name))
        .map(|import| import.slot))
}
