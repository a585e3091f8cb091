//! Checks the cross-built kernel images, x64 and ARM64, with a PE parser: the properties Windows
//! requires of a driver, and the ones a reviewer expects. Each check runs on the images the cross
//! builds put in target/ and on the test-signed ones of the package, both brought up to date
//! first (`artifacts`).

mod artifacts;

use std::collections::{BTreeSet, HashMap};

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};

/// The DLLs a miniport may import from: the kernel, NDIS and the HAL.
const ALLOWED_IMPORT_DLLS: [&str; 3] = ["ntoskrnl.exe", "ndis.sys", "hal.dll"];

/// The machine type each image must declare, in the order of `artifacts::KERNEL_TARGETS`.
const MACHINES: [pe::Machine; 2] = [pe::IMAGE_FILE_MACHINE_AMD64, pe::IMAGE_FILE_MACHINE_ARM64];

struct Image {
    path: String,
    machine: pe::Machine,
    data: Vec<u8>,
}

fn read_image(path: std::path::PathBuf, machine: pe::Machine) -> Image {
    let data = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("kernel image {}: {error}", path.display()));
    Image {
        path: path.display().to_string(),
        machine,
        data,
    }
}

/// The images as the cross builds link them.
fn built_images() -> Vec<Image> {
    artifacts::kernel_images()
        .into_iter()
        .zip(MACHINES)
        .map(|(path, machine)| read_image(path, machine))
        .collect()
}

/// The images of the package, test-signed.
fn packaged_images() -> Vec<Image> {
    let package = artifacts::package();
    artifacts::KERNEL_TARGETS
        .iter()
        .zip(MACHINES)
        .map(|(&(_, arch), machine)| read_image(package.join(arch).join("oxtun.sys"), machine))
        .collect()
}

/// Every kernel image: built and packaged, for each target.
fn images() -> Vec<Image> {
    let mut images = built_images();
    images.extend(packaged_images());
    images
}

/// The PE checksum: 16-bit one's-complement-style sum of the file, with the checksum field taken
/// as zero, plus the file length.
fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u32 = 0;
    for (index, pair) in data.chunks(2).enumerate() {
        let offset = index * 2;
        if (checksum_offset..checksum_offset + 4).contains(&offset) {
            continue;
        }
        let word = u32::from(pair[0]) | u32::from(*pair.get(1).unwrap_or(&0)) << 8;
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum + data.len() as u32
}

#[test]
fn is_a_64_bit_native_driver_image_entered_at_driver_entry() {
    for image in images() {
        let path = &image.path;
        let file = PeFile64::parse(&*image.data).expect("a PE32+ image");
        let nt = file.nt_headers();
        let optional = nt.optional_header();
        assert_eq!(
            optional.magic(),
            pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC,
            "{path}: PE32+"
        );
        assert_eq!(nt.file_header().machine.get(LE), image.machine, "{path}");
        assert_eq!(optional.subsystem(), pe::IMAGE_SUBSYSTEM_NATIVE, "{path}");
        assert!(
            !nt.file_header()
                .characteristics
                .get(LE)
                .contains(pe::IMAGE_FILE_RELOCS_STRIPPED),
            "{path}: the kernel loads drivers at any address: relocations must stay"
        );

        let exports = file.export_table().unwrap().expect("an export table");
        let driver_entry = exports
            .exports()
            .unwrap()
            .into_iter()
            .find(|export| export.name == Some(&b"DriverEntry"[..]))
            .expect("DriverEntry exported");
        let object::read::pe::ExportTarget::Address(entry) = driver_entry.target else {
            panic!("{path}: DriverEntry is forwarded");
        };
        assert_eq!(
            optional.address_of_entry_point(),
            entry,
            "{path}: entry point is DriverEntry"
        );
    }
}

