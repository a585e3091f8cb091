//! For the Windows build: the SEH shim, compiled with clang, the version resource, compiled with
//! llvm-rc, and the link arguments that make the image a kernel-mode driver.
//!
//! The image is linked by rust-lld (see .cargo/config.toml), with imports declared through
//! raw-dylib in src/sys, so no WDK import library is needed. Host builds link nothing here: the
//! simulated kernel provides the imports and the shim's function.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SEH_SHIM: &str = "src/sys/seh.c";
const VERSION_RESOURCE: &str = "wintun.rc";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={SEH_SHIM}");
    println!("cargo::rerun-if-changed={VERSION_RESOURCE}");
    println!("cargo::rerun-if-env-changed=CLANG");
    println!("cargo::rerun-if-env-changed=LLVM_RC");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "windows" || target_env != "msvc" {
        return;
    }
    let shim = compile_seh_shim();
    println!("cargo::rustc-cdylib-link-arg={}", shim.display());
    // The linker takes a compiled resource file like an object and puts it in .rsrc.
    let resource = compile_version_resource();
    println!("cargo::rustc-cdylib-link-arg={}", resource.display());
    // Under the WDK (the Windows package flow), wdk-build configures the driver's link from the
    // WDK, per [package.metadata.wdk] in Cargo.toml. These lines exist only there.
    #[cfg(feature = "wdk")]
    if let Err(error) = wdk_build::configure_wdk_binary_build() {
        panic!("wdk-build could not configure the driver build: {error}");
    }
    #[cfg(not(feature = "wdk"))]
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
        "/DEBUG",                // a PDB beside the image, for the kernel debugger
        "/PDBALTPATH:oxtun.pdb", // the name it has in the package, not the build path
        "/BREPRO",               // reproducible: no time stamp
    ] {
        println!("cargo::rustc-cdylib-link-arg={arg}");
    }
}

/// Compiles the SEH shim to a COFF object for the target, with clang (`CLANG` names another).
fn compile_seh_shim() -> PathBuf {
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let object = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("seh.obj");
    let clang = env::var("CLANG").unwrap_or_else(|_| find_llvm_tool("clang"));
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

/// Compiles the version resource with llvm-rc (`LLVM_RC` names another), with the version from
/// Cargo.toml: the one source of the file version, the product version and the driver version
/// the driver answers OID_GEN_VENDOR_DRIVER_VERSION with (src/oid.rs).
fn compile_version_resource() -> PathBuf {
    let resource =
        PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("oxtun.res");
    let version = |part: &str| env::var(format!("CARGO_PKG_VERSION{part}")).expect("set by cargo");
    let defines = [
        format!("OXTUN_VERSION_MAJOR={}", version("_MAJOR")),
        format!("OXTUN_VERSION_MINOR={}", version("_MINOR")),
        format!("OXTUN_VERSION_PATCH={}", version("_PATCH")),
        format!("OXTUN_VERSION_STR=\"{}\"", version("")),
    ];
    let rc = env::var("LLVM_RC").unwrap_or_else(|_| find_llvm_tool("llvm-rc"));
    let mut command = Command::new(&rc);
    for define in &defines {
        command.args(["/D", define]);
    }
    let status = command
        .arg("/FO")
        .arg(&resource)
        .arg(VERSION_RESOURCE)
        .status()
        .unwrap_or_else(|error| panic!("running {rc} for the version resource: {error}"));
    assert!(
        status.success(),
        "{rc} failed to compile {VERSION_RESOURCE}"
    );
    resource
}

/// An LLVM tool by its plain name, or the newest versioned `NAME-N` on PATH (Debian installs
/// those).
fn find_llvm_tool(name: &str) -> String {
    let found = |name: &str| {
        let file = format!("{name}{}", env::consts::EXE_SUFFIX);
        env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .any(|dir| dir.join(&file).is_file())
    };
    if found(name) {
        return name.into();
    }
    (11..=30)
        .rev()
        .map(|version| format!("{name}-{version}"))
        .find(|name| found(name))
        .unwrap_or_else(|| panic!("no {name}: install Debian's llvm and clang (setup.sh does)"))
}
