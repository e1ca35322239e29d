#!/usr/bin/env bash
# Builds the libFuzzer target over the License parsers and runs it for a bounded time.
#
# Usage: crates/tessera-license/fuzz/run.sh [SECONDS]   (default 60)
#
# This is what `cargo fuzz run parse` does, minus AddressSanitizer, with the flags spelled out so
# it runs on a stable toolchain without installing cargo-fuzz (-Zsanitizer needs nightly). The
# parser is safe Rust, so what libFuzzer looks for here is panics, aborts, timeouts and runaway
# memory, all of which it catches without ASan. With nightly and cargo-fuzz installed,
# `cargo +nightly fuzz run parse corpus/parse seeds -- -max_total_time=60` does the same with ASan.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}

export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks \
 -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bin parse --target "$host" --target-dir target/stable-fuzz

mkdir -p corpus/parse artifacts/parse
target/stable-fuzz/"$host"/release/parse corpus/parse seeds \
  -artifact_prefix=artifacts/parse/ -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
  -print_final_stats=1