#[test]
fn requires_signature_and_supports_nx_and_relocation() {
    for image in images() {
        let file = PeFile64::parse(&*image.data).unwrap();
        let characteristics = file.nt_headers().optional_header().dll_characteristics();
        for (flag, name) in [
            (
                pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
                "FORCE_INTEGRITY",
            ),
            (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
            (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
        ] {
            assert!(
                characteristics.contains(flag),
                "{}: {name} not set",
                image.path
            );
        }
    }
}

#[test]
fn has_a_valid_checksum() {
    for image in images() {
        let data = &image.data;
        let file = PeFile64::parse(&**data).unwrap();
        let stored = file.nt_headers().optional_header().check_sum.get(LE);
        let (checksum_offset, _) = checksum_and_security_entry_offsets(data);
        assert_eq!(stored, pe_checksum(data, checksum_offset), "{}", image.path);
        assert_ne!(
            stored, 0,
            "{}: the kernel requires a driver's checksum",
            image.path
        );
    }
}

/// What an image imports, by name: (DLL as the image names it, function or variable).
fn imports(image: &Image) -> Vec<(String, String)> {
    let file = PeFile64::parse(&*image.data).unwrap();
    let table = file.import_table().unwrap().expect("an import table");
    let mut descriptors = table.descriptors().unwrap();
    let mut imports = Vec::new();
    while let Some(descriptor) = descriptors.next().unwrap() {
        let dll = String::from_utf8_lossy(table.name(descriptor.name.get(LE)).unwrap());
        let mut thunks = table
            .thunks(descriptor.original_first_thunk.get(LE))
            .unwrap();
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().unwrap() {
            assert!(!thunk.is_ordinal(), "{}: imports by ordinal", image.path);
            let (_hint, name) = table.hint_name(thunk.address()).unwrap();
            imports.push((dll.to_string(), String::from_utf8_lossy(name).into_owned()));
        }
    }
    imports
}

#[test]
fn imports_only_from_the_kernel_ndis_and_the_hal() {
    for image in images() {
        let path = &image.path;
        let imports = imports(&image);
        for (dll, _) in &imports {
            assert!(
                ALLOWED_IMPORT_DLLS
                    .iter()
                    .any(|allowed| dll.eq_ignore_ascii_case(allowed)),
                "{path}: imports from {dll}"
            );
        }
        let functions: Vec<_> = imports
            .iter()
            .map(|(dll, name)| format!("{dll}!{name}"))
            .collect();
        for (function, why) in [
            (
                "ndis.sys!NdisMRegisterMiniportDriver",
                "DriverEntry registers the miniport",
            ),
            (
                "ntoskrnl.exe!MmProbeAndLockPages",
                "the SEH shim is linked in",
            ),
            (
                "ntoskrnl.exe!__C_specific_handler",
                "the SEH shim's __try has its handler",
            ),
        ] {
            assert!(
                functions.iter().any(|f| f == function),
                "{path}: {why}: {functions:?}"
            );
        }
    }
}

/// Where the names each DLL exports are listed: mingw-w64's import library for it (Debian's
/// mingw-w64-x86-64-dev, which scripts/setup.sh installs). The lists are x64's and serve for the
/// ARM64 images too: nothing on this machine lists ARM64's exports.
const EXPORT_LISTS: [(&str, &str); 3] = [
    ("ntoskrnl.exe", "/usr/x86_64-w64-mingw32/lib/libntoskrnl.a"),
    ("ndis.sys", "/usr/x86_64-w64-mingw32/lib/libndis.a"),
    ("hal.dll", "/usr/x86_64-w64-mingw32/lib/libhal.a"),
];

/// Imports the export lists lack because Windows added them after mingw-w64 listed the DLL's
/// exports, with the Windows version that added each, as Microsoft documents it. The driver
/// requires Windows 10 version 2004 (the INF's decoration, 10.0...19041).
const NEWER_THAN_THE_EXPORT_LISTS: [(&str, &str); 1] = [(
    "ntoskrnl.exe!ExAllocatePool2",
    "Windows 10 version 2004: learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2",
)];

/// The names an import library's DLL exports: one `__imp_` symbol per function or variable, as
/// `llvm-nm` lists them.
fn exported_names(library: &str) -> BTreeSet<String> {
    let output = std::process::Command::new("llvm-nm")
        .args(["--defined-only", "--just-symbol-name", library])
        .output()
        .unwrap_or_else(|error| panic!("llvm-nm: {error} (scripts/setup.sh installs LLVM)"));
    assert!(
        output.status.success(),
        "llvm-nm {library}: {} (scripts/setup.sh installs mingw-w64-x86-64-dev)",
        String::from_utf8_lossy(&output.stderr)
    );
    let names: BTreeSet<_> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|symbol| symbol.strip_prefix("__imp_"))
        .map(str::to_string)
        .collect();
    assert!(names.len() > 50, "{library} lists {} exports", names.len());
    names
}

/// Each DLL of [`EXPORT_LISTS`], lowercase, with the names it exports.
fn export_lists() -> HashMap<String, BTreeSet<String>> {
    EXPORT_LISTS
        .iter()
        .map(|(dll, library)| (dll.to_string(), exported_names(library)))
        .collect()
}

/// The imports, as `dll!name` with the DLL in lowercase, that the DLL they name does not export
/// and `allowed` does not list.
fn unexported(
    imports: &[(String, String)],
    exports: &HashMap<String, BTreeSet<String>>,
    allowed: &[&str],
) -> Vec<String> {
    imports
        .iter()
        .filter(|(dll, name)| {
            exports
                .get(&dll.to_ascii_lowercase())
                .is_none_or(|names| !names.contains(name))
        })
        .map(|(dll, name)| format!("{}!{name}", dll.to_ascii_lowercase()))
        .filter(|import| !allowed.contains(&import.as_str()))
        .collect()
}

/// Every import names a function or variable its DLL exports: the loader refuses an image with
/// any other, so a misspelled name, or a function the headers define inline (FORCEINLINE, such as
/// KeInitializeSpinLock on x64) declared as an import, would load on no Windows.
#[test]
fn imports_only_what_the_kernel_ndis_and_the_hal_export() {
    let exports = export_lists();
    let allowed: Vec<_> = NEWER_THAN_THE_EXPORT_LISTS.map(|(import, _)| import).into();
    for (import, why) in NEWER_THAN_THE_EXPORT_LISTS {
        let (dll, name) = import.split_once('!').unwrap();
        assert!(
            !exports[dll].contains(name),
            "{import} is allowed for being newer than the export list ({why}), but the list \
             has it now: drop it from NEWER_THAN_THE_EXPORT_LISTS"
        );
    }
    for image in images() {
        let missing = unexported(&imports(&image), &exports, &allowed);
        assert!(
            missing.is_empty(),
            "{}: imports that no export list has: {missing:?}",
            image.path
        );
    }
}

/// The check above fails on an inline function imported by name, on a misspelling, and on an
/// import from a DLL without a list, with the real export lists.
#[test]
fn an_import_the_kernel_does_not_export_is_found() {
    let exports = export_lists();
    let imports: Vec<_> = [
        ("ntoskrnl.exe", "KeSetEvent"),
        ("ntoskrnl.exe", "KeInitializeSpinLock"),
        ("ntoskrnl.exe", "KeWaitForSingleObjekt"),
        ("NDIS.SYS", "NdisMPauseComplete"),
        ("ndis.sys", "NdisMIndicateReceiveNetBufferList"),
        ("hal.dll", "KeStallExecutionProcessor"),
        ("ntdll.dll", "NtClose"),
        ("NTOSKRNL.EXE", "ExAllocatePool2"),
    ]
    .map(|(dll, name)| (dll.to_string(), name.to_string()))
    .into();
    assert_eq!(
        unexported(&imports, &exports, &["ntoskrnl.exe!ExAllocatePool2"]),
        [
            "ntoskrnl.exe!KeInitializeSpinLock",
            "ntoskrnl.exe!KeWaitForSingleObjekt",
            "ndis.sys!NdisMIndicateReceiveNetBufferList",
            "ntdll.dll!NtClose",
        ]
    );
}

#[test]
fn no_section_is_both_writable_and_executable() {
    for image in images() {
        let file = PeFile64::parse(&*image.data).unwrap();
        let sections = file.section_table();
        assert!(!sections.is_empty());
        for section in sections.iter() {
            let flags = section.characteristics.get(LE);
            let name = String::from_utf8_lossy(section.raw_name());
            let writable = flags.contains(pe::IMAGE_SCN_MEM_WRITE);
            let executable = flags.contains(pe::IMAGE_SCN_MEM_EXECUTE);
            assert!(
                !(writable && executable),
                "{}: section {name} is writable and executable",
                image.path
            );
        }
    }
}

/// One node of a VS_VERSIONINFO tree: its key, its value, its children.
struct VersionNode<'a> {
    length: usize,
    key: String,
    value: &'a [u8],
    text: bool,
    children: Vec<VersionNode<'a>>,
}

