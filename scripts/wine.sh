#!/usr/bin/env bash
# Runs a Windows program under Wine (Debian's wine64, and wine32 for x86), as a cargo runner
# (CARGO_TARGET_<TRIPLE>_RUNNER=scripts/wine.sh) or from the tests: PROGRAM [ARGS...].
#
# Wine 8 lacks Windows 10's bcryptprimitives.dll, from which Rust's standard library takes its
# random numbers (ProcessPrng): a stand-in (api/tests/c/wine_bcryptprimitives.c) is built for
# each architecture and put where Windows keeps that DLL, in the Wine prefix's system32 (x64)
# and syswow64 (x86), so that a 32-bit program and the 64-bit one it starts (the WOW64 helper)
# each find theirs. The Wine prefix is target/wine/prefix unless WINEPREFIX says otherwise.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export WINEPREFIX=${WINEPREFIX:-$root/target/wine/prefix}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
source=$root/api/tests/c/wine_bcryptprimitives.c
windows=$WINEPREFIX/drive_c/windows
# The prefix is made and the stand-ins put in place by one run at a time (tests run in parallel).
mkdir -p "$(dirname "$WINEPREFIX")"
(
    flock 9
    if [ ! -d "$windows/syswow64" ]; then
        wineboot --init
        wineserver --wait
    fi
    for place in x86_64:system32 i686:syswow64; do
        shim=$windows/${place#*:}/bcryptprimitives.dll
        if [ ! -f "$shim" ] || [ "$source" -nt "$shim" ]; then
            "${place%%:*}-w64-mingw32-gcc" -shared -Wall -Werror -o "$shim.new" "$source" \
                -ladvapi32 -Wl,--kill-at
            mv "$shim.new" "$shim"
        fi
    done
) 9>"$WINEPREFIX.lock"
exec wine "$@"
