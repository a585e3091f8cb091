//! The built oxtun.dll of each Windows architecture (`cargo build -p oxtun-api --release --target
//! x86_64-pc-windows-gnu`, and i686, with the package embedded; both brought up to date first,
//! `artifacts`): read with tools that are not ours (llvm-readobj, objdump), then run under Wine
//! as far as Wine can (scripts/wine.sh).

#![cfg(target_os = "linux")]

#[path = "../../tests/artifacts/mod.rs"]
mod artifacts;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// wintun.dll's exports, unchanged.
const WINTUN_EXPORTS: [&str; 14] = [
    "WintunAllocateSendPacket",
    "WintunCloseAdapter",
    "WintunCreateAdapter",
    "WintunDeleteDriver",
    "WintunEndSession",
    "WintunGetAdapterLUID",
    "WintunGetReadWaitEvent",
    "WintunGetRunningDriverVersion",
    "WintunOpenAdapter",
    "WintunReceivePacket",
    "WintunReleaseReceivePacket",
    "WintunSendPacket",
    "WintunSetLogger",
    "WintunStartSession",
];

/// Our own functions (include/oxtun.h), beside wintun.dll's.
const OXTUN_EXPORTS: [&str; 2] = ["OxtunGetSessionFeatures", "OxtunStartSessionEx"];

/// The only names oxtun.dll may export: wintun.dll's and ours.
fn exports_expected() -> BTreeSet<String> {
    WINTUN_EXPORTS
        .iter()
        .chain(&OXTUN_EXPORTS)
        .map(|name| name.to_string())
        .collect()
}

/// The rundll32 entry point of the x64 helper inside the x86 DLL, with which it removes devices
/// from WOW64: the helper's one export besides the others.
const HELPER_EXPORT: &str = "OxtunWow64HelperW";

/// DLLs that ship with Windows 10: what the DLL may import from.
const SYSTEM_DLLS: [&str; 14] = [
    "advapi32.dll",
    "api-ms-win-core-synch-l1-2-0.dll",
    "bcryptprimitives.dll",
    "cfgmgr32.dll",
    "iphlpapi.dll",
    "kernel32.dll",
    "msvcrt.dll",
    "ntdll.dll",
    "ole32.dll",
    "setupapi.dll",
    "userenv.dll",
    "version.dll",
    "ws2_32.dll",
    "newdev.dll",
];

const TARGETS: [(&str, &str); 2] = [
    ("x86_64-pc-windows-gnu", "x86_64"),
    ("i686-pc-windows-gnu", "i686"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn dll(target: &str) -> PathBuf {
    let index = artifacts::API_TARGETS
        .iter()
        .position(|&api_target| api_target == target)
        .expect("an API target");
    artifacts::api_dlls().swap_remove(index)
}

fn output(program: &str, args: &[&str], file: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(output.status.success(), "{program} {}", file.display());
    String::from_utf8(output.stdout).unwrap()
}

fn exports(dll: &Path) -> BTreeSet<String> {
    output("llvm-readobj", &["--coff-exports"], dll)
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Name: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn each_dll_exports_the_fourteen_functions_and_ours_undecorated_and_nothing_else() {
    for (target, _) in TARGETS {
        assert_eq!(exports(&dll(target)), exports_expected(), "{target}");
    }
}

/// The x86 DLL carries the x64 helper its build made (api/build.rs), byte for byte: an x64
/// oxtun.dll without the package, exporting the functions and the entry point.
#[test]
fn the_x86_dll_carries_the_x64_helper() {
    let x86 = dll("i686-pc-windows-gnu");
    let helper =
        artifacts::target_dir().join("wow64-helper/x86_64-pc-windows-gnu/release/oxtun.dll");
    let bytes = std::fs::read(&helper).expect("the helper api/build.rs built");
    let dump = output("llvm-readobj", &["--coff-resources"], &x86);
    let entry = &dump[dump
        .find("Name: AMD64_OXTUN_WOW64_HELPER [")
        .expect("no AMD64_OXTUN_WOW64_HELPER resource")..];
    let size = entry
        .lines()
        .find_map(|line| line.trim().strip_prefix("DataSize: "))
        .unwrap();
    assert_eq!(size, bytes.len().to_string());
    let image = std::fs::read(&x86).unwrap();
    assert!(image.windows(bytes.len()).any(|window| window == bytes));

    let mut expected = exports_expected();
    expected.insert(HELPER_EXPORT.to_string());
    assert_eq!(exports(&helper), expected);
    assert!(output("objdump", &["-f"], &helper).contains("file format pei-x86-64"));
    let resources = output("llvm-readobj", &["--coff-resources"], &helper);
    assert!(
        !resources.contains("_OXTUN_SYS"),
        "the helper carries a driver package"
    );
}

#[test]
fn each_dll_imports_only_from_windows_own_dlls() {
    for (target, _) in TARGETS {
        let dump = output("objdump", &["-p"], &dll(target));
        let imported: BTreeSet<String> = dump
            .lines()
            .filter_map(|line| line.trim().strip_prefix("DLL Name: "))
            .map(str::to_lowercase)
            .collect();
        assert!(!imported.is_empty(), "{target}: no imports read");
        for dll_name in &imported {
            assert!(
                SYSTEM_DLLS.contains(&dll_name.as_str()),
                "{target} imports from {dll_name}, which is not Windows' own"
            );
        }
        let machine = if target.starts_with("i686") {
            "i386"
        } else {
            "x86-64"
        };
        assert!(
            dump.contains(&format!("file format pei-{machine}")),
            "{target}"
        );
    }
}

/// The package scripts/package.sh made, for each architecture the DLL may need: the resource
/// is there (llvm-readobj names it, with the file's size) and the file's bytes are in the DLL.
#[test]
fn each_dll_embeds_the_driver_package() {
    let package = artifacts::package();
    for (target, _) in TARGETS {
        let dll = dll(target);
        let dump = output("llvm-readobj", &["--coff-resources"], &dll);
        let image = std::fs::read(&dll).unwrap();
        for architecture in ["AMD64", "ARM64"] {
            for (kind, file) in [("SYS", "oxtun.sys"), ("INF", "oxtun.inf")] {
                let path = package.join(architecture.to_lowercase()).join(file);
                let bytes = std::fs::read(&path).expect("the package: scripts/package.sh");
                let name = format!("Name: {architecture}_OXTUN_{kind} [");
                let entry = &dump[dump
                    .find(&name)
                    .unwrap_or_else(|| panic!("{target}: no {name}"))..];
                let size = entry
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("DataSize: "))
                    .unwrap();
                assert_eq!(size, bytes.len().to_string(), "{target}: {name}");
                assert!(
                    image.windows(bytes.len()).any(|window| window == bytes),
                    "{target}: {} is not in the DLL byte for byte",
                    path.display()
                );
            }
        }
    }
}

/// Why set-up could not install wine32, which runs x86 programs, if it could not and it is not
/// installed since: scripts/setup.sh keeps apt's reason in target/setup/unavailable. Without that
/// record a missing wine32 is a failure, not a reason to skip.
fn wine32_unavailable() -> Option<String> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "wine32:i386"])
        .output()
        .is_ok_and(|query| query.stdout.ends_with(b" installed"));
    if installed {
        return None;
    }
    let record = std::fs::read_to_string(workspace().join("target/setup/unavailable")).ok()?;
    record.lines().find_map(|line| {
        let (package, reason) = line.split_once('\t')?;
        (package == "wine32:i386").then(|| reason.to_owned())
    })
}