impl VersionNode<'_> {
    fn parse(data: &[u8]) -> VersionNode<'_> {
        let u16_at = |at: usize| u16::from_le_bytes([data[at], data[at + 1]]);
        let align = |at: usize| (at + 3) & !3;
        let length = usize::from(u16_at(0));
        let text = u16_at(4) == 1;
        // A text value's length counts UTF-16 units, a binary one's bytes.
        let value_length = usize::from(u16_at(2)) * if text { 2 } else { 1 };
        let mut at = 6;
        let mut key = Vec::new();
        while u16_at(at) != 0 {
            key.push(u16_at(at));
            at += 2;
        }
        at = align(at + 2);
        let value = &data[at..at + value_length];
        at = align(at + value_length);
        let mut children = Vec::new();
        while at < length {
            let child = VersionNode::parse(&data[at..length]);
            at = align(at + child.length);
            children.push(child);
        }
        VersionNode {
            length,
            key: String::from_utf16(&key).unwrap(),
            value,
            text,
            children,
        }
    }

    fn child(&self, key: &str) -> &VersionNode<'_> {
        let found = self.children.iter().find(|child| child.key == key);
        found.unwrap_or_else(|| panic!("{} has no {key}", self.key))
    }

    fn text(&self) -> String {
        assert!(self.text, "{} is not text", self.key);
        let units: Vec<u16> = self
            .value
            .chunks(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units)
            .unwrap()
            .trim_end_matches('\0')
            .to_owned()
    }
}

