//! The shipped kernel image on the simulated kernel: the loader maps, relocates and binds it and
//! runs it, whatever `OXTUN_SIM_DRIVER` says; copies of the image patched to misbehave show that
//! the code running is the image's, and that the loader refuses what Windows (or the simulator)
//! cannot run. The rest of the driver's tests run on the image when `OXTUN_SIM_DRIVER=image`.
//!
//! The x64 release image is built first when the sources are newer (`tests/artifacts`).
#![cfg(target_arch = "x86_64")]

#[path = "support/image_copies.rs"]
mod image_copies;
mod support;

use std::time::Duration;

use image_copies::*;
use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, ImageThunkData, PeFile64};
use oxtun_abi::RING_ENDED;
use oxtun_driver::sys::*;
use oxtun_sim::loader::{self, LoadError};
use oxtun_sim::{Bitness, Driver, DriverBuild, Fragmentation, Process, Token, outstanding};
use support::*;

const STATUS_UNSUCCESSFUL: NTSTATUS = 0xC000_0001_u32 as i32;
const STATUS_DRIVER_ENTRYPOINT_NOT_FOUND: NTSTATUS = 0xC000_0263_u32 as i32;
const STATUS_INVALID_IMAGE_FORMAT: NTSTATUS = 0xC000_007B_u32 as i32;
const STATUS_ACCESS_VIOLATION: NTSTATUS = 0xC000_0005_u32 as i32;

/// Function names by RVA from the PDB beside the release image.
fn pdb_names(file: &PeFile64) -> std::collections::BTreeMap<u32, String> {
    oxtun_sim::code_check::pdb_function_names(file, &image_path().with_extension("pdb"))
}

fn load_image() -> Driver {
    Driver::load_build(&DriverBuild::Image(image_path())).unwrap()
}

#[oxtun_sim::test]
fn the_image_carries_an_adapter_through_its_whole_life_and_leaves_nothing() {
    let driver = load_image();
    let adapter = driver.add_adapter().unwrap();
    let loaded = outstanding();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    // The registration references the rings' events with ExEventObjectType, a data import:
    // the simulator's ObReferenceObjectByHandle refuses any other object type.
    let (handle, rings) = register(&adapter, &process);
    assert_eq!(adapter.link_state(), Some(MediaConnectStateConnected));

    // Windows sends: each packet arrives in the send ring, byte-exact.
    let sent: Vec<Vec<u8>> = (0..100)
        .map(|seed| ipv4(seed, 20 + seed as usize * 13))
        .collect();
    let nbls: Vec<Vec<Vec<u8>>> = sent.iter().map(|packet| vec![packet.clone()]).collect();
    let layout = Fragmentation {
        leading: 3,
        chunk: 5,
    };
    let statuses = adapter.send(&nbls, layout, DISPATCH_LEVEL);
    assert!(statuses.iter().all(|&status| status == NDIS_STATUS_SUCCESS));
    assert_eq!(drain(&mut rings.send_reader()), sent);

    // The client writes: each packet is indicated up in place, and its space released.
    let received: Vec<Vec<u8>> = (0..100)
        .map(|seed| ipv6(seed, 40 + seed as usize * 7))
        .collect();
    let mut writer = rings.receive_writer();
    assert!(client_write(&mut writer, &rings.receive_event, &received));
    let indicated = adapter.wait_received(received.len(), Duration::from_secs(20));
    let data: Vec<Vec<u8>> = indicated.into_iter().map(|packet| packet.data).collect();
    assert_eq!(data, received);
    wait_released(&rings);
    assert_eq!(statistics(&adapter).ifHCInUcastPkts, 100);

    handle.close();
    assert!(rings.ended());
    assert_eq!(rings.send_tail(), RING_ENDED);
    // What the adapter keeps: its receive NBLs for reuse, each with its pool block.
    let now = outstanding();
    assert_eq!(sorted(now.pool), with_cached_nbls(&loaded.pool, now.nbls));
    adapter.halt();
    let base = driver.image().unwrap().base();
    let leaks = driver.unload();
    assert!(leaks.is_empty(), "leaked {leaks}");
    // Unloaded as Windows unloads a driver: its image is unmapped.
    let size = PeFile64::parse(&*image())
        .unwrap()
        .nt_headers()
        .optional_header()
        .size_of_image();
    assert_eq!(mappings_within(base, size as usize), vec![]);
}

