//! `cargo xtask` rejects what it does not understand instead of ignoring it.

use std::process::Command;

fn xtask(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_flag_is_an_error() {
    let (code, err) = xtask(&["bench", "--quik"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid option '--quik'"), "{err}");
}

#[test]
fn a_flag_without_its_value_is_an_error() {
    let (code, err) = xtask(&["bench", "--filter"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("missing argument for option '--filter'"),
        "{err}"
    );
}

#[test]
fn an_unknown_workload_is_an_error() {
    let (code, err) = xtask(&["bench", "--filter", "ce,cnnn"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown workload `cnnn`"), "{err}");
}

#[test]
fn arguments_to_a_command_that_takes_none_are_an_error() {
    let (code, err) = xtask(&["ci", "--fast"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid option '--fast'"), "{err}");
    let (code, err) = xtask(&["help", "extra"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unexpected argument \"extra\""), "{err}");
}

#[test]
fn an_unknown_command_is_an_error() {
    let (code, err) = xtask(&["conformnce"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown command `conformnce`"), "{err}");
}

#[test]
fn test_under_load_needs_a_positive_run_count() {
    let (code, err) = xtask(&["test-under-load", "--runs", "zero"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--runs"), "{err}");
    let (code, err) = xtask(&["test-under-load", "--runs", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn conformance_of_a_missing_file_fails_and_counts_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["conformance", "no/such/fixture.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn a_missing_peers_file_is_an_error_before_any_timing() {
    let (code, err) = xtask(&["bench", "--peers", "no/such/peers.json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--peers: no/such/peers.json"), "{err}");
}
