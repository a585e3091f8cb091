//! Layer: image, above every kernel layer. It calls the PE helpers, the unwind tables, the code
//! check, the mapped images and the export table.
//!
//! A loader for the driver's kernel image (`oxtun.sys`, the x64 PE32+ file the cross build
//! links), so the simulated kernel runs the binary Windows would load, in this process.
//!
//! It does what the Windows loader does for a driver, in this order: it checks the image is one
//! it can run (x64, relocatable, no TLS, no delay-load imports, no section both writable and
//! executable, no instruction that needs kernel mode: [`code_check`]); maps the headers and
//! each section at a base other than the preferred one; applies the base relocations; binds
//! every import by DLL and name to the simulator's exports ([`exports`]), data imports
//! included, refusing an image whose import the simulator does not export; and then gives each
//! section its own protection (read, read-write or read-execute; discardable sections none). The
//! entry point is then called as DriverEntry. The image's exception directory is kept for the
//! one exception the image handles ([`seh`]); nothing else unwinds through the image, so it is
//! not registered with the host's unwinder.
//!
//! The PE file is parsed by the `object` crate; nothing here parses headers by hand but the
//! unwind information's handler data, which `object` does not read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};

use oxtun_driver::sys::{NTSTATUS, PDRIVER_OBJECT, PUNICODE_STRING, STATUS_INSUFFICIENT_RESOURCES};

use crate::image::code_check;
use crate::image::exports;
use crate::image::pe::{Import, imports, virtual_size};
use crate::image::{images, unwind};

const PAGE: usize = 4096;
/// `STATUS_DRIVER_ENTRYPOINT_NOT_FOUND`: "The %hs device driver could not locate the entry point
/// %hs in driver %hs", what Windows answers for a driver whose import is missing.
const STATUS_DRIVER_ENTRYPOINT_NOT_FOUND: NTSTATUS = 0xC000_0263_u32 as i32;
/// `STATUS_INVALID_IMAGE_FORMAT`.
const STATUS_INVALID_IMAGE_FORMAT: NTSTATUS = 0xC000_007B_u32 as i32;
/// `STATUS_OBJECT_NAME_NOT_FOUND`: a driver whose file is not there.
const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = 0xC000_0034_u32 as i32;

/// `DRIVER_INITIALIZE`: DriverEntry's type, in either build.
pub type DriverEntryRoutine =
    unsafe extern "efiapi" fn(PDRIVER_OBJECT, PUNICODE_STRING) -> NTSTATUS;

/// Why an image was not loaded.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be read.
    Read(String),
    /// No memory could be mapped or protected for it.
    Mapping(String),
    /// Not a PE32+ x64 image the loader can map, or an inconsistent one.
    Malformed(String),
    /// An import the simulated kernel does not export.
    UnknownImport { dll: String, name: String },
    /// An import by ordinal: kernel images import by name.
    ImportByOrdinal { dll: String, ordinal: u16 },
    /// A section both writable and executable.
    WritableAndExecutable { section: String },
    /// Instructions the simulator cannot run.
    Unrunnable(Vec<code_check::Finding>),
}

impl LoadError {
    /// The status Windows gives for a driver that does not load for this reason.
    pub fn status(&self) -> NTSTATUS {
        match self {
            LoadError::UnknownImport { .. } | LoadError::ImportByOrdinal { .. } => {
                STATUS_DRIVER_ENTRYPOINT_NOT_FOUND
            }
            LoadError::Read(_) => STATUS_OBJECT_NAME_NOT_FOUND,
            LoadError::Mapping(_) => STATUS_INSUFFICIENT_RESOURCES,
            _ => STATUS_INVALID_IMAGE_FORMAT,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read(error) => write!(f, "{error}"),
            LoadError::Mapping(error) => write!(f, "mapping it: {error}"),
            LoadError::Malformed(what) => write!(f, "not an image the loader can map: {what}"),
            LoadError::UnknownImport { dll, name } => write!(
                f,
                "it imports {dll}!{name}, which the simulated kernel does not export \
                 (add it to sim/src/exports.rs)"
            ),
            LoadError::ImportByOrdinal { dll, ordinal } => {
                write!(
                    f,
                    "it imports ordinal {ordinal} of {dll}; kernel images import by name"
                )
            }
            LoadError::WritableAndExecutable { section } => {
                write!(f, "section {section} is both writable and executable")
            }
            LoadError::Unrunnable(findings) => {
                write!(f, "its code has instructions the simulator cannot run:")?;
                for finding in findings {
                    write!(f, "\n  {finding}")?;
                }
                Ok(())
            }
        }
    }
}

