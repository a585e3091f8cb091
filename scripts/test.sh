#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints for the host and each Windows target, the cross
# builds of the kernel image, the test-signed package, every test (the image checks of the
# built and the packaged images and the INF check among them), and the demo.
source "$(dirname "$0")/setup.sh"
set -x

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
for target in "${WINDOWS_TARGETS[@]}"; do
    cargo clippy -p oxtun -p oxtun-client --target "$target" --release --locked -- -D warnings
    cargo build -p oxtun --target "$target" --release --locked
done
scripts/package.sh
cargo nextest run --workspace --locked --no-fail-fast
scripts/demo.sh
