#!/usr/bin/env bash
# Runs a Windows program under Wine (Debian's wine64, and wine32 for x86), as a cargo runner
# (CARGO_TARGET_<TRIPLE>_RUNNER=scripts/wine.sh) or from the tests: PROGRAM [ARGS...].
#
# Wine 8 lacks Windows 10's bcryptprimitives.dll, from which Rust's standard library takes its
# random numbers (ProcessPrng): a stand-in (api/tests/c/wine_bcryptprimitives.c) is built for
# each architecture and put where Windows keeps that DLL, in the Wine prefix's system32 (x64)
# and syswow64 (x86), so that a 32-bit program and the 64-bit one it starts (the WOW64 helper)
# each find theirs. The Wine prefix is target/wine/prefix unless WINEPREFIX says otherwise.
#
# The prefix reports Windows 10 22H2 (build 19045): oxtun.dll refuses a Windows older than 10
# 2004 (build 19041), and Wine 8 makes its prefixes Windows 7 (6.1.7601), while its newest named
# version, "win10", is build 18362. With no "Version" under HKCU\Software\Wine, Wine's
# RtlGetVersion reads the numbers from HKLM\Software\Microsoft\Windows NT\CurrentVersion
# (dlls/ntdll/version.c), which are set here; a test may still give one program another version
# (HKCU\Software\Wine\AppDefaults\<program>.exe, Version).
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
    if [ ! -f "$WINEPREFIX/.windows-10-22h2" ]; then
        key='HKLM\Software\Microsoft\Windows NT\CurrentVersion'
        for view in 64 32; do
            wine reg add "$key" /reg:$view /v CurrentMajorVersionNumber /t REG_DWORD /d 10 /f
            wine reg add "$key" /reg:$view /v CurrentMinorVersionNumber /t REG_DWORD /d 0 /f
            wine reg add "$key" /reg:$view /v CurrentBuildNumber /d 19045 /f
            wine reg add "$key" /reg:$view /v CurrentBuild /d 19045 /f
            # Windows 10 itself says 6.3 here; Wine 8 takes its major and minor from this value.
            wine reg add "$key" /reg:$view /v CurrentVersion /d 10.0 /f
            wine reg add "$key" /reg:$view /v ProductName /d "Windows 10 Pro" /f
        done >/dev/null
        wineserver --wait
        touch "$WINEPREFIX/.windows-10-22h2"
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
