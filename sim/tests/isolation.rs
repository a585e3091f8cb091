//! `#[oxtun_sim::test]` under plain `cargo test`: each test in a process of its own, and a test
//! failing there fails here.

use std::process::Command;

#[oxtun_sim::test]
#[ignore = "run by each_test_runs_in_a_process_of_its_own"]
fn reports_its_process_first() {
    println!("[pid {}]", std::process::id());
}

#[oxtun_sim::test]
#[ignore = "run by each_test_runs_in_a_process_of_its_own"]
fn reports_its_process_second() {
    println!("[pid {}]", std::process::id());
}

#[oxtun_sim::test]
#[ignore = "run by a_test_failing_in_its_process_fails"]
fn fails_in_its_process() {
    panic!("failing on purpose");
}

/// This test binary run by libtest as plain `cargo test` runs it: these tests on threads of one
/// process (nextest's setting removed).
fn run_as_cargo_test(filters: &[&str]) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(filters)
        .args(["--include-ignored", "--nocapture"])
        .env_remove("NEXTEST_EXECUTION_MODE")
        .env_remove("OXTUN_SIM_TEST_PROCESS")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn each_test_runs_in_a_process_of_its_own() {
    let (passed, output) = run_as_cargo_test(&["reports_its_process_"]);
    assert!(passed, "{output}");
    let mut processes: Vec<&str> = output
        .lines()
        .filter_map(|line| Some(line.split_once("[pid ")?.1))
        .collect();
    processes.sort();
    processes.dedup();
    assert_eq!(processes.len(), 2, "{output}");
}

#[test]
fn a_test_failing_in_its_process_fails() {
    let (passed, output) = run_as_cargo_test(&["fails_in_its_process"]);
    assert!(!passed, "{output}");
    assert!(output.contains("failing on purpose"), "{output}");
    assert!(
        output.contains("fails_in_its_process failed in a process of its own"),
        "{output}"
    );
}

#[test]
fn a_child_that_runs_no_test_fails() {
    let result = std::panic::catch_unwind(|| oxtun_sim::isolation::in_child("no_such_test"));
    let message = result.expect_err("a child that ran no test passed");
    let message = message.downcast_ref::<String>().unwrap();
    assert_eq!(message, "the child process ran no test named no_such_test");
}