/// Compiles `source` (in tests/c) for `target` with mingw-w64, linked with the DLL itself as an
/// import library made from wintun.dll's exports would be (undecorated __stdcall names on x86,
/// hence the fixup), into `directory` beside a copy of the DLL; returns the program.
fn compile_for_wine(target: &str, prefix: &str, directory: &Path, source: &str) -> PathBuf {
    compile_for_wine_with(target, prefix, directory, source, true)
}

/// As [`compile_for_wine`]; with `link` false the program is not linked with the DLL (it loads
/// it itself).
fn compile_for_wine_with(
    target: &str,
    prefix: &str,
    directory: &Path,
    source: &str,
    link: bool,
) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(directory).unwrap();
    let dll_copy = directory.join("oxtun.dll");
    std::fs::copy(dll(target), &dll_copy).unwrap();
    let program = directory.join(source.replace(".c", ".exe"));
    let status = Command::new(format!("{prefix}-w64-mingw32-gcc"))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c").join(source))
        .args(link.then_some(&dll_copy))
        .arg("-Wl,--enable-stdcall-fixup")
        .arg("-o")
        .arg(&program)
        .status()
        .expect("mingw-w64 (scripts/setup.sh installs it)");
    assert!(status.success(), "{target}: compiling {source}");
    program
}

/// Runs `program` under Wine (scripts/wine.sh: Wine with the stand-in for the one system DLL
/// Wine 8 lacks) in its folder; its output, after checking it exited 0. None, said on stderr,
/// for an x86 program where set-up could not install wine32.
fn run_under_wine(target: &str, program: &Path) -> Option<String> {
    if target.starts_with("i686")
        && let Some(reason) = wine32_unavailable()
    {
        eprintln!("{target}: not run under Wine: wine32:i386 could not be installed ({reason})");
        return None;
    }
    let wine = Command::new(workspace().join("scripts/wine.sh"))
        .arg(program)
        .current_dir(program.parent().unwrap())
        .output()
        .expect("wine (scripts/setup.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&wine.stdout),
        String::from_utf8_lossy(&wine.stderr)
    );
    assert!(wine.status.success(), "{target} under wine: {text}");
    eprintln!("{target} under wine:\n{text}");
    Some(text)
}