fn malformed(what: impl fmt::Display) -> LoadError {
    LoadError::Malformed(what.to_string())
}

/// The kernel image, mapped, relocated and bound.
pub struct Image {
    base: usize,
    size: usize,
    entry: DriverEntryRoutine,
}

// SAFETY: the mapping is plain memory, and the image's code runs on any thread.
unsafe impl Send for Image {}

impl Image {
    /// DriverEntry, at the image's entry point.
    pub fn entry(&self) -> DriverEntryRoutine {
        self.entry
    }

    /// Where the image is mapped (never its preferred base).
    pub fn base(&self) -> usize {
        self.base
    }

    /// Removes the mapping, as Windows unmaps a driver once DriverUnload returns.
    ///
    /// # Safety
    /// Nothing calls into the image, or reads its memory, any more: no thread of the driver
    /// runs, and no routine of it is registered anywhere.
    pub unsafe fn unmap(self) {
        images::remove(self.base);
        // SAFETY: our own mapping of `size` bytes, which the caller says nothing uses.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

/// Loads the image in the file at `path`. The PDB beside it (same name, `.pdb`), if it is the
/// image's own, names functions in the loader's messages.
pub fn load_file(path: &Path) -> Result<Image, LoadError> {
    let data = std::fs::read(path)
        .map_err(|error| LoadError::Read(format!("{}: {error}", path.display())))?;
    load_with_pdb(&data, Some(&path.with_extension("pdb")))
}

/// Loads the image `data`: checks, maps, relocates, binds and protects it.
pub fn load(data: &[u8]) -> Result<Image, LoadError> {
    load_with_pdb(data, None)
}

fn load_with_pdb(data: &[u8], pdb: Option<&Path>) -> Result<Image, LoadError> {
    let file = PeFile64::parse(data).map_err(malformed)?;
    let nt = file.nt_headers();
    let optional = nt.optional_header();
    let header = nt.file_header();
    if header.machine.get(LE) != pe::IMAGE_FILE_MACHINE_AMD64 {
        return Err(malformed("not an x64 image"));
    }
    if !cfg!(target_arch = "x86_64") {
        return Err(malformed("an x64 image runs only on an x86_64 host"));
    }
    if header
        .characteristics
        .get(LE)
        .contains(pe::IMAGE_FILE_RELOCS_STRIPPED)
    {
        return Err(malformed("its relocations are stripped: it cannot move"));
    }
    for (directory, what) in [
        (pe::IMAGE_DIRECTORY_ENTRY_TLS, "thread-local storage"),
        (pe::IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT, "delay-load imports"),
        (
            pe::IMAGE_DIRECTORY_ENTRY_LOAD_CONFIG,
            "a load configuration",
        ),
    ] {
        if file.data_directory(directory).is_some() {
            return Err(malformed(format!(
                "it has {what}, which the loader does not set up"
            )));
        }
    }
    let size = optional.size_of_image() as usize;
    if optional.section_alignment() as usize % PAGE != 0 || size == 0 {
        return Err(malformed("sections are not page-aligned"));
    }
    let sections = file.section_table();
    for section in sections.iter() {
        let flags = section.characteristics.get(LE);
        if flags.contains(pe::IMAGE_SCN_MEM_WRITE) && flags.contains(pe::IMAGE_SCN_MEM_EXECUTE) {
            return Err(LoadError::WritableAndExecutable {
                section: section_name(section),
            });
        }
    }
    let mut names = export_names(&file);
    if let Some(pdb) = pdb {
        names.extend(code_check::pdb_function_names(&file, pdb));
    }
    let findings = code_check::unrunnable_instructions(&file, data, &names).map_err(malformed)?;
    if !findings.is_empty() {
        return Err(LoadError::Unrunnable(findings));
    }

    let mapping = Mapping::new(size, optional.image_base() as usize)?;
    mapping.copy(
        0,
        &data[..(optional.size_of_headers() as usize).min(data.len())],
    )?;
    for section in sections.iter() {
        let raw = section.pe_data(data).map_err(malformed)?;
        let length = raw.len().min(virtual_size(section));
        mapping.copy(section.virtual_address.get(LE) as usize, &raw[..length])?;
    }
    relocate(&file, data, &mapping, optional.image_base())?;
    let c_specific_handler_slot = bind_imports(&file, &mapping)?;
    let guarded =
        unwind::guarded_functions(&file, data, c_specific_handler_slot).map_err(malformed)?;
    let readable = mapping.protect(&file, optional.size_of_headers() as usize)?;

    let entry = optional.address_of_entry_point() as usize;
    let in_code = sections.iter().any(|section| {
        section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_MEM_EXECUTE)
            && section.contains_rva(entry as u32)
    });
    if !in_code {
        return Err(malformed("the entry point is not in an executable section"));
    }
    let (base, size) = mapping.keep();
    // SAFETY: the entry point lies in the image's code, mapped executable, relocated and bound;
    // the image declares it as DriverEntry (build.rs: /ENTRY:DriverEntry), in the Windows
    // convention, which is what "efiapi" is on x86_64.
    let entry = unsafe { std::mem::transmute::<usize, DriverEntryRoutine>(base + entry) };
    images::add(base, size, readable, guarded);
    Ok(Image { base, size, entry })
}

fn section_name(section: &pe::ImageSectionHeader) -> String {
    String::from_utf8_lossy(section.raw_name()).into_owned()
}

/// The image's exported names by RVA (DriverEntry among them), to name functions in messages.
fn export_names(file: &PeFile64) -> BTreeMap<u32, String> {
    let Ok(Some(table)) = file.export_table() else {
        return BTreeMap::new();
    };
    let Ok(exports) = table.exports() else {
        return BTreeMap::new();
    };
    exports
        .into_iter()
        .filter_map(|export| {
            let name = String::from_utf8_lossy(export.name?).into_owned();
            match export.target {
                object::read::pe::ExportTarget::Address(rva) => Some((rva, name)),
                _ => None,
            }
        })
        .collect()
}

/// Applies the base relocations for the distance between the preferred base and the mapping.
fn relocate(
    file: &PeFile64,
    data: &[u8],
    mapping: &Mapping,
    preferred: u64,
) -> Result<(), LoadError> {
    let delta = (mapping.0 as u64).wrapping_sub(preferred);
    let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(data, &file.section_table())
        .map_err(malformed)?
    else {
        return Err(malformed("it has no base relocations: it cannot move"));
    };
    while let Some(block) = blocks.next().map_err(malformed)? {
        for relocation in block {
            match relocation.typ {
                pe::IMAGE_REL_BASED_ABSOLUTE => {}
                pe::IMAGE_REL_BASED_DIR64 => {
                    let at = relocation.virtual_address as usize;
                    let value = u64::from_le_bytes(mapping.read(at)?);
                    mapping.copy(at, &value.wrapping_add(delta).to_le_bytes())?;
                }
                other => return Err(malformed(format!("base relocation of type {other}"))),
            }
        }
    }
    Ok(())
}

/// Binds every import to the simulator's export of its DLL and name; returns the RVA of the
/// slot bound to `ntoskrnl.exe!__C_specific_handler`, if imported.
fn bind_imports(file: &PeFile64, mapping: &Mapping) -> Result<Option<u32>, LoadError> {
    let mut c_specific_handler_slot = None;
    for Import { dll, name, slot } in imports(file).map_err(malformed)? {
        let name = match name {
            Ok(name) => name,
            Err(ordinal) => return Err(LoadError::ImportByOrdinal { dll, ordinal }),
        };
        let Some(address) = exports::find(&dll, &name) else {
            return Err(LoadError::UnknownImport { dll, name });
        };
        if dll.eq_ignore_ascii_case("ntoskrnl.exe") && name == "__C_specific_handler" {
            c_specific_handler_slot = Some(slot);
        }
        mapping.copy(slot as usize, &(address as u64).to_le_bytes())?;
    }
    Ok(c_specific_handler_slot)
}

/// The image's memory while it is being loaded: unmapped again if loading fails.
struct Mapping(usize, usize);

impl Mapping {
    /// `size` bytes, readable and writable, zeroed, anywhere but at `preferred`.
    fn new(size: usize, preferred: usize) -> Result<Mapping, LoadError> {
        let size = size.next_multiple_of(PAGE);
        let map = || {
            // SAFETY: a fresh anonymous private mapping; it aliases nothing.
            let address = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if address == libc::MAP_FAILED {
                Err(LoadError::Mapping(format!(
                    "{size} bytes: {}",
                    std::io::Error::last_os_error()
                )))
            } else {
                Ok(Mapping(address as usize, size))
            }
        };
        let mapping = map()?;
        if mapping.0 != preferred {
            return Ok(mapping);
        }
        // The relocations must be exercised: the second mapping cannot be at the first's place
        // while the first is kept until then.
        let other = map()?;
        drop(mapping);
        Ok(other)
    }

