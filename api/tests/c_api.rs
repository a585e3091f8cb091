//! C programs written against `include/oxtun.h`, compiled with the system's C compiler, linked
//! with `liboxtun.so` and run on Linux in a network namespace and run folder of their own: one
//! calls the functions directly (life cycle, every error path, pings, threads, out-of-order
//! release, removal under a waiting thread, our own functions), one loads the library at run
//! time (also as C++) and finds the fourteen and ours.

#![cfg(target_os = "linux")]

#[path = "../../client/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{isolate, target_dir, workspace_version};

/// The library as cargo built it for this test: in deps/, which cargo refreshes for tests (the
/// copy beside it, in target/PROFILE, only `cargo build` does).
fn library() -> PathBuf {
    let library = target_dir().join("deps/liboxtun.so");
    assert!(library.is_file(), "{} is missing", library.display());
    library
}

/// Compiles `source` (in tests/c) with `compiler` and warnings as errors; returns the program.
fn compile(compiler: &str, language: &str, source: &str, extra: &[&str]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::env::temp_dir().join(format!(
        "oxtun-{}-{language}-{}",
        source.trim_end_matches(".c"),
        std::process::id()
    ));
    let status = Command::new(compiler)
        .args(["-x", language, "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c").join(source))
        .args(["-x", "none"])
        .args(extra)
        .arg("-o")
        .arg(&output)
        .status()
        .expect("the system C compiler (cc)");
    assert!(status.success(), "{compiler} {source} failed");
    output
}

fn run(program: &Path) -> String {
    let version = workspace_version().to_dword();
    let output = Command::new(program)
        // cargo's search path leads to the stale copy in target/PROFILE; the program's run path
        // leads to the fresh one.
        .env_remove("LD_LIBRARY_PATH")
        .env("OXTUN_EXPECTED_VERSION", format!("{version:x}"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}: {text}", program.display());
    eprintln!("{text}");
    text
}

#[test]
fn a_c_application_runs_against_the_header_and_the_library() {
    isolate();
    let library = library();
    let directory = library.parent().unwrap().to_str().unwrap().to_string();
    let program = compile(
        "cc",
        "c",
        "adapter.c",
        &[
            "-std=c11",
            &format!("-L{directory}"),
            "-loxtun",
            "-lpthread",
            &format!("-Wl,-rpath,{directory}"),
        ],
    );
    let output = run(&program);
    let _ = std::fs::remove_file(&program);
    assert!(output.contains("all checks passed"), "{output}");
}

#[test]
fn an_application_that_loads_the_library_finds_the_fourteen_functions_and_ours() {
    let library = library();
    for (compiler, language) in [("cc", "c"), ("c++", "c++")] {
        let program = compile(compiler, language, "dynamic.c", &["-ldl"]);
        let output = Command::new(&program)
            .arg(&library)
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&program);
        assert!(
            output.status.success(),
            "{language}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
