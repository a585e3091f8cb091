//! The simulator's modules are layered as the kernel it imitates: each file calls only files
//! beneath it in the order below, so no two import each other, however indirectly, and each file
//! says its layer where it opens.

use std::path::Path;

/// Every file of `sim/src` (but the module declarations and the emulator binary), lowest first:
/// a file may use the ones before it.
const ORDER: &[&str] = &[
    // Bookkeeping, beneath all.
    "bookkeeping/verifier.rs",
    "bookkeeping/faults.rs",
    "bookkeeping/leaks.rs",
    // ke: the kernel stack, threads, IRQL, locks, dispatcher objects and waits.
    "ke/stack.rs",
    "ke/thread.rs",
    "ke/irql.rs",
    "ke/sync.rs",
    "ke/clock.rs",
    "ke/dispatcher.rs",
    // ob: objects, handles and processes, system threads, access checks.
    "ob/process.rs",
    "ob/threads.rs",
    "ob/security.rs",
    // mm: memory.
    "mm/pool.rs",
    "mm/mdl.rs",
    // The I/O manager, then NDIS.
    "io/mod.rs",
    "ndis/config.rs",
    "ndis/offload.rs",
    "ndis/mod.rs",
    // The kernel image: above every kernel layer.
    "image/pe.rs",
    "image/unwind.rs",
    "image/code_check.rs",
    "image/images.rs",
    "image/seh.rs",
    "image/exports.rs",
    "image/loader.rs",
    // Support, outside the layers.
    "driver_build.rs",
    "isolation.rs",
    "tun.rs",
    // Above NDIS: the emulator's upper edge, where tcpip sits.
    "upper_edge.rs",
    // On top: the simulated system as tests drive it.
    "lib.rs",
];

/// The file a `crate::` path names: `ke::irql::call_at` is in `ke/irql.rs`.
fn file_of(path: &str) -> String {
    let segments: Vec<&str> = path.split("::").map(str::trim).collect();
    match segments.as_slice() {
        [
            layer @ ("bookkeeping" | "ke" | "ob" | "mm" | "image"),
            file,
            ..,
        ] => {
            format!("{layer}/{file}.rs")
        }
        ["ndis", file @ ("config" | "offload"), ..] => format!("ndis/{file}.rs"),
        [module @ ("io" | "ndis"), ..] => format!("{module}/mod.rs"),
        [
            file @ ("driver_build" | "isolation" | "tun" | "upper_edge"),
            ..,
        ] => format!("{file}.rs"),
        _ => "lib.rs".to_string(),
    }
}

/// The `crate::` paths `code` uses, groups (`crate::ke::{irql, sync}`) spelled out.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let prefix = rest[..end].trim_end_matches(':');
        if rest[end..].starts_with('{') {
            let close = rest.find('}').expect("a closed group");
            for item in rest[end + 1..close].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    paths.push(format!("{prefix}::{item}"));
                }
            }
        } else {
            paths.push(prefix.to_string());
        }
    }
    paths
}

/// `source` without its comments, which may name any module.
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if name != "bin" {
                    folders.push(path);
                }
            } else if !name.ends_with("mod.rs") || name == "io/mod.rs" || name == "ndis/mod.rs" {
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_file_calls_only_files_beneath_it() {
    let rank = |file: &str| ORDER.iter().position(|&listed| listed == file);
    let mut upward = Vec::new();
    for (file, source) in sources() {
        let own = rank(&file).unwrap_or_else(|| panic!("{file} has no place in ORDER"));
        for path in crate_paths(&code_of(&source)) {
            let target = file_of(&path);
            if target != file && rank(&target).is_none_or(|target| target >= own) {
                upward.push(format!("{file} uses crate::{path} ({target})"));
            }
        }
    }
    assert_eq!(upward, Vec::<String>::new());
}

#[test]
fn every_file_opens_with_its_layer() {
    let mut unsaid = Vec::new();
    for (file, source) in sources() {
        let said = source
            .lines()
            .next()
            .is_some_and(|line| line.starts_with("//! Layer: ") || line.starts_with("//! Support"));
        if !said && file != "lib.rs" {
            unsaid.push(file);
        }
    }
    assert_eq!(unsaid, Vec::<String>::new());
}

#[test]
fn the_check_sees_an_upward_call() {
    // What the checks above read: a use, a group and a path in code, not in comments.
    let code = code_of("use crate::ke::{irql, sync};\nlet x = crate::io::pnp(); // crate::ndis\n");
    let files: Vec<String> = crate_paths(&code)
        .iter()
        .map(|path| file_of(path))
        .collect();
    assert_eq!(files, ["ke/irql.rs", "ke/sync.rs", "io/mod.rs"]);
}
