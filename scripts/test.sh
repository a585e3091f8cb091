#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints for the host and each Windows target, the cross
# builds of the kernel image, the test-signed package, the API library's DLLs, the loom models,
# Miri over the abi crate's tests, every test (the image checks of the built and the packaged
# images, the INF check and the DLL checks among them, the C programs against oxtun.h), the
# driver's tests again on the kernel image itself, each fuzz target for a short while, and the
# demo on either build.
source "$(dirname "$0")/setup.sh" test
set -x

cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --workspace --all-targets --locked -- -D warnings
(cd fuzz && cargo clippy --bins --locked -- -D warnings)
for target in "${WINDOWS_TARGETS[@]}"; do
    cargo clippy -p oxtun -p oxtun-client -p oxtun-api --target "$target" --release --locked -- -D warnings
    cargo build -p oxtun --target "$target" --release --locked
    cargo build -p oxtun --target "$target" --locked
done
scripts/package.sh
# oxtun.dll for x64 and x86, with the package just made embedded (and in the x86 one, the x64
# WOW64 helper its build makes in target/wow64-helper); api/tests/windows_dll.rs reads their
# exports, imports and resources and runs them under Wine. The client's unit tests for Windows
# run under Wine too, the x86 ones as a WOW64 process that removes devices with that helper.
for target in "${API_TARGETS[@]}"; do
    cargo clippy -p oxtun-client -p oxtun-api --target "$target" --release --locked -- -D warnings
    cargo build -p oxtun-api --target "$target" --release --locked
done
# The helper's own build (cfg(wow64_helper): the rundll32 entry point) linted too, in its folder.
OXTUN_WOW64_HELPER_BUILD=1 cargo clippy -p oxtun-api --target x86_64-pc-windows-gnu --release \
    --locked --target-dir target/wow64-helper -- -D warnings
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$PWD/scripts/wine.sh" \
    cargo test -p oxtun-client --lib --target x86_64-pc-windows-gnu --locked
# The x86 run needs wine32 (Debian's i386 architecture). Where set-up could not install it, the
# x86 tests are still built, api/tests/windows_dll.rs still reads the x86 DLL and builds its C
# program, and the last line of this script says that the x86 Wine run did not happen.
wine32_unavailable=$(setup_unavailable wine32:i386)
if [ -z "$wine32_unavailable" ]; then
    CARGO_TARGET_I686_PC_WINDOWS_GNU_RUNNER="$PWD/scripts/wine.sh" \
        OXTUN_TEST_WOW64_HELPER="$PWD/target/wow64-helper/x86_64-pc-windows-gnu/release/oxtun.dll" \
        cargo test -p oxtun-client --lib --target i686-pc-windows-gnu --locked
else
    cargo test -p oxtun-client --lib --target i686-pc-windows-gnu --locked --no-run
fi
# The loom models of the ring protocol (abi/tests/loom.rs): the abi crate with loom's atomics, in
# a target folder of its own; release without LTO, since loom needs speed and not a small image.
loom=(env CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" CARGO_PROFILE_RELEASE_LTO=false
    CARGO_PROFILE_RELEASE_DEBUG=false)
"${loom[@]}" cargo clippy -p oxtun-abi --all-targets --locked -- -D warnings
"${loom[@]}" cargo test -p oxtun-abi --release --locked --test loom -- --nocapture
# Miri over the abi crate's tests: undefined behaviour, data races, leaks (abi/tests run fewer
# packets and cases under cfg(miri)).
cargo +nightly miri test -p oxtun-abi --locked
cargo nextest run --workspace --locked --no-fail-fast
# The driver's own tests again under the simulator's Driver Verifier handle checks
# (docs/simulator.md), as docs/windows.md runs the driver under Verifier.
OXTUN_SIM_VERIFIER=handles cargo nextest run --locked --no-fail-fast -p oxtun \
    -E 'not (binary_id(oxtun::kernel_image) | binary_id(oxtun::inf) | binary_id(oxtun::layout)
        | binary_id(oxtun::setup))'
# The driver's suite again on the shipped x64 kernel image, built above, which the simulator
# loads in place of the host build: tests/*.rs with the fault sweep, the emulator's tests, the
# deployed-client conformance suite and the C application on the API library (the emulators they
# start inherit the setting). Left out: the checks of files (images, INFs, layouts, DLLs under
# Wine, set-up) and of the simulator itself, which run no driver, and the image's own tests, which
# always run it.
sha256sum target/x86_64-pc-windows-msvc/release/oxtun_driver.dll
OXTUN_SIM_DRIVER=image cargo nextest run --locked --no-fail-fast -p oxtun -p oxtun-sim -p oxtun-api \
    -E 'not (binary_id(oxtun::kernel_image) | binary_id(oxtun::inf) | binary_id(oxtun::layout)
        | binary_id(oxtun-api::windows_dll) | binary_id(oxtun::image) | binary_id(oxtun::setup)
        | binary_id(oxtun-sim::checks) | binary_id(oxtun-sim::ndis_rules) | binary_id(oxtun-sim::layers)
        | binary_id(oxtun-sim::emulator_image))'
# Each fuzz target for 20 seconds, from its committed seeds (the long runs: scripts/fuzz.sh). The
# fuzz targets run the host build: libFuzzer's coverage and AddressSanitizer instrument only
# code compiled with them, which the kernel image is not.
scripts/fuzz.sh 20
scripts/demo.sh
OXTUN_SIM_DRIVER=image scripts/demo.sh
set +x
if [ -n "$wine32_unavailable" ]; then
    echo "test: NOT RUN: the x86 DLL and the x86 client tests under Wine, because wine32:i386 could not be installed ($wine32_unavailable); every other check passed"
fi
