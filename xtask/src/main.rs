//! Repository automation for polyhead, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).

use std::process::{Command, ExitCode};

#[global_allocator]
static ALLOCATOR: bench::CountingAlloc = bench::CountingAlloc;

mod bench;
mod conformance;
mod conformance_multi;

const HELP: &str = "\
cargo xtask <command>

commands:
  ci                    run what CI runs: fmt check, clippy -D warnings, the tests
  conformance FILE...   check polyhead against reference fixture files (see
                        shared/fixtures/FORMAT.md); prints each failing case
                        and ends with `N passed, N failed`
  bench [--quick] [--filter ce,mse,multi,train]
                        loss and training throughput against the machine's
                        bandwidth and GEMM rate; writes target/bench/bench.json
  help                  print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => run_all(&[
            &["fmt", "--all", "--check"],
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &["test", "--workspace"],
        ]),
        Some("conformance") => conformance_command(&args[1..]),
        Some("bench") if cfg!(debug_assertions) => {
            // Benchmarks need optimised code: run this command again in release.
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
                .args(&args)
                .status();
            match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Some("bench") => match bench::run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask bench: {e}");
                ExitCode::FAILURE
            }
        },
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

/// Runs each cargo invocation in turn, stopping at the first failure.
fn run_all(invocations: &[&[&str]]) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    for args in invocations {
        eprintln!("xtask: cargo {}", args.join(" "));
        match Command::new(&cargo).args(*args).status() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("xtask: cargo {} failed ({status})", args.join(" "));
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("xtask: could not run cargo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Runs every case of each fixture file; exits non-zero if any case fails.
fn conformance_command(files: &[String]) -> ExitCode {
    if files.is_empty() {
        eprintln!("xtask conformance: name at least one fixture file");
        return ExitCode::from(2);
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .and_then(|json| conformance::run_file(std::path::Path::new(file), &json));
        match parsed {
            Ok(outcomes) => {
                for o in outcomes {
                    match o.failure {
                        None => passed += 1,
                        Some(f) => {
                            failed += 1;
                            println!("FAIL {file} {}: {f}", o.id);
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {file}: {e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
