//! Checks the cross-built kernel images, x64 and ARM64 (`scripts/test.sh` builds both first),
//! with a PE parser: the properties Windows requires of a driver, and the ones a reviewer expects.

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};

/// The DLLs a miniport may import from: the kernel, NDIS and the HAL.
const ALLOWED_IMPORT_DLLS: [&str; 3] = ["ntoskrnl.exe", "ndis.sys", "hal.dll"];

/// The Windows targets the driver builds for, with the machine type each image must declare.
const TARGETS: [(&str, pe::Machine); 2] = [
    ("x86_64-pc-windows-msvc", pe::IMAGE_FILE_MACHINE_AMD64),
    ("aarch64-pc-windows-msvc", pe::IMAGE_FILE_MACHINE_ARM64),
];

struct Image {
    path: String,
    machine: pe::Machine,
    data: Vec<u8>,
}

fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| format!("{}/target", env!("CARGO_MANIFEST_DIR")))
}

/// Every kernel image, read from where the cross builds put them.
fn images() -> Vec<Image> {
    let target_dir = target_dir();
    TARGETS
        .iter()
        .map(|&(target, machine)| {
            let path = format!("{target_dir}/{target}/release/oxtun.dll");
            let data = std::fs::read(&path).unwrap_or_else(|error| {
                panic!(
                    "kernel image {path}: {error}; build it first with \
                     `cargo build --release --target {target} -p oxtun` (scripts/test.sh does)"
                )
            });
            Image {
                path,
                machine,
                data,
            }
        })
        .collect()
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
        let e_lfanew = u32::from_le_bytes(data[0x3C..0x40].try_into().unwrap()) as usize;
        // Signature (4), file header (20), then the optional header's CheckSum at 64.
        let checksum_offset = e_lfanew + 4 + 20 + 64;
        assert_eq!(stored, pe_checksum(data, checksum_offset), "{}", image.path);
        assert_ne!(
            stored, 0,
            "{}: the kernel requires a driver's checksum",
            image.path
        );
    }
}

#[test]
fn imports_only_from_the_kernel_ndis_and_the_hal() {
    for image in images() {
        let path = &image.path;
        let file = PeFile64::parse(&*image.data).unwrap();
        let imports = file.import_table().unwrap().expect("an import table");
        let mut descriptors = imports.descriptors().unwrap();
        let mut functions = Vec::new();
        while let Some(descriptor) = descriptors.next().unwrap() {
            let dll = String::from_utf8_lossy(imports.name(descriptor.name.get(LE)).unwrap());
            assert!(
                ALLOWED_IMPORT_DLLS
                    .iter()
                    .any(|allowed| dll.eq_ignore_ascii_case(allowed)),
                "{path}: imports from {dll}"
            );
            let mut thunks = imports
                .thunks(descriptor.original_first_thunk.get(LE))
                .unwrap();
            while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().unwrap() {
                let (_hint, name) = imports.hint_name(thunk.address()).unwrap();
                functions.push(format!("{dll}!{}", String::from_utf8_lossy(name)));
            }
        }
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
