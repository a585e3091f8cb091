#!/usr/bin/env bash
# Sourced by the other scripts, or run alone: installs what a fresh Linux machine lacks, and
# nothing it has.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The kernel image's targets, and the folder name Windows gives each architecture.
WINDOWS_TARGETS=(x86_64-pc-windows-msvc aarch64-pc-windows-msvc)
declare -A WINDOWS_ARCH=([x86_64-pc-windows-msvc]=amd64 [aarch64-pc-windows-msvc]=arm64)

# The API library's Windows targets: linked by mingw-w64 (the msvc targets cannot link std here),
# x64 and x86 (32-bit processes on 64-bit Windows); ARM64 is linted through the msvc target.
API_TARGETS=(x86_64-pc-windows-gnu i686-pc-windows-gnu)

installed_targets=$(rustup target list --installed)
for target in "${WINDOWS_TARGETS[@]}" "${API_TARGETS[@]}"; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        rustup target add "$target"
    fi
done
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
if ! command -v cargo-nextest >/dev/null; then
    cargo install --locked cargo-nextest
fi
# The nightly toolchain (Miri, and cargo-fuzz's sanitizer builds), with Miri and the standard
# library's sources it builds; cargo-fuzz.
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
for component in miri rust-src; do
    if ! rustup +nightly component list --installed | grep -q "^$component"; then
        rustup +nightly component add "$component"
    fi
done
if ! command -v cargo-fuzz >/dev/null; then
    cargo install --locked cargo-fuzz
fi
# Debian's LLVM tools (llvm-readobj for the main job, llvm-nm for the image check, llvm-rc for the
# version resource), clang (the SEH shim, and llvm-rc's preprocessor), and what test-signs the
# package.
missing=()
command -v llvm-readobj >/dev/null || missing+=(llvm)
command -v clang >/dev/null || compgen -c | grep -qE '^clang-[0-9]+$' || missing+=(clang)
command -v osslsigncode >/dev/null || missing+=(osslsigncode)
# mingw-w64's import libraries list what the kernel, NDIS and the HAL export (the image check
# compares the images' imports with them).
[ -f /usr/x86_64-w64-mingw32/lib/libntoskrnl.a ] || missing+=(mingw-w64-x86-64-dev)
command -v openssl >/dev/null || missing+=(openssl)
# libFuzzer, which the fuzz targets link, is C++.
command -v c++ >/dev/null || missing+=(g++)
# The emulator's tests: the TUN device and namespaces, and ping across them.
command -v ip >/dev/null || missing+=(iproute2)
command -v ping >/dev/null || missing+=(iputils-ping)
# The emulator benchmark's TCP rows.
command -v iperf3 >/dev/null || missing+=(iperf3)
# The API library: C tests with the system compiler; mingw-w64 links the Windows DLLs; Wine runs
# what it can of them (wine64, and wine32 from the i386 architecture for the x86 DLL).
command -v cc >/dev/null || missing+=(gcc)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
command -v i686-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-i686)
# Debian installs wine64 as /usr/lib/wine/wine64, off PATH (`wine` runs it).
dpkg -s wine64 >/dev/null 2>&1 || missing+=(wine64)
if ! dpkg -s wine32:i386 >/dev/null 2>&1; then
    if ! dpkg --print-foreign-architectures | grep -qx i386; then
        if [ "$(id -u)" = 0 ]; then dpkg --add-architecture i386; else sudo dpkg --add-architecture i386; fi
    fi
    missing+=(wine32:i386)
fi
if [ ${#missing[@]} -gt 0 ]; then
    apt_get() {
        if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi
    }
    apt_get update -qq
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "${missing[@]}" >/dev/null
fi
