//! Repository automation for polyhead, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).

use std::process::{Command, ExitCode};

const HELP: &str = "\
cargo xtask <command>

commands:
  ci      run what CI runs: fmt check, clippy -D warnings, the test suite
  help    print this message
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
