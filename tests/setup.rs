//! scripts/apt_install.sh, which set-up installs Debian's packages with, against a stand-in
//! apt-get that fails as a mirror does in part: an update that fails every time (an index whose
//! size is off while the mirror syncs), and a package whose index did not come. Set-up must go on
//! with what there is, install every other package, and name each one it could not install once,
//! at the end, with apt's reason.

#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A stand-in for apt-get: it logs each call, fails `update` as Debian's mirror did on
/// 2026-12-06 when STUB_UPDATE_FAILS is set, and refuses to install any package named in
/// STUB_MISSING (in a transaction of several or alone), as apt does when a package's index is
/// missing.
const STUB: &str = r#"#!/usr/bin/env bash
echo "$*" >>"$STUB_LOG"
case $1 in
update)
    if [ -n "${STUB_UPDATE_FAILS:-}" ]; then
        echo "E: Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/main/binary-i386/Packages.xz  File has unexpected size (97516 != 97652). Mirror sync in progress? [IP: 151.101.2.132 80]" >&2
        echo "E: Some index files failed to download. They have been ignored, or old ones used instead." >&2
        exit 100
    fi ;;
install)
    for package in "$@"; do
        for missing in $STUB_MISSING; do
            if [ "$package" = "$missing" ]; then
                echo "E: Unable to locate package $package" >&2
                exit 100
            fi
        done
    done ;;
esac
exit 0
"#;

struct Run {
    output: Output,
    /// The stand-in's calls, one line each.
    calls: Vec<String>,
    /// The optional packages the script recorded as not installed.
    record: String,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/apt_install.sh")
}

/// Runs the script with ARGS in a folder of its own, the stand-in failing as the two settings say.
fn apt_install(name: &str, update_fails: bool, missing: &str, args: &[&str]) -> Run {
    let folder = std::env::temp_dir().join(format!("oxtun-setup-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).unwrap();
    let stub = folder.join("apt-get");
    fs::write(&stub, STUB).unwrap();
    let mut permissions = fs::metadata(&stub).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    fs::set_permissions(&stub, permissions).unwrap();
    let log = folder.join("calls");
    let record = folder.join("unavailable");
    let output = Command::new(script())
        .arg("--record")
        .arg(&record)
        .args(args)
        .env("OXTUN_APT_GET", &stub)
        .env("OXTUN_APT_RETRY_SECONDS", "0")
        .env("STUB_LOG", &log)
        .env("STUB_MISSING", missing)
        .env("STUB_UPDATE_FAILS", if update_fails { "1" } else { "" })
        .output()
        .unwrap();
    let run = Run {
        output,
        calls: fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
        record: fs::read_to_string(&record).unwrap_or_default(),
    };
    fs::remove_dir_all(&folder).unwrap();
    run
}

/// What the day's mirror did: the update fails on every try, and wine32:i386, whose i386 index
/// did not come, cannot be installed. Every other package is installed, wine32 is named once with
/// apt's reason and recorded, and set-up goes on, since wine32 is optional.
#[test]
fn a_failed_update_and_a_missing_optional_package_stop_nothing_else() {
    let run = apt_install(
        "mirror",
        true,
        "wine32:i386",
        &["iproute2", "llvm", "--optional", "wine32:i386"],
    );
    let stderr = run.stderr();
    assert!(run.output.status.success(), "{stderr}");
    let updates = run
        .calls
        .iter()
        .filter(|call| *call == "update -qq")
        .count();
    assert_eq!(
        updates, 3,
        "the update is tried three times: {:?}",
        run.calls
    );
    assert!(
        stderr.contains("apt-get update failed three times")
            && stderr.contains("File has unexpected size"),
        "the failed update is reported with apt's reason: {stderr}"
    );
    for package in ["iproute2", "llvm"] {
        assert!(
            run.calls.contains(&format!("install -y {package}")),
            "{package} is installed on its own: {:?}",
            run.calls
        );
    }
    let lines_naming_wine32 = stderr
        .lines()
        .filter(|line| line.contains("wine32"))
        .count();
    assert_eq!(lines_naming_wine32, 1, "named once: {stderr}");
    let reason = "E: Unable to locate package wine32:i386 (after a failed apt-get update: E: \
        Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/main/\
        binary-i386/Packages.xz  File has unexpected size (97516 != 97652). Mirror sync in \
        progress? [IP: 151.101.2.132 80])";
    assert!(
        stderr.contains(&format!("wine32:i386 (optional): {reason}")),
        "{stderr}"
    );
    assert_eq!(run.record, format!("wine32:i386\t{reason}\n"));
}

/// A required package that cannot be had fails set-up, by name and with apt's reason, after the
/// others are installed; it is not recorded as an optional one.
#[test]
fn a_missing_required_package_fails_set_up_after_the_others_are_installed() {
    let run = apt_install("required", false, "llvm", &["iproute2", "llvm", "clang"]);
    let stderr = run.stderr();
    assert_eq!(run.output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("llvm (required): E: Unable to locate package llvm"),
        "{stderr}"
    );
    for package in ["iproute2", "clang"] {
        assert!(
            run.calls.contains(&format!("install -y {package}")),
            "{package}: {:?}",
            run.calls
        );
    }
    assert_eq!(run.record, "");
}

/// With a healthy mirror: one update, one transaction, nothing reported.
#[test]
fn a_healthy_mirror_takes_one_update_and_one_install() {
    let run = apt_install(
        "healthy",
        false,
        "",
        &["iproute2", "--optional", "wine32:i386"],
    );
    assert!(run.output.status.success(), "{}", run.stderr());
    assert_eq!(
        run.calls,
        ["update -qq", "install -y -qq iproute2 wine32:i386"]
    );
    assert_eq!(run.stderr(), "");
    assert_eq!(run.record, "");
}
