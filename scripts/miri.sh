#!/usr/bin/env bash
# Runs the tests that cover polyhead's unsafe code (the strided GEMM wrapper
# in crates/tensor/src/matmul.rs) under Miri. Needs the nightly toolchain with
# Miri (`rustup component add --toolchain nightly miri`). Property tests run
# a few cases (Miri is slow); the exhaustive ones run in the normal suite.
set -euo pipefail
cd "$(dirname "$0")/.."
POLYHEAD_PROPTEST_CASES="${POLYHEAD_PROPTEST_CASES:-3}" MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
    cargo +nightly miri test -p polyhead-tensor --test matmul
