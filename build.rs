//! Link arguments that make the Windows build a kernel-mode driver image.
//!
//! The image is linked by rust-lld (see .cargo/config.toml), with imports declared through
//! raw-dylib in src/sys, so no WDK import library is needed. Host builds link nothing here: the
//! simulated kernel provides the imports.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "windows" || target_env != "msvc" {
        return;
    }
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
