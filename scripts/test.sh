#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints for the host and the Windows target, the cross
# build of the kernel image, and every test (the image checks among them).
source "$(dirname "$0")/setup.sh"
set -x

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p oxtun --target "$WINDOWS_TARGET" --release --locked -- -D warnings
cargo build -p oxtun --target "$WINDOWS_TARGET" --release --locked
cargo nextest run --workspace --locked --no-fail-fast