/// The image's mappings in /proc/self/maps inside `[base, base + size)`: (start, end, perms).
fn mappings_within(base: usize, size: usize) -> Vec<(usize, usize, String)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            let permissions = fields.next()?.to_string();
            (start >= base && end <= base + size).then_some((start, end, permissions))
        })
        .collect()
}

#[oxtun_sim::test]
fn the_image_is_mapped_away_from_its_preferred_base_relocated_and_protected_per_section() {
    let data = image();
    let file = PeFile64::parse(&*data).unwrap();
    let optional = file.nt_headers().optional_header();
    let image = loader::load(&data).unwrap();
    let base = image.base();
    assert_ne!(base as u64, optional.image_base(), "relocations exercised");

    // Each pointer a base relocation names holds the file's value moved by the same distance.
    let delta = (base as u64).wrapping_sub(optional.image_base());
    let mut blocks = file
        .data_directories()
        .relocation_blocks(&*data, &file.section_table())
        .unwrap()
        .unwrap();
    let mut relocated = 0;
    while let Some(block) = blocks.next().unwrap() {
        for relocation in block.filter(|r| r.typ == pe::IMAGE_REL_BASED_DIR64) {
            let rva = relocation.virtual_address;
            let at = offset_of_rva(&data, rva);
            let in_file = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
            // SAFETY (test): the relocated field lies in a readable section of the mapping.
            let in_memory = unsafe { ((base + rva as usize) as *const u64).read_unaligned() };
            assert_eq!(in_memory, in_file.wrapping_add(delta), "at RVA {rva:#x}");
            relocated += 1;
        }
    }
    assert!(relocated > 0);

    // Every section has its own protection; no page is both writable and executable.
    let maps = mappings_within(base, optional.size_of_image() as usize);
    let permissions_at = |rva: u32| {
        let address = base + rva as usize;
        maps.iter()
            .find(|(start, end, _)| (*start..*end).contains(&address))
            .map(|(_, _, permissions)| permissions[..3].to_string())
            .unwrap_or_else(|| panic!("RVA {rva:#x} is not mapped"))
    };
    for section in file.section_table().iter() {
        let name = String::from_utf8_lossy(section.raw_name()).to_string();
        let expected = match name.as_str() {
            ".text" => "r-x",
            ".data" => "rw-",
            ".rdata" | ".pdata" | ".rsrc" => "r--",
            ".reloc" => "---",
            other => panic!("a section the test does not know: {other}"),
        };
        assert_eq!(
            permissions_at(section.virtual_address.get(LE)),
            expected,
            "{name}"
        );
    }
    assert_eq!(permissions_at(0), "r--", "headers");
    assert!(
        maps.iter()
            .all(|(_, _, permissions)| !(permissions.contains('w') && permissions.contains('x')))
    );
    // SAFETY (test): nothing of the image ran.
    unsafe { image.unmap() };
}

#[oxtun_sim::test]
fn an_import_the_simulator_does_not_export_is_refused_by_name() {
    let data = with_import_renamed("KeSetEvent", "KeSetEvenX");
    let refused = loader::load(&data).err().expect("the copy loads");
    assert_eq!(
        refused,
        LoadError::UnknownImport {
            dll: "ntoskrnl.exe".to_string(),
            name: "KeSetEvenX".to_string()
        }
    );
    assert!(refused.to_string().contains("ntoskrnl.exe!KeSetEvenX"));
    // As Windows refuses such a driver: with the status, before any of its code runs.
    let path = write_copy(&data, "unknown-import");
    let status = Driver::load_build(&DriverBuild::Image(path.clone())).err();
    std::fs::remove_file(path).unwrap();
    assert_eq!(status, Some(STATUS_DRIVER_ENTRYPOINT_NOT_FOUND));
    assert!(outstanding().is_empty());
}

