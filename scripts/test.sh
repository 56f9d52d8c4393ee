#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test (unit, pipeline, corpus).
# The corpus tests read ../shared/corpus (or $PAGEMILL_CORPUS) and say loudly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --install-only
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --no-fail-fast --lib --bins --tests
