//! Support, outside the layers: it calls nothing of the simulator.
//!
//! A process per test under plain `cargo test`.
//!
//! The simulated kernel is the process's own global state, one driver at a time, and several
//! checks (leaks, fault call numbers, process exits, kernel stack overflows) need the process to
//! themselves. cargo-nextest runs each test in a process of its own already; libtest runs a
//! binary's tests on threads of one process. `#[oxtun_sim::test]` makes each test body run in a
//! child process of the test binary, started with the test's exact name, when it is not in one
//! already.

use std::process::Command;

/// Set in the child that runs one test: the test's name.
const CHILD: &str = "OXTUN_SIM_TEST_PROCESS";

/// Runs `body`, the test named by `path` (`crate::module::name`, from `module_path!`), in a
/// process of its own: here if this process is one (a child started by this function, or
/// nextest's process per test), else in a child of the test binary whose output and failure
/// become this test's.
pub fn in_own_process(path: &str, body: impl FnOnce()) {
    // libtest names a test by its path below the crate.
    let name = path.split_once("::").map_or(path, |(_crate, name)| name);
    // nextest sets it in each test's process (https://nexte.st/docs/configuration/env-vars/).
    let nextest = std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test");
    if nextest || std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    in_child(name);
}

/// Runs the test `name` of this test binary in a child process, and fails as it fails, with its
/// output; also when it runs no test by that name.
pub fn in_child(name: &str) {
    let binary = std::env::current_exe().expect("the test binary's path");
    let output = Command::new(&binary)
        .args([name, "--exact", "--include-ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Through libtest's capture, so a failure shows the child's output and a pass hides it.
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{name} failed in a process of its own: {}",
        output.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process ran no test named {name}"
    );
}
