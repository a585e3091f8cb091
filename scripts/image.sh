#!/usr/bin/env bash
# The main job: cross-build the kernel image, check it, and say where it is and what it imports.
source "$(dirname "$0")/setup.sh"

cargo build --release --target "$WINDOWS_TARGET" -p oxtun
image="target/$WINDOWS_TARGET/release/oxtun.sys"
cp "$OXTUN_IMAGE" "$image"

echo
echo "kernel image: $PWD/$image ($(stat -c %s "$image") bytes)"
echo "debug symbols: $PWD/target/$WINDOWS_TARGET/release/oxtun.pdb"
llvm-readobj --file-headers "$image" |
    grep -E '^ *(Machine|Subsystem|AddressOfEntryPoint|ImageBase):|IMAGE_DLL_CHARACTERISTICS' |
    sed 's/^ */  /'
echo "imports:"
llvm-readobj --coff-imports "$image" | awk '
    /Name:/ { dll = $2 }
    /Symbol:/ { printf "  %-14s %s\n", dll, $2 }'
