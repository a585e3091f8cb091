//! For the Windows build: the SEH shim, compiled with clang, and the link arguments that make
//! the image a kernel-mode driver.
//!
//! The image is linked by rust-lld (see .cargo/config.toml), with imports declared through
//! raw-dylib in src/sys, so no WDK import library is needed. Host builds link nothing here: the
//! simulated kernel provides the imports and the shim's function.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SEH_SHIM: &str = "src/sys/seh.c";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={SEH_SHIM}");
    println!("cargo::rerun-if-env-changed=CLANG");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "windows" || target_env != "msvc" {
        return;
    }
    let shim = compile_seh_shim();
    println!("cargo::rustc-cdylib-link-arg={}", shim.display());
    for arg in [
        "/DRIVER", // a kernel-mode driver image
        "/SUBSYSTEM:NATIVE,10.00",
        "/ENTRY:DriverEntry", // no CRT start-up code in the kernel
        "/NODEFAULTLIB",      // the kernel has no CRT; memcpy and friends come from ntoskrnl.exe
        "/INTEGRITYCHECK",    // FORCE_INTEGRITY: the kernel loads it only with a valid signature
        "/NXCOMPAT",
        "/DYNAMICBASE",
        "/RELEASE", // the PE checksum, which the kernel requires of drivers
        "/OPT:REF,ICF",
        "/DEBUG",             // a PDB beside the image, for the kernel debugger
        "/PDBALTPATH:%_PDB%", // name it, not the build machine's path
        "/BREPRO",            // reproducible: no time stamp
    ] {
        println!("cargo::rustc-cdylib-link-arg={arg}");
    }
}

/// Compiles the SEH shim to a COFF object for the target, with clang (`CLANG` names another).
fn compile_seh_shim() -> PathBuf {
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let object = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("seh.obj");
    let clang = env::var("CLANG").unwrap_or_else(|_| find_clang());
    let status = Command::new(&clang)
        .args([
            &format!("--target={target}"),
            "-c",
            "-O2",
            "-Wall",
            "-Werror",
        ])
        // Kernel code: no CRT, no stack cookies or probes that would need one, no red zone.
        .args([
            "-ffreestanding",
            "-fno-stack-protector",
            "-mno-stack-arg-probe",
        ])
        .args(["-fms-extensions", "-o"])
        .arg(&object)
        .arg(SEH_SHIM)
        .status()
        .unwrap_or_else(|error| panic!("running {clang} for the SEH shim: {error}"));
    assert!(status.success(), "{clang} failed to compile {SEH_SHIM}");
    object
}

/// `clang`, or the newest versioned `clang-N` on PATH (Debian installs those).
fn find_clang() -> String {
    let found = |name: &str| {
        env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .any(|dir| dir.join(name).is_file())
    };
    if found("clang") {
        return "clang".into();
    }
    (11..=30)
        .rev()
        .map(|version| format!("clang-{version}"))
        .find(|name| found(name))
        .expect("the SEH shim needs clang: install Debian's clang (scripts/setup.sh does)")
}
