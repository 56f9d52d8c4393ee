#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test (unit, pipeline, corpus).
# The corpus tests read ../shared/corpus (or $PAGEMILL_CORPUS) and say loudly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --install-only
cargo fmt --all -- --check
# `fault-injection` lets tests/crash_recovery.rs make a stage panic (src/pipeline/faults.rs); the
# daemon as shipped is built without it, and linted that way too.
cargo clippy --locked -- -D warnings
cargo clippy --all-targets --locked --features fault-injection -- -D warnings
cargo test --locked --no-fail-fast --features fault-injection --lib --bins --tests
