//! `cargo xtask test-under-load`: the whole test suite, several times in a
//! row, while busy threads keep every core loaded. Tests must synchronise
//! on what they observe, never on time; this is how that is checked.

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `cargo test --workspace` `runs` times with one spinning thread per
/// core beside it; stops at the first failing run.
pub fn test_under_load(runs: usize) -> ExitCode {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..cores)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    // Busy arithmetic the optimiser cannot remove.
                    for _ in 0..10_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut result = ExitCode::SUCCESS;
    for run in 1..=runs {
        eprintln!(
            "xtask: run {run} of {runs}: cargo test --workspace ({cores} busy threads beside it)"
        );
        let ok = Command::new(&cargo)
            .args(["test", "--workspace"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("xtask: run {run} of {runs} failed under load");
            result = ExitCode::FAILURE;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    if result == ExitCode::SUCCESS {
        eprintln!("xtask: {runs} of {runs} runs passed under load");
    }
    result
}
