//! The artifacts the image, package, INF and DLL tests read, brought up to date before they are
//! read: so plain `cargo test` checks what the sources make now, never what an earlier build
//! left. cargo builds what is stale and nothing else; the package is remade only when an image
//! or the INF template is newer than it. What the builds need (the Windows targets, clang,
//! osslsigncode, mingw-w64) `scripts/setup.sh` installs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// The kernel image's targets, with the package folder of each.
pub const KERNEL_TARGETS: [(&str, &str); 2] = [
    ("x86_64-pc-windows-msvc", "amd64"),
    ("aarch64-pc-windows-msvc", "arm64"),
];

/// The API library's Windows targets.
pub const API_TARGETS: [&str; 2] = ["x86_64-pc-windows-gnu", "i686-pc-windows-gnu"];

/// The workspace's root: the folder of Cargo.lock, above the test's package.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|folder| folder.join("Cargo.lock").is_file())
        .expect("a workspace above the package")
        .to_path_buf()
}

/// The target folder the scripts use.
pub fn target_dir() -> PathBuf {
    workspace().join("target")
}

/// `scripts/setup.sh` is what a failure here most often asks for.
const SETUP: &str = "scripts/setup.sh installs the Windows targets and the tools the builds need";

fn build(arguments: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "--release", "--locked"])
        .args(arguments)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo build --release {}: {}\n({SETUP})",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn target_arguments<'a>(targets: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    targets
        .into_iter()
        .flat_map(|target| ["--target", target])
        .collect()
}

/// The kernel image of each target, `target/<target>/release/oxtun_driver.dll`, built.
pub fn kernel_images() -> Vec<PathBuf> {
    let mut arguments = vec!["-p", "oxtun"];
    arguments.extend(target_arguments(KERNEL_TARGETS.map(|(target, _)| target)));
    build(&arguments);
    KERNEL_TARGETS
        .iter()
        .map(|(target, _)| target_dir().join(target).join("release/oxtun_driver.dll"))
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata()
        .and_then(|metadata| metadata.modified())
        .ok()
}

/// Whether `output` exists and was written after `input` (as make decides).
fn up_to_date(output: &Path, input: &Path) -> bool {
    matches!((modified(output), modified(input)), (Some(output), Some(input)) if output >= input)
}

/// `target/package`, made by `scripts/package.sh` from the images built now.
pub fn package() -> PathBuf {
    let images = kernel_images();
    let package = target_dir().join("package");
    let template = workspace().join("wintun.inx");
    let fresh = KERNEL_TARGETS
        .iter()
        .zip(&images)
        .all(|((_, arch), image)| {
            up_to_date(&package.join(arch).join("oxtun.sys"), image)
                && up_to_date(&package.join(arch).join("oxtun.inf"), &template)
        });
    if !fresh {
        let output = Command::new(workspace().join("scripts/package.sh"))
            .current_dir(workspace())
            .output()
            .expect("running scripts/package.sh");
        assert!(
            output.status.success(),
            "scripts/package.sh: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    package
}

/// oxtun.dll of each API target, `target/<target>/release/oxtun.dll`, built with the package
/// embedded.
pub fn api_dlls() -> Vec<PathBuf> {
    package();
    let mut arguments = vec!["-p", "oxtun-api"];
    arguments.extend(target_arguments(API_TARGETS));
    build(&arguments);
    API_TARGETS
        .iter()
        .map(|target| target_dir().join(target).join("release/oxtun.dll"))
        .collect()
}
