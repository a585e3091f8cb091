//! The API library's link on Windows: the driver package embedded as resources (src/package.rs
//! reads them). (rustc already exports __stdcall functions undecorated on x86, as wintun.dll
//! does: tests/windows_dll.rs checks it.)
//!
//! The package is `scripts/package.sh`'s output, `target/package/{amd64,arm64}/` with
//! oxtun.sys, oxtun.inf and (made on Windows by inf2cat, see the README) oxtun.cat, or the
//! folder `OXTUN_PACKAGE_DIR` names. What exists is embedded; a missing catalog makes
//! installation fail with a logged error at run time, a missing package a warning here.
//!
//! The x86 DLL also embeds an x64 DLL as AMD64_OXTUN_WOW64_HELPER: the native helper that a
//! 32-bit process on 64-bit Windows removes devices with (src/package.rs). This script builds it
//! with a cargo of its own, in `<target folder>/wow64-helper`, with `OXTUN_WOW64_HELPER_BUILD`
//! set: without debug information or a package, and with `cfg(wow64_helper)`, under which it
//! exports the helper's entry point besides the API's functions. Every x86 build so carries the
//! helper of its own sources, and the x64 oxtun.dll exports only wintun.h's functions and
//! oxtun.h's own.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wow64_helper)");
    let target = std::env::var("TARGET").unwrap();
    if !target.contains("windows") {
        return;
    }
    println!("cargo:rerun-if-env-changed=OXTUN_PACKAGE_DIR");
    println!("cargo:rerun-if-env-changed=OXTUN_WOW64_HELPER_BUILD");
    if std::env::var_os("OXTUN_WOW64_HELPER_BUILD").is_some() {
        // The helper's rundll32 entry point is exported by this build only.
        println!("cargo:rustc-cfg=wow64_helper");
        return;
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let package = std::env::var_os("OXTUN_PACKAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/package"));
    // The machine architectures whose driver this DLL may need: an x86 or x64 process may run
    // on x64 Windows or, emulated, on ARM64 Windows.
    let architectures: &[&str] = if target.starts_with("aarch64") {
        &["arm64"]
    } else {
        &["amd64", "arm64"]
    };
    let mut script = String::new();
    for architecture in architectures {
        for (file, kind) in [
            ("oxtun.sys", "SYS"),
            ("oxtun.inf", "INF"),
            ("oxtun.cat", "CAT"),
        ] {
            let path = package.join(architecture).join(file);
            println!("cargo:rerun-if-changed={}", path.display());
            if path.is_file() {
                let path = path.canonicalize().unwrap();
                let name = format!("{}_OXTUN_{kind}", architecture.to_uppercase());
                let quoted = path.display().to_string().replace('\\', "/");
                script.push_str(&format!("{name} RCDATA \"{quoted}\"\n"));
            } else if kind != "CAT" {
                println!(
                    "cargo:warning=no {} for {architecture}: run scripts/package.sh to embed the driver",
                    path.display()
                );
            }
        }
    }
    if target.starts_with("i686") {
        let helper = build_wow64_helper(&manifest, &out);
        let quoted = helper.display().to_string().replace('\\', "/");
        script.push_str(&format!("AMD64_OXTUN_WOW64_HELPER RCDATA \"{quoted}\"\n"));
    }
    if script.is_empty() {
        return;
    }
    let rc = out.join("package.rc");
    std::fs::write(&rc, script).unwrap();
    match compile_resources(&target, &rc, &out) {
        Some(object) => println!("cargo:rustc-link-arg-cdylib={}", object.display()),
        None => println!("cargo:warning=no resource compiler: the driver package is not embedded"),
    }
}

/// The resources as an object the linker takes: windres's COFF object for the gnu targets,
/// llvm-rc's .res for the msvc ones (which rust-lld reads as it is).
fn compile_resources(target: &str, rc: &Path, out: &Path) -> Option<PathBuf> {
    if target.ends_with("-gnu") {
        let prefix = if target.starts_with("i686") {
            "i686"
        } else {
            "x86_64"
        };
        let object = out.join("package.o");
        let status = Command::new(format!("{prefix}-w64-mingw32-windres"))
            .arg(rc)
            .args(["-O", "coff", "-o"])
            .arg(&object)
            .status()
            .ok()?;
        assert!(status.success(), "windres failed on {}", rc.display());
        Some(object)
    } else {
        let res = out.join("package.res");
        let llvm_rc = ["llvm-rc", "llvm-rc-14", "llvm-rc-15", "llvm-rc-16"]
            .into_iter()
            .find(|tool| Command::new(tool).arg("/?").output().is_ok())?;
        let status = Command::new(llvm_rc)
            .arg("/FO")
            .arg(&res)
            .arg(rc)
            .status()
            .ok()?;
        assert!(status.success(), "llvm-rc failed on {}", rc.display());
        Some(res)
    }
}

/// Builds the x64 DLL that the x86 one carries, in a target folder of its own beside ours (our
/// OUT_DIR is `<target>/<triple>/<profile>/build/<package>-<hash>/out`), and returns its path.
fn build_wow64_helper(manifest: &Path, out: &Path) -> PathBuf {
    for input in ["src", "../client/src", "../abi/src", "../Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", manifest.join(input).display());
    }
    let target_dir = out
        .ancestors()
        .nth(5)
        .expect("OUT_DIR inside a target folder")
        .join("wow64-helper");
    const HELPER_TARGET: &str = "x86_64-pc-windows-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "oxtun-api",
            "--target",
        ])
        .arg(HELPER_TARGET)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(manifest)
        .env("OXTUN_WOW64_HELPER_BUILD", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        // What cargo sets for this script (our target's flags, clippy as the compiler when
        // linting) is not for the helper's build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo, for the WOW64 helper");
    assert!(status.success(), "building the WOW64 helper failed");
    target_dir.join(HELPER_TARGET).join("release/oxtun.dll")
}