#[oxtun_sim::test]
fn a_section_both_writable_and_executable_is_refused() {
    let mut data = image();
    let file = PeFile64::parse(&*data).unwrap();
    let text = file
        .section_table()
        .iter()
        .position(|section| section.raw_name() == b".text")
        .unwrap();
    let optional_header_size = file
        .nt_headers()
        .file_header()
        .size_of_optional_header
        .get(LE);
    let headers = file.dos_header().nt_headers_offset() as usize
        + 4
        + std::mem::size_of::<pe::ImageFileHeader>()
        + usize::from(optional_header_size);
    let characteristics = headers + text * std::mem::size_of::<pe::ImageSectionHeader>() + 36;
    data[characteristics + 3] |= 0x80; // IMAGE_SCN_MEM_WRITE
    assert_eq!(
        loader::load(&data).err(),
        Some(LoadError::WritableAndExecutable {
            section: ".text".to_string()
        })
    );
}

#[oxtun_sim::test]
fn a_driver_entry_that_fails_fails_the_load_and_leaves_nothing() {
    // mov eax, STATUS_UNSUCCESSFUL; ret
    let data = with_driver_entry(&[0xB8, 0x01, 0x00, 0x00, 0xC0, 0xC3]);
    let path = write_copy(&data, "failing-entry");
    let status = Driver::load_build(&DriverBuild::Image(path.clone())).err();
    std::fs::remove_file(path).unwrap();
    assert_eq!(status, Some(STATUS_UNSUCCESSFUL));
    assert!(outstanding().is_empty());
    // The unpatched image loads in the same process afterwards.
    load_image().unload();
}

#[oxtun_sim::test]
fn a_probe_that_fails_raises_into_the_shims_except_block_and_its_filter_reads_the_code() {
    // The image's SEH shim, OxtunProbeAndLockPages (found through the PDB's public symbols),
    // called directly: it calls MmProbeAndLockPages in __try, whose filter stores the exception
    // code, and returns that code.
    let data = image();
    let file = PeFile64::parse(&*data).unwrap();
    let names = pdb_names(&file);
    let (&shim, _) = names
        .iter()
        .find(|(_, name)| *name == "OxtunProbeAndLockPages")
        .expect("the PDB names the shim");
    let image = loader::load(&data).unwrap();
    type Probe = unsafe extern "efiapi" fn(PMDL, KPROCESSOR_MODE, LOCK_OPERATION) -> NTSTATUS;
    // SAFETY (test): the shim's code in the mapped image, with its C signature (src/sys/seh.c).
    let probe = unsafe { std::mem::transmute::<usize, Probe>(image.base() + shim as usize) };
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let memory = process.allocate(4096);
    oxtun_sim::process::in_context_of(&process, || {
        for (address, expected) in [(memory, STATUS_SUCCESS), (0x1000, STATUS_ACCESS_VIOLATION)] {
            // SAFETY (test): the simulator's MDL calls, and the shim with a live MDL.
            unsafe {
                let mdl = IoAllocateMdl(address as PVOID, 4096, 0, 0, std::ptr::null_mut());
                assert_eq!(
                    probe(mdl, UserMode, IoWriteAccess),
                    expected,
                    "{address:#x}"
                );
                if expected == STATUS_SUCCESS {
                    MmUnlockPages(mdl);
                }
                IoFreeMdl(mdl);
            }
        }
    });
    // SAFETY (test): nothing runs in the image any more.
    unsafe { image.unmap() };
}

#[oxtun_sim::test]
fn a_registration_whose_probe_fails_is_refused_and_the_driver_goes_on() {
    let driver = load_image();
    let adapter = driver.add_adapter().unwrap();
    let process = Process::new(Token::Administrator, Bitness::Bits64);
    let handle = process.open(adapter.device(), READ_WRITE);
    let mut rings = ClientRings::new(&process);
    rings.request.send.ring = 0x1000;
    let status = handle.device_control(oxtun_abi::TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_INVALID_USER_BUFFER);
    let rings = ClientRings::new(&process);
    let status = handle.device_control(oxtun_abi::TUN_IOCTL_REGISTER_RINGS, &rings.bytes());
    assert_eq!(status, STATUS_SUCCESS);
    handle.close();
    adapter.halt();
    assert!(driver.unload().is_empty());
}