    fn range(&self, offset: usize, length: usize) -> Result<*mut u8, LoadError> {
        match offset.checked_add(length) {
            Some(end) if end <= self.1 => Ok((self.0 + offset) as *mut u8),
            _ => Err(malformed(format!(
                "{length} bytes at RVA {offset:#x} lie outside the image"
            ))),
        }
    }

    fn copy(&self, offset: usize, bytes: &[u8]) -> Result<(), LoadError> {
        let destination = self.range(offset, bytes.len())?;
        // SAFETY: inside our mapping, which is writable until `protect`, and not the source.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), destination, bytes.len()) };
        Ok(())
    }

    fn read<const N: usize>(&self, offset: usize) -> Result<[u8; N], LoadError> {
        let source = self.range(offset, N)?;
        // SAFETY: inside our mapping, readable until `protect`.
        Ok(unsafe { source.cast::<[u8; N]>().read_unaligned() })
    }

    /// Gives the headers read-only, each section the protection its flags ask for, and the rest
    /// none; returns the readable RVA ranges.
    fn protect(&self, file: &PeFile64, headers: usize) -> Result<Vec<(usize, usize)>, LoadError> {
        let mut regions = vec![(0, headers.next_multiple_of(PAGE), libc::PROT_READ)];
        for section in file.section_table().iter() {
            let flags = section.characteristics.get(LE);
            let begin = section.virtual_address.get(LE) as usize;
            let end = begin + virtual_size(section).next_multiple_of(PAGE);
            let protection = if flags.contains(pe::IMAGE_SCN_MEM_DISCARDABLE) {
                // Windows frees a driver's discardable sections (.reloc here) once it is loaded.
                libc::PROT_NONE
            } else if flags.contains(pe::IMAGE_SCN_MEM_EXECUTE) {
                libc::PROT_READ | libc::PROT_EXEC
            } else if flags.contains(pe::IMAGE_SCN_MEM_WRITE) {
                libc::PROT_READ | libc::PROT_WRITE
            } else if flags.contains(pe::IMAGE_SCN_MEM_READ) {
                libc::PROT_READ
            } else {
                libc::PROT_NONE
            };
            regions.push((begin, end, protection));
        }
        regions.sort_unstable();
        // Everything between the regions (and after the last) stays inaccessible.
        let mut protected = 0;
        for &(begin, end, protection) in &regions {
            if begin < protected || end > self.1 {
                return Err(malformed("sections overlap or lie outside the image"));
            }
            self.mprotect(protected, begin, libc::PROT_NONE)?;
            self.mprotect(begin, end, protection)?;
            protected = end;
        }
        self.mprotect(protected, self.1, libc::PROT_NONE)?;
        Ok(regions
            .into_iter()
            .filter(|&(_, _, protection)| protection & libc::PROT_READ != 0)
            .map(|(begin, end, _)| (begin, end))
            .collect())
    }

    fn mprotect(&self, begin: usize, end: usize, protection: i32) -> Result<(), LoadError> {
        if begin == end {
            return Ok(());
        }
        // SAFETY: page-aligned pages of our own mapping, which nothing runs or reads yet.
        let result = unsafe {
            libc::mprotect(
                (self.0 + begin) as *mut libc::c_void,
                end - begin,
                protection,
            )
        };
        if result != 0 {
            return Err(LoadError::Mapping(format!(
                "protecting it: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// The mapping, kept: no longer unmapped on drop.
    fn keep(self) -> (usize, usize) {
        let kept = (self.0, self.1);
        std::mem::forget(self);
        kept
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which nothing else uses: loading failed before handing it out.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, self.1) };
    }
}
