#!/usr/bin/env bash
# Runs a Windows program under Wine (Debian's wine64, and wine32 for x86), as a cargo runner
# (CARGO_TARGET_<TRIPLE>_RUNNER=scripts/wine.sh) or from the tests: PROGRAM [ARGS...].
#
# Wine 8 lacks Windows 10's bcryptprimitives.dll, from which Rust's standard library takes its
# random numbers (ProcessPrng): a stand-in (api/tests/c/wine_bcryptprimitives.c) is built for
# the program's architecture and put on Wine's DLL path, for these runs only. The Wine prefix is
# target/wine/prefix unless WINEPREFIX says otherwise.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
program=$1
case $(objdump -f "$program" | sed -n 's/.*file format //p') in
    pei-i386) arch=i686 ;;
    *) arch=x86_64 ;;
esac
shim=$root/target/wine/$arch
if [ ! -f "$shim/bcryptprimitives.dll" ] ||
    [ "$root/api/tests/c/wine_bcryptprimitives.c" -nt "$shim/bcryptprimitives.dll" ]; then
    mkdir -p "$shim"
    "$arch-w64-mingw32-gcc" -shared -Wall -Werror -o "$shim/bcryptprimitives.dll" \
        "$root/api/tests/c/wine_bcryptprimitives.c" -ladvapi32 -Wl,--kill-at
fi
export WINEPREFIX=${WINEPREFIX:-$root/target/wine/prefix}
export WINEPATH="$shim${WINEPATH:+;$WINEPATH}"
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
exec wine "$@"