/// The RVA of the import address table's slot for `dll!name`, and of the DLL's name string.
fn import_slot(data: &[u8], dll: &str, name: &str) -> (u32, u32) {
    let file = PeFile64::parse(data).unwrap();
    let table = file.import_table().unwrap().unwrap();
    let mut descriptors = table.descriptors().unwrap();
    while let Some(descriptor) = descriptors.next().unwrap() {
        if table.name(descriptor.name.get(LE)).unwrap() != dll.as_bytes() {
            continue;
        }
        let mut thunks = table
            .thunks(descriptor.original_first_thunk.get(LE))
            .unwrap();
        let mut slot = descriptor.first_thunk.get(LE);
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>().unwrap() {
            if table.hint_name(thunk.address()).unwrap().1 == name.as_bytes() {
                return (slot, descriptor.name.get(LE));
            }
            slot += 8;
        }
    }
    panic!("the image does not import {dll}!{name}");
}

/// Set in the child process of the bug-check test: the path of the image copy it loads.
const CHILD: &str = "OXTUN_IMAGE_TEST_CHILD";

/// A copy of the image whose DriverEntry bug-checks as the driver's panic handler does: its
/// code, a file name (the DLL name "ntoskrnl.exe" in the import table stands in), line 7,
/// column 3.
fn with_bug_checking_driver_entry() -> Vec<u8> {
    let data = image();
    let entry = entry_point(&data);
    let (slot, file_name) = import_slot(&data, "ntoskrnl.exe", "KeBugCheckEx");
    let relative = |target: u32, next: u32| target.wrapping_sub(entry + next).to_le_bytes();
    let mut code = vec![0x48, 0x83, 0xEC, 0x28]; // sub rsp, 40
    code.extend([0xB9, 0x54, 0x58, 0x4F, 0x20]); // mov ecx, 0x204F5854
    code.extend([0x48, 0x8D, 0x15]); // lea rdx, [rip + file_name]
    code.extend(relative(file_name, 16));
    code.extend([0x41, 0xB8, 12, 0, 0, 0]); // mov r8d, 12
    code.extend([0x41, 0xB9, 7, 0, 0, 0]); // mov r9d, 7
    code.extend([0x48, 0xC7, 0x44, 0x24, 0x20, 3, 0, 0, 0]); // mov qword [rsp + 32], 3
    code.extend([0xFF, 0x15]); // call [rip + slot]
    code.extend(relative(slot, 43));
    with_driver_entry(&code)
}

// A plain test: it starts its own child for the bug check, which ends the process.
#[test]
fn a_bug_check_in_the_image_stops_the_simulator_with_its_parameters() {
    if let Some(path) = std::env::var_os(CHILD) {
        let _ = Driver::load_build(&DriverBuild::Image(path.into()));
        unreachable!("KeBugCheckEx returned");
    }
    let path = write_copy(&with_bug_checking_driver_entry(), "bug-check");
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_bug_check_in_the_image_stops_the_simulator_with_its_parameters",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    std::fs::remove_file(path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("contract violation: KeBugCheckEx(0x204f5854, ")
            && stderr.contains(", 0xc, 0x7, 0x3): the driver panicked at ntoskrnl.exe:7:3"),
        "{stderr}"
    );
}

