//! Repository automation for polyhead, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[global_allocator]
static ALLOCATOR: bench::CountingAlloc = bench::CountingAlloc;

mod bench;
mod conformance;
mod conformance_layers;
mod conformance_multi;
mod load;
mod peers;

const HELP: &str = "\
cargo xtask <command>

commands:
  ci                    run what CI runs (`bash .ci/run`): fmt check, clippy
                        -D warnings, then, in a fresh clone of HEAD with nothing
                        beside it, the tests, the main job and `bench --quick`
  conformance [FILE...] check polyhead against reference fixture files (schema:
                        fixtures/README.md); with no FILE, every fixture file of
                        the repository's fixtures/; prints each failing case and
                        ends with `N passed, N failed` (`, N not supported` for
                        cases of layers issue #19 is to add)
  bench [--quick] [--filter ce,mse,multi,train,cnn,seq,data] [--peers FILE]...
                        loss and training throughput against the machine's
                        bandwidth and GEMM rate; writes target/bench/bench.json;
                        with --peers (scripts/peers/peers.py's JSON), each row's
                        speed-up over each peer at the same thread count
  test-under-load [--runs N]
                        run `cargo test --workspace` N times in a row (default 5)
                        while busy threads keep every core loaded; stops at the
                        first failing run
  help                  print this message
";

/// A command-line mistake: printed with the help text, exit code 2.
struct Usage(String);

impl From<lexopt::Error> for Usage {
    fn from(e: lexopt::Error) -> Self {
        Usage(e.to_string())
    }
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(code) => code,
        Err(Usage(message)) => {
            eprintln!("xtask: {message}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, Usage> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args.clone());
    let command = match parser.next()? {
        None => return Ok(help()),
        Some(Value(command)) => command.string()?,
        Some(Long("help") | Short('h')) => return Ok(help()),
        Some(other) => return Err(other.unexpected().into()),
    };
    match command.as_str() {
        "help" => {
            no_more(&mut parser)?;
            Ok(help())
        }
        "ci" => {
            no_more(&mut parser)?;
            Ok(ci())
        }
        "conformance" => {
            let mut files = Vec::new();
            while let Some(arg) = parser.next()? {
                match arg {
                    Value(file) => files.push(PathBuf::from(file)),
                    other => return Err(other.unexpected().into()),
                }
            }
            Ok(conformance_command(files))
        }
        "bench" => {
            let options = bench_options(&mut parser)?;
            if cfg!(debug_assertions) {
                // Benchmarks need optimised code: run this command again in release.
                let mut cargo_args =
                    vec!["run", "--quiet", "--release", "--package", "xtask", "--"];
                cargo_args.extend(args.iter().filter_map(|a| a.to_str()));
                return Ok(cargo(&cargo_args));
            }
            Ok(match bench::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask bench: {e}");
                    ExitCode::FAILURE
                }
            })
        }
        "test-under-load" => {
            let mut runs = 5usize;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("runs") => {
                        runs = parser.value()?.parse()?;
                        if runs == 0 {
                            return Err(Usage("--runs takes a count of at least 1".into()));
                        }
                    }
                    other => return Err(other.unexpected().into()),
                }
            }
            Ok(load::test_under_load(runs))
        }
        other => Err(Usage(format!("unknown command `{other}`"))),
    }
}

fn help() -> ExitCode {
    print!("{HELP}");
    ExitCode::SUCCESS
}

/// Rejects anything after a command that takes no arguments.
fn no_more(parser: &mut lexopt::Parser) -> Result<(), Usage> {
    match parser.next()? {
        None => Ok(()),
        Some(arg) => Err(arg.unexpected().into()),
    }
}

/// `--quick`, `--filter NAME[,NAME]` and `--peers FILE` (repeatable);
/// anything else is an error.
fn bench_options(parser: &mut lexopt::Parser) -> Result<bench::Options, Usage> {
    use lexopt::prelude::*;
    let mut options = bench::Options::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("quick") => options.quick = true,
            Long("filter") => {
                let names: String = parser.value()?.string()?;
                let names: Vec<String> = names.split(',').map(str::to_string).collect();
                if let Some(bad) = names
                    .iter()
                    .find(|n| !bench::WORKLOADS.contains(&n.as_str()))
                {
                    return Err(Usage(format!(
                        "--filter: unknown workload `{bad}` (workloads: {})",
                        bench::WORKLOADS.join(",")
                    )));
                }
                options.filter = Some(names);
            }
            Long("peers") => {
                let file = PathBuf::from(parser.value()?);
                let loaded = peers::load(&file).map_err(|e| Usage(format!("--peers: {e}")))?;
                options.peers.extend(loaded);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(options)
}

/// The repository's root (xtask lives one level below it).
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the repository")
        .to_path_buf()
}

/// `cargo xtask ci` is `.ci/run`: one list of CI steps, kept there.
fn ci() -> ExitCode {
    let script = repository_root().join(".ci/run");
    eprintln!("xtask: bash {}", script.display());
    status_code(Command::new("bash").arg(&script).status(), "bash .ci/run")
}

/// Runs cargo with `args`, passing its exit status on.
fn cargo(args: &[&str]) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    status_code(
        Command::new(cargo).args(args).status(),
        &format!("cargo {}", args.join(" ")),
    )
}

fn status_code(status: std::io::Result<std::process::ExitStatus>, what: &str) -> ExitCode {
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("xtask: {what} failed ({s})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask: could not run {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every case of each fixture file (every case file of the
/// repository's `fixtures/` when none is named); exits non-zero if any
/// case fails.
fn conformance_command(mut files: Vec<PathBuf>) -> ExitCode {
    if files.is_empty() {
        match conformance::repository_fixture_files(&repository_root().join("fixtures")) {
            Ok(found) => files = found,
            Err(e) => {
                println!("FAIL fixtures: {e}");
                println!("0 passed, 1 failed");
                return ExitCode::FAILURE;
            }
        }
    }
    let (mut passed, mut failed, mut not_supported) = (0usize, 0usize, 0usize);
    for file in &files {
        let shown = file.display();
        let parsed = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
            .and_then(|json| conformance::run_file(file, &json));
        match parsed {
            Ok(outcomes) => {
                for o in outcomes {
                    match (o.failure, o.not_supported) {
                        (Some(f), _) => {
                            failed += 1;
                            println!("FAIL {shown} {}: {f}", o.id);
                        }
                        (None, Some(why)) => {
                            not_supported += 1;
                            println!("NOT SUPPORTED {shown} {}: {why}", o.id);
                        }
                        (None, None) => passed += 1,
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {shown}: {e}");
            }
        }
    }
    if not_supported == 0 {
        println!("{passed} passed, {failed} failed");
    } else {
        println!("{passed} passed, {failed} failed, {not_supported} not supported");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