/// The bytes of the image's version resource (type RT_VERSION, ID 1, any language).
fn version_resource(data: &[u8]) -> Vec<u8> {
    use object::read::pe::{ResourceDirectoryEntryData, ResourceNameOrId};
    let file = PeFile64::parse(data).unwrap();
    let sections = file.section_table();
    let resources = file
        .data_directories()
        .resource_directory(data, &sections)
        .unwrap()
        .expect("a resource section");
    let find = |table: &object::read::pe::ResourceDirectoryTable<'_>, id: u16| {
        let entry = table
            .entries
            .iter()
            .find(|entry| matches!(entry.name_or_id(), ResourceNameOrId::Id(found) if found == id));
        entry
            .unwrap_or_else(|| panic!("no resource entry {id}"))
            .data(resources)
            .unwrap()
    };
    let ResourceDirectoryEntryData::Table(names) = find(&resources.root().unwrap(), pe::RT_VERSION)
    else {
        panic!("RT_VERSION is not a table");
    };
    let ResourceDirectoryEntryData::Table(languages) = find(&names, 1) else {
        panic!("VS_VERSION_INFO is not a table");
    };
    let language = languages
        .entries
        .first()
        .expect("a language")
        .data(resources)
        .unwrap();
    let ResourceDirectoryEntryData::Data(entry) = language else {
        panic!("the version resource is not data");
    };
    let (rva, size) = (entry.offset_to_data.get(LE), entry.size.get(LE) as usize);
    sections
        .pe_data_at(data, rva)
        .expect("the resource's data in a section")[..size]
        .to_vec()
}

#[test]
fn carries_the_version_resource_of_the_cargo_version() {
    let version = |part: &str| part.parse::<u32>().unwrap();
    let (major, minor, patch) = (
        version(env!("CARGO_PKG_VERSION_MAJOR")),
        version(env!("CARGO_PKG_VERSION_MINOR")),
        version(env!("CARGO_PKG_VERSION_PATCH")),
    );
    for image in images() {
        let path = &image.path;
        let resource = version_resource(&image.data);
        let root = VersionNode::parse(&resource);
        assert_eq!(root.key, "VS_VERSION_INFO", "{path}");
        // VS_FIXEDFILEINFO: thirteen u32s.
        let fixed: Vec<u32> = root
            .value
            .chunks(4)
            .map(|word| u32::from_le_bytes(word.try_into().unwrap()))
            .collect();
        assert_eq!(fixed.len(), 13, "{path}: VS_FIXEDFILEINFO");
        assert_eq!(fixed[0], 0xFEEF_04BD, "{path}: VS_FIXEDFILEINFO signature");
        let ms = major << 16 | minor;
        let ls = patch << 16;
        assert_eq!((fixed[2], fixed[3]), (ms, ls), "{path}: file version");
        assert_eq!((fixed[4], fixed[5]), (ms, ls), "{path}: product version");
        assert_eq!(fixed[8], 0x0004_0004, "{path}: VOS_NT_WINDOWS32");
        assert_eq!(
            (fixed[9], fixed[10]),
            (3, 6),
            "{path}: VFT_DRV, VFT2_DRV_NETWORK"
        );
        assert_eq!(
            fixed[2],
            oxtun_driver::VENDOR_DRIVER_VERSION,
            "{path}: OID_GEN_VENDOR_DRIVER_VERSION answers the file version's major and minor"
        );

        let strings = root.child("StringFileInfo").child("040904b0");
        let value = |key: &str| strings.child(key).text();
        assert_eq!(value("FileVersion"), env!("CARGO_PKG_VERSION"), "{path}");
        assert_eq!(value("ProductVersion"), env!("CARGO_PKG_VERSION"), "{path}");
        assert_eq!(value("OriginalFilename"), "oxtun.sys", "{path}");
        assert!(value("FileDescription").contains("TUN"), "{path}");
        assert!(value("LegalCopyright").starts_with("Copyright"), "{path}");
        let translation = root.child("VarFileInfo").child("Translation").value;
        assert_eq!(
            translation,
            [0x09, 0x04, 0xB0, 0x04],
            "{path}: US English, Unicode"
        );
    }
}