#[oxtun_sim::test]
fn the_shipped_image_has_no_instruction_the_simulator_cannot_run() {
    // The loader runs this check on every load; here it is on its own, with the PDB's names.
    let data = image();
    let file = PeFile64::parse(&*data).unwrap();
    let names = pdb_names(&file);
    assert!(
        names
            .values()
            .any(|name| name == "oxtun_driver::driver::DriverEntry"),
        "the PDB beside the image names its functions"
    );
    let findings = oxtun_sim::code_check::unrunnable_instructions(&file, &data, &names).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

/// The RVA of the routine the driver puts in its dispatch table for `major`, found by running
/// the image, not from the PDB.
fn dispatch_routine_rva(major: usize) -> u32 {
    let driver = load_image();
    let routine = driver.object().MajorFunction[major].unwrap() as usize;
    let rva = routine - driver.image().unwrap().base();
    assert!(driver.unload().is_empty());
    rva as u32
}

/// A copy of the image with `code` written at `rva`, and the image's PDB beside it; the path.
fn patched_with_pdb(rva: u32, code: &[u8], name: &str) -> std::path::PathBuf {
    let mut data = image();
    let at = offset_of_rva(&data, rva);
    data[at..at + code.len()].copy_from_slice(code);
    let path = write_copy(&data, name);
    std::fs::copy(
        image_path().with_extension("pdb"),
        path.with_extension("pdb"),
    )
    .unwrap();
    path
}

#[oxtun_sim::test]
fn an_instruction_the_simulator_cannot_run_is_refused_naming_its_function() {
    let close = dispatch_routine_rva(IRP_MJ_CLOSE);
    let cases: [(&[u8], &str, &str); 4] = [
        (&[0x44, 0x0F, 0x20, 0xC0], "mov rax,cr8", "privileged"),
        (&[0x44, 0x0F, 0x22, 0xC1], "mov cr8,rcx", "privileged"),
        (&[0xFA], "cli", "privileged"),
        // mov rax, gs:[0x20]: the current processor's PRCB, which the simulator does not model
        // (only the current thread, gs:[188h], is)
        (
            &[0x65, 0x48, 0x8B, 0x04, 0x25, 0x20, 0x00, 0x00, 0x00],
            "mov rax,gs:[20h]",
            "GS",
        ),
    ];
    for (code, instruction, reason) in cases {
        // In a routine only the PDB names, and in DriverEntry, which the export table names too.
        for (rva, function) in [
            (close, "oxtun_driver::device::dispatch_close"),
            (entry_point(&image()), "oxtun_driver::driver::DriverEntry"),
        ] {
            let path = patched_with_pdb(rva, code, "unrunnable");
            let refused = loader::load_file(&path).err();
            let status = Driver::load_build(&DriverBuild::Image(path.clone())).err();
            std::fs::remove_file(path.with_extension("pdb")).unwrap();
            std::fs::remove_file(path).unwrap();
            let Some(LoadError::Unrunnable(findings)) = refused else {
                panic!("{instruction} in {function}: loaded");
            };
            // The first; the rest of the patched instruction's bytes may decode as more.
            let finding = &findings[0];
            assert_eq!(
                (
                    finding.rva,
                    finding.function.as_str(),
                    finding.instruction.as_str()
                ),
                (rva, function, instruction)
            );
            assert!(finding.reason.contains(reason), "{}", finding.reason);
            assert_eq!(status, Some(STATUS_INVALID_IMAGE_FORMAT));
        }
    }
    // Without the PDB, DriverEntry still has its exported name.
    let data = with_driver_entry(&[0x44, 0x0F, 0x20, 0xC0]);
    let Err(LoadError::Unrunnable(findings)) = loader::load(&data) else {
        panic!("loaded");
    };
    assert_eq!(findings[0].function, "DriverEntry");
}

#[oxtun_sim::test]
fn the_packaged_test_signed_image_runs_too() {
    // What the package ships: the same image plus an Authenticode signature, which the loader
    // leaves alone (the certificate table is file data, not part of the mapped image).
    let packaged = artifacts::package().join("amd64/oxtun.sys");
    let driver = Driver::load_build(&DriverBuild::Image(packaged)).unwrap();
    driver.add_adapter().unwrap().halt();
    assert!(driver.unload().is_empty());
}

/// Loads `data` as the driver, carries an adapter through initialize and halt, and unloads it:
/// the image runs, and leaves nothing.
fn runs_and_leaves_nothing(data: &[u8], name: &str) {
    let path = write_copy(data, name);
    let driver = Driver::load_build(&DriverBuild::Image(path.clone()));
    std::fs::remove_file(path).unwrap();
    let driver = driver.expect("the image loads");
    driver.add_adapter().unwrap().halt();
    assert!(driver.unload().is_empty());
}

/// A `switch` as clang compiles it for x64 Windows: a bounds check, the case's entry loaded
/// from a table of offsets relative to the table, and an indirect jump; the table lies after
/// the function's last instruction, in `.text`, as clang and MSVC place it. Decoded as
/// instructions, its entries are not code.
fn with_jump_table_before_driver_entry() -> Vec<u8> {
    with_entry_stub(|at, driver_entry| {
        let mut code = vec![0xB8, 0x01, 0, 0, 0]; // mov eax, 1: the case taken
        code.extend([0x83, 0xF8, 0x02]); // cmp eax, 2
        code.extend([0x77, 0x16]); // ja done
        code.extend([0x4C, 0x8D, 0x1D, 0, 0, 0, 0]); // lea r11, [rip + table]
        let lea_end = code.len();
        code.extend([0x49, 0x63, 0x04, 0x83]); // movsxd rax, dword ptr [r11 + rax*4]
        code.extend([0x4C, 0x01, 0xD8]); // add rax, r11
        code.extend([0xFF, 0xE0]); // jmp rax
        let cases = code.len();
        code.extend([0xEB, 0x04, 0xEB, 0x02, 0xEB, 0x00]); // three cases, each: jmp done
        let done = code.len();
        assert_eq!(done, 10 + 0x16, "ja done");
        code.extend(jump(at + done as u32, driver_entry));
        let table = code.len();
        for case in 0..3 {
            let offset = (cases + 2 * case) as i32 - table as i32;
            code.extend(offset.to_le_bytes());
        }
        code[lea_end - 4..lea_end].copy_from_slice(&((table - lea_end) as u32).to_le_bytes());
        code
    })
}

#[oxtun_sim::test]
fn a_switch_whose_jump_table_follows_its_function_loads_and_runs() {
    runs_and_leaves_nothing(&with_jump_table_before_driver_entry(), "jump-table");
}

/// `__fastfail(FAST_FAIL_CORRUPT_LIST_ENTRY)` behind a check, as the WDK's RemoveEntryList
/// compiles: `taken` makes the check fail.
fn with_fast_fail_before_driver_entry(taken: bool) -> Vec<u8> {
    with_entry_stub(|at, driver_entry| {
        let mut code = vec![0x48, 0x85, 0xC9]; // test rcx, rcx: the driver object
        code.extend([if taken { 0x74 } else { 0x75 }, 0x07]); // jz / jnz past the fast fail
        code.extend([0xB9, 0x03, 0, 0, 0]); // mov ecx, 3
        code.extend([0xCD, 0x29]); // int 29h
        code.extend(jump(at + code.len() as u32, driver_entry));
        code
    })
}

#[oxtun_sim::test]
fn a_fast_fail_site_that_is_not_reached_loads_and_runs() {
    runs_and_leaves_nothing(&with_fast_fail_before_driver_entry(false), "fast-fail");
}

/// Set in the child process of the fast-fail test: the path of the image copy it loads.
const FAST_FAIL_CHILD: &str = "OXTUN_IMAGE_FAST_FAIL_CHILD";

// A plain test: it starts its own child for the bug check, which ends the process.
#[test]
fn a_fast_fail_that_is_reached_is_bug_check_0x139_with_its_code() {
    if let Some(path) = std::env::var_os(FAST_FAIL_CHILD) {
        let _ = Driver::load_build(&DriverBuild::Image(path.into()));
        unreachable!("__fastfail returned");
    }
    let path = write_copy(
        &with_fast_fail_before_driver_entry(true),
        "fast-fail-reached",
    );
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_fast_fail_that_is_reached_is_bug_check_0x139_with_its_code",
            "--exact",
            "--nocapture",
        ])
        .env(FAST_FAIL_CHILD, &path)
        .output()
        .unwrap();
    std::fs::remove_file(path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("bug check 0x139 (KERNEL_SECURITY_CHECK_FAILURE): __fastfail(0x3) at RVA"),
        "{stderr}"
    );
}

#[oxtun_sim::test]
fn the_wdks_inline_ke_get_current_thread_reads_the_current_thread() {
    // DriverEntry runs on this thread: what gs:[188h] reads there is this thread's object.
    let thread = oxtun_sim::ke::thread::current_thread().address() as u64;
    let data = with_entry_stub(|at, driver_entry| {
        let mut code = vec![0x65, 0x48, 0x8B, 0x04, 0x25, 0x88, 0x01, 0, 0]; // mov rax, gs:[188h]
        code.extend([0x49, 0xBA]); // mov r10, the thread object's address
        code.extend(thread.to_le_bytes());
        code.extend([0x4C, 0x39, 0xD0]); // cmp rax, r10
        code.extend([0x74, 0x07]); // je past the fast fail
        code.extend([0xB9, 0x77, 0, 0, 0]); // mov ecx, 0x77
        code.extend([0xCD, 0x29]); // int 29h: bug check 0x139 if the read was wrong
        code.extend(jump(at + code.len() as u32, driver_entry));
        code
    });
    runs_and_leaves_nothing(&data, "current-thread");
}