/// What Wine can run: the argument checks, the errors that need no device, the logger, and a
/// creation that fails cleanly for want of a catalog (tests/c/windows_errors.c). Wine cannot
/// load a kernel driver, so adapters, sessions and packets need Windows.
#[test]
fn under_wine_the_checks_that_need_no_device_hold() {
    let programs = std::env::temp_dir().join(format!("oxtun-wine-{}", std::process::id()));
    for (target, prefix) in TARGETS {
        let program = compile_for_wine(target, prefix, &programs.join(target), "windows_errors.c");
        if let Some(text) = run_under_wine(target, &program) {
            assert!(text.contains("all checks passed"), "{target}: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&programs);
}

/// Another process holds `Global\oxtun-installation`, the name the installation lock had until
/// it moved into a private namespace (the review, finding 1), and creation must still come back
/// (tests/c/squatted_lock.c). Wine 8 has no private namespaces: CreateBoundaryDescriptorW is a
/// stub that returns NULL and sets no error, AddSIDToBoundaryDescriptor and
/// CreatePrivateNamespaceW are not implemented at all. So here the lock fails, with its reason
/// logged, where on Windows creation goes on; that the namespace keeps a standard user out is a
/// step of docs/windows.md's first-run checklist.
#[test]
fn under_wine_a_squatted_global_mutex_does_not_block_creation() {
    let programs = std::env::temp_dir().join(format!("oxtun-wine-squat-{}", std::process::id()));
    for (target, prefix) in TARGETS {
        let program = compile_for_wine(target, prefix, &programs.join(target), "squatted_lock.c");
        let Some(text) = run_under_wine(target, &program) else {
            continue;
        };
        assert!(text.contains("all checks passed"), "{target}: {text}");
        assert!(
            text.contains("Failed to create the boundary descriptor"),
            "{target}: Wine's stub should be what stops it: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&programs);
}

/// On a Windows older than 10 2004 creation fails at once with ERROR_OLD_WIN_VERSION
/// (tests/c/old_windows.c; the review, finding 15): Wine reports Windows 7 to that program
/// alone, through its per-program setting (HKCU\Software\Wine\AppDefaults\<exe>\Version).
/// Under Wine's default, Windows 10, the other programs get past the check to the lock.
#[test]
fn under_wine_windows_7_is_refused_at_once() {
    let programs = std::env::temp_dir().join(format!("oxtun-wine-old-{}", std::process::id()));
    for (target, prefix) in TARGETS {
        let program = compile_for_wine(target, prefix, &programs.join(target), "old_windows.c");
        if target.starts_with("i686") && wine32_unavailable().is_some() {
            // run_under_wine says so.
            assert!(run_under_wine(target, &program).is_none());
            continue;
        }
        let key = r"HKCU\Software\Wine\AppDefaults\old_windows.exe";
        let status = Command::new(workspace().join("scripts/wine.sh"))
            .args(["reg", "add", key, "/v", "Version", "/d", "win7", "/f"])
            .output()
            .expect("wine (scripts/setup.sh installs it)");
        assert!(status.status.success(), "reg add: {status:?}");
        if let Some(text) = run_under_wine(target, &program) {
            assert!(text.contains("all checks passed"), "{target}: {text}");
            assert!(text.contains("this is Windows 6.1 build 7601"), "{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&programs);
}

/// Functions of Windows newer than Windows 10 1507 (the oldest Rust's standard library runs on),
/// each with the version Microsoft's page for it gives: a static import of one keeps the whole
/// DLL from loading on an older Windows, where it is to answer ERROR_OLD_WIN_VERSION instead.
const NEWER_THAN_WINDOWS_10_1507: [(&str, &str); 1] = [("IsWow64Process2", "1709")];

/// The review, finding 15: IsWow64Process2 was a static import, so the DLL did not load before
/// Windows 10 1709. Now it is looked up when needed.
#[test]
fn each_dll_imports_nothing_newer_than_windows_10_1507() {
    for (target, _) in TARGETS {
        let dump = output("objdump", &["-p"], &dll(target));
        let imports = &dump[dump.find("The Import Tables").expect("imports")..];
        for (function, version) in NEWER_THAN_WINDOWS_10_1507 {
            assert!(
                !imports
                    .lines()
                    .any(|line| line.split_whitespace().last() == Some(function)),
                "{target} imports {function}, which Windows has only since 10 {version}"
            );
        }
    }
}

/// A program written as wintun.h's own example is (tests/c/dynamic.c: the header as it is,
/// function-pointer variables named as the functions, GetProcAddress), compiled unchanged
/// against oxtun.h and run under Wine: it loads oxtun.dll from its folder and finds the fourteen
/// (the review, finding 14: oxtun.h declared the prototypes by default, and such a program did
/// not compile), then ours.
#[test]
fn under_wine_a_program_in_wintun_h_style_finds_the_fourteen_functions_and_ours() {
    let programs = std::env::temp_dir().join(format!("oxtun-wine-dyn-{}", std::process::id()));
    for (target, prefix) in TARGETS {
        let directory = programs.join(target);
        let program = compile_for_wine_with(target, prefix, &directory, "dynamic.c", false);
        if let Some(text) = run_under_wine(target, &program) {
            assert!(
                text.contains("fourteen functions found, and oxtun's own"),
                "{target}: {text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&programs);
}
