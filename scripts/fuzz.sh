#!/usr/bin/env bash
# Fuzzes checkpoint loading for a bounded time (default 60 s; first argument
# overrides). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). New crashing inputs land in
# fuzz/artifacts/checkpoint/; the corpus in fuzz/corpus/checkpoint/ is replayed
# by the regular test suite (crates/layers/tests/fuzz_corpus.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
cargo +nightly fuzz run checkpoint fuzz/corpus/checkpoint -- -max_total_time="$seconds" -print_final_stats=1
