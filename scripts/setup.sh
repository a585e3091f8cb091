#!/usr/bin/env bash
# Installs what a fresh Linux machine lacks for the parts of the project asked for, and nothing it
# has. Sourced by the other scripts with the part each needs, or run alone:
#
#   scripts/setup.sh [PART...]     (no part: all of them)
#
#   demo     the main job (scripts/demo.sh): iproute2, ping; the emulator needs nothing else
#   image    the kernel image: the Windows targets, clang (the SEH shim), LLVM (llvm-rc, readobj)
#   package  the test-signed package: the image's, and osslsigncode, openssl
#   fuzz     cargo-fuzz, the nightly toolchain, a C++ compiler for libFuzzer
#   test     scripts/test.sh: all of the above, rustfmt, clippy, cargo-nextest, Miri, the API
#            library's Windows targets, mingw-w64, Wine
#   bench    the benchmarks: the demo's, and iperf3
#
# A package the mirror cannot give does not stop the others (scripts/apt_install.sh): each is
# named at the end with apt's reason, and set-up fails if a part cannot do without it. The one
# optional package is wine32:i386, which runs the x86 DLL under Wine: without it scripts/test.sh
# still checks that DLL in every other way and says that its Wine run did not happen, and why
# (the reason is kept in target/setup/unavailable).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The kernel image's targets, and the folder name Windows gives each architecture.
WINDOWS_TARGETS=(x86_64-pc-windows-msvc aarch64-pc-windows-msvc)
declare -A WINDOWS_ARCH=([x86_64-pc-windows-msvc]=amd64 [aarch64-pc-windows-msvc]=arm64)

# The API library's Windows targets: linked by mingw-w64 (the msvc targets cannot link std here),
# x64 and x86 (32-bit processes on 64-bit Windows); ARM64 is linted through the msvc target.
API_TARGETS=(x86_64-pc-windows-gnu i686-pc-windows-gnu)

# Optional packages that set-up could not install, with apt's reason (scripts/apt_install.sh).
SETUP_UNAVAILABLE=target/setup/unavailable

# setup_unavailable PACKAGE: apt's reason why set-up could not install PACKAGE, or nothing.
setup_unavailable() {
    [ -f "$SETUP_UNAVAILABLE" ] || return 0
    awk -F '\t' -v package="$1" '$1 == package { print $2 }' "$SETUP_UNAVAILABLE"
}

setup_main() {
    local parts=("$@") part
    [ ${#parts[@]} -gt 0 ] || parts=(all)
    local -A want=()
    for part in "${parts[@]}"; do
        case $part in
        all) for part in demo image package fuzz test bench; do want[$part]=1; done ;;
        test) for part in demo image package fuzz test; do want[$part]=1; done ;;
        package) want[image]=1 want[package]=1 ;;
        bench) want[demo]=1 want[bench]=1 ;;
        demo | image | fuzz) want[$part]=1 ;;
        *) echo "setup: no part '$part' (demo, image, package, fuzz, test, bench)" >&2; return 2 ;;
        esac
    done

    # Rust: targets, components and cargo tools.
    local targets=() installed_targets target component
    [ -z "${want[image]:-}" ] || targets+=("${WINDOWS_TARGETS[@]}")
    [ -z "${want[test]:-}" ] || targets+=("${API_TARGETS[@]}")
    installed_targets=$(rustup target list --installed)
    for target in "${targets[@]}"; do
        grep -qx "$target" <<<"$installed_targets" || rustup target add "$target"
    done
    if [ -n "${want[test]:-}" ]; then
        for component in rustfmt clippy; do
            rustup component list --installed | grep -q "^$component" || rustup component add "$component"
        done
        command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
    fi
    # The nightly toolchain: Miri (with the standard library's sources it builds), and
    # cargo-fuzz's sanitizer builds.
    if [ -n "${want[fuzz]:-}${want[test]:-}" ]; then
        rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
        command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    fi
    if [ -n "${want[test]:-}" ]; then
        for component in miri rust-src; do
            rustup +nightly component list --installed | grep -q "^$component" ||
                rustup +nightly component add "$component"
        done
    fi

    # Debian's packages.
    local missing=() optional=()
    if [ -n "${want[demo]:-}" ]; then
        # Namespaces and TUN interfaces, ping across them, the TCP check's Python.
        command -v ip >/dev/null || missing+=(iproute2)
        command -v ping >/dev/null || missing+=(iputils-ping)
        command -v python3 >/dev/null || missing+=(python3)
    fi
    if [ -n "${want[image]:-}" ]; then
        # LLVM (llvm-rc for the version resource, llvm-readobj to show the image, llvm-nm for the
        # image check) and clang (the SEH shim, and llvm-rc's preprocessor).
        command -v llvm-readobj >/dev/null || missing+=(llvm)
        command -v clang >/dev/null || compgen -c | grep -qE '^clang-[0-9]+$' || missing+=(clang)
    fi
    if [ -n "${want[package]:-}" ]; then
        command -v osslsigncode >/dev/null || missing+=(osslsigncode)
        command -v openssl >/dev/null || missing+=(openssl)
    fi
    if [ -n "${want[fuzz]:-}" ]; then
        # libFuzzer, which the fuzz targets link, is C++.
        command -v c++ >/dev/null || missing+=(g++)
    fi
    if [ -n "${want[test]:-}" ]; then
        # mingw-w64's import libraries list what the kernel, NDIS and the HAL export (the image
        # check compares the images' imports with them).
        [ -f /usr/x86_64-w64-mingw32/lib/libntoskrnl.a ] || missing+=(mingw-w64-x86-64-dev)
        # The API library: C tests with the system compiler; mingw-w64 links the Windows DLLs;
        # Wine runs what it can of them (wine64, and wine32 from the i386 architecture for the
        # x86 DLL). Debian installs wine64 as /usr/lib/wine/wine64, off PATH (`wine` runs it).
        command -v cc >/dev/null || missing+=(gcc)
        command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
        command -v i686-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-i686)
        dpkg -s wine64 >/dev/null 2>&1 || missing+=(wine64)
        if ! dpkg -s wine32:i386 >/dev/null 2>&1; then
            if ! dpkg --print-foreign-architectures | grep -qx i386; then
                if [ "$(id -u)" = 0 ]; then dpkg --add-architecture i386; else sudo dpkg --add-architecture i386; fi
            fi
            optional+=(wine32:i386)
        fi
    fi
    if [ -n "${want[bench]:-}" ]; then
        # The emulator benchmark's TCP rows.
        command -v iperf3 >/dev/null || missing+=(iperf3)
    fi

    if [ -n "${want[test]:-}" ]; then
        mkdir -p "$(dirname "$SETUP_UNAVAILABLE")"
        rm -f "$SETUP_UNAVAILABLE"
    fi
    if [ ${#missing[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
        local record=()
        [ -z "${want[test]:-}" ] || record=(--record "$SETUP_UNAVAILABLE")
        scripts/apt_install.sh "${record[@]}" "${missing[@]}" --optional "${optional[@]}"
    fi
}

# Run alone, the arguments are the parts; sourced, the script that sources it names them.
setup_main "$@"