/// Offsets in the file of the optional header's CheckSum and of the certificate table's entry
/// among the data directories.
fn checksum_and_security_entry_offsets(data: &[u8]) -> (usize, usize) {
    let e_lfanew = u32::from_le_bytes(data[0x3C..0x40].try_into().unwrap()) as usize;
    // Signature (4) and file header (20); in the PE32+ optional header the CheckSum is at 64
    // and the data directories (8 bytes each) start at 112.
    let optional = e_lfanew + 4 + 20;
    let security = pe::IMAGE_DIRECTORY_ENTRY_SECURITY;
    (optional + 64, optional + 112 + 8 * security)
}

#[test]
fn packaged_images_are_the_built_ones_with_an_authenticode_signature() {
    for (built, packaged) in built_images().iter().zip(packaged_images()) {
        let path = &packaged.path;
        let unsigned = PeFile64::parse(&*built.data).unwrap();
        assert!(
            unsigned
                .data_directories()
                .get(pe::IMAGE_DIRECTORY_ENTRY_SECURITY)
                .is_none(),
            "{}: the linker signs nothing",
            built.path
        );

        let signed = PeFile64::parse(&*packaged.data).unwrap();
        let security = signed
            .data_directories()
            .get(pe::IMAGE_DIRECTORY_ENTRY_SECURITY);
        // The certificate table's "address" is a file offset, not an RVA.
        let (offset, size) = security.expect("a certificate table").address_range();
        let (offset, size) = (offset as usize, size as usize);
        assert_eq!(
            offset + size,
            packaged.data.len(),
            "{path}: it ends the file"
        );
        // WIN_CERTIFICATE: dwLength, wRevision, wCertificateType, then the PKCS#7 SignedData.
        let certificate = &packaged.data[offset..];
        let length = u32::from_le_bytes(certificate[..4].try_into().unwrap()) as usize;
        assert!(
            8 < length && length <= size,
            "{path}: WIN_CERTIFICATE length"
        );
        let revision = u16::from_le_bytes([certificate[4], certificate[5]]);
        let kind = u16::from_le_bytes([certificate[6], certificate[7]]);
        assert_eq!(revision, 0x0200, "{path}: WIN_CERT_REVISION_2_0");
        assert_eq!(kind, 0x0002, "{path}: WIN_CERT_TYPE_PKCS_SIGNED_DATA");

        // Before the table (and its alignment padding) the file is the built image, but for
        // the two fields signing rewrites.
        let length = built.data.len();
        assert!(offset >= length, "{path}: the signature follows the image");
        assert!(
            packaged.data[length..offset].iter().all(|&byte| byte == 0),
            "{path}"
        );
        let mut expected = built.data.clone();
        let mut actual = packaged.data[..length].to_vec();
        let (checksum, entry) = checksum_and_security_entry_offsets(&expected);
        for bytes in [&mut expected, &mut actual] {
            bytes[checksum..checksum + 4].fill(0);
            bytes[entry..entry + 8].fill(0);
        }
        assert!(expected == actual, "{path} is not {} signed", built.path);
    }
}
